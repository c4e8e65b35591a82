"""First use downloads the captioner, on a real WebUI, from a local Hub-compatible server (HF_ENDPOINT, loopback):
the progress text names the file, bytes and rate; Interrupt stops the download; the next run resumes it; a
model the Hub does not have is a 503 naming it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tests.hub_server import HubServer

from .conftest import TinyModels, WebUI
from .test_dnp_api import PROMPT, STEPS, TITLE, run_dnp, script_args

REPO = "dnp-tests/tiny-blip2"


def dnp_body(seed: int) -> dict[str, Any]:
    return {
        "prompt": PROMPT, "width": 64, "height": 64, "steps": STEPS, "sampler_name": "Euler", "seed": seed,
        "alwayson_scripts": script_args({"enabled": True}),
    }  # fmt: skip


def test_first_use_download_progress_interrupt_resume(
    webui_factory: Callable[..., WebUI], tiny_models: TinyModels
) -> None:
    source = tiny_models.captioners["blip2"]
    with HubServer({REPO: source}, throttle_s=0.4) as hub:
        server = webui_factory(
            name="webui-download",
            env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": None},
            settings={"dnp_blip2_model": REPO},
        )
        dest = server.data_dir / "models" / "dnp" / REPO.replace("/", "--")

        # 1. the first run downloads: its progress text shows it; Interrupt stops it and keeps the part file
        result: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: result.update(r=server.request("POST", "/sdapi/v1/txt2img", dnp_body(8)))
        )
        worker.start()
        seen = ""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "model.safetensors" not in seen:
            seen = str(server.get("/sdapi/v1/progress?skip_current_image=true").get("textinfo") or "")
            time.sleep(0.2)
        assert f"downloading {REPO}" in seen and "model.safetensors" in seen and "MB" in seen and "/s" in seen, seen
        server.post("/sdapi/v1/interrupt")
        worker.join(300)
        assert result["r"].status == 200, result["r"].text[:1000]
        parts = list(dest.glob("*.part"))
        assert parts and not (dest / ".dnp-complete").exists(), sorted(p.name for p in dest.iterdir())
        kept = parts[0].stat().st_size

        # 2. the next run resumes where it stopped and generates with the downloaded captioner
        hub.requests.clear()
        hub.throttle_s = 0.0
        run = run_dnp(server, {"enabled": True}, 1, prompt=PROMPT, seed=8)
        assert (f"/{REPO}/resolve/main/{parts[0].name[: -len('.part')]}", f"bytes={kept}-") in hub.requests
        assert (dest / ".dnp-complete").is_file()
        # the same captioner as the local folder the download came from
        server.set_options(dnp_blip2_model=str(source))
        assert run_dnp(server, {"enabled": True}, 1, prompt=PROMPT, seed=8).negatives == run.negatives

        # 3. a model the Hub does not have: 503 naming it, the setting and the HTTP status
        server.set_options(dnp_blip2_model="dnp-tests/no-such-model")
        r = server.request("POST", "/sdapi/v1/txt2img", dnp_body(9))
        assert r.status == 503, r.text[:1000]
        detail = str(r.json().get("detail"))
        for word in (TITLE, "dnp-tests/no-such-model", "HTTP 404", "dnp_blip2_model"):
            assert word in detail, f"{word!r} not in {detail}"


def test_settings_button_downloads_captioners(webui_factory: Callable[..., WebUI], tiny_models: TinyModels) -> None:
    """Settings > Diffusion-Negative Prompting > "Download captioners now" fetches the captioners set there."""
    import pytest

    from .browser import CHROMIUM_ARGS, UI_TIMEOUT_MS, VIEWPORT, find_chromium

    playwright = pytest.importorskip("playwright.sync_api")
    if find_chromium() is None:
        pytest.skip("no Chromium")
    repos = {
        "dnp-tests/button-blip2": tiny_models.captioners["blip2"],
        "dnp-tests/button-blip": tiny_models.captioners["blip"],
    }
    with HubServer(repos) as hub:
        server = webui_factory(
            name="webui-download-button",
            env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": None},
            settings={"dnp_blip2_model": "dnp-tests/button-blip2", "dnp_blip_model": "dnp-tests/button-blip"},
        )
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(UI_TIMEOUT_MS)
                page.goto(server.base_url)
                page.locator("#tabs > .tab-nav button", has_text="Settings").click()
                page.locator("#settings > .tab-nav button", has_text=TITLE).click()
                page.locator("#setting_dnp_download_now").first.click()
                status = page.locator("#setting_dnp_download_status").first
                for name in ("blip2", "blip"):
                    playwright.expect(status).to_contain_text(f"{name}: dnp-tests/button-{name} is ready in",
                                                              timeout=UI_TIMEOUT_MS)  # fmt: skip
            finally:
                browser.close()
    for repo in repos:
        assert (server.data_dir / "models" / "dnp" / repo.replace("/", "--") / ".dnp-complete").is_file(), repo
    # the runs use them (nothing more is fetched: the Hub server is gone)
    assert run_dnp(server, {"enabled": True, "captioner": "blip"}, 1, prompt=PROMPT, seed=3).negatives[0]
