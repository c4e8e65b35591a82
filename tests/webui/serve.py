"""Start the tiny test WebUI by hand (for the speed benchmark or a look in the browser), until Ctrl-C.

    SD_WEBUI_DIR=/path/to/webui python -m tests.webui.serve [--workdir DIR] [--url-file FILE] [--family F]

Builds the same tiny random-weight models the WebUI tests use (tests/webui/fixtures.py and the tiny captioners),
starts the WebUI with the test harness's flags and this folder as its extension, points the captioner settings at
the tiny captioners and prints the URL.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

from . import conftest as h


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=None, help="models, data dir and log (default: a temp dir)")
    ap.add_argument("--url-file", type=Path, default=None, help="write the URL here once the WebUI is up")
    ap.add_argument("--family", default="sd1", choices=h.FAMILIES, help="tiny model family (default: sd1)")
    a = ap.parse_args()
    webui_dir = h._webui_dir()
    if webui_dir is None:
        print("set SD_WEBUI_DIR", file=sys.stderr)
        return 2
    install = h.Install(webui_dir, h.webui_python(webui_dir), h.detect_host(webui_dir))
    if a.family not in h.HOST_FAMILIES[install.host]:
        print(f"no tiny {a.family} checkpoint for {install.host}", file=sys.stderr)
        return 2
    root = a.workdir or Path(tempfile.mkdtemp(prefix="dnp-serve-"))
    root.mkdir(parents=True, exist_ok=True)
    models = h.build_models(install, a.family, root, lambda: h._build_captioners(install, root / "captioners", root))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # kill PID stops the WebUI too
    with h.start_webui(install, models, root, name=f"serve-{install.host}") as webui:
        try:
            webui.use_tiny_captioners()
            print(webui.base_url, flush=True)
            if a.url_file:
                a.url_file.write_text(webui.base_url)
            while webui.alive() and not stop.wait(1):
                pass
        finally:
            h._stop(webui)
    return 0


if __name__ == "__main__":
    sys.exit(main())
