"""The WebUI glue (dnp_ext.host, scripts/dnp.py, install.py) against fakes of the WebUI's ``modules.*``.

Everything below ``modules`` is real project code; ``tests/fake_webui.py`` stands in for the WebUI and records
what the glue asks of it (nested runs, model moves, job state). Expected values come from the run's own
settings and the captions the fake captioner gave, never from a copy of the glue's output.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import runpy
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi
import pytest

import dnp_ext.captioners as caps
from dnp_ext import API_KEY, TITLE
from dnp_ext.args import FIELD_NAMES, DnpArgs
from dnp_ext.captioners import Captioner, CaptionerError
from dnp_ext.suggest import SuggestRequest, SuggestResult
from tests.fake_webui import Call, Device, FakeWebUI, chunk_count, fake_image, fake_webui, parse_params

ROOT = Path(__file__).resolve().parents[1]
RESULT_ATTR = "_dnp_result"


# -- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture
def web() -> Iterator[FakeWebUI]:
    with fake_webui() as w:
        yield w


@pytest.fixture
def glue(web: FakeWebUI) -> types.SimpleNamespace:
    from dnp_ext.host import current, dns, errors, settings, webui, webui_blip
    from dnp_ext.host import script as script_mod

    return types.SimpleNamespace(
        script=script_mod, webui=webui, dns=dns, errors=errors, settings=settings, webui_blip=webui_blip, host=current()
    )


class FakeCaptioner(Captioner):
    """Records the images of each call and each release; captions come from ``caption_fn``."""

    def __init__(self, name: str, source: str, device: Any, hub: CaptionerHub) -> None:
        self.name, self.source, self.device, self.hub = name, source, device, hub
        self.batches: list[list[Any]] = []
        self.releases: list[str] = []

    def caption(self, images: list[Any]) -> list[str]:
        self.batches.append(list(images))
        self.hub.web.events.append(("caption", [im.info["seed"] for im in images]))
        if self.hub.error is not None:
            raise self.hub.error
        return [self.hub.caption_fn(im) for im in images]

    def release(self, policy: str) -> None:
        self.releases.append(policy)
        self.hub.web.events.append(("release", policy))


def default_caption(image: Any) -> str:
    return f"a (blurry) photo of thing {image.info['seed']} {image.info['subseed']}"


class CaptionerHub:
    """The blip2/blip factories, swapped for fakes; ``instances`` are the captioners they made."""

    def __init__(self, web: FakeWebUI) -> None:
        self.web = web
        self.instances: list[FakeCaptioner] = []
        self.caption_fn: Callable[[Any], str] = default_caption
        self.error: Exception | None = None

    def factory(self, name: str) -> Callable[..., Captioner]:
        def make(source: str, device: Any, **_: Any) -> Captioner:
            captioner = FakeCaptioner(name, source, device, self)
            self.instances.append(captioner)
            return captioner

        return make

    @property
    def captioned(self) -> bool:
        """Whether any captioner was asked for a caption (making one, for the preflight check, is cheap)."""
        return any(c.batches for c in self.instances)

    @property
    def only(self) -> FakeCaptioner:
        assert len(self.instances) == 1
        return self.instances[0]


@pytest.fixture
def captioners(web: FakeWebUI, monkeypatch: pytest.MonkeyPatch) -> Iterator[CaptionerHub]:
    hub = CaptionerHub(web)
    caps.clear_cache()
    for name in ("blip2", "blip"):
        monkeypatch.setitem(caps._FACTORIES, name, hub.factory(name))
    yield hub
    caps.clear_cache()


def prepared(web: FakeWebUI, **kwargs: Any) -> Any:
    """A txt2img p as the scripts' process() sees it: prompts and seeds set, the job begun."""
    p = web.prepare(web.txt2img(**kwargs))
    web.state.begin("txt2img")
    return p


def snapshot(p: Any) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in vars(p).items() if k not in ("sd_model", RESULT_ATTR)}


def generate(web: FakeWebUI, glue: types.SimpleNamespace, script_args: list[Any], **kwargs: Any) -> tuple[Any, Any]:
    """A whole txt2img run through the fake process_images with the DNP script alwayson."""
    from modules import processing, scripts

    p = web.txt2img(**kwargs)
    p.scripts = scripts.ScriptRunner([(glue.script.DnpScript(), script_args)])
    web.state.begin("txt2img")
    return p, processing.process_images(p)


def caption_of(call: Call, i: int) -> str:
    """The caption the fake captioner gives image i of this nested run."""
    return default_caption(fake_image(call.p, i))


def esc(caption: str) -> str:
    """A caption as the WebUI's prompt parser must read it: brackets are not emphasis."""
    return caption.replace("(", r"\(").replace(")", r"\)")


