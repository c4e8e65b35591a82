"""The extension's API contract on a real WebUI, AUTOMATIC1111 or Forge (tiny random models, CPU, bit-exact).

The references are independent plain runs on the same server, as README.md defines them:
- a DNS image = a plain txt2img run with positive "" (plus p's extra-network tags), negative p (styles
  applied, AND sub-prompts joined with ", "), CFG scale s + 1, the same seeds, size, sampler and steps
  (DNS steps when set), the same batch;
- a generated image = a plain run of the same batch size in which every image takes its infotext's prompt
  and negative prompt, the image keeping its place (so its seed): see `check_images`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from dnp_ext.negatives import caption_to_negative

from .conftest import HERE, TEST_STYLES, Install, TinyModels, WebUI, _last_json_line, _run_builder
from .tiny_lora import build_tiny_lora

TITLE = "Diffusion-Negative Prompting"
SCRIPT_KEY = "diffusion-negative prompting"
ARG_NAMES = ("enabled", "captioner", "dns_scale", "dns_steps", "merge", "per_image", "show_dns", "dns_preview")
DEFAULT_ARGS = {
    "enabled": False,
    "captioner": "blip2",
    "dns_scale": 7.5,
    "dns_steps": 0,
    "merge": "append",
    "per_image": True,
    "show_dns": False,
    "dns_preview": 1.0,
}
STEPS = 4  # WebUI.txt2img's default
PROMPT = "a photo of a cat"
LORA_NAME = "dnp-tiny"
# The options a DNS pass overrides for itself (README: noise-skipping options are off in the DNS pass).
DNS_OVERRIDDEN_OPTIONS = ("skip_early_cond", "s_min_uncond_all", "pad_cond_uncond", "pad_cond_uncond_v0")


# ------------------------------------------------------------------------------------------ infotext

# The WebUI's own pattern for the "key: value, key: value" line; values with , : or newline are JSON-quoted.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
NEGATIVE_PREFIX = "Negative prompt: "


@dataclass
class Infotext:
    prompt: str
    negative: str
    params: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Infotext:
        *body, last = text.split("\n")
        prompt_lines: list[str] = []
        negative_lines: list[str] | None = None
        for line in body:
            if negative_lines is None and line.startswith(NEGATIVE_PREFIX):
                negative_lines = [line[len(NEGATIVE_PREFIX) :]]
            elif negative_lines is not None:
                negative_lines.append(line)
            else:
                prompt_lines.append(line)
        params = {}
        for m in RE_PARAM.finditer(last):
            value = m.group(2)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = json.loads(value)
            params[m.group(1).strip()] = value
        return cls("\n".join(prompt_lines), "\n".join(negative_lines or []), params)

    @property
    def seed(self) -> int:
        return int(self.params["Seed"])

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.params["Size"].split("x")
        return int(w), int(h)


# ------------------------------------------------------------------------------------------ requests


@dataclass
class DnpRun:
    """A txt2img response split into the generated images and the DNS images after them."""

    response: dict[str, Any]
    images: list[np.ndarray]
    infotexts: list[Infotext]
    dns_images: list[np.ndarray]
    dns_infotexts: list[Infotext]

    @property
    def seeds(self) -> list[int]:
        return [t.seed for t in self.infotexts]

    @property
    def negatives(self) -> list[str]:
        return [t.negative for t in self.infotexts]


def script_args(args: dict[str, Any] | list[Any]) -> dict[str, Any]:
    return {SCRIPT_KEY: {"args": args if isinstance(args, list) else [args]}}


def split_response(webui: WebUI, response: dict[str, Any], n_images: int) -> DnpRun:
    info = webui.info(response)
    first = int(info.get("index_of_first_image", 0))
    images = webui.images(response)
    texts = [Infotext.parse(t) for t in info["infotexts"]]
    assert len(images) == len(texts), f"{len(images)} images but {len(texts)} infotexts"
    assert len(images) >= first + n_images, f"expected {n_images} generated images, got {len(images) - first}"
    end = first + n_images
    return DnpRun(response, images[first:end], texts[first:end], images[end:], texts[end:])


def run_dnp(webui: WebUI, args: dict[str, Any] | list[Any], n_images: int, **payload: Any) -> DnpRun:
    run = split_response(webui, webui.txt2img(**payload, alwayson_scripts=script_args(args)), n_images)
    assert run.seeds == webui.info(run.response)["all_seeds"][:n_images]
    return run


def plain(webui: WebUI, **payload: Any) -> list[np.ndarray]:
    """The images of a run without DNP."""
    response = webui.txt2img(**payload)
    n = int(payload.get("batch_size", 1)) * int(payload.get("n_iter", 1))
    return split_response(webui, response, n).images


def eq19(
    webui: WebUI, positive: str, negative: str, *, dns_scale: float, seed: int, batch_size: int = 1, **payload: Any
) -> list[np.ndarray]:
    """Eq. 19 as a plain WebUI run: positive "" (+ extra-network tags), negative p, CFG s + 1."""
    return plain(
        webui,
        **{
            **payload,
            "prompt": positive,
            "negative_prompt": negative,
            "cfg_scale": dns_scale + 1.0,
            "seed": seed,
            "batch_size": batch_size,
            "n_iter": 1,
        },
    )


def assert_same(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual.astype(int) - expected.astype(int))
    assert np.array_equal(actual, expected), f"{what}: {np.count_nonzero(diff)} values differ, max diff {diff.max()}"


def check_dns_images(
    webui: WebUI,
    run: DnpRun,
    positive: str,
    negative: str,
    *,
    batch_size: int,
    dns_scale: float = 7.5,
    steps: int = STEPS,
    **payload: Any,
) -> None:
    """Every DNS image is its batch's eq. 19 run, and its infotext says so."""
    assert len(run.dns_images) == len(run.images), "show_dns: one DNS image per generated image"
    assert [t.seed for t in run.dns_infotexts] == run.seeds, "DNS images are not in the images' seed order"
    for i, text in enumerate(run.dns_infotexts):
        assert text.params["DNP"] == "DNS image", text
        assert (text.prompt, text.negative) == (positive, negative), f"DNS image {i}: infotext prompts"
        assert float(text.params["CFG scale"]) == dns_scale + 1.0
        assert float(text.params["DNS scale"]) == dns_scale
        assert int(text.params["Steps"]) == steps
        assert "Hires upscale" not in text.params
    for start in range(0, len(run.images), batch_size):
        refs = eq19(
            webui,
            positive,
            negative,
            dns_scale=dns_scale,
            seed=run.seeds[start],
            batch_size=batch_size,
            steps=steps,
            **payload,
        )
        for j, ref in enumerate(refs):
            assert_same(run.dns_images[start + j], ref, f"DNS image {start + j} vs its eq. 19 run")


