"""Smoke tests of the harness and of the extension's "do no harm" contract on a real WebUI."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .conftest import PROJECT_ROOT, WebUI

SCRIPT_KEY = "diffusion-negative prompting"  # alwayson_scripts key = script title, lower-cased


def generated(webui: WebUI, response: dict[str, Any], count: int) -> list[np.ndarray]:
    """The `count` generated images, skipping a grid if the server put one first."""
    first = int(webui.info(response).get("index_of_first_image", 0))
    images = webui.images(response)[first : first + count]
    assert len(images) == count, f"expected {count} images after index {first}, got {len(webui.images(response))}"
    return images


def dnp_script_registered(webui: WebUI) -> bool:
    return SCRIPT_KEY in webui.get("/sdapi/v1/scripts")["txt2img"]


def test_txt2img_batch_is_deterministic(webui: WebUI) -> None:
    payload = {"prompt": "a photo of a cat", "batch_size": 2, "seed": 4321}
    first = webui.txt2img(**payload)
    again = webui.txt2img(**payload)

    images = generated(webui, first, 2)
    for image in images:
        assert image.shape == (64, 64, 3)
        assert image.dtype == np.uint8
        assert image.std() > 5, "image is (nearly) flat: the tiny model produces no structure"
    assert not np.array_equal(images[0], images[1]), "seeds 4321 and 4322 gave the same image"

    info = webui.info(first)
    assert info["all_seeds"] == [4321, 4322]
    assert all(re.search(r"Steps: 4, Sampler: Euler", text) for text in info["infotexts"])

    for a, b in zip(images, generated(webui, again, 2), strict=True):
        assert np.array_equal(a, b), "two identical requests gave different pixels on CPU"


def test_prompt_changes_the_image(webui: WebUI) -> None:
    # The DNP tests need a model whose output depends on the (negative) prompt.
    base = generated(webui, webui.txt2img(prompt="a photo of a cat", seed=7), 1)[0].astype(int)
    other = generated(webui, webui.txt2img(prompt="a red car on a road", seed=7), 1)[0].astype(int)
    negative = generated(webui, webui.txt2img(prompt="a photo of a cat", negative_prompt="blurry", seed=7), 1)[0]
    assert np.abs(base - other).mean() > 1.0
    assert np.abs(base - negative.astype(int)).mean() > 1.0


def test_extension_is_loaded(webui: WebUI) -> None:
    """If the extension's entry script exists, loading it must not fail (A1111 only logs such errors)."""
    if not (PROJECT_ROOT / "scripts" / "dnp.py").is_file():
        return  # nothing to load yet
    scripts = webui.get("/sdapi/v1/scripts")
    assert SCRIPT_KEY in scripts["txt2img"], (
        f"scripts/dnp.py exists but the WebUI did not register {SCRIPT_KEY!r}; txt2img scripts: {scripts['txt2img']}"
    )


def test_dnp_off_is_identical_to_no_extension(webui: WebUI, webui_no_ext: WebUI) -> None:
    payload = {"prompt": "a photo of a cat", "negative_prompt": "blurry", "batch_size": 2, "seed": 99}
    reference = webui_no_ext.txt2img(**payload)
    ref_images = generated(webui_no_ext, reference, 2)
    ref_infotexts = webui_no_ext.info(reference)["infotexts"]

    requests = {"no script args": payload}
    if dnp_script_registered(webui):
        requests["enabled=False"] = {**payload, "alwayson_scripts": {SCRIPT_KEY: {"args": [{"enabled": False}]}}}

    for label, body in requests.items():
        response = webui.txt2img(**body)
        for i, (a, b) in enumerate(zip(generated(webui, response, 2), ref_images, strict=True)):
            assert np.array_equal(a, b), f"{label}: image {i} differs from the server without the extension"
        assert webui.info(response)["infotexts"] == ref_infotexts, f"{label}: infotext differs"
