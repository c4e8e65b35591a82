"""The DNS cache and DNS preview on a real WebUI: a hit is bit-identical to a miss and samples nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from .conftest import WebUI
from .test_dnp_api import PROMPT, check_images, script_args, split_response

CACHE = "/dnp/v1/cache"
BODY = {"prompt": PROMPT, "width": 64, "height": 64, "steps": 6, "sampler_name": "Euler", "batch_size": 2}


def passes(webui: WebUI) -> int:
    return int(webui.get(CACHE)["dns_passes"])


def auto(webui: WebUI, seed: int, **args: Any) -> dict[str, Any]:
    a = {"enabled": True, "show_dns": True, "captioner": "blip", **args}
    return webui.txt2img(**BODY, seed=seed, alwayson_scripts=script_args(a))


def same(a: dict[str, Any], b: dict[str, Any], webui: WebUI) -> bool:
    """Bit-identical answers: every image's encoded bytes, every infotext and negative."""
    ia, ib = webui.info(a), webui.info(b)
    keys = ("infotexts", "all_negative_prompts", "all_seeds")
    return a["images"] == b["images"] and all(ia[k] == ib[k] for k in keys)


def pixels_equal(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) > 0 and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture
def cache_on(dnp_webui: WebUI, restore_options: Callable[..., None]) -> WebUI:
    restore_options(dnp_cache_mb=256)
    return dnp_webui


def test_hit_is_bit_identical_and_runs_no_dns(cache_on: WebUI) -> None:
    webui = cache_on
    n = passes(webui)
    miss = auto(webui, 81001)
    assert passes(webui) == n + 1  # one batch of 2: one DNS pass
    hits = webui.get(CACHE)["hits"]
    hit = auto(webui, 81001)
    assert passes(webui) == n + 1 and webui.get(CACHE)["hits"] == hits + 1
    assert same(miss, hit, webui)
    assert len(hit["images"]) == 4  # 2 generated + 2 DNS images, returned from the cache


def test_changed_seed_or_captioner_misses(cache_on: WebUI) -> None:
    webui = cache_on
    first = auto(webui, 82001)
    n = passes(webui)
    auto(webui, 82003)
    assert passes(webui) == n + 1, "another seed must sample its own DNS image"
    other = auto(webui, 82001, captioner="blip2")
    assert passes(webui) == n + 2, "another captioner must caption anew (and so sample anew)"
    # the DNS images themselves do not depend on the captioner: same pixels, other captions
    assert pixels_equal(webui.images(other)[2:], webui.images(first)[2:])
    auto(webui, 82001, dns_scale=5.0)
    assert passes(webui) == n + 3


def test_suggest_then_generate_costs_one_dns_pass(cache_on: WebUI) -> None:
    webui = cache_on
    n = passes(webui)
    body = {k: v for k, v in BODY.items() if k != "batch_size"}
    s = webui.post("/dnp/v1/suggest", {**body, "seed": 83001, "batch_size": 2, "captioner": "blip"})
    assert passes(webui) == n + 1
    gen = auto(webui, 83001)
    assert passes(webui) == n + 1, "Auto-DNP after Suggest with the same settings must reuse the DNS pass"
    assert webui.info(gen)["all_negative_prompts"][:2] == s["negative_prompts"]
    assert pixels_equal(webui.images(gen)[2:], webui.images(s))


def test_cache_off_samples_every_time(dnp_webui: WebUI, restore_options: Callable[..., None]) -> None:
    restore_options(dnp_cache_mb=0)
    n = passes(dnp_webui)
    a = auto(dnp_webui, 84001)
    b = auto(dnp_webui, 84001)
    assert passes(dnp_webui) == n + 2 and same(a, b, dnp_webui)


def evaluations(webui: WebUI) -> int:
    return int(webui.get(CACHE)["dns_evaluations"])


def test_preview_one_is_todays_dns(dnp_webui: WebUI, restore_options: Callable[..., None]) -> None:
    restore_options(dnp_cache_mb=0)
    n = evaluations(dnp_webui)
    full = auto(dnp_webui, 85001, dns_preview=1.0)
    assert evaluations(dnp_webui) == n + BODY["steps"]  # Euler: one evaluation per step
    # the DNS images are eq. 19 as a plain run: prompt "", negative p, CFG s + 1
    ref = dnp_webui.txt2img(**{**BODY, "prompt": "", "negative_prompt": PROMPT, "cfg_scale": 8.5, "seed": 85001})
    assert pixels_equal(dnp_webui.images(full)[2:], dnp_webui.images(ref))
    assert "DNS preview" not in webui_text(dnp_webui, full)


def webui_text(webui: WebUI, response: dict[str, Any]) -> str:
    return "\n".join(webui.info(response)["infotexts"])


@pytest.mark.parametrize(("sampler", "expected"), [("Euler", 3), ("Heun", 5)])
def test_preview_runs_fewer_evaluations_deterministically(
    dnp_webui: WebUI,
    restore_options: Callable[..., None],
    sampler: str,
    expected: int,
) -> None:
    restore_options(dnp_cache_mb=0)
    body = {**BODY, "sampler_name": sampler}
    args = script_args({"enabled": True, "show_dns": True, "captioner": "blip", "dns_preview": 0.5})
    n = evaluations(dnp_webui)
    a = dnp_webui.txt2img(**body, seed=86001, alwayson_scripts=args)
    # 3 of 6 steps; Heun evaluates twice per step but stops after the 3rd step's first evaluation
    assert evaluations(dnp_webui) == n + expected
    b = dnp_webui.txt2img(**body, seed=86001, alwayson_scripts=args)
    assert pixels_equal(dnp_webui.images(a), dnp_webui.images(b)), "a preview must be deterministic"
    full = dnp_webui.txt2img(**body, seed=86001, alwayson_scripts=script_args({"enabled": True, "show_dns": True}))
    assert not pixels_equal(dnp_webui.images(a)[2:], dnp_webui.images(full)[2:])
    assert "DNS preview: 0.5" in webui_text(dnp_webui, a)
    # the main images are plain runs with the negatives their infotexts name
    check_images(dnp_webui, split_response(dnp_webui, a, 2), **body, seed=86001)
