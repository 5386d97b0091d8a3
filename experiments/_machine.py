"""The machine line every result file starts with (shared by the experiment scripts)."""

from __future__ import annotations

import os
import platform
import sys


def machine_description() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, "
        f"GPU: {gpu}, Python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}"
    )


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
