"""Captioner layer on tiny random-weight models built at test time (no Hub access).

Run against other transformers releases with tests/compat_transformers.sh VERSION.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) does not put the repo root there
    sys.path.insert(0, str(ROOT))

import dnp_ext.captioners as caps  # noqa: E402
from dnp_ext.captioners import (  # noqa: E402
    DEFAULT_BLIP,
    DEFAULT_BLIP2,
    Blip2Captioner,
    BlipCaptioner,
    Captioner,
    CaptionerError,
    make_captioner,
)
from dnp_ext.captioners import base as caps_base  # noqa: E402
from tests.tiny_captioners import build_tiny_blip, build_tiny_blip2  # noqa: E402

torch.set_num_threads(1)

SETTINGS = "Settings > Diffusion-Negative Prompting"
KINDS = ["blip2", "blip2-legacy", "blip"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("tiny-captioners")
    return {
        "blip2": build_tiny_blip2(out / "blip2", image_token_index=True),
        "blip2-legacy": build_tiny_blip2(out / "blip2-legacy", image_token_index=False),
        "blip": build_tiny_blip(out / "blip"),
    }


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    noise = [Image.fromarray((np.random.RandomState(i).rand(40, 56, 3) * 255).astype("uint8")) for i in range(3)]
    return [*noise, Image.new("RGB", (64, 48), "white")]


@pytest.fixture(autouse=True)
def _empty_registry():
    caps.clear_cache()
    yield
    caps.clear_cache()


def new_captioner(models: dict[str, Path], kind: str, **kwargs) -> Captioner:
    cls = BlipCaptioner if kind == "blip" else Blip2Captioner
    kwargs.setdefault("max_new_tokens", 8)
    return cls(str(models[kind]), "cpu", **kwargs)


def assert_actionable(err: CaptionerError, captioner: str, setting: str) -> None:
    msg = str(err)
    assert f"'{captioner}'" in msg
    assert setting in msg
    assert SETTINGS in msg
    assert "Fix:" in msg
    assert err.captioner == captioner and err.setting == setting


# -- captioning ----------------------------------------------------------------------------------------


def test_fixture_layouts(models: dict[str, Path]) -> None:
    new = json.loads((models["blip2"] / "config.json").read_text())
    legacy = json.loads((models["blip2-legacy"] / "config.json").read_text())
    assert isinstance(new.get("image_token_index"), int)
    assert legacy.get("image_token_index") is None
    assert (models["blip2"] / "processor_config.json").exists()
    assert not (models["blip2-legacy"] / "processor_config.json").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_caption_one_and_two_images(models, images, kind: str) -> None:
    cap = new_captioner(models, kind)
    assert not cap.loaded
    one = cap.caption(images[:1])
    assert cap.loaded
    two = cap.caption(images[:2])
    assert isinstance(one, list) and isinstance(two, list)
    assert len(one) == 1 and len(two) == 2
    for text in one + two:
        assert isinstance(text, str) and text == text.strip()
    assert cap.caption([]) == []


@pytest.mark.parametrize("kind", KINDS)
def test_batch_equals_single_calls_in_order(models, images, kind: str) -> None:
    cap = new_captioner(models, kind)
    batch = cap.caption(images)
    singles = [cap.caption([im])[0] for im in images]
    assert batch == singles
    # The tiny models do look at the image, so the order check below means something.
    assert len(set(batch)) >= 2
    assert cap.caption(images[::-1]) == batch[::-1]


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_across_loads(models, images, kind: str) -> None:
    first = new_captioner(models, kind).caption(images)
    second = new_captioner(models, kind).caption(images)
    assert first == second


def test_legacy_blip2_folder_matches_current_layout(models, images) -> None:
    """Same weights, with and without image_token_index: the placeholder handling must not change a thing."""
    current = new_captioner(models, "blip2").caption(images)
    legacy_cap = new_captioner(models, "blip2-legacy")
    assert legacy_cap.caption(images) == current
    model = legacy_cap._loaded.model
    if legacy_cap._expand_image_tokens:  # transformers >= 4.45 needs an id for the placeholders
        index = model.config.image_token_index
        assert 0 <= index < model.get_input_embeddings().num_embeddings
        assert index != model.config.text_config.bos_token_id


@pytest.mark.parametrize("kind", ["blip2", "blip"])
def test_generation_settings_reach_generate(models, images, kind: str) -> None:
    cap = new_captioner(models, kind, max_new_tokens=5, num_beams=2)
    cap.caption(images[:1])
    model = cap._loaded.model
    seen: list[dict] = []
    real = model.generate

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    model.generate = spy
    out = cap.caption(images[:2])
    assert len(out) == 2
    assert len(seen) == 1  # one batched call for the batch
    assert seen[0]["max_new_tokens"] == 5 and seen[0]["num_beams"] == 2 and seen[0]["do_sample"] is False


def test_max_new_tokens_limits_caption(models, images) -> None:
    cap = new_captioner(models, "blip", max_new_tokens=1)
    for text in cap.caption(images):
        assert " " not in text  # one WordPiece token at most
    longer = new_captioner(models, "blip", max_new_tokens=8).caption(images)
    assert any(" " in text for text in longer)


def test_non_rgb_images(models, images) -> None:
    cap = new_captioner(models, "blip2")
    rgb = cap.caption(images[:1])
    assert cap.caption([images[0].convert("RGBA")]) == rgb
    assert len(cap.caption([images[0].convert("L")])) == 1


# -- release policies and devices ----------------------------------------------------------------------


def test_release_offload_keeps_model(models, images, monkeypatch) -> None:
    cap = new_captioner(models, "blip2")
    before = cap.caption(images[:2])
    model = cap._loaded.model
    loads = []
    monkeypatch.setattr(cap, "_load", lambda: loads.append(1))
    emptied = []
    monkeypatch.setattr(caps_base, "empty_device_cache", lambda: emptied.append(1))
    cap.release("offload")
    assert cap.loaded and cap._loaded.model is model
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert emptied == [1]
    assert cap.caption(images[:2]) == before
    assert loads == []  # not reloaded


def test_offload_moves_an_accelerator_model_to_cpu(models, images, monkeypatch) -> None:
    """The offload path for a model that sits on an accelerator, without needing one: record the moves."""
    cap = new_captioner(models, "blip")
    cap.caption(images[:1])
    moves: list[tuple[str, bool]] = []
    monkeypatch.setattr(cap, "_move", lambda loaded, device, *, compute: moves.append((str(device), compute)))
    cap._loaded_on = "cuda:0"
    cap.release("offload")
    assert moves == [("cpu", False)]  # parked without a dtype change
    cap.release("offload")
    assert moves == [("cpu", False)]  # already there
    cap.device = "cuda:0"
    cap._ensure_loaded()
    assert moves[-1] == ("cuda:0", True)


def test_fp16_model_is_cast_back_for_cpu(models, images) -> None:
    cap = new_captioner(models, "blip")
    reference = cap.caption(images[:1])
    # As if it had been loaded for CUDA (fp16) and then parked on the CPU; now the device setting is "cpu".
    cap._loaded.model.half()
    cap._loaded.dtype = torch.float16
    cap._loaded_on = "cuda:0"
    assert cap.caption(images[:1]) == reference
    assert next(cap._loaded.model.parameters()).dtype == torch.float32


def test_release_unload_frees_model(models, images) -> None:
    cap = new_captioner(models, "blip2")
    before = cap.caption(images[:2])
    ref = weakref.ref(cap._loaded.model)
    cap.release("unload")
    gc.collect()
    assert not cap.loaded
    assert ref() is None
    assert cap.caption(images[:2]) == before  # loads again lazily
    assert cap.loaded


def test_release_rejects_unknown_policy(models) -> None:
    cap = new_captioner(models, "blip")
    cap.release("unload")  # nothing loaded: fine
    with pytest.raises(ValueError, match="offload"):
        cap.release("keep")


def test_dtype_defaults() -> None:
    cap = Blip2Captioner("unused", "cpu")
    assert cap.target_dtype("cpu") == torch.float32
    assert cap.target_dtype(torch.device("cuda", 0)) == torch.float16
    assert Blip2Captioner("unused", "cpu", dtype="bfloat16").target_dtype("cuda") == torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_offload_and_unload(models, images) -> None:
    cap = new_captioner(models, "blip2")
    cap.device = "cuda"
    baseline = torch.cuda.memory_allocated()
    out = cap.caption(images)
    assert len(out) == len(images) and all(isinstance(t, str) for t in out)
    params = list(cap._loaded.model.parameters())
    assert params[0].device.type == "cuda"
    assert {p.dtype for p in cap._loaded.model.vision_model.parameters()} == {torch.float16}
    cap.release("offload")
    assert all(p.device.type == "cpu" for p in cap._loaded.model.parameters())
    assert cap.caption(images) == out
    assert next(cap._loaded.model.parameters()).device.type == "cuda"
    cap.release("unload")
    gc.collect()
    assert not cap.loaded
    assert torch.cuda.memory_allocated() <= baseline


# -- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "name", "setting"),
    [(Blip2Captioner, "blip2", "dnp_blip2_model"), (BlipCaptioner, "blip", "dnp_blip_model")],
)
def test_empty_folder_is_explained(tmp_path, images, cls, name, setting) -> None:
    cap = cls(str(tmp_path), "cpu")
    with pytest.raises(CaptionerError) as info:
        cap.caption(images[:1])
    assert_actionable(info.value, name, setting)
    assert "folder holding the model" in str(info.value)
    assert info.value.__cause__ is not None
    assert not cap.loaded


def test_missing_folder_is_explained(tmp_path, images) -> None:
    cap = Blip2Captioner(str(tmp_path / "nowhere" / "blip2"), "cpu")
    with pytest.raises(CaptionerError, match="does not exist") as info:
        cap.caption(images[:1])
    assert_actionable(info.value, "blip2", "dnp_blip2_model")


def test_wrong_model_kind_in_folder(models, images) -> None:
    cap = Blip2Captioner(str(models["blip"]), "cpu")
    with pytest.raises(CaptionerError, match="'blip' model") as info:
        cap.caption(images[:1])
    assert_actionable(info.value, "blip2", "dnp_blip2_model")


def test_incomplete_folder_is_explained(models, images, tmp_path) -> None:
    broken = tmp_path / "blip"
    broken.mkdir()
    for f in models["blip"].iterdir():
        if "safetensors" not in f.name and not f.name.endswith(".bin"):
            (broken / f.name).write_bytes(f.read_bytes())
    with pytest.raises(CaptionerError) as info:
        BlipCaptioner(str(broken), "cpu").caption(images[:1])
    assert_actionable(info.value, "blip", "dnp_blip_model")
    assert info.value.__cause__ is not None


def test_oom_while_loading_is_explained(models, images, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(transformers.Blip2ForConditionalGeneration, "from_pretrained", boom)
    with pytest.raises(CaptionerError, match="out of memory") as info:
        new_captioner(models, "blip2").caption(images[:1])
    assert_actionable(info.value, "blip2", "dnp_blip2_model")
    assert "free memory" in str(info.value) and "another captioner" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_oom_while_captioning_is_explained(models, images) -> None:
    cap = new_captioner(models, "blip")
    cap.caption(images[:1])

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")

    cap._loaded.model.generate = boom
    with pytest.raises(CaptionerError, match="out of memory") as info:
        cap.caption(images[:2])
    assert_actionable(info.value, "blip", "dnp_blip_model")


def test_missing_package_is_explained(models, images, monkeypatch) -> None:
    def missing(*args, **kwargs):
        raise ImportError("requires the protobuf library", name="google.protobuf")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", missing)
    with pytest.raises(CaptionerError, match="protobuf") as info:
        new_captioner(models, "blip").caption(images[:1])
    assert_actionable(info.value, "blip", "dnp_blip_model")
    assert "install" in str(info.value)


def test_unknown_hub_id_offline_fails_fast(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import time
        from PIL import Image
        from dnp_ext.captioners import Blip2Captioner, CaptionerError
        cap = Blip2Captioner("dnp-tests-nobody/no-such-blip2", "cpu")
        start = time.monotonic()
        try:
            cap.caption([Image.new("RGB", (8, 8))])
        except CaptionerError as exc:
            print("ELAPSED", time.monotonic() - start)
            print("CAUSE", type(exc.__cause__).__name__)
            print("MESSAGE", exc)
        else:
            print("NO ERROR")
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert "MESSAGE" in lines, proc.stdout + proc.stderr[-2000:]
    assert float(lines["ELAPSED"]) < 15
    assert lines["CAUSE"] != "NoneType"
    message = lines["MESSAGE"]
    assert "'blip2'" in message and "dnp_blip2_model" in message and SETTINGS in message
    assert "download" in message and "folder holding the model" in message


# -- registry ------------------------------------------------------------------------------------------


def test_registry_reuses_instances(models) -> None:
    first = make_captioner("blip2", str(models["blip2"]), "cpu")
    assert make_captioner("blip2", str(models["blip2"]), "cpu") is first
    assert make_captioner("blip", str(models["blip"]), "cpu") is not first
    assert first in caps.cached_captioners()
    assert make_captioner("blip2", None).source == DEFAULT_BLIP2
    assert make_captioner("blip", "  ").source == DEFAULT_BLIP


def test_registry_drops_stale_source_and_updates_settings(models, images) -> None:
    old = make_captioner("blip2", str(models["blip2"]), "cpu")
    old.caption(images[:1])
    new = make_captioner("blip2", str(models["blip2-legacy"]), "cpu", max_new_tokens=3)
    assert new is not old and not old.loaded  # the old model does not linger in memory
    assert old not in caps.cached_captioners()
    again = make_captioner("blip2", str(models["blip2-legacy"]), "cuda:0", max_new_tokens=6)
    assert again is new and again.device == "cuda:0" and again.max_new_tokens == 6


def test_registry_release_all_and_clear(models, images) -> None:
    a = make_captioner("blip2", str(models["blip2"]), "cpu")
    b = make_captioner("blip", str(models["blip"]), "cpu")
    a.caption(images[:1])
    b.caption(images[:1])
    caps.release_all("offload")
    assert a.loaded and b.loaded
    caps.clear_cache()
    assert not a.loaded and not b.loaded and caps.cached_captioners() == []


def test_registry_unknown_and_custom(images) -> None:
    with pytest.raises(CaptionerError, match="unknown captioner"):
        make_captioner("nope")

    class Fixed(Captioner):
        name = "fixed"

        def __init__(self, source, device):
            self.source, self.device, self.released = source, device, []

        def caption(self, images):
            return [f"caption {i}" for i in range(len(images))]

        def release(self, policy):
            self.released.append(policy)

    caps.register_captioner("fixed", Fixed)
    try:
        cap = make_captioner("fixed", "x")
        assert cap.caption(images[:2]) == ["caption 0", "caption 1"]
        assert "fixed" in caps.available_captioners()
    finally:
        caps._FACTORIES.pop("fixed", None)
        caps._CACHE.pop(("fixed", "x"), None)


def test_cli_builds_both_folders(tmp_path) -> None:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.tiny_captioners", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "blip2" / "config.json").exists() and (tmp_path / "blip" / "config.json").exists()
    assert time.monotonic() - start < 120


# -- pickle weights refused by the host (A1111's safe unpickler) ----------------------------------------

# A1111's modules/safe.py: the zip entries its check accepts; recent torch adds .format_version and others.
A1111_ZIP_NAMES = r"^([^/]+)/((data/\d+)|version|byteorder|.data/serialization_id|(data\.pkl))$"


def a1111_like_check(path: str) -> str | None:
    """What A1111's check_pt says about a file (None: it would load), without a WebUI."""
    import re
    import zipfile

    with zipfile.ZipFile(path) as z:
        bad = [n for n in z.namelist() if not re.match(A1111_ZIP_NAMES, n)]
    return f"bad file inside {path}: {bad[0]}" if bad else None


