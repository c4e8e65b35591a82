"""`python -m dnp_ext.bench` against a real WebUI (tiny checkpoint, tiny captioners), scored with a tiny
random CLIP built here: every method, every report file, and a rerun that redoes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dnp_ext.bench import __main__ as cli
from dnp_ext.bench import pnginfo
from dnp_ext.bench.client import SCRIPT_KEY
from dnp_ext.bench.run import Runner, parse_negative, parse_params

from .conftest import WebUI


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    torch.set_num_threads(1)
    from tests.tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def test_bench_end_to_end(
    webui: WebUI,
    tiny_clip: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert SCRIPT_KEY in webui.get("/sdapi/v1/scripts")["txt2img"], "the DNP script is not registered"
    webui.use_tiny_captioners()
    out = tmp_path / "bench"
    argv = [
        "--url", webui.base_url,
        "--out", str(out),
        "--prompts", "ae:animals,objects",
        "--per-category", "2",
        "--seeds", "1",  # several seeds per prompt: tests/test_bench_cli.py (fake WebUI)
        "--steps", "4",
        "--size", "64x64",
        "--sampler", "Euler",
        "--user-negative", "blurry, watermark",
        "--clip-model", str(tiny_clip),
        "--device", "cpu",
        "--bootstrap", "200",
        "--no-progress",
    ]  # fmt: skip
    if webui.auth:
        argv += ["--api-auth", ":".join(webui.auth)]
    total = 4 * 1 * 5  # prompts x seeds x methods

    # interrupted (Ctrl-C) after 7 images ...
    calls = {"n": 0}
    real_run_job = Runner.run_job

    def interrupting(self: Runner, job, prompts, client=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real_run_job(self, job, prompts, client)

    monkeypatch.setattr(Runner, "run_job", interrupting)
    assert cli.main(argv) == 130
    monkeypatch.setattr(Runner, "run_job", real_run_job)
    capsys.readouterr()
    # ... and resumed: nothing made twice
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert f"generated {total - 7}, already there 7, skipped 0" in err, err
    keys = [(r["index"], r["seed"], r["method"]) for r in map(json.loads, (out / "manifest.jsonl").open())]
    assert len(keys) == len(set(keys)) == total

    rdir = out / "report"
    for name in ["results.json", "table.md", "plot.svg", "contact_ae.html"]:
        assert (rdir / name).stat().st_size > 0, name
    data = json.loads((rdir / "results.json").read_text())
    images = data["images"]
    assert len(images) == total
    by = {(i["index"], i["seed"], i["method"]): i for i in images}

    for im in images:
        info = pnginfo.read_text((out / im["file"]).read_bytes())["parameters"]
        assert info.startswith(im["prompt"]) and "Steps: 4" in info and "Size: 64x64" in info
        assert (parse_negative(info) or "") == im["negative_prompt"], im["method"]
        assert -1.0 <= im["clip_full"] <= 1.0 and im["clip_min"] is not None
    for (idx, seed, method), im in by.items():
        if method == "dnp":
            assert im["caption"], "auto-DNP produced no caption"
            params = parse_params(pnginfo.read_text((out / im["file"]).read_bytes())["parameters"])
            assert "DNP" in params and params.get("DNP captioner") == "blip2"
            dns = (out / im["dns_file"]).read_bytes()
            assert dns != (out / im["file"]).read_bytes()
        if method == "universal":
            assert im["negative_prompt"] == data["settings"]["universal_negative"]
        if method == "user":
            assert im["negative_prompt"] == "blurry, watermark"
        if method == "random_caption":
            donor = by[(im["donor"]["index"], seed, "dnp")]
            assert im["donor"]["index"] != idx and im["negative_prompt"] == donor["negative_prompt"]
    # a negative changes the picture: auto-DNP's images are not the plain ones
    assert any(
        (out / by[(i, s, "dnp")]["file"]).read_bytes() != (out / by[(i, s, "plain")]["file"]).read_bytes()
        for i, s, m in by
        if m == "plain"
    )
    table = (rdir / "table.md").read_text()
    assert "## ae: CLIP min-object" in table and "| auto-DNP |" in table

    # a rerun finds everything done
    assert cli.main(argv) == 0
    assert f"generated 0, already there {total}" in capsys.readouterr().err
    print(table)
