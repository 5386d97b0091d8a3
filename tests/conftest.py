"""Settings for the whole test suite: Ctrl-C behaves as in a terminal.

A shell starts background jobs (``cmd &`` without job control: CI wrappers, ``nohup``) with
SIGINT ignored, and Python then installs no KeyboardInterrupt handler; the tests that send
real SIGINTs to this process or to a ``python -m nas.search`` child would see nothing happen.
Python's own handler is put back for the session (and a child started by ``exec`` gets the
default disposition again, since handlers do not survive ``exec``, so it installs its own).
"""

import signal


def pytest_configure(config):
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