def check_images(webui: WebUI, run: DnpRun, *, ref_batch_size: int | None = None, **payload: Any) -> None:
    """Every generated image is a plain run with its infotext's prompt, negative and seed.

    ref_batch_size 1: a batch-1 run. Larger: a plain run of that batch size in which every image takes image i's
    prompts and image i keeps its place in the batch (its seed then lines up). None: the run's batch size.
    Neither host is batch-size invariant on CPU: a plain batch-2 run and plain batch-1 runs of its seeds now and
    then differ by 1 in a pixel value, without the extension too (Forge: 3 of 16 images of 8 batch-2 runs;
    A1111 1.10.1 with torch 2.14.1: seed 321 of a batch-2 run, one value), so images are compared within a
    batch of their own size.
    """
    if ref_batch_size is None:
        ref_batch_size = int(payload.get("batch_size", 1))
    payload = {k: v for k, v in payload.items() if k not in ("styles", "batch_size", "n_iter")}
    for i, text in enumerate(run.infotexts):
        place = i % ref_batch_size
        assert run.seeds[i] == run.seeds[i - place] + place, "seeds of a batch are not consecutive"
        extra = {}
        if "Hires negative prompt" in text.params:
            extra["hr_negative_prompt"] = text.params["Hires negative prompt"]
        refs = plain(
            webui,
            **{
                **payload,
                "prompt": text.prompt,
                "negative_prompt": text.negative,
                "seed": text.seed - place,
                "batch_size": ref_batch_size,
                **extra,
            },
        )
        assert_same(run.images[i], refs[place], f"image {i} (seed {text.seed}) vs its plain batch-{ref_batch_size} run")


def unpad(negative: str) -> str:
    """A negative without the BREAKs DNP appends to equalise a batch's chunk counts."""
    return re.sub(r"( BREAK)+$", "", negative)


def options_snapshot(webui: WebUI, keys: tuple[str, ...] = DNS_OVERRIDDEN_OPTIONS) -> dict[str, Any]:
    options = webui.get("/sdapi/v1/options")
    return {k: options.get(k) for k in keys}


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def chunk_counter(
    webui_install: Install, tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[list[str]], list[int]]:
    """texts -> 75-token chunk counts, computed outside the server with the WebUI's tokenizer and parser."""
    workdir = tmp_path_factory.mktemp("chunks")
    calls = iter(range(1_000_000))

    def count(texts: list[str]) -> list[int]:
        path = workdir / f"texts{next(calls)}.json"
        path.write_text(json.dumps(texts), encoding="utf-8")
        # A1111: the tokenizer saved with the tiny text encoder; Forge: the one it ships (clip_chunks' default)
        tokenizer = ["--tokenizer", str(tiny_models.text_encoder)] if tiny_models.text_encoder else []
        out = _run_builder(
            webui_install,
            [str(HERE / "clip_chunks.py"), "--webui-dir", str(webui_install.dir), *tokenizer, str(path)],
            "chunk counts",
            workdir / "clip_chunks.log",
        )
        counts = _last_json_line(out)
        assert isinstance(counts, list) and len(counts) == len(texts), out[-2000:]
        return counts

    return count


# ------------------------------------------------------------------------------------------ 1. contract


