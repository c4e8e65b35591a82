"""The DNS cache in the WebUI glue (dnp_ext/host/cache.py) against the fake WebUI."""

from __future__ import annotations

import types
from typing import Any

import pytest

from dnp_ext.suggest import SuggestRequest
from tests.test_host_glue import captioners, generate, glue, web  # noqa: F401 - fixtures

PAYLOAD = {"prompt": "a fox", "seed": 3, "subseed": 11, "batch_size": 2, "steps": 6, "sampler_name": "Euler"}


def run(web, glue, args: dict[str, Any] | None = None, **payload: Any):  # noqa: F811
    a = {"enabled": True, "show_dns": True, **(args or {})}
    _, processed = generate(web, glue, [a], **{**PAYLOAD, **payload})
    return processed


def dns_count(web) -> int:  # noqa: F811
    return len(web.dns_calls)


def caption_count(captioners) -> int:  # noqa: F811
    return sum(len(c.batches) for c in captioners.instances)


def test_hit_skips_dns_and_captioning_and_is_identical(web, glue, captioners):  # noqa: F811
    miss = run(web, glue)
    assert dns_count(web) == 1 and caption_count(captioners) == 1
    hit = run(web, glue)
    assert dns_count(web) == 1 and caption_count(captioners) == 1
    assert hit.infotexts == miss.infotexts
    assert [im.tobytes() for im in hit.images] == [im.tobytes() for im in miss.images]
    from dnp_ext.host.cache import stats

    assert stats()["hits"] == 1 and stats()["dns_passes"] == 1


@pytest.mark.parametrize(
    ("args", "payload", "option"),
    [
        ({}, {"seed": 5}, None),
        ({"captioner": "blip"}, {}, None),
        ({"dns_scale": 3.0}, {}, None),
        ({"dns_steps": 4}, {}, None),
        ({"dns_preview": 0.5}, {}, None),
        ({}, {"steps": 7}, None),
        ({}, {"width": 256}, None),
        ({}, {"sampler_name": "DPM++ 2M"}, None),
        ({}, {"scheduler": "Karras"}, None),
        ({}, {"prompt": "a fox, red"}, None),
        ({}, {"subseed_strength": 0.5, "subseed": 9}, None),
        ({}, {}, ("CLIP_stop_at_last_layers", 2)),
        ({}, {}, ("eta_noise_seed_delta", 31337)),
        ({}, {}, ("dnp_blip2_model", "/elsewhere/blip2")),
    ],
    ids=lambda v: repr(v),
)
def test_any_changed_input_misses(web, glue, captioners, args, payload, option):  # noqa: F811
    run(web, glue)
    if option is not None:
        setattr(web.opts, *option)
    run(web, glue, args, **payload)
    assert dns_count(web) == 2


def test_another_extensions_sampling_hook_misses(web, glue, captioners):  # noqa: F811
    from modules import script_callbacks

    run(web, glue)
    hook = types.SimpleNamespace(name="other-extension/cfg_denoiser", callback=lambda params: None)
    script_callbacks.callback_map["callbacks_cfg_denoiser"].append(hook)
    try:
        run(web, glue)
    finally:
        script_callbacks.callback_map["callbacks_cfg_denoiser"].remove(hook)
    assert dns_count(web) == 2


def test_random_variation_seed_at_strength_zero_still_hits(web, glue, captioners):  # noqa: F811
    run(web, glue, subseed=-1)
    run(web, glue, subseed=-1)
    assert dns_count(web) == 1


def test_unknown_checkpoint_or_cache_off_misses(web, glue, captioners):  # noqa: F811
    web.sd_model.sd_model_hash = None
    run(web, glue)
    run(web, glue)
    assert dns_count(web) == 2
    web.sd_model.sd_model_hash = "0123456789"
    web.opts.dnp_cache_mb = 0
    run(web, glue)
    run(web, glue)
    assert dns_count(web) == 4


def test_checkpoint_file_changed_on_disk_misses(web, glue, captioners, tmp_path):  # noqa: F811
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"a")
    web.sd_model.sd_checkpoint_info.filename = str(ckpt)
    run(web, glue)
    ckpt.write_bytes(b"bb")
    run(web, glue)
    assert dns_count(web) == 2


def test_suggest_then_generate_is_one_dns_pass(web, glue, captioners):  # noqa: F811
    req = SuggestRequest(prompt="a fox", seed=3, subseed=11, batch_size=2, steps=6, sampler_name="Euler")
    s = glue.host.suggest(req)
    assert dns_count(web) == 1
    gen = run(web, glue, {"captioner": "blip2"}, scheduler="Automatic")
    assert dns_count(web) == 1
    assert [t.split("\n")[1] for t in gen.infotexts[:2]] == [f"Negative prompt: {n}" for n in s.negative_prompts]
    assert [im.tobytes() for im in gen.images[2:]] == [im.tobytes() for im in s.images]


def test_hit_counts_its_jobs_done(web, glue, captioners):  # noqa: F811
    run(web, glue)
    seen: list[tuple[int, int]] = []
    web.on_sample = lambda p, n: seen.append((web.state.job_no, web.state.job_count))
    run(web, glue)
    assert seen == [(2, 3)]  # the DNS and caption jobs count as done when the main batch samples
