"""The API contract on other model families: SDXL (and SD2 v-prediction on A1111), tiny random checkpoints
from tests/webui/fixtures.py, each with a server pair of its own (with and without the extension).

A subset of test_dnp_api.py, chosen to prove each point once per family at 64x64 and 4 steps: DNS images are
eq. 19 plain runs, every image a plain run with its own n*, per-image negatives across the 75-token boundary
(SDXL: two text encoders), hires fix, a refiner, Suggest, show_dns, and DNP off identical to no extension.
The references are plain runs a user could type, as in test_dnp_api.py.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import Install, TinyModels, WebUI, start_webui
from .test_dnp_api import (
    PROMPT,
    SCRIPT_KEY,
    DnpRun,
    assert_same,
    check_chunk_boundary,
    check_dns_images,
    check_images,
    chunk_counter,  # noqa: F401  (fixture)
    eq19,
    hires,
    plain,
    run_dnp,
    script_args,
    split_response,
)
from .tiny_lora import read_safetensors_header

# On Forge this module runs only with DNP_TEST_FAMILIES_FULL=1 (see conftest.FORGE_FAMILIES_ENV): its SDXL
# checkpoint keeps both text encoders at full size (1.35 B parameters in all).

REFINER = "tiny-refiner"
# The refiner's UNet differs from the main one in its output conv only (negated): it changes every image.
REFINER_KEY = "model.diffusion_model.out.2.weight"
REFINER_SCALE = -1.0


@pytest.fixture(scope="module")
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def off_payloads(webui: WebUI) -> dict[str, dict[str, Any]]:
    """The requests that DNP off must answer exactly as a server without the extension does."""
    return {
        "batch": {"prompt": PROMPT, "negative_prompt": "blurry", "batch_size": 2, "seed": 5},
        "hires": {"prompt": PROMPT, "seed": 6, **hires(webui, denoising_strength=0.5)},
    }


@pytest.fixture(scope="module")
def servers(
    family: str,
    webui_install: Install,
    family_models: Callable[[str], TinyModels],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[WebUI, dict[str, DnpRun]]]:
    """(the extension's server with the tiny captioners, the answers of a server without the extension to
    off_payloads). One server at a time: Forge's tiny SDXL server holds ~7.5 GB of RAM."""
    models = family_models(family)
    with start_webui(
        webui_install, models, tmp_path_factory.mktemp(f"{family}-ref"), with_extension=False, name=f"{family}-ref"
    ) as ref:
        refs = {
            label: split_response(ref, ref.txt2img(**payload), payload.get("batch_size", 1))
            for label, payload in off_payloads(ref).items()
        }
    with start_webui(webui_install, models, tmp_path_factory.mktemp(f"{family}-dnp"), name=f"{family}-dnp") as dnp:
        if SCRIPT_KEY not in dnp.get("/sdapi/v1/scripts")["txt2img"]:
            pytest.fail(f"the WebUI did not register {SCRIPT_KEY!r}", pytrace=False)
        dnp.use_tiny_captioners()
        yield dnp, refs