def test_script_listed_as_txt2img_alwayson(dnp_webui: WebUI) -> None:
    scripts = dnp_webui.get("/sdapi/v1/scripts")
    assert SCRIPT_KEY in scripts["txt2img"] and SCRIPT_KEY in scripts["img2img"]

    infos = [s for s in dnp_webui.get("/sdapi/v1/script-info") if s["name"] == SCRIPT_KEY]
    assert sorted(i["is_img2img"] for i in infos) == [False, True], f"script-info entries for {SCRIPT_KEY!r}: {infos}"
    assert [i["args"] for i in infos if i["is_img2img"]] == [i["args"] for i in infos if not i["is_img2img"]]
    info = next(i for i in infos if not i["is_img2img"])
    assert info["is_alwayson"] is True
    # The UI controls, in the order of the positional API arguments, with the documented defaults.
    assert [a["value"] for a in info["args"]] == [DEFAULT_ARGS[k] for k in ARG_NAMES]
    assert info["args"][1]["choices"] == ["blip2", "blip", "webui-blip"]
    assert info["args"][4]["choices"] == ["append", "prepend", "replace"]
    # the title itself, as the UI shows it (the API lists scripts by lower-cased title)
    assert TITLE.lower() == SCRIPT_KEY
    labelled = {
        c["type"]
        for c in dnp_webui.get("/config")["components"]
        if c.get("props", {}).get("label") == TITLE and "dnp" in str(c["props"].get("elem_id"))
    }
    assert "accordion" in labelled, f"no txt2img accordion titled {TITLE!r}"


def test_settings_via_options(dnp_webui: WebUI, restore_options: Callable[..., None]) -> None:
    options = dnp_webui.get_options()
    for key in ("dnp_blip2_model", "dnp_blip_model", "dnp_captioner_after"):
        assert key in options, f"setting {key} missing from the server's options"
    restore_options(dnp_blip2_model="/some/folder/blip2", dnp_blip_model="someone/blip-model")
    options = dnp_webui.get_options()
    assert options["dnp_blip2_model"] == "/some/folder/blip2"
    assert options["dnp_blip_model"] == "someone/blip-model"


def test_args_by_name_and_by_position(dnp_webui: WebUI) -> None:
    payload = {"prompt": PROMPT, "negative_prompt": "blurry", "batch_size": 2, "n_iter": 2, "seed": 21}
    minimal = run_dnp(dnp_webui, {"enabled": True, "show_dns": True}, 4, **payload)
    full = run_dnp(dnp_webui, {**DEFAULT_ARGS, "enabled": True, "show_dns": True}, 4, **payload)
    positional = run_dnp(dnp_webui, [True, "blip2", 7.5, 0, "append", True, True], 4, **payload)

    for label, run in (("all keys by name", full), ("by position", positional)):
        assert [t.negative for t in run.infotexts] == minimal.negatives, label
        for i, (a, b) in enumerate(zip(run.images + run.dns_images, minimal.images + minimal.dns_images)):
            assert_same(a, b, f"{label}: image {i} vs missing keys taking their defaults")

    assert minimal.seeds == [21, 22, 23, 24]
    for text in minimal.infotexts:
        assert text.params["DNP"] == "auto, per image, append"
        assert text.params["DNP captioner"] == "blip2"
        assert float(text.params["DNS scale"]) == 7.5
        assert int(text.params["DNS steps"]) == STEPS
        assert "DNP caption" in text.params
        assert text.negative.startswith("blurry, ") and len(text.negative) > len("blurry, ")
    assert len(set(minimal.negatives)) == 4, f"per-image negatives are not per image: {minimal.negatives}"
    # show_dns: the DNS images follow the generated ones, in seed order, and say what they are
    assert len(minimal.dns_images) == 4
    assert [t.seed for t in minimal.dns_infotexts] == minimal.seeds
    assert all(t.params["DNP"] == "DNS image" for t in minimal.dns_infotexts)


def test_non_default_args_by_position_and_name(dnp_webui: WebUI) -> None:
    payload = {"prompt": PROMPT, "negative_prompt": "blurry", "batch_size": 2, "seed": 77}
    base = run_dnp(dnp_webui, {"enabled": True}, 2, **payload)
    captions = [unpad(n).removeprefix("blurry, ") for n in base.negatives]

    run = run_dnp(dnp_webui, [True, "blip", 3.0, 6, "replace", True, True], 2, **payload)
    for text in run.infotexts:
        assert text.params["DNP"] == "auto, per image, replace"
        assert text.params["DNP captioner"] == "blip"
        assert float(text.params["DNS scale"]) == 3.0
        assert int(text.params["DNS steps"]) == 6
        # replace keeps only n*: the negative is this image's caption as n* (plus BREAK padding), no "blurry"
        assert text.negative and unpad(text.negative) == caption_to_negative(text.params["DNP caption"]), text
    check_dns_images(dnp_webui, run, "", PROMPT, batch_size=2, dns_scale=3.0, steps=6)

    prepend = run_dnp(dnp_webui, {"enabled": True, "merge": "prepend"}, 2, **payload)
    assert [unpad(n) for n in prepend.negatives] == [f"{c}, blurry" for c in captions]
    assert all(t.params["DNP"] == "auto, per image, prepend" for t in prepend.infotexts)

    shared = run_dnp(dnp_webui, {"enabled": True, "per_image": False, "show_dns": True}, 4, **payload, n_iter=2)
    assert len(shared.dns_images) == 1 and shared.dns_infotexts[0].seed == shared.seeds[0]
    assert len(set(shared.negatives)) == 1
    assert unpad(shared.negatives[0]) == unpad(base.negatives[0]), "the shared n* is the first seed's"
    assert all(t.params["DNP"] == "auto, shared, append" for t in shared.infotexts)