# -- disabled and bad arguments ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "script_args",
    [[{"enabled": False, "dns_scale": 3}], [False, "blip", 3.0, 5, "replace", False, True], []],
    ids=["api-dict", "ui-positional", "no-args"],
)
def test_disabled_leaves_p_untouched(web, glue, captioners, script_args):
    p = prepared(web, prompt="a castle", negative_prompt="lowres", batch_size=2, n_iter=2, seed=5)
    before = snapshot(p)
    glue.script.DnpScript().process(p, *script_args)
    assert snapshot(p) == before
    assert "init" not in vars(p)  # the class's own init, not a replacement
    assert not web.calls and not captioners.instances
    assert web.state.job_count == -1 and web.state.job_no == 0


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ({"enabled": True, "bogus": 1}, "bogus"),
        ({"enabled": True, "dns_scale": "lots"}, "dns_scale"),
        ({"enabled": True, "dns_steps": 2.5}, "dns_steps"),
        ({"enabled": "yes"}, "enabled"),
        ({"enabled": True, "merge": "mix"}, "merge"),
        ({"enabled": True, "captioner": "blip"}, "captioner"),  # valid name, but not offered by this host
    ],
)
def test_bad_args_fail_the_run_with_422_naming_the_key(web, glue, captioners, monkeypatch, args, key):
    monkeypatch.setattr(glue.webui.WebUIHost, "captioners", lambda self: ("blip2", "webui-blip"))
    p = prepared(web, prompt="a castle", negative_prompt="lowres", batch_size=2, n_iter=2, seed=5)
    before = snapshot(p)
    glue.script.DnpScript().process(p, args)
    after = snapshot(p)
    assert after.pop("init") is not None
    assert after == before
    with pytest.raises(glue.errors.DnpError) as e:
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
    assert e.value.status_code == 422
    assert f"'{key}'" in str(e.value) and TITLE in str(e.value)
    assert not web.calls and not captioners.instances


def test_too_many_positional_args_is_a_422(web, glue, captioners):
    p = prepared(web, prompt="a castle")
    glue.script.DnpScript().process(p, *([True] * (len(FIELD_NAMES) + 1)))
    with pytest.raises(glue.errors.DnpError) as e:
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
    assert e.value.status_code == 422 and "at most" in str(e.value)


# -- the enabled run -----------------------------------------------------------------------------------
MERGES: dict[str, Callable[[str, str], str]] = {
    "append": lambda user, cap: f"{user}, {cap}",
    "prepend": lambda user, cap: f"{cap}, {user}",
    "replace": lambda user, cap: cap,
}


