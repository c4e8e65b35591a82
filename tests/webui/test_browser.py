"""The txt2img UI in headless Chromium: the accordion, Auto-DNP with DNS images, the review flow.

Skipped without SD_WEBUI_DIR (the harness), without Playwright for Python or without a Chromium
(see tests/webui/browser.py). DNP_SCREENSHOTS=1 also rewrites docs/screenshots/*.png.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from typing import Any

import pytest

from .browser import (
    CHROMIUM_ARGS,
    DNP,
    INFOTEXT,
    RUN_TIMEOUT_MS,
    UI_TIMEOUT_MS,
    VIEWPORT,
    Txt2Img,
    find_chromium,
    screenshots_wanted,
)
from .conftest import WebUI

DNP_KEYS = ("DNP:", "DNS scale:", "DNP captioner:")
DNS_IMAGE = "DNP: DNS image"
# Uncaught page errors that are the WebUI's own, seen just the same on a server without this extension:
# A1111 1.10.1's width/height sliders update the hires-fix resolution preview (a FormHTML) on release, and
# gradio 3.41's frontend throws this for it.
WEBUI_PAGE_ERRORS = ("Cannot read properties of undefined (reading 'props')",)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (checked at collection, so no WebUI starts for nothing)."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed: .venv/bin/pip install playwright (no browser download)"
    if find_chromium() is None:
        return "no Chromium found: install chromium (Debian: apt-get install chromium) or set DNP_CHROMIUM"
    return None


MISSING = browser_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture(scope="module")
def browser(webui: WebUI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium with a fresh profile for this module; every test opens its own page."""
    from playwright.sync_api import sync_playwright

    if webui.host == "a1111" and any(part.startswith(".") for part in webui.webui_dir.resolve().parts):
        # gradio 3.41.2's dotfile guard: every file= URL under such a path is a 403, the UI's scripts too
        pytest.fail(
            f"the A1111 folder {webui.webui_dir.resolve()} has a part starting with '.': its gradio refuses "
            "to serve the UI's scripts from there (403). Build it elsewhere (tests/webui/setup.sh says so).",
            pytrace=False,
        )
    webui.use_tiny_captioners()
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=find_chromium(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def ui(browser: Any, webui: WebUI) -> Iterator[Txt2Img]:
    """A fresh page on the txt2img tab. Its console is printed (shown for failing tests); an uncaught
    JavaScript error fails the test."""
    page = browser.new_page()
    console: list[str] = []
    errors: list[str] = []
    page.on("console", lambda msg: console.append(f"[{msg.type}] {msg.text}"))
    page.on("pageerror", lambda err: errors.append(err.message))
    try:
        yield Txt2Img(page, webui.base_url).open()
    finally:
        page.close()
        # a test that failed mid-way may leave a generation running (at the UI's default size, minutes on CPU):
        # stop it so that it cannot hold the queue for the tests after it (the next job resets the flag)
        webui.request("POST", "/sdapi/v1/interrupt")
        print("browser console:\n" + "\n".join(console) + "\npage errors:\n" + "\n".join(errors))
    errors = [e for e in errors if e not in WEBUI_PAGE_ERRORS]
    assert not errors, f"uncaught JavaScript errors on the page: {errors}"


def suggest_api(webui: WebUI, **overrides: Any) -> dict[str, Any]:
    """The same suggestion through /dnp/v1/suggest, with the UI defaults the tests leave in place."""
    body = {
        "prompt": "",
        "negative_prompt": "",
        "seed": -1,
        "subseed": -1,
        "subseed_strength": 0.0,
        "width": 64,
        "height": 64,
        "steps": 4,
        "sampler_name": "Euler",
        "scheduler": "Automatic",
        "cfg_scale": 7.0,
        "batch_size": 1,
        "dns_scale": 7.5,
        "captioner": "blip2",
        "merge": "append",
    }
    body.update(overrides)
    return webui.post("/dnp/v1/suggest", body)


def test_accordion_and_checkbox_render(ui: Txt2Img) -> None:
    accordion = ui.q(f"#{DNP}_accordion")
    assert accordion.is_visible()
    assert "Diffusion-Negative Prompting" in accordion.inner_text()
    assert not ui.checkbox("enabled").is_visible(), "the accordion should start closed"

    ui.open_dnp()
    assert ui.q(f"#{DNP}_enabled").inner_text().strip() == "Auto-DNP"
    assert not ui.checkbox("enabled").is_checked(), "Auto-DNP must default to off"
    for name in (
        "show_dns",
        "per_image",
        "captioner",
        "merge",
        "dns_scale",
        "dns_steps",
        "dns_preview",
        "suggest",
        "suggest_generate",
    ):
        assert ui.q(f"#{DNP}_{name}").is_visible(), f"#{DNP}_{name} not shown"
    # img2img has its own accordion, with the same controls
    assert ui.q("#tab_img2img #dnp_img2img_accordion").count() == 1


def test_auto_dnp_shows_results_and_dns_images(ui: Txt2Img) -> None:
    ui.set_basics(seed=101)
    ui.open_dnp()
    ui.checkbox("enabled").check()
    ui.checkbox("show_dns").check()
    # the tiny BLIP writes words (the tiny BLIP-2's byte-level captions are unreadable in screenshots);
    # the infotext then shows that the dropdown's choice reached the Script
    ui.set_dropdown(f"{DNP}_captioner", "blip")
    ui.prompt.fill("a red car on a road")

    for batch, seed in ((1, 101), (2, 202)):
        ui.set_number("txt2img_batch_size", batch)
        ui.set_number("txt2img_seed", seed)
        info = ui.generate()
        first = int(info["index_of_first_image"])  # 1 when the WebUI puts a grid first (batch > 1)
        infotexts = info["infotexts"]
        assert info["all_seeds"] == [seed + i for i in range(batch)]
        assert len(infotexts) == first + 2 * batch, infotexts
        assert ui.gallery_count("txt2img_gallery") == first + 2 * batch, f"batch {batch}: results + DNS images"
        for text in infotexts[first : first + batch]:
            assert all(key in text for key in DNP_KEYS), text
            assert DNS_IMAGE not in text
        for text in infotexts[first + batch :]:
            assert DNS_IMAGE in text, text
        # the infotext under the gallery: the run's (first image or grid), with the DNP keys
        shown = ui.infotext()
        assert all(key in shown for key in DNP_KEYS), shown
        assert "Negative prompt: " in shown, "auto-DNP puts n* in the negative"
        assert "DNP captioner: blip," in shown, shown

    # clicking a DNS thumbnail shows that image's infotext
    ui.select_gallery_image(first + batch)
    ui.page.wait_for_function(
        "([sel, key]) => gradioApp().querySelector(sel).innerText.includes(key)",
        arg=[INFOTEXT, DNS_IMAGE],
        timeout=UI_TIMEOUT_MS,
    )
    ui.select_gallery_image(first)
    ui.page.wait_for_function(
        "([sel, key]) => !gradioApp().querySelector(sel).innerText.includes(key)",
        arg=[INFOTEXT, DNS_IMAGE],
        timeout=UI_TIMEOUT_MS,
    )
    ui.screenshot("auto-dnp", "#txt2img_prompt_container", f"#{DNP}_suggest", "#txt2img_results")


def test_cfg_1_says_under_the_gallery_that_the_negative_has_no_effect(ui: Txt2Img) -> None:
    """At CFG 1 a negative prompt does nothing (Forge skips the uncond branch): Auto-DNP still makes and records
    n*, and the note under the gallery (the WebUI's comments) says so; the infotext stays as it is."""
    ui.set_basics(seed=111)
    ui.set_number("txt2img_cfg_scale", 1)
    ui.open_dnp()
    ui.checkbox("enabled").check()
    ui.prompt.fill("a red car on a road")
    info = ui.generate()
    assert info["cfg_scale"] == 1, info
    shown = ui.infotext()
    assert all(key in shown for key in DNP_KEYS) and "Negative prompt: " in shown, "n* was not recorded"
    assert "has no effect" not in shown and all("has no effect" not in t for t in info["infotexts"])
    ui.page.wait_for_function(
        "(sel) => (gradioApp().querySelector(sel)?.innerText || '').includes('CFG scale is 1')",
        arg="#html_log_txt2img",
        timeout=UI_TIMEOUT_MS,
    )
    note = ui.q("#html_log_txt2img").first.inner_text()
    assert "negative prompt (with n*) has no effect" in note, note


def test_review_flow_edit_then_generate(ui: Txt2Img, webui: WebUI) -> None:
    prompt, seed = "a photo of a dog", 303
    ui.set_basics(seed=seed)
    ui.open_dnp()
    ui.checkbox("enabled").check()  # Suggest must untick it: the suggestion and Auto-DNP never stack
    ui.set_dropdown(f"{DNP}_captioner", "blip")
    ui.prompt.fill(prompt)
    assert ui.negative.input_value() == ""

    ui.suggest()
    note = ui.note()
    assert "Suggest failed" not in note, note
    assert f"suggestion for seed {seed} is in the negative prompt box" in note, note
    assert not ui.checkbox("enabled").is_checked(), "Suggest should untick Auto-DNP"
    assert ui.gallery_count(f"{DNP}_dns_gallery") == 1
    box = ui.negative.input_value()
    assert box.strip(), "the negative prompt box should hold the suggestion"
    # the box holds exactly what the API suggests for this prompt and seed
    assert box == suggest_api(webui, prompt=prompt, seed=seed, captioner="blip")["negative_prompts"][0]
    from playwright.sync_api import expect

    counter = ui.q("#txt2img_negative_token_counter .prose span").first
    expect(counter).to_have_text(re.compile(r"^[1-9]\d*/\d+$"), timeout=UI_TIMEOUT_MS)  # the box's count, not 0/75
    ui.screenshot("review", "#txt2img_toprow", f"#{DNP}_accordion")

    edited = box + " EDITED"
    ui.negative.fill(edited)
    info = ui.generate()
    assert info["all_negative_prompts"] == [edited]
    shown = ui.infotext()
    assert re.search(r"Negative prompt: .* EDITED\n", shown), shown
    assert "DNP:" not in shown, "Auto-DNP ran on top of the reviewed negative"


def test_auto_dnp_and_suggestion_never_stack(ui: Txt2Img) -> None:
    ui.set_basics(seed=404)
    ui.open_dnp()
    ui.prompt.fill("a lighthouse by the sea")
    ui.negative.fill("lowres")
    ui.suggest()
    suggestion = ui.negative.input_value()
    assert suggestion.startswith("lowres, ") and len(suggestion) > len("lowres, "), suggestion  # merge=append

    ui.checkbox("enabled").check()
    ui.expect_value(ui.negative, "lowres")  # the pre-suggestion negative is back
    ui.expect_note("your negative from before Suggest is back")
    ui.checkbox("enabled").uncheck()
    ui.expect_value(ui.negative, suggestion)

    # the user's edits of the suggestion survive a tick/untick
    edited = suggestion + ", EDITED"
    ui.negative.fill(edited)
    ui.checkbox("enabled").check()
    ui.expect_value(ui.negative, "lowres")
    ui.checkbox("enabled").uncheck()
    ui.expect_value(ui.negative, edited)


def test_click_a_dns_image_to_use_its_seeds_suggestion(ui: Txt2Img, webui: WebUI) -> None:
    prompt, seed = "two birds on a wire", 606
    ui.set_basics(seed=seed, batch_size=2)
    ui.open_dnp()
    ui.prompt.fill(prompt)
    ui.suggest()
    expected = suggest_api(webui, prompt=prompt, seed=seed, batch_size=2)["negative_prompts"]
    assert len(expected) == 2 and expected[0] != expected[1], expected
    assert ui.gallery_count(f"{DNP}_dns_gallery") == 2
    assert ui.negative.input_value() == expected[0]
    assert "Click another DNS image" in ui.note()

    ui.q(f"#{DNP}_dns_gallery .grid-wrap .thumbnail-item").nth(1).click()
    ui.expect_value(ui.negative, expected[1])
    ui.expect_note(f"suggestion for seed {seed + 1} is in the negative prompt box")


def test_suggest_and_generate(ui: Txt2Img) -> None:
    ui.set_basics(seed=505)
    ui.open_dnp()
    ui.prompt.fill("a bowl of fruit on a table")
    before = ui.generation_info()
    marker = ui.q("#generation_info_txt2img textarea").input_value()
    ui.q(f"#{DNP}_suggest_generate").click()
    info = ui.wait_generation(marker)

    box = ui.negative.input_value()
    assert box.strip(), "the suggestion should be in the negative prompt box"
    assert info != before
    assert info["all_prompts"] == ["a bowl of fruit on a table"]
    assert info["all_negative_prompts"] == [box], "generated with something other than the suggestion"
    shown = ui.infotext()
    assert "Negative prompt: " in shown and "DNP:" not in shown, shown
    assert ui.gallery_count(f"{DNP}_dns_gallery") == 1
    assert ui.gallery_count("txt2img_gallery") == 1


def test_settings_section(ui: Txt2Img, webui: WebUI) -> None:
    options = webui.get_options()
    tiny = {key: options[key] for key in ("dnp_blip2_model", "dnp_blip_model")}
    if screenshots_wanted():
        # the README shows the defaults, not this session's temporary folders
        webui.set_options(
            dnp_blip2_model="Salesforce/blip2-opt-2.7b", dnp_blip_model="Salesforce/blip-image-captioning-large"
        )
        ui.open()
    try:
        ui.q("#tabs > .tab-nav button", has_text="Settings").click()
        ui.q("#settings > .tab-nav button", has_text="Diffusion-Negative Prompting").click()
        section = ui.q("#settings_dnp")
        section.wait_for(state="visible")
        current = webui.get_options()
        assert ui.q("#setting_dnp_blip2_model :is(input, textarea)").input_value() == current["dnp_blip2_model"]
        assert ui.q("#setting_dnp_blip_model :is(input, textarea)").input_value() == current["dnp_blip_model"]
        after = ui.q("#setting_dnp_captioner_after")
        assert after.get_by_label("offload").is_checked() == (current["dnp_captioner_after"] == "offload")
        assert after.get_by_label("unload").count() == 1
        offload = ui.q("#setting_dnp_offload_sd_model")
        for mode in ("auto", "always", "never"):
            assert offload.get_by_label(mode).is_checked() == (current["dnp_offload_sd_model"] == mode), mode
        assert float(ui.q("#setting_dnp_cache_mb input[type=number]").input_value()) == current["dnp_cache_mb"]
        ui.screenshot("settings", "#settings_submit", "#settings_dnp")
    finally:
        if screenshots_wanted():
            webui.set_options(**tiny)


def test_paste_restores_settings_with_auto_dnp_off(ui: Txt2Img, webui: WebUI) -> None:
    """Paste (README "Paste and reproduce"): an auto-DNP image's infotext brings the DNP settings back into the
    accordion but unticks Auto-DNP, since the pasted negative already holds n*."""
    from playwright.sync_api import expect

    args = {
        "enabled": True,
        "captioner": "blip",
        "dns_scale": 3.0,
        "dns_steps": 6,
        "merge": "prepend",
        "per_image": False,
        "dns_preview": 0.5,
    }
    response = webui.txt2img(
        prompt="a photo of a dog",
        negative_prompt="lowres",
        seed=707,
        alwayson_scripts={"diffusion-negative prompting": {"args": [args]}},
    )
    infotext = webui.info(response)["infotexts"][0]
    negative = infotext.split("\nNegative prompt: ", 1)[1].split("\n", 1)[0]
    assert negative.endswith(", lowres") and "DNP: " in infotext, infotext

    ui.open_dnp()
    ui.checkbox("enabled").check()
    ui.prompt.fill(infotext)
    ui.q("#tab_txt2img #paste").click()
    ui.expect_value(ui.negative, negative)
    ui.expect_value(ui.prompt, "a photo of a dog")
    expect(ui.checkbox("enabled")).not_to_be_checked()
    expect(ui.checkbox("per_image")).not_to_be_checked()
    ui.expect_value(ui.q(f"#{DNP}_captioner input"), "blip")
    expect(ui.q(f"#{DNP}_merge").get_by_label("prepend")).to_be_checked()
    assert float(ui.q(f"#{DNP}_dns_scale input[type=number]").input_value()) == 3.0
    assert int(ui.q(f"#{DNP}_dns_steps input[type=number]").input_value()) == 6
    assert float(ui.q(f"#{DNP}_dns_preview input[type=number]").input_value()) == 0.5


def test_token_counter_follows_the_suggestion(ui: Txt2Img) -> None:
    """The negative prompt's token counter shows the suggestion's count, as if it had been typed, and follows the
    box when Auto-DNP takes the suggestion out and puts it back."""
    from playwright.sync_api import expect

    # the WebUI's answer is a <span>; gradio 3 gives both the block and its content the id, gradio 4 shows a
    # timer in the block while the count is computed
    counter = ui.q("#txt2img_negative_token_counter .prose span").first

    def expect_count(text: str) -> None:
        expect(counter).to_have_text(text, timeout=UI_TIMEOUT_MS)

    def typed_count(text: str) -> str:
        """What the WebUI's counter shows for `text` typed into the box by hand."""
        ui.negative.fill(text)
        expect(counter).to_have_text(re.compile(r"^[1-9]\d*/\d+$"), timeout=UI_TIMEOUT_MS)
        return counter.inner_text().strip()

    ui.set_basics(seed=707)
    ui.open_dnp()
    ui.prompt.fill("a red car parked in a narrow street")
    expect_count("0/75")
    ui.suggest()
    suggestion = ui.negative.input_value()
    assert suggestion.strip(), ui.note()
    expect(counter).to_have_text(re.compile(r"^[1-9]\d*/\d+$"), timeout=UI_TIMEOUT_MS)
    shown = counter.inner_text().strip()

    ui.checkbox("enabled").check()  # the suggestion goes out of the box: the counter follows
    ui.expect_value(ui.negative, "")
    expect_count("0/75")
    ui.checkbox("enabled").uncheck()
    ui.expect_value(ui.negative, suggestion)
    expect_count(shown)

    ui.negative.fill("")
    expect_count("0/75")
    assert typed_count(suggestion) == shown


def test_suggest_in_img2img(ui: Txt2Img, webui: WebUI) -> None:
    """img2img has the accordion too: Suggest there reads the img2img tab's prompt, seed and size (the DNS pass is
    a txt2img pass from noise at that size) and fills the img2img negative prompt box and its token counter."""
    from playwright.sync_api import expect

    prompt, seed = "a small boat on a lake", 808
    ui.q("#tabs button", has_text="img2img").first.click()
    for elem_id, value in (("img2img_width", 64), ("img2img_height", 72), ("img2img_steps", 4), ("img2img_seed", seed)):
        ui.set_number(elem_id, value)
    ui.set_dropdown("img2img_sampling", "Euler")
    ui.q("#img2img_prompt textarea").fill(prompt)
    ui.q("#dnp_img2img_accordion .label-wrap").first.click()
    ui.set_dropdown("dnp_img2img_captioner", "blip")
    ui.q("#dnp_img2img_suggest").click()
    note = ui.q("#dnp_img2img_note").first
    expect(note).to_contain_text(f"suggestion for seed {seed} is in the negative prompt box", timeout=RUN_TIMEOUT_MS)
    expected = suggest_api(webui, prompt=prompt, seed=seed, height=72, captioner="blip")["negative_prompts"][0]
    ui.expect_value(ui.q("#img2img_neg_prompt textarea"), expected)
    assert ui.gallery_count("dnp_img2img_dns_gallery") == 1
    counter = ui.q("#img2img_negative_token_counter .prose span").first
    expect(counter).to_have_text(re.compile(r"^[1-9]\d*/\d+$"), timeout=UI_TIMEOUT_MS)
    ui.screenshot("img2img", "#img2img_toprow", "#dnp_img2img_accordion")
    assert ui.negative.input_value() == "", "Suggest in img2img changed the txt2img box"