def test_infotext_reproduces_the_image_with_dnp_off(dnp_webui: WebUI, webui_no_ext: WebUI) -> None:
    """README "Paste and reproduce" through the API's `infotext` field (the WebUI's paste mapping, including the
    script's infotext_fields): the DNP settings come back with Auto-DNP off, so the pasted negative (which holds
    n*) is used as it stands: the same image, and no second n*. (The UI's paste: test_browser.py.)"""
    if dnp_webui.host == "forge":
        # Forge dfdcbab6 answers every `infotext` request with HTTP 500, also without this extension: its styles
        # paste field yields a gradio 4 update dict that reaches isinstance(value, List[str]) in
        # modules/api/api.py (get_field_value). Checked on the server without the extension, so that the test
        # runs again once Forge handles it.
        reference = webui_no_ext.txt2img(prompt=PROMPT, seed=42)
        probe = webui_no_ext.request(
            "POST", "/sdapi/v1/txt2img", {"infotext": webui_no_ext.info(reference)["infotexts"][0]}
        )
        if probe.status == 500 and "isinstance" in probe.text:
            pytest.skip(f"Forge's API cannot take an infotext, even without the extension: {probe.text[:200]}")
    payload = {"prompt": PROMPT, "negative_prompt": "blurry", "seed": 42}
    args = {"enabled": True, "captioner": "blip", "dns_scale": 3.0, "dns_steps": 6, "merge": "prepend"}
    run = run_dnp(dnp_webui, args, 1, **payload)
    infotext = dnp_webui.info(run.response)["infotexts"][0]
    assert run.infotexts[0].params["DNP"] == "auto, per image, prepend"

    again = split_response(dnp_webui, dnp_webui.post("/sdapi/v1/txt2img", {"infotext": infotext}), 1)
    text = again.infotexts[0]
    assert (text.prompt, text.negative, text.seed) == (PROMPT, run.negatives[0], 42)
    assert not any(key.startswith(("DNP", "DNS")) for key in text.params), f"DNP ran again: {text.params}"
    assert_same(again.images[0], run.images[0], "the image generated from the pasted infotext")


# ------------------------------------------------------------------------------------------ 2. off = no extension


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([False, "blip", 3.0, 6, "replace", False, True], id="by-position"),
        pytest.param({"enabled": False, "show_dns": True, "dns_steps": 8, "per_image": False}, id="by-name"),
    ],
)
def test_dnp_off_with_other_args_is_identical_to_no_extension(
    dnp_webui: WebUI, webui_no_ext: WebUI, args: dict[str, Any] | list[Any]
) -> None:
    payloads = {
        "batches": {"prompt": PROMPT, "negative_prompt": "blurry", "batch_size": 2, "n_iter": 2, "seed": 5},
        "hires": {"prompt": PROMPT, "seed": 6, **hires(dnp_webui, denoising_strength=0.5)},
    }
    for label, payload in payloads.items():
        n = payload.get("batch_size", 1) * payload.get("n_iter", 1)
        ref = split_response(webui_no_ext, webui_no_ext.txt2img(**payload), n)
        got = split_response(dnp_webui, dnp_webui.txt2img(**payload, alwayson_scripts=script_args(args)), n)
        assert len(got.images) == len(ref.images) and not got.dns_images, f"{label}: extra images"
        for i, (a, b) in enumerate(zip(got.images, ref.images, strict=True)):
            assert_same(a, b, f"{label}: image {i} vs the server without the extension")
        assert got.infotexts == ref.infotexts, f"{label}: infotexts differ"


# ------------------------------------------------------------------------------------------ 3. eq. 19 and plain runs


@pytest.mark.parametrize(("dns_scale", "dns_steps"), [(7.5, 0), (3.0, 6)])
def test_dns_images_are_eq19_runs_and_images_plain_runs(dnp_webui: WebUI, dns_scale: float, dns_steps: int) -> None:
    payload = {"prompt": PROMPT, "negative_prompt": "blurry", "batch_size": 2, "n_iter": 2, "seed": 321}
    args = {"enabled": True, "dns_scale": dns_scale, "dns_steps": dns_steps, "show_dns": True}
    run = run_dnp(dnp_webui, args, 4, **payload)
    steps = dns_steps or STEPS
    for text in run.infotexts:
        assert float(text.params["DNS scale"]) == dns_scale
        assert int(text.params["DNS steps"]) == steps
    check_dns_images(dnp_webui, run, "", PROMPT, batch_size=2, dns_scale=dns_scale, steps=steps)
    check_images(dnp_webui, run, **payload)


# ------------------------------------------------------------------------------------------ 4. chunk boundary

CHUNK_WORD = "cat"  # one CLIP token


def test_batch_negatives_across_a_chunk_boundary(
    dnp_webui: WebUI, chunk_counter: Callable[[list[str]], list[int]]
) -> None:
    check_chunk_boundary(dnp_webui, chunk_counter, {"prompt": PROMPT, "batch_size": 4, "n_iter": 2, "seed": 100})