@pytest.fixture
def a1111_safe_load(monkeypatch):
    """torch.load as A1111 replaces it: None (after printing a report) for a file its check refuses."""
    from dnp_ext.captioners import hf

    real = torch.load

    def load(f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and a1111_like_check(str(f)):
            return None
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    hf.set_pickle_check(a1111_like_check)
    yield
    hf.set_pickle_check(None)


def test_refused_pickle_weights_name_the_cause_and_the_fix(models, images, tmp_path, a1111_safe_load) -> None:
    import re

    from tests.tiny_captioners import save_as_pickle

    folder = save_as_pickle(models["blip2"], tmp_path / "blip2-bin")
    weights = folder / "pytorch_model.bin"
    assert a1111_like_check(str(weights)), "this torch writes a file A1111's check accepts: nothing to test"
    cap = Blip2Captioner(str(folder), "cpu", max_new_tokens=8)
    # the preflight already knows, before any DNS work or loading
    with pytest.raises(CaptionerError) as info:
        cap.check()
    msg = str(info.value)
    assert_actionable(info.value, "blip2", "dnp_blip2_model")
    for word in ("safe unpickler", str(weights), ".format_version", "--disable-safe-unpickle", "safetensors"):
        assert word in msg, f"{word!r} not in: {msg}"
    assert "does not hold a loadable" not in msg
    assert not cap.loaded
    # and so does the load itself (e.g. a source that only fails once loading)
    with pytest.raises(CaptionerError, match="--disable-safe-unpickle"):
        cap.caption(images[:1])

    # the conversion the message gives, run as given, makes the folder load and caption like the original
    command = re.search(r'python -c "([^"]+)"', msg)
    assert command, msg
    subprocess.run([sys.executable, "-c", command.group(1)], check=True, cwd=tmp_path, timeout=600)
    assert (folder / "model.safetensors").is_file()
    cap.check()
    want = Blip2Captioner(str(models["blip2"]), "cpu", max_new_tokens=8).caption(images[:2])
    assert cap.caption(images[:2]) == want


def test_accepted_pickle_weights_load(models, images, tmp_path, monkeypatch) -> None:
    """A host check that accepts the file changes nothing: .bin-only folders load as before."""
    from dnp_ext.captioners import hf
    from tests.tiny_captioners import save_as_pickle

    folder = save_as_pickle(models["blip"], tmp_path / "blip-bin")
    seen: list[str] = []
    monkeypatch.setattr(hf, "_pickle_check", lambda path: seen.append(path))
    cap = BlipCaptioner(str(folder), "cpu", max_new_tokens=8)
    cap.check()
    assert seen == [str(folder / "pytorch_model.bin")]
    assert cap.caption(images[:2]) == BlipCaptioner(str(models["blip"]), "cpu", max_new_tokens=8).caption(images[:2])
    # folders with safetensors are never checked: transformers does not torch.load them
    seen.clear()
    BlipCaptioner(str(models["blip"]), "cpu").check()
    assert seen == []