def both(*families: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("family", families, indirect=True)


@both("sdxl", "sd2-v")
def test_loads_as_its_family(servers: tuple[WebUI, dict[str, DnpRun]], family: str) -> None:
    dnp, _ = servers
    title = dnp.get_options()["sd_model_checkpoint"]
    assert dnp.models.checkpoint.stem in title, f"the server runs {title!r}, not the tiny {family} checkpoint"
    # a plain run works and the prompt matters (Forge loads the model on the first run, then logs what it found)
    (a,) = plain(dnp, prompt=PROMPT, seed=3)
    (b,) = plain(dnp, prompt="a red sports car", seed=3)
    assert np.abs(a.astype(int) - b).mean() > 1.0, "the prompt does not change the image"
    log = dnp.log_path.read_text(encoding="utf-8", errors="replace")
    if dnp.host == "a1111":  # A1111 builds the model from the yaml beside the checkpoint (the family is in it)
        config = dnp.models.config
        assert config is not None and f"Creating model from config: {config}" in log, "A1111 guessed the config"
        text = config.read_text(encoding="utf-8")
        assert ("sgm.models.diffusion.DiffusionEngine" in text) == (family == "sdxl")
        assert ("parameterization: v" in text) == (family == "sd2-v"), "v-prediction is not set by the yaml"
    else:  # Forge reads the family from the weights: SDXL-class models load two text encoders
        assert ("'text_encoder_2'" in log) == (family == "sdxl"), "Forge did not load the model as SDXL"


@both("sdxl", "sd2-v")
def test_dns_images_are_eq19_runs_and_images_plain_runs(servers: tuple[WebUI, dict[str, DnpRun]]) -> None:
    dnp, _ = servers
    payload = {"prompt": PROMPT, "negative_prompt": "blurry", "batch_size": 2, "seed": 321}
    run = run_dnp(dnp, {"enabled": True, "show_dns": True}, 2, **payload)
    assert len(set(run.negatives)) == 2 and all(n.startswith("blurry, ") for n in run.negatives), run.negatives
    check_dns_images(dnp, run, "", PROMPT, batch_size=2)
    check_images(dnp, run, **payload)
    # n* really acts: the same seeds with the user's negative alone give other images
    without = plain(dnp, **payload)
    assert any(not np.array_equal(a, b) for a, b in zip(run.images, without)), "n* does not change the images"


@both("sdxl", "sd2-v")
def test_dnp_off_is_identical_to_no_extension(servers: tuple[WebUI, dict[str, DnpRun]]) -> None:
    dnp, refs = servers
    args = {"enabled": False, "show_dns": True, "dns_steps": 8, "per_image": False}
    for label, payload in off_payloads(dnp).items():
        want = refs[label]
        got = split_response(dnp, dnp.txt2img(**payload, alwayson_scripts=script_args(args)), len(want.images))
        assert len(got.images) == len(want.images) and not got.dns_images, f"{label}: extra images"
        for i, (a, b) in enumerate(zip(got.images, want.images, strict=True)):
            assert_same(a, b, f"{label}: image {i} vs the server without the extension")
        assert got.infotexts == want.infotexts, f"{label}: infotexts differ"


@both("sdxl")
def test_batch_negatives_across_a_chunk_boundary(
    servers: tuple[WebUI, dict[str, DnpRun]],
    chunk_counter: Callable[[list[str]], list[int]],  # noqa: F811
) -> None:
    check_chunk_boundary(servers[0], chunk_counter, {"prompt": PROMPT, "batch_size": 4, "seed": 100})


@both("sdxl")
def test_hires_fix(servers: tuple[WebUI, dict[str, DnpRun]]) -> None:
    dnp, _ = servers
    payload = {"prompt": PROMPT, "negative_prompt": "blurry", "seed": 55, "hr_negative_prompt": "lowres", **hires(dnp)}
    run = run_dnp(dnp, {"enabled": True, "show_dns": True}, 1, **payload)
    text = run.infotexts[0]
    assert run.images[0].shape == (96, 96, 3) and "Hires upscale" in text.params
    n_star = text.negative.removeprefix("blurry, ")
    assert n_star and text.params["Hires negative prompt"] == f"lowres, {n_star}", "hires negative lacks n*"
    assert run.dns_images[0].shape == (64, 64, 3), "the DNS image went through hires fix"
    check_dns_images(dnp, run, "", PROMPT, batch_size=1)
    check_images(dnp, run, **payload)


def derive_refiner(checkpoint: Path, dest_dir: Path) -> Path:
    """A copy of the checkpoint (and its yaml) whose UNet output conv is scaled: another model, same family."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{REFINER}.safetensors"
    shutil.copyfile(checkpoint, dest)
    if checkpoint.with_suffix(".yaml").is_file():
        shutil.copyfile(checkpoint.with_suffix(".yaml"), dest.with_suffix(".yaml"))
    entry = read_safetensors_header(checkpoint)[REFINER_KEY]
    dtype = {"F32": "<f4", "F16": "<f2"}[entry["dtype"]]
    with dest.open("r+b") as fh:
        (header_size,) = struct.unpack("<Q", fh.read(8))
        start, end = (8 + header_size + o for o in entry["data_offsets"])
        fh.seek(start)
        values = np.frombuffer(fh.read(end - start), dtype=dtype) * REFINER_SCALE
        fh.seek(start)
        fh.write(values.astype(dtype).tobytes())
    return dest


@both("sdxl")
def test_refiner_is_kept_by_the_main_run_and_never_used_by_dns(servers: tuple[WebUI, dict[str, DnpRun]]) -> None:
    dnp, _ = servers
    derive_refiner(dnp.models.checkpoint, dnp.data_dir / "models" / "Stable-diffusion")
    dnp.post("/sdapi/v1/refresh-checkpoints")
    refiner = {"refiner_checkpoint": REFINER, "refiner_switch_at": 0.5}
    # the refiner changes images, DNS-like runs included (else "DNS never uses it" would prove nothing)
    (no_refiner,) = eq19(dnp, "", PROMPT, dns_scale=7.5, seed=71)
    (refined,) = eq19(dnp, "", PROMPT, dns_scale=7.5, seed=71, **refiner)
    assert np.abs(no_refiner.astype(int) - refined).mean() > 1.0, "the tiny refiner does not change the image"

    payload = {"prompt": PROMPT, "negative_prompt": "blurry", "batch_size": 2, "seed": 71, **refiner}
    run = run_dnp(dnp, {"enabled": True, "show_dns": True}, 2, **payload)
    for text in run.infotexts:
        assert text.params.get("Refiner", "").startswith(REFINER), f"the main run lost its refiner: {text.params}"
    for text in run.dns_infotexts:
        assert "Refiner" not in text.params, f"a DNS image names a refiner: {text.params}"
    check_dns_images(dnp, run, "", PROMPT, batch_size=2)  # plain eq. 19 runs without the refiner
    check_images(dnp, run, **payload)  # plain runs with the refiner


@both("sdxl")
def test_suggest(servers: tuple[WebUI, dict[str, DnpRun]]) -> None:
    dnp, _ = servers
    small = {"width": 64, "height": 64, "steps": 4, "sampler_name": "Euler", "cfg_scale": 7.0}
    body = {"prompt": PROMPT, "negative_prompt": "blurry", "seed": 21, "batch_size": 2, "dns_scale": 3.0}
    answer = dnp.post("/dnp/v1/suggest", {**small, **body})
    assert answer["seeds"] == [21, 22] and len(answer["negative_prompts"]) == 2
    refs = eq19(dnp, "", PROMPT, dns_scale=3.0, seed=21, batch_size=2)
    for i, (got, want) in enumerate(zip(dnp.images(answer), refs, strict=True)):
        assert_same(got, want, f"suggest DNS image {i} vs its eq. 19 run")
    auto = run_dnp(
        dnp, {"enabled": True, "dns_scale": 3.0}, 2, prompt=PROMPT, negative_prompt="blurry", seed=21, batch_size=2
    )
    assert auto.negatives == answer["negative_prompts"], "Suggest and Auto-DNP disagree on n*"