def check_chunk_boundary(
    dnp_webui: WebUI, chunk_counter: Callable[[list[str]], list[int]], payload: dict[str, Any]
) -> None:
    """A user negative just under 75 tokens: some images' n* push it into a second chunk, others' don't.

    The captions depend on the DNS images only, so a first run with no user negative gives each image's
    n*; the user negative's length is then chosen (by counting tokens outside the server) so that the
    merged negatives of a batch straddle the 75-token boundary. (SDXL: the extension counts the chunks of
    both text encoders; the WebUI needs them equal within a batch for each.)
    """
    size = int(payload["batch_size"])
    n = size * int(payload.get("n_iter", 1))
    args = {"enabled": True, "merge": "append"}
    first = run_dnp(dnp_webui, args, n, **payload)
    captions = [unpad(c) for c in first.negatives]
    assert all(captions) and len(set(captions)) == n, f"captions are not all different: {captions}"
    batches = [range(start, start + size) for start in range(0, n, size)]

    def user_negative(words: int) -> str:
        return " ".join([CHUNK_WORD] * words)

    lengths = range(30, 75)
    counts = chunk_counter([f"{user_negative(k)}, {c}" for k in lengths for c in captions])
    mixed = {}
    for j, k in enumerate(lengths):
        per_image = counts[j * n : (j + 1) * n]
        mixed[k] = sum(len({per_image[i] for i in b}) > 1 for b in batches)
    best = max(lengths, key=lambda k: (mixed[k], -abs(k - 60)))
    assert mixed[best] > 0, f"no user negative length makes a batch straddle 75 tokens; captions: {captions}"

    negative = user_negative(best)
    run = run_dnp(dnp_webui, args, n, **{**payload, "negative_prompt": negative})
    merged = [f"{negative}, {c}" for c in captions]
    padding = []
    for i, (got, want) in enumerate(zip(run.negatives, merged)):
        assert got.startswith(want) and re.fullmatch(r"( BREAK)*", got[len(want) :]), (
            f"image {i}: negative is not n* merged with the user negative (+ BREAK padding): {got!r}"
        )
        padding.append(got[len(want) :].count("BREAK"))
    assert len(set(run.negatives)) == n

    final_counts = chunk_counter(run.negatives)
    merged_counts = chunk_counter(merged)
    straddling = 0
    for b in batches:
        assert len({final_counts[i] for i in b}) == 1, (
            f"batch {b}: chunk counts {[final_counts[i] for i in b]} differ: {[run.negatives[i] for i in b]}"
        )
        target = max(merged_counts[i] for i in b)
        for i in b:
            # padded only where needed, with as few BREAKs as it takes
            assert (padding[i] == 0) == (merged_counts[i] == target), (i, padding[i], merged_counts[i], target)
        straddling += len({merged_counts[i] for i in b}) > 1
    assert straddling > 0

    check_images(dnp_webui, run, ref_batch_size=size, **{**payload, "negative_prompt": negative})


# ------------------------------------------------------------------------------------------ 5. random seeds


def test_random_seed_dns_follows_image_seeds(dnp_webui: WebUI) -> None:
    payload = {"prompt": PROMPT, "batch_size": 2, "seed": -1}
    run = run_dnp(dnp_webui, {"enabled": True, "show_dns": True}, 2, **payload)
    assert run.seeds[1] == run.seeds[0] + 1
    assert [t.seed for t in run.dns_infotexts] == run.seeds
    # one batch-2 eq. 19 run from the first image's seed (batch-1 runs may differ by rounding: `check_images`)
    refs = eq19(dnp_webui, "", PROMPT, dns_scale=7.5, seed=run.seeds[0], batch_size=2)
    for i, (seed, ref) in enumerate(zip(run.seeds, refs, strict=True)):
        assert_same(run.dns_images[i], ref, f"DNS image {i} vs eq. 19 at the seed of image {i} ({seed})")
    check_images(dnp_webui, run, **payload)


# ------------------------------------------------------------------------------------------ 6. hires fix

HIRES = {
    "enable_hr": True,
    "hr_scale": 1.5,
    "hr_upscaler": "Latent",
    "hr_second_pass_steps": 2,
    "denoising_strength": 0.6,
}


def hires(webui: WebUI, cfg_scale: float = 7.0, **overrides: Any) -> dict[str, Any]:
    """Hires-fix request fields for this host.

    Forge's API needs hr_additional_modules with enable_hr (its default None is an HTTP 500 TypeError in
    processing.py), and Forge's hires pass samples at hr_cfg, which defaults to 1.0 there: no uncond at all,
    so a hires negative prompt would be silently ignored. hr_cfg = the run's CFG scale is what A1111 does.
    """
    fields = {**HIRES, **overrides}
    if webui.host == "forge":
        fields.update(hr_additional_modules=["Use same choices"], hr_cfg=cfg_scale)
    return fields


@pytest.mark.parametrize("hr_negative", ["", "lowres"])
def test_hires_fix(dnp_webui: WebUI, hr_negative: str) -> None:
    payload = {
        "prompt": PROMPT,
        "negative_prompt": "blurry",
        "batch_size": 2,
        "seed": 55,
        "hr_negative_prompt": hr_negative,
        **hires(dnp_webui),
    }
    run = run_dnp(dnp_webui, {"enabled": True, "show_dns": True}, 2, **payload)
    for image, text in zip(run.images, run.infotexts):
        assert image.shape == (96, 96, 3)
        assert "Hires upscale" in text.params
        assert text.negative.startswith("blurry, ") and len(text.negative) > len("blurry, "), "negative lacks n*"
        n_star = text.negative.removeprefix("blurry, ")
        if hr_negative:
            assert text.params["Hires negative prompt"] == f"{hr_negative}, {n_star}", "hires negative lacks n*"
        else:
            assert "Hires negative prompt" not in text.params, "hires pass used another negative"
    for image, text in zip(run.dns_images, run.dns_infotexts):
        assert image.shape == (64, 64, 3), "the DNS image went through hires fix"
        assert text.size == (64, 64)
    check_dns_images(dnp_webui, run, "", PROMPT, batch_size=2)
    check_images(dnp_webui, run, **payload)


