"""Install from URL, as a user does it, in Chromium: Extensions > Install from URL with a git URL of this checkout
(file:// of a bare clone of its HEAD), Install, then Installed > Apply and restart UI.

The harness plays webui.sh's part in the restart: the WebUI, started with SD_WEBUI_RESTART, exits after "Apply and
restart UI" and is started again on the same data folder. Then the accordion is there, install.py ran (its line in
the log) and changed no package, and Auto-DNP generates.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .browser import CHROMIUM_ARGS, UI_TIMEOUT_MS, VIEWPORT, find_chromium
from .conftest import PROJECT_ROOT, Install, TinyModels, start_webui
from .test_dnp_api import PROMPT, SCRIPT_KEY, run_dnp

playwright = pytest.importorskip("playwright.sync_api")


def pip_freeze(install: Install) -> list[str]:
    out = subprocess.run(
        [str(install.python), "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True, timeout=300
    )
    return sorted(out.stdout.splitlines())


def test_install_from_url_apply_and_restart(webui_install: Install, tiny_models: TinyModels, tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.skip("no Chromium")
    bare = tmp_path / "sd-webui-dnp.git"
    subprocess.run(["git", "clone", "--bare", "-q", str(PROJECT_ROOT), str(bare)], check=True, timeout=300)
    url = bare.as_uri()
    packages = pip_freeze(webui_install)
    restart_file = webui_install.dir / "tmp" / "restart"  # webui.sh's signal; left as it was found
    had_restart_file = restart_file.exists()
    captioners = {"dnp_blip2_model": str(tiny_models.captioners["blip2"])}
    env = {"SD_WEBUI_RESTART": "1"}
    try:
        with (
            start_webui(
                webui_install, tiny_models, tmp_path, with_extension=False, name="webui-url", env=env
            ) as server,
            playwright.sync_playwright() as pw,
        ):
            assert SCRIPT_KEY not in server.get("/sdapi/v1/scripts")["txt2img"]
            browser = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(UI_TIMEOUT_MS)
                page.goto(server.base_url)
                page.locator("#tabs > .tab-nav button", has_text="Extensions").click()
                page.locator("#tabs_extensions > .tab-nav button", has_text="Install from URL").click()
                page.get_by_label("URL for extension's git repository").fill(url)
                page.locator("#tab_extensions button", has_text=re.compile(r"^\s*Install\s*$")).click()
                playwright.expect(page.locator("#extension_install_result").first).to_contain_text(
                    "Installed into", timeout=300_000
                )
                page.locator("#tabs_extensions > .tab-nav button", has_text="Installed").click()
                page.locator("#tab_extensions button", has_text="Apply and restart UI").click()
                server.process.wait(timeout=120)  # the WebUI exits for webui.sh to start it again
            finally:
                browser.close()
        installed = tmp_path / "webui-url-data" / "extensions" / "sd-webui-dnp"
        assert (installed / "scripts" / "dnp.py").is_file(), f"not installed where expected: {installed}"

        with (
            start_webui(
                webui_install,
                tiny_models,
                tmp_path,
                with_extension=False,
                name="webui-url",
                env=env,
                settings=captioners,
            ) as server,  # fmt: skip
            playwright.sync_playwright() as pw,
        ):
            assert "[sd-webui-dnp] install.py: all requirements present" in server.log_path.read_text(errors="replace")
            assert pip_freeze(webui_install) == packages, "installing the extension changed the WebUI's packages"
            browser = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(UI_TIMEOUT_MS)
                page.goto(server.base_url)
                playwright.expect(page.locator("#dnp_txt2img_accordion").first).to_be_visible(timeout=UI_TIMEOUT_MS)
                playwright.expect(page.locator("#dnp_img2img_accordion").first).to_be_attached(timeout=UI_TIMEOUT_MS)
            finally:
                browser.close()
            run = run_dnp(server, {"enabled": True}, 1, prompt=PROMPT, seed=12)
            assert run.infotexts[0].params.get("DNP") and run.negatives[0], run.infotexts[0]
    finally:
        if not had_restart_file:
            restart_file.unlink(missing_ok=True)
