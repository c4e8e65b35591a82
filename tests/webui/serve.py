"""Start the tiny test WebUI by hand (for the speed benchmark or a look in the browser), until Ctrl-C.

    SD_WEBUI_DIR=/path/to/webui python -m tests.webui.serve [--workdir DIR] [--url-file FILE]

Builds the same tiny random-weight models the WebUI tests use (checkpoint and tiny captioners), starts the WebUI
with the test harness's flags and this folder as its extension, points the captioner settings at the tiny
captioners and prints the URL.
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
    a = ap.parse_args()
    webui_dir = h._webui_dir()
    if webui_dir is None:
        print("set SD_WEBUI_DIR", file=sys.stderr)
        return 2
    install = h.Install(webui_dir, h.webui_python(webui_dir), h.detect_host(webui_dir))
    root = a.workdir or Path(tempfile.mkdtemp(prefix="dnp-serve-"))
    root.mkdir(parents=True, exist_ok=True)
    if install.host == "forge":
        checkpoint_dir, checkpoint = h._tiny_forge_checkpoint(install, root)
        config = text_encoder = None
    else:
        out = h._run_builder(
            install,
            [str(h.HERE / "tiny_sd.py"), str(root / "sd"), "--webui-dir", str(webui_dir)],
            "tiny SD checkpoint",
            root / "tiny_sd.log",
        )
        manifest = h._last_json_line(out)
        checkpoint_dir, checkpoint = Path(manifest["checkpoint_dir"]), Path(manifest["checkpoint"])
        config, text_encoder = Path(manifest["config"]), Path(manifest["text_encoder"])
    models = h.TinyModels(
        root=root,
        checkpoint=checkpoint,
        checkpoint_dir=checkpoint_dir,
        config=config,
        text_encoder=text_encoder,
        captioner_builder=lambda: h._build_captioners(install, root / "captioners", root),
    )
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
