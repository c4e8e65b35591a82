"""Auto-DNP in img2img and inpaint on a real WebUI (A1111 or Forge), bit-exact against plain runs.

The DNS pass of an img2img run is sampled from noise as a txt2img run (eq. 19 at the img2img width and height,
the same seeds): a DNS pass in img2img would only describe the init image. Each image's n* then goes into the
img2img run, so every result equals a plain img2img with its infotext's negative.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from .conftest import WebUI
from .test_dnp_api import PROMPT, SCRIPT_KEY, STEPS, assert_same, check_dns_images, script_args, split_response

WIDTH, HEIGHT = 64, 80  # not the init image's size: the DNS pass must use the img2img size


def png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


INIT = png_b64(Image.fromarray((np.random.RandomState(3).rand(64, 64, 3) * 255).astype("uint8")))
MASK = png_b64(Image.fromarray(np.where(np.arange(64)[None, :] < 32, 255, 0).repeat(64, 0).astype("uint8")))


@pytest.fixture(scope="module")
def dnp_webui(webui: WebUI) -> WebUI:
    if SCRIPT_KEY not in webui.get("/sdapi/v1/scripts")["img2img"]:
        pytest.fail(f"the WebUI did not register {SCRIPT_KEY!r} for img2img", pytrace=False)
    webui.use_tiny_captioners()
    return webui


def img2img(webui: WebUI, **payload: Any) -> dict[str, Any]:
    """An img2img request, after the same small txt2img every time.

    The WebUI's img2img samples its init latent (VAE encode) from torch's global random state, which is what the
    previous request left behind: even plain img2img runs repeat only from the same state. (DNP's own work leaves
    that state as it found it.)
    """
    webui.txt2img(prompt="", seed=99, steps=1)
    body = {
        "prompt": PROMPT, "negative_prompt": "", "width": WIDTH, "height": HEIGHT, "steps": STEPS, "cfg_scale": 7.0,
        "sampler_name": "Euler", "seed": 1234, "batch_size": 1, "init_images": [INIT], "denoising_strength": 0.6,
    }  # fmt: skip
    body.update(payload)
    return webui.post("/sdapi/v1/img2img", body)


@pytest.mark.parametrize("inpaint", [False, True], ids=["img2img", "inpaint"])
def test_auto_dnp_in_img2img_is_exact(dnp_webui: WebUI, inpaint: bool) -> None:
    extra: dict[str, Any] = {"mask": MASK, "inpainting_fill": 1, "mask_blur": 0} if inpaint else {}
    payload = {"negative_prompt": "blurry", "seed": 77, "batch_size": 2, **extra}
    response = img2img(dnp_webui, **payload, alwayson_scripts=script_args({"enabled": True, "show_dns": True}))
    run = split_response(dnp_webui, response, 2)
    assert run.seeds == [77, 78]
    for text in run.infotexts:
        assert text.params.get("DNP") and text.negative.startswith("blurry, "), text
        assert text.size == (WIDTH, HEIGHT)
    # each DNS image: a plain txt2img from noise, prompt "" and negative p at CFG s + 1, img2img size and seeds
    check_dns_images(dnp_webui, run, "", PROMPT, batch_size=2, width=WIDTH, height=HEIGHT)
    for text in run.dns_infotexts:
        assert text.size == (WIDTH, HEIGHT) and "Denoising strength" not in text.params, text
    # each result: a plain img2img of the same batch size with its infotext's negative
    for i, text in enumerate(run.infotexts):
        place = i % 2
        ref = img2img(dnp_webui, **{**payload, "negative_prompt": text.negative, "seed": text.seed - place})
        assert_same(run.images[i], dnp_webui.images(ref)[place], f"img2img image {i} vs its plain run")