@pytest.mark.parametrize("merge", list(MERGES))
def test_enabled_run(web, glue, captioners, merge):
    web.opts.token_merging_ratio = 0.4
    web.opts.dnp_captioner_after = "unload"
    user_negative = "lowres, blurry"
    p = prepared(
        web,
        prompt="<lora:detail:0.7> a castle on a hill AND a dragon :1.3",
        negative_prompt=user_negative,
        batch_size=2,
        n_iter=2,
        seed=1000,
        subseed=77,
        subseed_strength=0.25,
        cfg_scale=6.0,
        steps=24,
        sampler_name="DPM++ 2M",
        scheduler="Karras",
        width=576,
        height=448,
    )
    seeds, subseeds = list(p.all_seeds), list(p.all_subseeds)
    args = {"enabled": True, "dns_scale": 5.5, "merge": merge}
    glue.script.DnpScript().process(p, args)
    assert "init" not in vars(p)

    # one nested run per batch: eq. 19 as WebUI CFG, the batch's own seeds and settings, nothing extra
    assert len(web.calls) == 2 and all(c.is_dns for c in web.calls)
    for k, call in enumerate(web.calls):
        batch = slice(2 * k, 2 * k + 2)
        assert call.prompts == ["<lora:detail:0.7>"] * 2  # "" plus the extra-network tags
        assert call.negative_prompts == ["a castle on a hill, a dragon"] * 2  # tags out, AND parts joined
        assert call.seeds == seeds[batch] and call.subseeds == subseeds[batch]
        assert call.subseed_strength == 0.25
        assert call.cfg_scale == 5.5 + 1
        assert call.steps == 24
        assert (call.sampler_name, call.scheduler) == ("DPM++ 2M", "Karras")
        assert (call.width, call.height) == (576, 448)
        assert (call.batch_size, call.n_iter) == (2, 1)
        assert call.styles == [] and call.enable_hr is False
        assert call.do_not_save_samples and call.do_not_save_grid
        assert call.s_min_uncond == 0
        assert {k: call.options.get(k) for k in glue.dns.DNS_OVERRIDES} == glue.dns.DNS_OVERRIDES
        assert call.p.closed

    # the captioner: one instance, one call per batch with that batch's DNS images, released once
    cap = captioners.only
    assert cap.source == glue.settings.DEFAULT_OPTIONS["dnp_blip2_model"]
    assert [[im.tobytes() for im in batch] for batch in cap.batches] == [
        [fake_image(call.p, i).tobytes() for i in range(2)] for call in web.calls
    ]
    assert cap.releases == ["unload"]
    assert [e[0] for e in web.events if e[0] in ("caption", "release")] == ["caption", "caption", "release"]

    # per-image negatives: the user's merged with that image's caption (escaped)
    captions = [caption_of(web.calls[i // 2], i % 2) for i in range(4)]
    escaped = [esc(c) for c in captions]
    assert len(set(captions)) == 4
    assert p.all_negative_prompts == [MERGES[merge](user_negative, c) for c in escaped]
    assert p.main_negative_prompt == p.all_negative_prompts[0]
    assert p.all_seeds == seeds and p.n_iter == 2

    params = p.extra_generation_params
    assert params["DNP"] == f"auto, per image, {merge}"
    assert params["DNP captioner"] == "blip2"
    assert params["DNS scale"] == 5.5 and params["DNS steps"] == 24
    assert params["DNP caption"] == captions

    # progress: the DNP jobs are counted and done, the main run's batches still to come
    assert web.state.job_count == p.n_iter + 4
    assert web.state.job_no == 4
    phases = [t for t in web.state.textinfos if t]
    # sampling is over when the WebUI decodes and counts the DNS job done: the DNS pass says so first
    dns_phases = ["DNP: diffusion-negative sampling", "DNP: decoding the diffusion-negative images"] * 2
    assert [t.split(",")[0] for t in phases[:6]] == dns_phases + ["DNP: captioning"] * 2
    assert "batch 2 of 2" in phases[2] and phases[-1].startswith("DNP: generating")

    # each nested run switches token merging off on its way out; the main run gets its ratio back
    tome = [e[2] for e in web.events if e[0] == "token_merging"]
    assert tome == [0.4, 0, 0.4] * 2

    p.init(p.all_prompts, p.all_seeds, p.all_subseeds)  # the main run goes ahead


def test_dns_overrides_only_options_the_webui_has_and_restores_them(web, glue, captioners):
    del web.opts.data_labels["pad_cond_uncond_v0"]  # an older or other WebUI without this option
    web.opts.data.pop("pad_cond_uncond_v0", None)
    web.opts.data["skip_early_cond"] = 0.3  # the user's own setting
    web.opts.data.pop("s_min_uncond_all", None)  # never set: must stay unset afterwards
    before = dict(web.opts.data)
    p = prepared(web, prompt="a castle", seed=1)
    glue.script.DnpScript().process(p, {"enabled": True})
    (call,) = web.calls
    assert call.override_settings == {}
    expected = {k: v for k, v in glue.dns.DNS_OVERRIDES.items() if k != "pad_cond_uncond_v0"}
    assert {k: call.options.get(k) for k in expected} == expected
    assert "pad_cond_uncond_v0" not in call.options
    assert web.opts.data == before  # exactly as before, the never-set option included


def test_dns_steps_and_prompt_without_tags(web, glue, captioners):
    p = prepared(web, prompt="a red fox (in snow:1.2)", batch_size=1, n_iter=1, seed=3, steps=30)
    glue.script.DnpScript().process(p, {"enabled": True, "dns_steps": 8, "dns_scale": 0})
    (call,) = web.calls
    assert call.prompts == [""] and call.negative_prompts == ["a red fox (in snow:1.2)"]
    assert call.steps == 8 and call.cfg_scale == 1.0  # s = 0: plain conditional on ""
    assert p.extra_generation_params["DNS steps"] == 8
    assert p.all_negative_prompts == [esc(caption_of(call, 0))]


def test_api_dict_in_first_slot_ignores_ui_defaults_after_it(web, glue, captioners):
    p = prepared(web, prompt="a castle", negative_prompt="ugly", seed=9)
    ui_defaults = list(DnpArgs().to_dict().values())[1:]
    glue.script.DnpScript().process(p, {"enabled": True, "merge": "replace", "captioner": "blip"}, *ui_defaults)
    assert captioners.only.name == "blip"
    assert p.all_negative_prompts == [esc(caption_of(web.calls[0], 0))]


def test_ui_positional_args(web, glue, captioners):
    p = prepared(web, prompt="a castle", negative_prompt="ugly", seed=9, batch_size=2)
    glue.script.DnpScript().process(p, True, "blip", 3.0, 11, "prepend", True, False)
    (call,) = web.calls
    assert call.cfg_scale == 4.0 and call.steps == 11 and captioners.only.name == "blip"
    assert p.extra_generation_params["DNP"] == "auto, per image, prepend"


def test_hires_negatives_merged_too(web, glue, captioners):
    p = prepared(
        web,
        prompt="a castle",
        negative_prompt="lowres",
        hr_negative_prompt="jpeg artifacts",
        enable_hr=True,
        batch_size=2,
        n_iter=1,
        seed=11,
    )
    glue.script.DnpScript().process(p, {"enabled": True})
    (call,) = web.calls
    assert call.enable_hr is False  # the DNS pass itself never runs hires
    escaped = [esc(caption_of(call, i)) for i in range(2)]
    assert p.all_negative_prompts == [f"lowres, {c}" for c in escaped]
    assert p.all_hr_negative_prompts == [f"jpeg artifacts, {c}" for c in escaped]


def test_shared_dns_image(web, glue, captioners):
    p = prepared(web, prompt="a castle", negative_prompt="ugly", batch_size=2, n_iter=2, seed=20)
    glue.script.DnpScript().process(p, {"enabled": True, "per_image": False})
    (call,) = web.calls
    assert call.seeds == [p.all_seeds[0]] and call.batch_size == 1
    cap = captioners.only
    assert len(cap.batches) == 1 and len(cap.batches[0]) == 1 and cap.releases == ["offload"]
    caption = esc(caption_of(call, 0))
    assert p.all_negative_prompts == [f"ugly, {caption}"] * 4
    assert p.extra_generation_params["DNP"] == "auto, shared, append"
    assert web.state.job_count == p.n_iter + 2


def test_chunks_equalised_within_a_batch(web, glue, captioners):
    long_negative = " ".join(f"bad{i}" for i in range(70))
    # image 0's caption keeps its merged negative in one 75-token chunk, image 1's pushes it to two
    captioners.caption_fn = lambda im: "tiny" if im.info["seed"] == 500 else " ".join(["huge"] * 10)
    p = prepared(web, prompt="a castle", negative_prompt=long_negative, batch_size=2, seed=500)
    glue.script.DnpScript().process(p, {"enabled": True})
    merged = [f"{long_negative}, tiny", f"{long_negative}, {' '.join(['huge'] * 10)}"]
    assert [chunk_count(m) for m in merged] == [1, 2]  # the case the WebUI cannot stack
    first, second = p.all_negative_prompts
    assert second == merged[1]
    assert first.startswith(merged[0]) and first[len(merged[0]) :].split() == ["BREAK"] * (first.count("BREAK"))
    assert chunk_count(first) == chunk_count(second) == 2


def test_webui_blip_captioner_caption_and_offload(web, glue, monkeypatch):
    """webui-blip wraps the WebUI's interrogator: load once, half on GPU, move back to the CPU on release."""

    class Blip:
        def __init__(self) -> None:
            self.moves: list[str] = []
            self.halved = False

        def half(self) -> Blip:
            self.halved = True
            return self

        def to(self, device: Any) -> Blip:
            self.moves.append(str(device))
            return self

    blip = Blip()
    web.interrogator = types.SimpleNamespace(blip_model=None, running_on_cpu=False, load_blip_model=lambda: blip)
    web.device_interrogate = Device("cuda:0")
    monkeypatch.setattr(
        glue.webui_blip.WebUIBlipCaptioner,
        "_caption",
        lambda self, loaded, images: [f"blip {im.info['seed']}" for im in images],
    )
    p = prepared(web, prompt="a castle", seed=3, batch_size=2)
    glue.script.DnpScript().process(p, {"enabled": True, "captioner": "webui-blip"})
    if "init" in vars(p):
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)  # raises the run's DnpError, to show it
    assert p.all_negative_prompts == ["blip 3", "blip 4"]
    assert blip.halved and blip.moves == ["cuda:0", "cpu"]  # offload (the default) parks it in RAM
    assert web.interrogator.blip_model is blip


# -- Skip and Interrupt --------------------------------------------------------------------------------
def press_during_dns(web: FakeWebUI, which: int, button: str) -> None:
    """Press Skip/Interrupt while the ``which``-th DNS batch (1-based) is sampling."""

    def on_sample(p: Any, n: int) -> None:
        if web.calls[-1].p is p and web.calls[-1].is_dns and len(web.dns_calls) == which:
            getattr(web.state, button)()

    web.on_sample = on_sample


def test_skip_during_dns_drops_that_batch(web, glue, captioners):
    press_during_dns(web, 2, "skip")
    p, processed = generate(
        web,
        glue,
        [{"enabled": True}],
        prompt="a castle",
        negative_prompt="ugly",
        batch_size=2,
        n_iter=3,
        seed=100,
        subseed=500,
    )
    seeds = [100 + i for i in range(6)]
    kept = seeds[:2] + seeds[4:]
    main = web.calls[-1]
    assert not main.is_dns and len(web.dns_calls) == 3
    assert main.n_iter == 2 and main.seeds == kept and p.all_subseeds == [500 + i for i in (0, 1, 4, 5)]
    assert len(p.all_prompts) == len(p.all_negative_prompts) == 4
    cap = captioners.only
    assert [[im.info["seed"] for im in b] for b in cap.batches] == [seeds[:2], seeds[4:]]
    dns = {s: (call, i) for call in web.dns_calls for i, s in enumerate(call.seeds)}
    captions = [caption_of(*dns[s]) for s in kept]
    assert main.negative_prompts == [f"ugly, {esc(c)}" for c in captions]
    assert p.extra_generation_params["DNP caption"] == captions
    assert [im.info["seed"] for im in processed.images] == kept
    # the dropped batch's jobs are taken off the total: progress ends at 100%
    assert web.state.job_count < 3 + 6
    assert web.state.job_no == web.state.job_count


def test_skip_with_hires_fix_keeps_progress_whole(web, glue, captioners):
    press_during_dns(web, 2, "skip")
    p, processed = generate(
        web, glue, [{"enabled": True}], prompt="a castle", enable_hr=True, batch_size=1, n_iter=3, seed=10
    )
    assert p.n_iter == 2 and len(processed.images) == 2 and len(p.all_hr_negative_prompts) == 2
    assert web.state.job_no == web.state.job_count


def test_skip_with_a_shared_dns_image_drops_the_run(web, glue, captioners):
    press_during_dns(web, 1, "skip")
    p, processed = generate(
        web, glue, [{"enabled": True, "per_image": False}], prompt="a castle", batch_size=2, n_iter=2, seed=1
    )
    assert p.n_iter == 0 and processed.images == [] and not captioners.captioned
    assert web.state.job_no == web.state.job_count


def test_interrupt_during_dns_leaves_p_unchanged(web, glue, captioners):
    press_during_dns(web, 1, "interrupt")
    p = prepared(web, prompt="a castle", negative_prompt="ugly", batch_size=2, n_iter=2, seed=7)
    before = snapshot(p)
    glue.script.DnpScript().process(p, {"enabled": True})
    assert snapshot(p) == before and "init" not in vars(p)
    assert len(web.calls) == 1 and not captioners.captioned
    assert getattr(p, RESULT_ATTR) is None


def test_interrupt_while_captioning_releases_and_leaves_p_unchanged(web, glue, captioners):
    def caption(image: Any) -> str:
        web.state.interrupt()
        return "a caption"

    captioners.caption_fn = caption
    p = prepared(web, prompt="a castle", negative_prompt="ugly", batch_size=1, n_iter=2, seed=7)
    before = snapshot(p)
    glue.script.DnpScript().process(p, {"enabled": True})
    assert snapshot(p) == before
    assert len(captioners.only.batches) == 1 and captioners.only.releases == ["offload"]


def test_interrupted_run_samples_nothing(web, glue, captioners):
    press_during_dns(web, 1, "interrupt")
    _, processed = generate(web, glue, [{"enabled": True, "show_dns": True}], prompt="a castle", n_iter=2, seed=7)
    assert processed.images == [] and web.calls[-1].negative_prompts == ["", ""]


# -- captioner failures and the SD model's place -------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "expect"),
    [
        (CaptionerError("blip2: the model folder is missing. Fix: set dnp_blip2_model", captioner="blip2"), None),
        (RuntimeError("CUDA out of memory"), "captioning failed (RuntimeError: CUDA out of memory)"),
    ],
    ids=["captioner-error", "oom"],
)
def test_captioner_failure_is_a_503_and_restores_the_sd_model(web, glue, captioners, error, expect):
    web.device_interrogate = Device("cuda:0")
    web.opts.dnp_offload_sd_model = True
    captioners.error = error
    p = prepared(web, prompt="a castle", negative_prompt="ugly", batch_size=2, n_iter=2, seed=7)
    negatives = list(p.all_negative_prompts)
    glue.script.DnpScript().process(p, {"enabled": True})
    with pytest.raises(glue.errors.DnpError) as e:
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
    assert e.value.status_code == 503
    assert (expect or str(error)) in str(e.value)
    assert p.all_negative_prompts == negatives and "DNP" not in p.extra_generation_params
    kinds = [ev[0] for ev in web.events if ev[0] != "token_merging"]
    assert kinds == ["sd_model_to_cpu", "caption", "release", "sd_model_to_device"]
    moved = [ev[1] for ev in web.events if ev[0].startswith("sd_model")]
    assert moved == [web.sd_model, web.sd_model]


@pytest.mark.parametrize(
    ("device", "offload", "moves"),
    [("cuda:0", True, True), ("cuda:0", False, False), ("cpu", True, False)],
)
def test_sd_model_moves_off_the_gpu_only_for_a_cuda_captioner(web, glue, captioners, device, offload, moves):
    web.device_interrogate = Device(device)
    web.opts.dnp_offload_sd_model = offload
    p = prepared(web, prompt="a castle", batch_size=1, n_iter=3, seed=7)
    glue.script.DnpScript().process(p, {"enabled": True})
    assert "init" not in vars(p)
    assert str(captioners.only.device) == device
    kinds = [ev[0] for ev in web.events if ev[0] != "token_merging"]
    expected = ["caption"] * 3 + ["release"]
    assert kinds == (["sd_model_to_cpu", *expected, "sd_model_to_device"] if moves else expected)


def test_captioner_setting_pointing_nowhere_is_a_503_before_any_dns(web, glue, tmp_path):
    # the real blip2 captioner (its preflight check loads nothing)
    caps.clear_cache()
    web.opts.dnp_blip2_model = str(tmp_path / "missing")
    p = prepared(web, prompt="a castle", seed=1)
    glue.script.DnpScript().process(p, {"enabled": True})
    with pytest.raises(glue.errors.DnpError) as e:
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
    assert e.value.status_code == 503 and "dnp_blip2_model" in str(e.value) and "does not exist" in str(e.value)
    assert not web.calls  # failed fast: no DNS pass was spent
    caps.clear_cache()


# -- postprocess and infotext --------------------------------------------------------------------------
@pytest.mark.parametrize("show_dns", [True, False])
def test_postprocess_shows_dns_images_after_the_generated_ones(web, glue, captioners, show_dns):
    args = [{"enabled": True, "show_dns": show_dns}]
    p, processed = generate(web, glue, args, prompt="a castle", batch_size=2, n_iter=2, seed=40)
    main = web.calls[-1]
    generated = processed.images[:4]
    assert [im.tobytes() for im in generated] == [fake_image(main.p, i).tobytes() for i in range(4)]
    if not show_dns:
        assert len(processed.images) == len(processed.infotexts) == 4
        return
    dns_images, dns_infos = processed.images[4:], processed.infotexts[4:]
    assert [im.info["seed"] for im in dns_images] == p.all_seeds  # seed order
    assert [im.tobytes() for im in dns_images] == [
        fake_image(call.p, i).tobytes() for call in web.dns_calls for i in range(2)
    ]
    for info, seed in zip(dns_infos, p.all_seeds):
        params = parse_params(info.splitlines()[-1])
        assert params["DNP"] == "DNS image" and params["Seed"] == str(seed) and params["CFG scale"] == "8.5"
    for info in processed.infotexts[:4]:
        assert parse_params(info.splitlines()[-1])["DNP"] == "auto, per image, append"


@pytest.mark.parametrize(
    ("cfg_scale", "hr_cfg", "expect"), [(1.0, None, 1), (7.0, None, 0), (7.0, 1.0, 1), (1.0, 1.0, 2)]
)
def test_cfg_1_is_noted_in_ui_and_api_info_not_infotext(web, glue, captioners, cfg_scale, hr_cfg, expect):
    """At CFG 1 a negative does nothing (Forge skips its branch): n* is still made and recorded, the user is told."""
    from modules import processing, scripts

    p = web.txt2img(prompt="a castle", seed=3, cfg_scale=cfg_scale, enable_hr=hr_cfg is not None)
    if hr_cfg is not None:
        p.hr_cfg = hr_cfg  # Forge's hires CFG scale (A1111 has none)
    p.scripts = scripts.ScriptRunner([(glue.script.DnpScript(), [{"enabled": True}])])
    web.state.begin("txt2img")
    processed = processing.process_images(p)
    assert web.dns_calls and web.dns_calls[0].cfg_scale == 7.5 + 1, "the DNS pass keeps CFG s + 1"
    warnings = json.loads(processed.js()).get("dnp_warnings", [])
    assert len(warnings) == expect and all("has no effect" in w for w in warnings)
    assert processed.comments.count("Diffusion-Negative Prompting:") == expect
    assert p.all_negative_prompts[0], "n* is made and recorded anyway"
    for info in processed.infotexts:
        assert "no effect" not in info


def test_dns_pass_keeps_forges_distilled_cfg_scale(web, glue, captioners):
    """Forge's Flux-class models take the distilled CFG as a model input: the DNS pass runs the same model input
    (and real CFG s + 1 with the negative p); A1111 has no such field and none is added."""
    from modules import processing, scripts

    for distilled in (None, 5.0):
        web.calls.clear()
        p = web.txt2img(prompt="a castle", seed=3, cfg_scale=1.0)
        if distilled is not None:
            p.distilled_cfg_scale = distilled
        p.scripts = scripts.ScriptRunner([(glue.script.DnpScript(), [{"enabled": True}])])
        web.state.begin("txt2img")
        processing.process_images(p)
        (dns,) = web.dns_calls
        assert dns.cfg_scale == 8.5
        assert getattr(dns.p, "distilled_cfg_scale", None) == distilled


def test_paste_restores_settings_with_auto_dnp_off(web, glue, captioners):
    import gradio as gr

    args = {
        "enabled": True,
        "captioner": "blip",
        "dns_scale": 4.5,
        "dns_steps": 12,
        "merge": "prepend",
        "per_image": False,
    }
    _, processed = generate(web, glue, [args], prompt="a castle", negative_prompt="ugly", seed=3, batch_size=2)
    script = glue.script.DnpScript()
    with gr.Blocks():
        inputs = script.ui(is_img2img=False)
    controls = script._controls
    assert inputs == controls.inputs() and len(inputs) == len(FIELD_NAMES)
    names = {id(getattr(controls, name)): name for name in FIELD_NAMES}

    def pasted(infotext: str) -> dict[str, Any]:
        params = parse_params(infotext.splitlines()[-1])
        return {names[id(comp)]: fn(params) for comp, fn in script.infotext_fields}

    got = pasted(processed.infotexts[0])
    expected = {k: v for k, v in args.items() if k != "enabled"}
    assert got == {"enabled": False, **expected, "dns_preview": 1.0}
    assert "Negative prompt: " in processed.infotexts[0] and "ugly" in processed.infotexts[0]
    # a DNS image's own infotext: Auto-DNP off, the rest left as it is in the UI (None = untouched)
    dns_info = generate(web, glue, [{"enabled": True, "show_dns": True}], prompt="x", seed=1)[1].infotexts[-1]
    assert pasted(dns_info) == {"enabled": False, **dict.fromkeys([*expected, "dns_preview"])}
    # an infotext from a run without DNP touches nothing
    assert set(pasted("a cat\nSteps: 20, Seed: 1").values()) == {None}


# -- the script file and the WebUI's script loader -----------------------------------------------------
def load_script_file(name: str) -> types.ModuleType:
    """What the WebUI's script loader does with scripts/dnp.py."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "dnp.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_script_file_has_exactly_one_script_class(web):
    from modules import scripts

    module = load_script_file("dnp_webui_script")
    found = [v for v in module.__dict__.values() if isinstance(v, type) and issubclass(v, scripts.Script)]
    assert len(found) == 1
    script = found[0]()
    assert script.title() == TITLE and TITLE.lower() == API_KEY
    assert script.show(False) is scripts.AlwaysVisible and script.show(True) is scripts.AlwaysVisible
    # the WebUI may load the file again (reload UI): settings, routes and plot axes are registered once
    load_script_file("dnp_webui_script_again")
    assert len(web.ui_settings_callbacks) == 1 and len(web.app_started_callbacks) == 1
    assert len(web.before_ui_callbacks) == 1


def test_settings_registered(web):
    load_script_file("dnp_webui_script")
    (add,) = web.ui_settings_callbacks
    add()
    from dnp_ext.host.settings import DEFAULT_OPTIONS, DOWNLOAD_BUTTON, DOWNLOAD_STATUS, SECTION

    labels = web.opts.data_labels
    assert {k for k in labels if k.startswith("dnp_")} == {*DEFAULT_OPTIONS, DOWNLOAD_BUTTON, DOWNLOAD_STATUS}
    assert labels[DOWNLOAD_BUTTON].do_not_save and labels[DOWNLOAD_STATUS].do_not_save
    for key, default in DEFAULT_OPTIONS.items():
        assert labels[key].default == default and labels[key].section == SECTION
        assert getattr(web.opts, key) == default
    assert labels["dnp_captioner_after"].component_args == {"choices": list(caps.RELEASE_POLICIES)}


# -- the review API ------------------------------------------------------------------------------------
class FakeSuggestHost:
    def __init__(self, web: FakeWebUI) -> None:
        self.web = web
        self.requests: list[SuggestRequest] = []
        self.lock_held: list[bool] = []
        self.error: Exception | None = None

    def suggest(self, req: SuggestRequest) -> SuggestResult:
        from modules.call_queue import queue_lock

        self.requests.append(req)
        self.lock_held.append(queue_lock.locked())
        if self.error is not None:
            raise self.error
        from PIL import Image

        n = req.batch_size
        seeds = [req.seed + i for i in range(n)]
        return SuggestResult(
            captions=[f"cap {s}" for s in seeds],
            negative_prompts=[f"{req.negative_prompt}, cap {s}" for s in seeds],
            images=[Image.new("RGB", (2, 2), (s % 256, 0, 0)) for s in seeds],
            infotexts=[f"info {s}" for s in seeds],
            seeds=seeds,
            subseeds=seeds,
            info={"interrupted": False},
        )


def make_client(app: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's note on which httpx package it prefers
        from fastapi.testclient import TestClient
    return TestClient(app)


@pytest.fixture
def client_for(web: FakeWebUI):
    def make(host: Any, api: bool = True, auth: str | None = "u:p") -> Any:
        from dnp_ext.host.api import mount

        web.cmd_opts.api, web.cmd_opts.api_auth = api, auth
        app = fastapi.FastAPI()
        mount(app, host)
        return app, make_client(app)

    return make


BODY = {"prompt": "a red fox", "negative_prompt": "blurry", "seed": 42, "batch_size": 2}


def test_suggest_api_auth_and_validation(web, client_for):
    from dnp_ext.host.api import SUGGEST_PATH

    host = FakeSuggestHost(web)
    _, client = client_for(host)
    assert client.post(SUGGEST_PATH, json=BODY).status_code == 401
    assert client.post(SUGGEST_PATH, json=BODY, auth=("u", "wrong")).status_code == 401
    assert client.post(SUGGEST_PATH, json=BODY, auth=("x", "p")).status_code == 401
    assert not host.requests
    r = client.post(SUGGEST_PATH, json=BODY, auth=("u", "p"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["seeds"] == [42, 43] and out["negative_prompts"] == ["blurry, cap 42", "blurry, cap 43"]
    assert len(out["images"]) == 2 and out["info"]["infotexts"] == ["info 42", "info 43"]
    (req,) = host.requests
    assert (req.prompt, req.negative_prompt, req.seed, req.batch_size) == ("a red fox", "blurry", 42, 2)
    assert host.lock_held == [True]

    for body, key in (({**BODY, "bogus": 1}, "bogus"), ({**BODY, "width": 500}, "width"), ({"seed": 1}, "prompt")):
        r = client.post(SUGGEST_PATH, json=body, auth=("u", "p"))
        assert r.status_code == 422 and f"'{key}'" in r.json()["detail"], r.text
    assert len(host.requests) == 1

    host.error = CaptionerError("blip2: no model. Fix: set it", captioner="blip2")
    r = client.post(SUGGEST_PATH, json=BODY, auth=("u", "p"))
    assert r.status_code == 503 and "blip2: no model" in r.json()["detail"]


def test_suggest_api_not_mounted_without_api_flag(web, client_for):
    from dnp_ext.host.api import SUGGEST_PATH

    app, client = client_for(FakeSuggestHost(web), api=False)
    assert SUGGEST_PATH not in [getattr(r, "path", None) for r in app.routes]
    assert client.post(SUGGEST_PATH, json=BODY).status_code == 404


def test_suggest_api_without_auth(web, client_for):
    from dnp_ext.host.api import SUGGEST_PATH

    _, client = client_for(FakeSuggestHost(web), auth=None)
    assert client.post(SUGGEST_PATH, json=BODY).status_code == 200


def test_webui_host_suggest_end_to_end(web, glue, captioners, client_for):
    """POST /dnp/v1/suggest through the route the script file registers, on the real WebUIHost."""
    from dnp_ext.host.api import SUGGEST_PATH

    load_script_file("dnp_webui_script")
    (started,) = web.app_started_callbacks
    web.cmd_opts.api, web.cmd_opts.api_auth = True, None
    app = fastapi.FastAPI()
    started(None, app)
    client = make_client(app)
    body = {**BODY, "steps": 10, "dns_scale": 3, "dns_steps": 6, "sampler_name": "Euler", "scheduler": "Karras"}
    r = client.post(SUGGEST_PATH, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    (call,) = web.calls
    assert call.prompts == ["", ""] and call.negative_prompts == ["a red fox"] * 2
    assert call.seeds == [42, 43] and call.cfg_scale == 4.0 and call.steps == 6
    assert (call.sampler_name, call.scheduler) == ("Euler", "Karras")
    captions = [caption_of(call, i) for i in range(2)]
    assert out["captions"] == captions and out["seeds"] == [42, 43]
    assert out["negative_prompts"] == [f"blurry, {esc(c)}" for c in captions]
    assert out["info"]["dns_cfg_scale"] == 4.0 and out["info"]["interrupted"] is False
    assert "warnings" not in out["info"]
    assert len(out["images"]) == 2 and captioners.only.releases == ["offload"]
    assert web.state.begun == 1 and web.state.ended == 1 and web.state.job_no == 2

    # for a run at CFG 1 the suggestion could do nothing: the answer says so. The run's CFG is no part of the
    # DNS pass (CFG s + 1), so the same DNS batch comes from the cache: no second pass, the same suggestions.
    at_1 = client.post(SUGGEST_PATH, json={**body, "cfg_scale": 1.0}).json()
    assert len(web.calls) == 1 and at_1["negative_prompts"] == out["negative_prompts"]
    assert len(at_1["info"]["warnings"]) == 1 and "CFG scale is 1" in at_1["info"]["warnings"][0]

    for key, value in (("sampler_name", "Nope"), ("scheduler", "Nope")):
        r = client.post(SUGGEST_PATH, json={**body, key: value})
        assert r.status_code == 422 and f"'{key}'" in r.json()["detail"]
    assert len(web.calls) == 1


def test_webui_host_suggest_interrupted(web, glue, captioners):
    press_during_dns(web, 1, "interrupt")
    result = glue.host.suggest(SuggestRequest(prompt="a fox", seed=1, batch_size=2, sampler_name="Euler"))
    assert result.info["interrupted"] is True and result.negative_prompts == [] and not captioners.captioned
    assert web.state.ended == 1


# -- install.py ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "present",
    [set(), {"transformers"}, {"PIL"}, {"transformers", "PIL"}],
    ids=["none", "transformers", "pillow", "both"],
)
def test_install_only_installs_what_is_missing(web, monkeypatch, capsys, present):
    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(__version__="4.46.1"))
    web.launch_present = set(present)
    runpy.run_path(str(ROOT / "install.py"))
    requirements = {"transformers": "transformers>=4.30.2", "PIL": "Pillow"}
    assert [c[0] for c in web.pip_calls] == [f"install {r}" for m, r in requirements.items() if m not in present]
    assert "no BLIP-2" not in capsys.readouterr().out


def test_install_reports_old_transformers_without_touching_it(web, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(__version__="4.26.1"))
    web.launch_present = {"transformers", "PIL"}
    runpy.run_path(str(ROOT / "install.py"))
    assert web.pip_calls == [] and "no BLIP-2" in capsys.readouterr().out


# -- the review buttons in the txt2img tab -------------------------------------------------------------
def test_review_suggest_button(web, glue, captioners):
    import gradio as gr

    from dnp_ext.host import review

    script = glue.script.DnpScript()
    with gr.Blocks():
        script.ui(is_img2img=False)
        assert not script._wired  # the txt2img controls are not all there yet
        for elem_id in review.WEBUI_INPUTS.values():
            script.after_component(gr.Textbox(elem_id=elem_id), elem_id=elem_id)
    assert script._wired

    values = {
        **dict.fromkeys(review.WEBUI_INPUTS),
        **{"prompt": "a red fox", "negative_prompt": "blurry", "seed": 42, "seed_extra": False, "subseed": 5},
        **{"subseed_strength": 0.5, "width": 512, "height": 512, "steps": 10, "sampler_name": "Euler"},
        **{"scheduler": "Automatic", "cfg_scale": 7, "batch_size": 2},
    }
    ui_values = [values[k] for k in review.WEBUI_INPUTS]
    box, gallery, memo, note, enabled = review.suggest(*ui_values, "blip2", 2.5, 0, "append")
    (call,) = web.calls
    assert call.seeds == [42, 43] and call.subseed_strength == 0  # variation seed hidden: not used
    assert call.cfg_scale == 3.5 and call.negative_prompts == ["a red fox"] * 2
    captions = [caption_of(call, i) for i in range(2)]
    suggestions = [f"blurry, {esc(c)}" for c in captions]
    assert box == suggestions[0] and memo["suggested"] == suggestions and memo["before"] == "blurry"
    assert [text for _, text in gallery] == [f"seed {s}: {c}" for s, c in zip((42, 43), captions)]
    assert enabled == gr.update(value=False) and "dnp-ok" in note

    values["sampler_name"] = "Nope"
    box, _, _, note, _ = review.suggest(*[values[k] for k in review.WEBUI_INPUTS], "blip2", 2.5, 0, "append")
    assert box == gr.update() and "dnp-error" in note and "sampler_name" in note
    assert len(web.calls) == 1


def test_fake_webui_leaves_nothing_behind():
    import dnp_ext

    with fake_webui():
        from dnp_ext.host import script  # noqa: F401

        assert "modules.processing" in sys.modules
    left = [n for n in sys.modules if n == "modules" or n.startswith(("modules.", "dnp_ext.host", "dnp_ext.ui"))]
    assert left == [] and "launch" not in sys.modules and not hasattr(dnp_ext, "host")


def test_review_suggest_passes_the_dns_preview(web, glue, captioners):
    from dnp_ext.host import review

    values = {k: None for k in review.WEBUI_INPUTS}
    values.update(prompt="a fox", negative_prompt="", seed=3, seed_extra=False, width=64, height=64, steps=8)
    values.update(sampler_name="Euler", scheduler="Automatic", cfg_scale=7.0, batch_size=1)
    review.suggest(*[values[k] for k in review.WEBUI_INPUTS], "blip2", 2.5, 0, "append", 0.5)
    assert web.dns_calls[-1].evaluations == 4  # half of the 8 DNS steps
