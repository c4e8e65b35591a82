"""`python -m tests.webui.serve`: the tiny WebUI a user starts by hand, e.g. for the speed benchmark."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import PROJECT_ROOT, Install
from .test_smoke import SCRIPT_KEY


def test_serve_starts_the_tiny_webui_and_sigterm_stops_it(webui_install: Install, tmp_path: Path) -> None:
    """`python -m tests.webui.serve` (the WebUI the speed figures in the README come from) starts the tiny
    WebUI with this extension and the tiny captioners set, and stops it on SIGTERM."""
    url_file, log_path = tmp_path / "url", tmp_path / "serve.log"

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    env = {**os.environ, "SD_WEBUI_DIR": str(webui_install.dir), "SD_WEBUI_PYTHON": str(webui_install.python)}
    command = [sys.executable, "-m", "tests.webui.serve", "--workdir", str(tmp_path / "w"), "--url-file", str(url_file)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while not url_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        assert url_file.exists(), f"serve printed no URL (exit code {proc.poll()}):\n{log_tail()}"
        base = url_file.read_text().strip()
        scripts = json.loads(urllib.request.urlopen(f"{base}/sdapi/v1/scripts", timeout=60).read())
        assert SCRIPT_KEY in scripts["txt2img"], scripts
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
    assert code == 0, log_tail()
    with pytest.raises(OSError):  # the WebUI went with it
        urllib.request.urlopen(f"{base}/sdapi/v1/scripts", timeout=10)
