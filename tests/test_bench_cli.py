"""`python -m dnp_ext.bench` end to end against the fake WebUI, scored with a tiny random CLIP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dnp_ext.bench import __main__ as cli
from dnp_ext.bench.run import Runner
from tests.fake_webui_server import FakeWebUI


def _argv(url: str, out: Path, clip: Path, *extra: str) -> list[str]:
    return [
        "--url",
        url,
        "--out",
        str(out),
        "--prompts",
        "ae",
        "--prompts",
        "hh:hands,people",
        "--per-category",
        "1",
        "--seeds",
        "2",
        "--steps",
        "2",
        "--size",
        "64x64",
        "--user-negative",
        "watermark",
        "--clip-model",
        str(clip),
        "--device",
        "cpu",
        "--bootstrap",
        "200",
        "--no-progress",
        *extra,
    ]


def test_cli_end_to_end_and_resume(
    tmp_path: Path, tiny_clip: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    total = (3 + 2) * 2 * 5  # prompts x seeds x methods
    calls = {"n": 0}
    real_run_job = Runner.run_job

    def interrupting(self: Runner, job, prompts, client=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt
        return real_run_job(self, job, prompts, client)

    with FakeWebUI() as fake:
        monkeypatch.setattr(Runner, "run_job", interrupting)
        assert cli.main(_argv(fake.base_url, out, tiny_clip)) == 130
        assert "rerun the same command to resume" in capsys.readouterr().err
        assert len(fake.requests) == 8
        monkeypatch.setattr(Runner, "run_job", real_run_job)

        assert cli.main(_argv(fake.base_url, out, tiny_clip)) == 0
        assert len(fake.requests) == total  # nothing generated twice
        err = capsys.readouterr().err
        assert f"generated {total - 8}, already there 8" in err

        rdir = out / "report"
        for name in ["results.json", "table.md", "plot.svg", "contact_ae.html", "contact_hh.html"]:
            assert (rdir / name).stat().st_size > 0, name
        data = json.loads((rdir / "results.json").read_text())
        assert len(data["images"]) == total
        assert data["scorers"] == {"clip": str(tiny_clip)}
        assert data["webui"]["sd_model_checkpoint"] == "fake-model.safetensors"
        ae = [i for i in data["images"] if i["set"] == "ae"]
        hh = [i for i in data["images"] if i["set"] == "hh"]
        assert all(-1 <= i["clip_full"] <= 1 and i["clip_min"] is not None for i in ae)
        assert all(i["clip_min"] is None for i in hh)  # no object split for the H&H set
        summary = data["summary"]
        assert set(summary["ae"]["all"]) == {"plain", "dnp", "universal", "random_caption", "user"}
        assert "clip_min" in summary["ae"]["all"]["dnp"] and "clip_min" not in summary["hh"]["all"]["dnp"]
        table = (rdir / "table.md").read_text()
        assert "## ae: CLIP min-object" in table and "## hh: CLIP full-prompt" in table

        # a rerun generates and scores nothing
        scores = out / "scores.json"
        before = scores.stat().st_mtime_ns
        assert cli.main(_argv(fake.base_url, out, tiny_clip)) == 0
        assert len(fake.requests) == total and scores.stat().st_mtime_ns == before
        assert f"generated 0, already there {total}" in capsys.readouterr().err

    # report only, from cached scores, without a WebUI
    (rdir / "table.md").unlink()
    assert cli.main(_argv("http://127.0.0.1:9", out, tiny_clip, "--no-generate", "--no-score")) == 0
    assert (rdir / "table.md").read_text() == table


def test_cli_errors(tmp_path: Path, tiny_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--methods", "plain,nope", "--out", str(tmp_path)]) == 2
    assert "unknown methods" in capsys.readouterr().err
    assert cli.main(["--methods", "user", "--out", str(tmp_path)]) == 2
    assert "--user-negative" in capsys.readouterr().err
    assert cli.main(["--prompts", str(tmp_path / "none.txt"), "--out", str(tmp_path)]) == 2
    # WebUI not reachable: clear message, resumable
    rc = cli.main(
        [
            "--url",
            "http://127.0.0.1:9",
            "--retries",
            "0",
            "--out",
            str(tmp_path / "o"),
            "--per-category",
            "1",
            "--seeds",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 3 and "cannot reach" in capsys.readouterr().err
    # a missing optional scorer names its package
    with FakeWebUI() as fake:
        argv = [
            "--url",
            fake.base_url,
            "--out",
            str(tmp_path / "x"),
            "--prompts",
            "hh:hands",
            "--seeds",
            "1",
            "--per-category",
            "1",
            "--methods",
            "plain",
            "--steps",
            "1",
            "--clip-model",
            str(tiny_clip),
            "--device",
            "cpu",
            "--no-progress",
            "--extra-scorers",
            "hpsv2",
        ]
        try:
            import hpsv2  # noqa: F401
        except ImportError:
            assert cli.main(argv) == 2
            assert "pip install hpsv2" in capsys.readouterr().err


def test_module_entry_point_help() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "dnp_ext.bench", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    assert "--per-category" in res.stdout and "--api-auth" in res.stdout
