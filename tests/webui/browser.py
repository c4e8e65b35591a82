"""Drives the WebUI's txt2img tab in headless Chromium (Playwright for Python, the system's Chromium).

Playwright's own browser downloads are never used: Chromium comes from DNP_CHROMIUM or the PATH
(Debian's /usr/bin/chromium), so nothing is fetched at test time. Elements are found by the gradio
elem_ids the WebUI and the extension set; gradio 3.41 (A1111) and 4.40 (Forge) put them on the component's
outer block. Where the two gradios' markup differs, selectors match both.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

# A sandbox-free, quiet, offline-friendly headless Chromium (tests run as root in containers).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}
UI_TIMEOUT_MS = 60_000  # first page load and UI updates
# a round trip that samples (Generate, Suggest): with Forge loading its full-size CLIP and VAE on the first
# run and other suites sharing the 2 cores, one took over a minute in CI
RUN_TIMEOUT_MS = 240_000
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

DNP = "dnp_txt2img"  # the accordion's elem_id prefix (dnp_ext.host.script)


def html_box(elem_id: str) -> str:
    """The selector of a gr.HTML's content: gradio 3.41 puts the elem_id on the div.prose itself, gradio 4 on
    the block around it."""
    return f":is(div.prose#{elem_id}, #{elem_id} div.prose)"


INFOTEXT = html_box("html_info_txt2img")
NOTE = html_box(f"{DNP}_note")


def find_chromium() -> str | None:
    """DNP_CHROMIUM, else the first Chromium/Chrome on the PATH."""
    env = os.environ.get("DNP_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshots_wanted() -> bool:
    """DNP_SCREENSHOTS=1 rewrites docs/screenshots/*.png; normal runs leave them alone."""
    return os.environ.get("DNP_SCREENSHOTS", "") not in ("", "0")


class Txt2Img:
    """The txt2img tab of one page."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url

    # ---- page
    def open(self) -> Txt2Img:
        self.page.goto(self.base_url)
        self.page.locator("#txt2img_generate").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        return self

    def q(self, selector: str, **kwargs: Any) -> Locator:
        return self.page.locator(selector, **kwargs)

    @staticmethod
    def expect_value(locator: Locator, value: str) -> None:
        """Wait (retrying) until an input or textarea holds exactly `value`."""
        from playwright.sync_api import expect

        expect(locator).to_have_value(value, timeout=UI_TIMEOUT_MS)

    # ---- WebUI controls
    def set_number(self, elem_id: str, value: float) -> None:
        """A slider's (or gr.Number's) number box: type the value and commit it with Enter."""
        box = self.q(f"#{elem_id} input[type=number]")
        box.fill(str(value))
        box.press("Enter")

    def set_dropdown(self, elem_id: str, value: str) -> None:
        self.q(f"#{elem_id} input").click()
        # an option is li[data-value] in gradio 3.41 (A1111), li[aria-label] in gradio 4 (Forge)
        self.q(f"#{elem_id} li:is([data-value='{value}'], [aria-label='{value}'])").click()
        assert self.q(f"#{elem_id} input").input_value() == value

    def set_basics(self, *, seed: int, batch_size: int = 1) -> None:
        """64x64, 4 Euler steps, fixed seed: the tiny model generates in about a second."""
        for elem_id, value in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_steps", 4)):
            self.set_number(elem_id, value)
        self.set_number("txt2img_batch_size", batch_size)
        self.set_number("txt2img_seed", seed)
        self.set_dropdown("txt2img_sampling", "Euler")

    @property
    def prompt(self) -> Locator:
        return self.q("#txt2img_prompt textarea")

    @property
    def negative(self) -> Locator:
        return self.q("#txt2img_neg_prompt textarea")

    def infotext(self) -> str:
        """The infotext under the gallery (the selected image's)."""
        return self.q(INFOTEXT).inner_text()

    def generation_info(self) -> dict[str, Any]:
        text = self.q("#generation_info_txt2img textarea").input_value()
        return json.loads(text) if text else {}

    def gallery_count(self, elem_id: str) -> int:
        # gradio 3.41 always renders the grid view (the preview's thumbnail strip only in preview mode);
        # gradio 4 renders either the grid or, in preview mode, only the thumbnail strip
        grid = self.q(f"#{elem_id} .grid-wrap .thumbnail-item").count()
        return grid or self.q(f"#{elem_id} .thumbnails .thumbnail-item").count()

    # ---- the extension's accordion
    def open_dnp(self) -> None:
        if not self.q(f"#{DNP}_enabled").is_visible():
            self.q(f"#{DNP}_accordion .label-wrap").first.click()
        self.q(f"#{DNP}_enabled").wait_for(state="visible")

    def checkbox(self, name: str) -> Locator:
        return self.q(f"#{DNP}_{name} input[type=checkbox]")

    def note(self) -> str:
        return self.q(NOTE).inner_text()

    def expect_note(self, text: str) -> None:
        """Wait (retrying) until the accordion's note contains `text`."""
        from playwright.sync_api import expect

        expect(self.q(NOTE)).to_contain_text(text, timeout=UI_TIMEOUT_MS)

    # ---- actions that round-trip to the server
    def _info_marker(self) -> str:
        return self.q("#generation_info_txt2img textarea").input_value()

    def wait_generation(self, before: str) -> dict[str, Any]:
        """Wait until a new generation's info replaced `before` and the Generate button is back."""
        self.page.wait_for_function(
            """before => {
                const t = gradioApp().querySelector('#generation_info_txt2img textarea');
                const g = gradioApp().querySelector('#txt2img_generate');
                return t && t.value && t.value !== before && g && g.offsetParent !== null;
            }""",
            arg=before,
            timeout=RUN_TIMEOUT_MS,
        )
        return self.generation_info()

    def generate(self) -> dict[str, Any]:
        """Click Generate, wait for the result; returns the run's generation info (the WebUI's JSON)."""
        before = self._info_marker()
        self.q("#txt2img_generate").click()
        return self.wait_generation(before)

    def suggest(self) -> None:
        """Click "Suggest negative" and wait until the accordion's note has the answer."""
        before = self.note()
        self.q(f"#{DNP}_suggest").click()
        self.page.wait_for_function(
            """([sel, before]) => {
                const n = gradioApp().querySelector(sel);
                return n && n.innerText.trim() && n.innerText !== before;
            }""",
            arg=[NOTE, before],
            timeout=RUN_TIMEOUT_MS,
        )

    def select_gallery_image(self, index: int) -> None:
        """Click thumbnail `index` of the result gallery; the WebUI then shows that image's infotext."""
        self.q("#txt2img_gallery .thumbnails .thumbnail-item").nth(index).click()

    # ---- screenshots
    def screenshot(self, name: str, *selectors: str, pad: int = 8) -> Path | None:
        """Save docs/screenshots/<name>.png (only when DNP_SCREENSHOTS is set), cropped to the union of the
        selectors' boxes (the whole viewport without selectors)."""
        if not screenshots_wanted():
            return None
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / f"{name}.png"
        self.page.evaluate("window.scrollTo(0, 0)")
        boxes = [self.q(sel).first.bounding_box() for sel in selectors]
        boxes = [b for b in boxes if b]
        if not boxes:
            self.page.screenshot(path=str(path))
            return path
        x0 = max(min(b["x"] for b in boxes) - pad, 0)
        y0 = max(min(b["y"] for b in boxes) - pad, 0)
        x1 = max(b["x"] + b["width"] for b in boxes) + pad
        y1 = max(b["y"] + b["height"] for b in boxes) + pad
        self.page.screenshot(
            path=str(path), full_page=True, clip={"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}
        )
        return path
