"""The review flow's HTTP route on a real WebUI: auth like /sdapi/v1/*, the queue lock, exact DNS images."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from .conftest import WebUI

SMALL = {"width": 64, "height": 64, "steps": 4, "sampler_name": "Euler", "cfg_scale": 7.0}


def _suggest(webui: WebUI, **body: Any) -> dict[str, Any]:
    return webui.post("/dnp/v1/suggest", {"prompt": "a photo of a cat", **SMALL, **body})


def test_suggest_dns_images_are_eq19_runs_and_match_auto_dnp(webui: WebUI) -> None:
    webui.use_tiny_captioners()
    r = _suggest(webui, negative_prompt="blurry", seed=21, batch_size=2, dns_scale=3.0)
    assert r["seeds"] == [21, 22] and len(r["images"]) == len(r["captions"]) == len(r["negative_prompts"]) == 2
    assert all(n.startswith("blurry, ") for n in r["negative_prompts"])
    assert r["info"]["dns_cfg_scale"] == 4.0 and r["info"]["interrupted"] is False

    # each DNS image: prompt "", negative p, CFG s + 1, same seeds and batch
    ref = webui.txt2img(prompt="", negative_prompt="a photo of a cat", seed=21, batch_size=2, cfg_scale=4.0)
    for got, want in zip(webui.images(r), webui.images(ref)):
        assert np.array_equal(got, want)

    # the suggestion is the negative Auto-DNP uses for the same settings
    auto = webui.txt2img(
        negative_prompt="blurry",
        seed=21,
        batch_size=2,
        alwayson_scripts={"diffusion-negative prompting": {"args": [{"enabled": True, "dns_scale": 3.0}]}},
    )
    negatives = [t.split("Negative prompt: ", 1)[1].split("\n", 1)[0] for t in webui.info(auto)["infotexts"]]
    assert negatives == r["negative_prompts"]


def test_suggest_and_txt2img_share_the_queue(webui: WebUI) -> None:
    """Concurrent requests are serialised by the WebUI's queue lock: both succeed and stay exact."""
    webui.use_tiny_captioners()
    alone = _suggest(webui, seed=5)
    results: dict[str, Any] = {}

    def run(name: str, fn: Any) -> None:
        results[name] = fn()

    threads = [
        threading.Thread(target=run, args=("suggest", lambda: _suggest(webui, seed=5))),
        threading.Thread(target=run, args=("txt2img", lambda: webui.txt2img(seed=5, batch_size=2))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert results["suggest"]["negative_prompts"] == alone["negative_prompts"]
    assert np.array_equal(webui.images(results["suggest"])[0], webui.images(alone)[0])
    assert len(results["txt2img"]["images"]) == 2


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"prompt": "x", "bogus": 1}, "unknown field(s) 'bogus'"),
        ({"prompt": "x", "width": 65}, "'width' must be a multiple of 8"),
        ({"prompt": "x", "sampler_name": "No Such Sampler"}, "'sampler_name'"),
        ({"prompt": "x", "captioner": "gpt"}, "'captioner' must be one of"),
        ({"negative_prompt": "x"}, "'prompt' is required"),
    ],
)
def test_suggest_bad_input_is_422(webui: WebUI, body: dict[str, Any], needle: str) -> None:
    res = webui.request("POST", "/dnp/v1/suggest", body)
    assert res.status == 422, res.text
    assert needle in res.json()["detail"]


def test_suggest_honours_api_auth(webui_factory: Any) -> None:
    server: WebUI = webui_factory(auth=("dnp", "s3cret"))
    server.use_tiny_captioners()
    body = {"prompt": "a photo of a cat", "seed": 1, **SMALL}
    for creds in (None, ("dnp", "wrong"), ("nobody", "s3cret")):
        res = server.request("POST", "/dnp/v1/suggest", body, auth=creds)
        assert res.status == 401, (creds, res.status, res.text)
        assert server.request("POST", "/sdapi/v1/txt2img", body, auth=creds).status == 401  # same rule
    ok = server.request("POST", "/dnp/v1/suggest", body, auth=("dnp", "s3cret"))
    assert ok.status == 200, ok.text
    assert len(ok.json()["images"]) == 1
