"""DNP's X/Y/Z plot axes on a real WebUI (A1111 or Forge), driven over the API as a user's plot would run."""

from __future__ import annotations

from typing import Any

from PIL import Image

from .browser import SCREENSHOT_DIR, screenshots_wanted
from .conftest import WebUI
from .test_dnp_api import PROMPT, Infotext, assert_same, run_dnp, script_args

XYZ = "x/y/z plot"
AXES = ("[DNP] Auto-DNP", "[DNP] DNS scale", "[DNP] DNS steps", "[DNP] Captioner", "[DNP] Merge", "[DNP] DNS preview")


def axis_labels(webui: WebUI) -> list[str]:
    """The txt2img plot's axis types, in the order its X type dropdown (and its script_args index) has them."""
    (info,) = [s for s in webui.get("/sdapi/v1/script-info") if s["name"] == XYZ and not s["is_img2img"]]
    return list(info["args"][0]["choices"])


def plot_args(labels: list[str], x: tuple[str, str, list[str]], y: tuple[str, str, list[str]]) -> list[Any]:
    """The plot's script_args: (type, csv values, dropdown values) per axis, then its checkboxes and margin."""
    return [
        labels.index(x[0]), x[1], x[2],
        labels.index(y[0]), y[1], y[2],
        labels.index("Nothing"), "", [],
        True,  # draw legend
        True,  # include lone images: the cells come back with their own infotexts
        False, False, False, False, False,  # sub grids, no fixed seeds, vary seeds x/y/z
        0, False,  # margin, csv mode
    ]  # fmt: skip


def test_axes_are_listed_once(dnp_webui: WebUI) -> None:
    labels = axis_labels(dnp_webui)
    for label in AXES:
        assert labels.count(label) == 1, f"{label!r} in the plot's axes {labels.count(label)} times: {labels}"


def test_dns_scale_by_auto_dnp_plot(dnp_webui: WebUI) -> None:
    """A 2x2 plot, DNS scale x Auto-DNP, with the accordion left off at DNS scale 7.5: every cell is the run its
    axis values describe, image and infotext, as the same settings give without the plot."""
    labels = axis_labels(dnp_webui)
    scales, switches, seed = [3.0, 10.0], ["off", "on"], 4242
    body = {
        "prompt": PROMPT, "negative_prompt": "blurry", "width": 64, "height": 64, "steps": 4,
        "sampler_name": "Euler", "cfg_scale": 7.0, "seed": seed, "batch_size": 1,
        "script_name": XYZ,
        "script_args": plot_args(labels, ("[DNP] DNS scale", "3, 10", []), ("[DNP] Auto-DNP", "", switches)),
        "alwayson_scripts": script_args({"enabled": False, "dns_scale": 7.5}),
    }  # fmt: skip
    response = dnp_webui.post("/sdapi/v1/txt2img", body)
    images = dnp_webui.images(response)
    texts = dnp_webui.info(response)["infotexts"]
    assert len(images) == len(texts) == 1 + 4, f"{len(images)} images, {len(texts)} infotexts"
    if screenshots_wanted():  # the README's X/Y/Z plot picture: the same plot at 192 px, as the WebUI draws it
        big = dnp_webui.post("/sdapi/v1/txt2img", {**body, "width": 192, "height": 192})
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        Image.fromarray(dnp_webui.images(big)[0]).save(SCREENSHOT_DIR / "xyz-grid.png")
    grid = Infotext.parse(texts[0])
    assert grid.params.get("X Type") == "[DNP] DNS scale" and grid.params.get("Y Type") == "[DNP] Auto-DNP", texts[0]

    payload = {k: body[k] for k in ("width", "height", "steps", "sampler_name", "cfg_scale", "seed")}
    for iy, switch in enumerate(switches):
        for ix, scale in enumerate(scales):
            k = 1 + ix + iy * len(scales)
            cell, what = Infotext.parse(texts[k]), f"cell (DNS scale {scale}, Auto-DNP {switch})"
            assert cell.seed == seed, what
            want = run_dnp(dnp_webui, {"enabled": switch == "on", "dns_scale": scale}, 1, prompt=PROMPT,
                           negative_prompt="blurry", **payload)  # fmt: skip
            assert cell.negative == want.negatives[0], what
            assert {k: v for k, v in cell.params.items() if k.startswith(("DNP", "DNS"))} == {
                k: v for k, v in want.infotexts[0].params.items() if k.startswith(("DNP", "DNS"))
            }, what
            if switch == "on":
                assert float(cell.params["DNS scale"]) == scale and cell.negative.startswith("blurry, "), texts[k]
            else:
                assert "DNP" not in cell.params and cell.negative == "blurry", texts[k]
            assert_same(images[k], want.images[0], what)
    # the two "on" cells differ in n*: the axis value, not the UI's 7.5, reached the DNS pass
    on = [Infotext.parse(texts[1 + ix + len(scales)]).negative for ix in range(len(scales))]
    assert on[0] != on[1], on


def test_bad_axis_value_stops_the_plot(dnp_webui: WebUI) -> None:
    labels = axis_labels(dnp_webui)
    body = {
        "prompt": PROMPT, "width": 64, "height": 64, "steps": 4, "sampler_name": "Euler", "seed": 1,
        "script_name": XYZ,
        "script_args": plot_args(labels, ("[DNP] DNS scale", "3, 999", []), ("Nothing", "", [])),
    }  # fmt: skip
    result = dnp_webui.request("POST", "/sdapi/v1/txt2img", body)
    assert result.status >= 400, f"HTTP {result.status}: {result.text[:500]}"
    assert "dns_scale" in result.text and "[DNP]" in result.text, result.text[:1000]
