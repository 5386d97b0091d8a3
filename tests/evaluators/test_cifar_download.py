"""Ctrl-C during a CIFAR download leaves no half archive behind (issue 9).

The real torchvision downloader fetches from a local HTTP server that sends the first bytes of
a large "archive" and then stalls; once the archive file has bytes on disk, the main thread
gets a real SIGINT. Only the URL the downloader reads is pointed at the local server.
"""

import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from torchvision.datasets import CIFAR10

from evaluators.data.cifar import _download_cifar

SIZE = 10_000_000


class _Stalling(BaseHTTPRequestHandler):
    stop = threading.Event()

    def _head(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(SIZE))
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self._head()

    def do_GET(self) -> None:  # noqa: N802
        self._head()
        self.wfile.write(b"\0" * 65536)
        self.wfile.flush()
        self.stop.wait(30)  # then nothing more: the client waits until interrupted

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stalling_server(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stalling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
    monkeypatch.setattr(CIFAR10, "url", url)
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield
    finally:
        _Stalling.stop.set()
        server.shutdown()
        server.server_close()
        _Stalling.stop.clear()


def test_ctrl_c_during_a_download_removes_the_half_archive(tmp_path, stalling_server):
    data = tmp_path / "data"
    archive = data / CIFAR10.filename
    main = threading.main_thread().ident

    def interrupt_when_bytes_arrive() -> None:
        deadline = time.monotonic() + 30
        while not (archive.exists() and archive.stat().st_size > 0):
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGINT)  # to the main thread, blocked in recv

    watcher = threading.Thread(target=interrupt_when_bytes_arrive, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        _download_cifar("cifar10", data)
    watcher.join()
    assert not data.exists()  # the folder this call created, the half archive with it
    assert list(tmp_path.iterdir()) == []
