"""Screenshot optuna-dashboard on a ConvNAS study with headless Chromium.

Starts ``optuna-dashboard <storage>`` on a free local port, waits for its API, and lets
Chromium (Debian's ``chromium``) render the study page to a PNG:

    python experiments/dashboard_screenshot.py --storage sqlite:///runs/convnas.db \
        --study <study> --out experiments/results/dashboard.png

The test suite makes the same check on a tiny study (tests/nas/test_search_e2e.py); this
script is for the README's picture of a real search.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1400)
    args = p.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    dashboard = shutil.which("optuna-dashboard") or str(
        Path(sys.executable).with_name("optuna-dashboard")
    )
    if chromium is None:
        p.error("chromium is not installed (apt-get install chromium)")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [dashboard, args.storage, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=2) as r:
                    studies = json.load(r)["study_summaries"]
                break
            except OSError:
                time.sleep(0.5)
        else:
            p.error("optuna-dashboard did not start within 60 s")
        ids = [s["study_id"] for s in studies if s["study_name"] == args.study]
        if not ids:
            names = ", ".join(s["study_name"] for s in studies)
            p.error(f"study {args.study!r} is not in {args.storage} (it has: {names})")
        url = f"{base}/dashboard/studies/{ids[0]}"
        with tempfile.TemporaryDirectory() as profile:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--hide-scrollbars",
                    "--virtual-time-budget=20000",
                    f"--window-size={args.width},{args.height}",
                    f"--user-data-dir={profile}",
                    f"--screenshot={args.out.resolve()}",
                    url,
                ],
                capture_output=True,
                timeout=180,
                check=True,
            )
        print(f"wrote {args.out} ({url})")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