# ------------------------------------------------------------------------------------------ 7. prompt syntax

LONG_PROMPT = " ".join(["a photo of a red cat"] * 50)  # 300 CLIP tokens: four 75-token chunks


@pytest.mark.parametrize(
    ("prompt", "styles", "dns_negative", "styled_prompt"),
    [
        pytest.param("(a cat:1.3) on a sofa", [], "(a cat:1.3) on a sofa", None, id="emphasis"),
        pytest.param("[a cat:a dog:0.5]", [], "[a cat:a dog:0.5]", None, id="scheduling"),
        pytest.param("[a cat|a dog] on grass", [], "[a cat|a dog] on grass", None, id="alternation"),
        pytest.param("a cat AND a dog", [], "a cat, a dog", None, id="AND"),
        pytest.param("a cat :1.2 AND a dog :0.8", [], "a cat, a dog", None, id="AND-weights"),
        pytest.param("a cat BREAK a dog", [], "a cat BREAK a dog", None, id="BREAK"),
        pytest.param("", [], "", None, id="empty"),
        pytest.param(LONG_PROMPT, [], LONG_PROMPT, None, id="300-tokens"),
        pytest.param("a cat", ["dnp-test-style"], "an oil painting of a cat", "an oil painting of a cat", id="style"),
    ],
)
def test_prompt_syntax(
    dnp_webui: WebUI, prompt: str, styles: list[str], dns_negative: str, styled_prompt: str | None
) -> None:
    payload = {"prompt": prompt, "styles": styles, "seed": 11, "batch_size": 1}
    run = run_dnp(dnp_webui, {"enabled": True, "show_dns": True}, 1, **payload)
    # the main pass keeps the prompt as written (styles applied)
    assert run.infotexts[0].prompt == (styled_prompt or prompt)
    if styles:
        style_negative = TEST_STYLES[styles[0]][1]
        assert run.negatives[0].startswith(f"{style_negative}, "), "the style's negative is lost"
    check_dns_images(dnp_webui, run, "", dns_negative, batch_size=1)
    check_images(dnp_webui, run, **payload)


def test_lora_tag(dnp_webui: WebUI) -> None:
    lora = dnp_webui.data_dir / "models" / "Lora" / f"{LORA_NAME}.safetensors"
    build_tiny_lora(dnp_webui.models.checkpoint, lora)
    dnp_webui.post("/sdapi/v1/refresh-loras")
    assert LORA_NAME in [item["name"] for item in dnp_webui.get("/sdapi/v1/loras")]
    tag = f"<lora:{LORA_NAME}:1>"

    # the LoRA does something, also where the DNS pass has it: in the positive of an eq. 19 run
    (without,) = plain(dnp_webui, prompt=PROMPT, seed=13)
    (with_lora,) = plain(dnp_webui, prompt=f"{PROMPT} {tag}", seed=13)
    assert np.abs(without.astype(int) - with_lora).mean() > 1.0, "the tiny LoRA does not change the image"
    (dns_without,) = eq19(dnp_webui, "", PROMPT, dns_scale=7.5, seed=13)
    (dns_with,) = eq19(dnp_webui, tag, PROMPT, dns_scale=7.5, seed=13)
    assert np.abs(dns_without.astype(int) - dns_with).mean() > 1.0, "the tiny LoRA does not change a DNS run"

    payload = {"prompt": f"{PROMPT} {tag}", "seed": 13}
    run = run_dnp(dnp_webui, {"enabled": True, "show_dns": True}, 1, **payload)
    check_dns_images(dnp_webui, run, tag, PROMPT, batch_size=1)
    check_images(dnp_webui, run, **payload)
    assert f"{LORA_NAME}:" in run.infotexts[0].params.get("Lora hashes", ""), "main pass ran without the LoRA"


# ------------------------------------------------------------------------------------------ 8. interrupt + 11. progress


