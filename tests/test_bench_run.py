"""Resumable generation against a fake WebUI server (no WebUI, no model)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from dnp_ext.bench import pnginfo
from dnp_ext.bench.client import SCRIPT_KEY, WebUIClient, WebUIError, WebUIUnavailable
from dnp_ext.bench.prompts import PromptSet, load_set
from dnp_ext.bench.run import (
    MANIFEST,
    FolderBusy,
    GenSettings,
    Job,
    Runner,
    SettingsMismatch,
    caption_of,
    folder_lock,
    parse_negative,
    parse_params,
    random_caption_donor,
)
from tests.fake_webui_server import FakeWebUI, make_png

METHODS = ["plain", "dnp", "universal", "random_caption", "user"]


def _settings(**kw: object) -> GenSettings:
    base: dict[str, object] = {
        "steps": 3,
        "width": 64,
        "height": 64,
        "universal_negative": "ugly, blurry",
        "user_negative": "text, watermark",
    }
    base.update(kw)
    return GenSettings(**base)  # type: ignore[arg-type]


def _sets() -> list[PromptSet]:
    return [load_set("ae", per_category=1)]  # 3 prompts


def _runner(url: str, out: Path, **kw: object) -> Runner:
    return Runner(WebUIClient(url, retries=0, retry_wait=0), out, _settings(**kw), log=lambda m: None)


def test_png_text_roundtrip() -> None:
    png = make_png("x", size=8)
    assert pnginfo.read_text(png) == {}
    latin = pnginfo.add_text(png, "parameters", "a cat\nSteps: 3")
    assert pnginfo.read_text(latin) == {"parameters": "a cat\nSteps: 3"}
    uni = pnginfo.add_text(png, "parameters", "ein Bär 🐻")
    assert pnginfo.read_text(uni) == {"parameters": "ein Bär 🐻"}
    PIL = pytest.importorskip("PIL.Image")
    with PIL.open(io.BytesIO(uni)) as im:  # Pillow reads what we wrote
        im.load()
        assert im.info["parameters"] == "ein Bär 🐻" and im.size == (8, 8)


def test_parse_negative() -> None:
    assert parse_negative("a cat\nNegative prompt: ugly, blurry\nSteps: 3, Seed: 1") == "ugly, blurry"
    assert parse_negative("a cat\nNegative prompt: two\nlines\nSteps: 3") == "two\nlines"
    assert parse_negative("a cat\nSteps: 3") is None


def test_caption_from_infotext() -> None:
    info = (
        'a cat\nNegative prompt: blurry, a dog\nSteps: 4, Seed: 3, DNP: "auto, per image, append", '
        'DNP caption: "a dog, running: \\"fast\\"", DNS scale: 7.5'
    )
    params = parse_params(info)
    assert params["DNP"] == "auto, per image, append" and params["DNS scale"] == "7.5"
    assert caption_of(info, {}) == 'a dog, running: "fast"'  # the extension's own key first
    assert caption_of("a cat\nNegative prompt: a dog\nSteps: 4", {}) == "a dog"  # else the negative
    assert caption_of("", {"all_negative_prompts": ["a dog"]}) == "a dog"


def test_grid_first_answer(tmp_path: Path) -> None:
    with FakeWebUI(grid_first=True) as fake:
        _runner(fake.base_url, tmp_path).run(_sets(), [0], ["dnp"], progress=False)
    p0 = "a elephant and a rabbit"
    dnp = (tmp_path / "ae/dnp/0000_0.png").read_bytes()
    info = pnginfo.read_text(dnp)["parameters"]
    assert dnp == pnginfo.add_text(make_png(f"{p0}|{FakeWebUI.caption_for(p0, 0)}|0"), "parameters", info)
    assert "DNS image" in pnginfo.read_text((tmp_path / "ae/dns/0000_0.png").read_bytes())["parameters"]


def test_run_generates_every_method_with_infotext(tmp_path: Path) -> None:
    with FakeWebUI() as fake:
        counts = _runner(fake.base_url, tmp_path).run(_sets(), [0, 1], METHODS, progress=False)
    assert counts == {"generated": 30, "skipped": 0, "failed": 0}
    assert len(fake.requests) == 30
    by = {
        (r["prompt"], r["seed"], r["negative_prompt"], SCRIPT_KEY in r.get("alwayson_scripts", {}))
        for r in fake.requests
    }
    p0 = "a elephant and a rabbit"
    assert (p0, 0, "", False) in by and (p0, 0, "", True) in by  # plain, dnp
    assert (p0, 0, "ugly, blurry", False) in by and (p0, 1, "text, watermark", False) in by
    dnp_req = next(r for r in fake.requests if "alwayson_scripts" in r)
    assert dnp_req["alwayson_scripts"][SCRIPT_KEY]["args"] == [
        {"enabled": True, "captioner": "blip2", "dns_scale": 7.5, "show_dns": True}
    ]
    assert dnp_req["steps"] == 3 and dnp_req["width"] == 64 and dnp_req["batch_size"] == 1

    for method in ["plain", "dnp", "universal", "random_caption", "user", "dns"]:
        files = sorted((tmp_path / "ae" / method).glob("*.png"))
        assert [f.name for f in files] == [f"{i:04d}_{s}.png" for i in (0, 66, 210) for s in (0, 1)]
    dnp_png = (tmp_path / "ae/dnp/0000_1.png").read_bytes()
    info = pnginfo.read_text(dnp_png)["parameters"]
    assert info.startswith(p0) and f"Negative prompt: {FakeWebUI.caption_for(p0, 1)}" in info
    # the fake sends DNS images without infotext: the runner embeds the one from the API answer
    assert "DNP: DNS image" in pnginfo.read_text((tmp_path / "ae/dns/0000_1.png").read_bytes())["parameters"]

    recs = [json.loads(line) for line in (tmp_path / MANIFEST).read_text().splitlines()]
    dnp = {(r["index"], r["seed"]): r for r in recs if r["method"] == "dnp"}
    assert dnp[(0, 1)]["caption"] == FakeWebUI.caption_for(p0, 1)
    # random caption: another prompt's auto-DNP caption, same seed, recorded with its donor
    for r in (r for r in recs if r["method"] == "random_caption"):
        assert r["donor"]["index"] != r["index"] and r["donor"]["seed"] == r["seed"]
        donor = dnp[(r["donor"]["index"], r["seed"])]
        assert r["negative_prompt"] == donor["negative_prompt"] == donor["caption"]
        assert r["negative_prompt"] != dnp[(r["index"], r["seed"])]["caption"]


def test_rerun_skips_everything(tmp_path: Path) -> None:
    with FakeWebUI() as fake:
        _runner(fake.base_url, tmp_path).run(_sets(), [0], METHODS, progress=False)
        n = len(fake.requests)
        counts = _runner(fake.base_url, tmp_path).run(_sets(), [0], METHODS, progress=False)
        assert len(fake.requests) == n
    assert counts == {"generated": 0, "skipped": 15, "failed": 0}


def test_interrupted_run_resumes_without_redoing_work(tmp_path: Path) -> None:
    with FakeWebUI(fail_after=7) as broken:
        with pytest.raises(WebUIUnavailable):
            _runner(broken.base_url, tmp_path).run(_sets(), [0, 1], METHODS, progress=False)
        first = broken.requests[:]
    assert len(first) == 7
    # an image lost after its record was written (crash between the two) is redone
    lost = tmp_path / "ae/plain/0000_0.png"
    assert lost.exists()
    lost.unlink()
    with FakeWebUI() as fake:
        counts = _runner(fake.base_url, tmp_path).run(_sets(), [0, 1], METHODS, progress=False)
    assert counts["generated"] == 30 - 7 + 1 and counts["skipped"] == 6
    key = lambda r: (r["prompt"], r["seed"], r["negative_prompt"], "alwayson_scripts" in r)  # noqa: E731
    redone = [key(r) for r in fake.requests]
    assert len(set(redone)) == len(redone)
    assert set(redone) & {key(r) for r in first} == {("a elephant and a rabbit", 0, "", False)}
    assert len(list(tmp_path.glob("ae/*/*.png"))) == 30 + 6  # + DNS images
    assert not list(tmp_path.glob("**/*.part"))


def test_bigger_run_reuses_smaller_one(tmp_path: Path) -> None:
    with FakeWebUI() as fake:
        _runner(fake.base_url, tmp_path).run(_sets(), [0], ["plain"], progress=False)
        bigger = [load_set("ae", per_category=2)]
        counts = _runner(fake.base_url, tmp_path).run(bigger, [0, 1], ["plain"], progress=False)
    assert counts == {"generated": 12 - 3, "skipped": 3, "failed": 0}


def test_settings_mismatch_is_refused(tmp_path: Path) -> None:
    with FakeWebUI() as fake:
        _runner(fake.base_url, tmp_path, user_negative=None).run(_sets(), [0], ["plain"], progress=False)
        # an unset value may be filled in later ...
        _runner(fake.base_url, tmp_path).run(_sets(), [0], ["user"], progress=False)
        # ... but generation settings may not change
        with pytest.raises(SettingsMismatch, match="steps"):
            _runner(fake.base_url, tmp_path, steps=4).run(_sets(), [0], ["plain"], progress=False)
        with pytest.raises(SettingsMismatch, match="user_negative"):
            _runner(fake.base_url, tmp_path, user_negative="x").run(_sets(), [0], ["user"], progress=False)


def test_basic_auth(tmp_path: Path) -> None:
    with FakeWebUI(auth="me:secret") as fake:
        with pytest.raises(WebUIError, match="401"):
            _runner(fake.base_url, tmp_path).run(_sets(), [0], ["plain"], progress=False)
        r = Runner(WebUIClient(fake.base_url, auth="me:secret", retries=0), tmp_path, _settings())
        assert r.run(_sets(), [0], ["plain"], progress=False)["generated"] == 3
        assert r.client.current_model() == "fake-model.safetensors"


def test_infotext_of_returned_png_is_kept(tmp_path: Path) -> None:
    with FakeWebUI() as fake:
        res = WebUIClient(fake.base_url).txt2img(_settings().payload("a cat", "", 5))
        _runner(fake.base_url, tmp_path).run(_sets(), [5], ["plain"], progress=False)
    assert pnginfo.read_text(res.images[0])["parameters"] == res.infotexts[0]
    saved = (tmp_path / "ae/plain/0000_5.png").read_bytes()
    assert list(pnginfo.read_text(saved)) == ["parameters"]  # not added a second time


def test_random_caption_needs_captions_so_dnp_runs_too(tmp_path: Path) -> None:
    with FakeWebUI() as fake:
        r = _runner(fake.base_url, tmp_path)
        jobs = r.jobs(_sets(), [0], ["random_caption"])
        assert [j.method for j in jobs] == ["dnp"] * 3 + ["random_caption"] * 3
        r.run(_sets(), [0], ["random_caption"], progress=False)
    single = load_set("ae:animals", per_category=1)
    donor = random_caption_donor(Job(single.prompts[0], 0, "random_caption"), single.prompts)
    assert donor is None
    prompts = load_set("ae", per_category=5).prompts
    job = Job(prompts[0], 3, "random_caption")
    picks = {random_caption_donor(job, prompts) for _ in range(5)}
    assert len(picks) == 1 and next(iter(picks)) != prompts[0]  # deterministic, never itself


def test_single_prompt_random_caption_is_reported_not_fatal(tmp_path: Path) -> None:
    logs: list[str] = []
    with FakeWebUI() as fake:
        r = Runner(WebUIClient(fake.base_url, retries=0), tmp_path, _settings(), log=logs.append)
        counts = r.run([load_set("ae:animals", per_category=1)], [0], ["random_caption"], progress=False)
    assert counts == {"generated": 1, "skipped": 0, "failed": 1}
    assert any("no other prompt" in m for m in logs)


def test_non_png_answer_is_converted(tmp_path: Path) -> None:
    Image = pytest.importorskip("PIL.Image")

    class JpegWebUI(FakeWebUI):
        def answer(self, body: dict) -> dict:  # type: ignore[type-arg]
            out = super().answer(body)
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), "red").save(buf, format="JPEG")
            out["images"] = [base64.b64encode(buf.getvalue()).decode()]
            return out

    with JpegWebUI() as fake:
        _runner(fake.base_url, tmp_path).run(_sets(), [0], ["plain"], progress=False)
    data = (tmp_path / "ae/plain/0000_0.png").read_bytes()
    assert pnginfo.is_png(data) and pnginfo.read_text(data)["parameters"].startswith("a elephant and a rabbit")


def test_one_run_per_folder(tmp_path: Path) -> None:
    with FakeWebUI() as fake, folder_lock(tmp_path):
        with pytest.raises(FolderBusy):
            _runner(fake.base_url, tmp_path).run(_sets(), [0], ["plain"], progress=False)
        assert fake.requests == []
    with FakeWebUI() as fake:  # released
        assert _runner(fake.base_url, tmp_path).run(_sets(), [0], ["plain"], progress=False)["generated"] == 3


def test_dnp_preview_method_sends_the_preview_and_keeps_its_own_dns_images(tmp_path: Path) -> None:
    with FakeWebUI() as fake:
        counts = _runner(fake.base_url, tmp_path, dns_preview=0.25).run(
            _sets(), [0], ["dnp", "dnp_preview"], progress=False
        )
    assert counts["generated"] == 6
    args = [r["alwayson_scripts"][SCRIPT_KEY]["args"][0] for r in fake.requests]
    assert sorted(a.get("dns_preview") for a in args if "dns_preview" in a) == [0.25] * 3
    assert sum("dns_preview" not in a for a in args) == 3
    for folder in ("dnp", "dnp_preview", "dns", "dns_preview"):
        assert len(list((tmp_path / "ae" / folder).glob("*.png"))) == 3, folder
    recs = [json.loads(line) for line in (tmp_path / MANIFEST).read_text().splitlines()]
    assert {r["dns_file"].split("/")[1] for r in recs} == {"dns", "dns_preview"}
    assert all(r["caption"] for r in recs)


def test_jobs_shared_out_over_several_webuis(tmp_path: Path) -> None:
    with FakeWebUI() as a, FakeWebUI() as b:
        clients = [WebUIClient(f.base_url, retries=0, retry_wait=0) for f in (a, b)]
        runner = Runner(clients, tmp_path, _settings(), log=lambda m: None)
        counts = runner.run(_sets(), [0, 1, 2, 3], METHODS, progress=False)
    assert counts == {"generated": 60, "skipped": 0, "failed": 0}
    assert len(a.requests) + len(b.requests) == 60 and a.requests and b.requests
    recs = [json.loads(line) for line in (tmp_path / MANIFEST).read_text().splitlines()]
    assert len({(r["index"], r["seed"], r["method"]) for r in recs}) == 60
    # random_caption ran after every auto-DNP job, so each found its donor's caption
    assert all(r["negative_prompt"] for r in recs if r["method"] == "random_caption")
    with FakeWebUI() as a, FakeWebUI() as b:  # a rerun skips everything
        clients = [WebUIClient(f.base_url, retries=0, retry_wait=0) for f in (a, b)]
        counts = Runner(clients, tmp_path, _settings(), log=lambda m: None).run(_sets(), [0, 1, 2, 3], METHODS, False)
    assert counts["skipped"] == 60 and not a.requests and not b.requests
