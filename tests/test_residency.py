"""dnp_offload_sd_model = auto: the decisions (dnp_ext/residency.py) and the WebUI glue with fakes."""

from __future__ import annotations

from typing import Any

import pytest

from dnp_ext import residency as r
from dnp_ext.captioners.base import ModelCaptioner
from tests.fake_webui import Device
from tests.test_host_glue import captioners, glue, prepared, web  # noqa: F401 - fixtures

GIB = r.GIB


def test_modes_and_legacy_values():
    assert [r.offload_mode(v) for v in (True, False, "always", "never", "auto", None, "x")] == [
        "always",
        "never",
        "always",
        "never",
        "auto",
        "auto",
        "auto",
    ]


def test_need_from_loaded_weights_files_or_parameter_count(tmp_path):
    assert r.captioner_need("blip2", 123, 456, on_gpu=True) == 0
    assert r.captioner_need("blip2", 123, 456, on_gpu=False) == 123
    assert r.captioner_need("blip2", None, 456, on_gpu=False) == 456
    assert r.captioner_need("blip2", None, None, on_gpu=False) == 7_800_000_000
    assert r.captioner_need("blip", None, None, on_gpu=False, half=False) == 4 * 470_000_000
    assert r.captioner_need("other", None, None, on_gpu=False) is None
    (tmp_path / "sub").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"x" * 100)
    (tmp_path / "sub" / "pytorch_model.bin").write_bytes(b"x" * 20)
    (tmp_path / "config.json").write_text("{}")
    assert r.folder_weight_bytes(str(tmp_path)) == 120
    assert r.folder_weight_bytes(str(tmp_path / "missing")) is None


def test_offload_decision():
    need = 8 * GIB
    assert not r.should_offload_sd_model("auto", True, 20 * GIB, need)
    assert r.should_offload_sd_model("auto", True, need + r.MARGIN_BYTES - 1, need)
    assert r.should_offload_sd_model("auto", True, None, need)  # unknown: the safe choice
    assert r.should_offload_sd_model("auto", True, 20 * GIB, None)
    assert r.should_offload_sd_model("always", True, 80 * GIB, 0)
    assert not r.should_offload_sd_model("never", True, 0, need)
    assert not r.should_offload_sd_model("always", False, 0, need)  # off CUDA nothing moves


def test_keep_resident_decision():
    assert r.keep_captioner_resident("auto", True, False, 2 * GIB)
    assert not r.keep_captioner_resident("auto", True, False, GIB - 1)
    assert not r.keep_captioner_resident("auto", True, True, 80 * GIB)  # the SD model had to leave: free it
    assert not r.keep_captioner_resident("always", True, False, 80 * GIB)
    assert not r.keep_captioner_resident("auto", False, False, 80 * GIB)
    assert not r.keep_captioner_resident("auto", True, False, None)


def test_model_captioner_residency_counts_its_tensors():
    torch = pytest.importorskip("torch")

    class Tiny(ModelCaptioner):
        name = "tiny"

        def _load(self) -> Any:
            return torch.nn.Linear(4, 3)  # 15 float32 parameters

        def _move(self, loaded: Any, device: Any, *, compute: bool) -> None:
            loaded.to(device)

        def _caption(self, loaded: Any, images: list[Any]) -> list[str]:
            return ["x"] * len(images)

    c = Tiny("cpu")
    assert c.residency() == (None, False)
    c.caption([object()])
    assert c.residency() == (60, False)


def run_with(web, glue, free: list[int | None], monkeypatch, **options: Any):  # noqa: F811
    """One Auto-DNP run of 2 batches on a fake CUDA captioner; free_vram answers from `free` in turn."""
    web.device_interrogate = Device("cuda:0")
    web.opts.dnp_cache_mb = 0  # every run captions
    for key, value in options.items():
        setattr(web.opts, key, value)
    answers = list(free)
    monkeypatch.setattr(type(glue.host), "free_vram", lambda self: answers.pop(0) if answers else free[-1])
    p = prepared(web, prompt="a castle", batch_size=1, n_iter=2, seed=7)
    glue.script.DnpScript().process(p, {"enabled": True, "captioner": "blip2"})
    assert "init" not in vars(p)
    return [ev[0] for ev in web.events if ev[0] != "token_merging"]


def test_auto_keeps_both_on_a_big_gpu(web, glue, captioners, monkeypatch):  # noqa: F811
    kinds = run_with(web, glue, [40 * GIB], monkeypatch, dnp_offload_sd_model="auto")
    assert kinds == ["caption", "caption"], "no SD model move and no captioner release: both fit"


def test_auto_offloads_on_a_small_gpu(web, glue, captioners, monkeypatch):  # noqa: F811
    kinds = run_with(web, glue, [6 * GIB], monkeypatch, dnp_offload_sd_model="auto")
    assert kinds == ["sd_model_to_cpu", "caption", "caption", "release", "sd_model_to_device"]


def test_auto_releases_when_no_room_is_left_or_unload_is_asked(web, glue, captioners, monkeypatch):  # noqa: F811
    kinds = run_with(web, glue, [40 * GIB, GIB // 2], monkeypatch, dnp_offload_sd_model="auto")
    assert kinds == ["caption", "caption", "release"]
    web.events.clear()
    kinds = run_with(web, glue, [40 * GIB], monkeypatch, dnp_offload_sd_model="auto", dnp_captioner_after="unload")
    assert kinds == ["caption", "caption", "release"]


def test_auto_with_unknown_free_memory_offloads(web, glue, captioners, monkeypatch):  # noqa: F811
    kinds = run_with(web, glue, [None], monkeypatch, dnp_offload_sd_model="auto")
    assert kinds[0] == "sd_model_to_cpu" and kinds[-1] == "sd_model_to_device"


@pytest.mark.parametrize(("value", "moves"), [("always", True), ("never", False), (True, True), (False, False)])
def test_always_and_never(web, glue, captioners, monkeypatch, value, moves):  # noqa: F811
    kinds = run_with(web, glue, [80 * GIB], monkeypatch, dnp_offload_sd_model=value)
    core = ["caption", "caption", "release"]
    assert kinds == (["sd_model_to_cpu", *core, "sd_model_to_device"] if moves else core)