def start_in_thread(webui: WebUI, body: dict[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def worker() -> None:
        try:
            out["result"] = webui.request("POST", "/sdapi/v1/txt2img", body, timeout=300)
        except Exception as e:  # reported by the test, not lost in the thread
            out["error"] = e

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    return thread, out


def poll_progress(webui: WebUI, thread: threading.Thread, until: Callable[[dict[str, Any]], bool] | None = None):
    """Poll /sdapi/v1/progress while the run goes; return the samples (stops early when `until` holds)."""
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + 300
    while thread.is_alive() and time.monotonic() < deadline:
        sample = webui.get("/sdapi/v1/progress?skip_current_image=true")
        samples.append(sample)
        if until is not None and until(sample):
            break
        time.sleep(0.02)
    return samples


def unique(seen: list[Any]) -> list[Any]:
    """The distinct progress samples in the order they came."""
    return list(dict.fromkeys(seen))


def in_dns_phase(sample: dict[str, Any]) -> bool:
    return "DNP: diffusion-negative sampling" in (sample.get("textinfo") or "")


def test_interrupt_during_dns(dnp_webui: WebUI, restore_options: Callable[..., None]) -> None:
    restore_options(dnp_cache_mb=0)  # a DNS pass must really run (these settings may be cached already)
    before = options_snapshot(dnp_webui)
    body = {
        "prompt": PROMPT,
        "width": 64,
        "height": 64,
        "steps": STEPS,
        "sampler_name": "Euler",
        "seed": 5,
        "alwayson_scripts": script_args({"enabled": True, "dns_steps": 150, "show_dns": True}),
    }
    thread, out = start_in_thread(dnp_webui, body)
    samples = poll_progress(dnp_webui, thread, until=lambda s: in_dns_phase(s) and s["state"]["sampling_step"] >= 3)
    assert samples and in_dns_phase(samples[-1]), "the run ended before its DNS pass could be interrupted"
    dnp_webui.post("/sdapi/v1/interrupt")
    thread.join(120)
    assert not thread.is_alive(), "the interrupted run did not return"
    assert "error" not in out, out.get("error")
    result = out["result"]
    assert result.status == 200, f"interrupted run -> HTTP {result.status}: {result.text[:2000]}"
    assert result.json()["images"] == [], "README: an interrupt during DNS samples nothing"

    assert dnp_webui.alive()
    assert options_snapshot(dnp_webui) == before, "DNS-pass settings were not restored"
    payload = {"prompt": PROMPT, "seed": 5}
    run = run_dnp(dnp_webui, {"enabled": True, "show_dns": True}, 1, **payload)
    check_dns_images(dnp_webui, run, "", PROMPT, batch_size=1)
    check_images(dnp_webui, run, **payload)


# (steps, DNS steps) that make each phase last long enough for the poller to see it. Forge's test UNet keeps
# SD1.5's full channel widths (its model detection needs them), so a step there takes several times as long as
# with A1111's tiny UNet and fewer steps give the same phase lengths.
PROGRESS_STEPS = {"a1111": (30, 150), "forge": (10, 40)}


@pytest.mark.parametrize("with_hires", [False, True], ids=["plain", "hires"])
def test_progress_counts_dnp_jobs(dnp_webui: WebUI, with_hires: bool, restore_options: Callable[..., None]) -> None:
    restore_options(dnp_cache_mb=0)  # the hires run's DNS pass is the plain run's: it must not be a cache hit
    steps, dns_steps = PROGRESS_STEPS[dnp_webui.host]
    body = {
        "prompt": PROMPT,
        "width": 64,
        "height": 64,
        "steps": steps,  # long enough to see the main phase too
        "sampler_name": "Euler",
        "seed": 8,
        **(hires(dnp_webui) if with_hires else {}),
        "alwayson_scripts": script_args({"enabled": True, "dns_steps": dns_steps}),
    }
    thread, out = start_in_thread(dnp_webui, body)
    samples = poll_progress(dnp_webui, thread)
    thread.join(120)
    assert "error" not in out, out.get("error")
    assert out["result"].status == 200, out["result"].text[:2000]

    main_jobs = 2 if with_hires else 1  # hires fix is a job of its own
    total = 1 + 1 + main_jobs  # DNS batch, caption batch, main batch
    seen = [(s.get("textinfo") or "", s["state"]["job_count"], s["state"]["job_no"]) for s in samples]
    dns = [x for x in seen if x[0].startswith("DNP: diffusion-negative sampling")]
    main = [x for x in seen if x[0].startswith("DNP: generating") and x[1] > 0]
    assert dns, f"no progress sample named the DNS phase: {sorted(set(seen))}"
    # The progress route reads job_no before textinfo, and the DNS pass relabels itself as decoding before the
    # WebUI counts its job done: a sample still labelled as sampling was taken during job 0, with no race.
    # (Messages are f-strings: pytest shortens a list given as the message.)
    assert all(job_count == total and job_no == 0 for _, job_count, job_no in dns), f"{unique(seen)}"
    decoding = [x for x in seen if x[0] == "DNP: decoding the diffusion-negative images"]
    assert all(job_count == total and job_no <= 1 for _, job_count, job_no in decoding), f"{unique(seen)}"
    assert main, f"no progress sample during the main pass: {unique(seen)}"
    assert all(job_count == total and 2 <= job_no <= total for _, job_count, job_no in main), f"{unique(seen)}"


# ------------------------------------------------------------------------------------------ 9. captioner errors


def test_missing_captioner_folder(dnp_webui: WebUI, restore_options: Callable[..., None]) -> None:
    body = {
        "prompt": PROMPT,
        "width": 64,
        "height": 64,
        "steps": STEPS,
        "sampler_name": "Euler",
        "seed": 3,
        "alwayson_scripts": script_args({"enabled": True, "captioner": "blip2"}),
    }
    good = dnp_webui.get_options()["dnp_blip2_model"]
    restore_options(dnp_blip2_model="/nonexistent/blip2")
    result = dnp_webui.request("POST", "/sdapi/v1/txt2img", body)
    assert result.status == 503, f"HTTP {result.status}: {result.text[:2000]}"
    detail = str(result.json().get("detail", ""))
    for word in ("blip2", "dnp_blip2_model", "/nonexistent/blip2"):
        assert word in detail, f"error message does not name {word!r}: {detail}"
    assert not result.json().get("images"), "an error response carries images"

    dnp_webui.set_options(dnp_blip2_model=good)
    payload = {"prompt": PROMPT, "seed": 3}
    run = run_dnp(dnp_webui, {"enabled": True, "show_dns": True}, 1, **payload)
    check_dns_images(dnp_webui, run, "", PROMPT, batch_size=1)
    check_images(dnp_webui, run, **payload)


def test_webui_blip_that_cannot_load(dnp_webui: WebUI) -> None:
    """webui-blip wraps the WebUI's own BLIP interrogator (Forge: loaded through its memory manager). Where that
    model cannot load, the run stops with a 503 that names the captioner and the fix, and samples nothing.
    An unreadable models/BLIP file makes it fail the same way everywhere, with nothing downloaded."""
    blip = dnp_webui.data_dir / "models" / "BLIP" / "model_base_caption_capfilt_large.pth"
    blip.parent.mkdir(parents=True, exist_ok=True)
    blip.write_bytes(b"not a BLIP checkpoint")
    body = {
        "prompt": PROMPT,
        "width": 64,
        "height": 64,
        "steps": STEPS,
        "sampler_name": "Euler",
        "seed": 4,
        "alwayson_scripts": script_args({"enabled": True, "captioner": "webui-blip"}),
    }
    try:
        result = dnp_webui.request("POST", "/sdapi/v1/txt2img", body)
    finally:
        blip.unlink()
    assert result.status == 503, f"HTTP {result.status}: {result.text[:2000]}"
    detail = str(result.json().get("detail", ""))
    for word in (TITLE, "webui-blip", "models/BLIP", "blip2"):
        assert word in detail, f"error message does not name {word!r}: {detail}"
    assert not result.json().get("images"), "an error response carries images"


# ------------------------------------------------------------------------------------------ 10. bad arguments

BAD_ARGS = [
    ({"enabled": True, "strength": 2}, "strength"),
    ({"enabled": True, "captioner": "gpt-4"}, "captioner"),
    ({"enabled": True, "dns_scale": "big"}, "dns_scale"),
    ({"enabled": True, "dns_steps": -1}, "dns_steps"),
    ({"enabled": True, "merge": "insert"}, "merge"),
    ({"enabled": "yes"}, "enabled"),
    ([True, "blip2", "big"], "dns_scale"),
    ([True, "blip2", 7.5, 2.5], "dns_steps"),
]


def test_bad_args_are_rejected_without_side_effects(dnp_webui: WebUI) -> None:
    payload = {"prompt": PROMPT, "negative_prompt": "blurry", "batch_size": 2, "seed": 31}
    good_args = {"enabled": True, "show_dns": True}
    before = run_dnp(dnp_webui, good_args, 2, **payload)
    options_before = options_snapshot(dnp_webui)

    problems = []
    for args, key in BAD_ARGS:
        body = {
            "prompt": PROMPT,
            "width": 64,
            "height": 64,
            "steps": STEPS,
            "sampler_name": "Euler",
            "seed": 31,
            "alwayson_scripts": script_args(args),
        }
        result = dnp_webui.request("POST", "/sdapi/v1/txt2img", body)
        detail = result.text
        if not 400 <= result.status < 500:
            problems.append(f"{args!r}: HTTP {result.status} (want 4xx): {detail[:300]}")
        elif key not in detail or TITLE not in detail:
            problems.append(f"{args!r}: message does not name {key!r} and the extension: {detail[:300]}")
    assert not problems, "\n".join(problems)

    assert options_snapshot(dnp_webui) == options_before
    after = run_dnp(dnp_webui, good_args, 2, **payload)
    assert after.infotexts == before.infotexts
    for i, (a, b) in enumerate(zip(after.images + after.dns_images, before.images + before.dns_images, strict=True)):
        assert_same(a, b, f"image {i} after the bad requests vs before")


# ------------------------------------------------------------------------------------------ 12. CFG scale 1


def test_cfg_1_warns_in_info_and_keeps_dns_at_s_plus_1(dnp_webui: WebUI) -> None:
    """At CFG 1 a negative does nothing (Forge skips its branch; A1111 weighs it 0): Auto-DNP still makes and
    records n*, the API info carries a warning, the infotext is as usual, and the DNS pass runs at CFG s + 1."""
    payload = {"prompt": PROMPT, "negative_prompt": "blurry", "seed": 17, "cfg_scale": 1.0}
    run = run_dnp(dnp_webui, {"enabled": True, "show_dns": True}, 1, **payload)
    info = dnp_webui.info(run.response)
    warnings = info.get("dnp_warnings", [])
    assert len(warnings) == 1 and "CFG scale is 1" in warnings[0], info.get("dnp_warnings")
    text = run.infotexts[0]
    assert text.negative.startswith("blurry, ") and "DNP caption" in text.params, "n* was not made and recorded"
    assert "no effect" not in "\n".join(info["infotexts"])
    check_dns_images(dnp_webui, run, "", PROMPT, batch_size=1)  # CFG s + 1 = 8.5, whatever the run's CFG
    check_images(dnp_webui, run, **payload)
    # the same run at CFG 7 carries no warning
    other = run_dnp(dnp_webui, {"enabled": True}, 1, **{**payload, "cfg_scale": 7.0})
    assert "dnp_warnings" not in dnp_webui.info(other.response)
