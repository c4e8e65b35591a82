"""`python -m dnp_ext.bench speed` against in-process fake WebUIs with a fake clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dnp_ext.bench import __main__ as cli
from dnp_ext.bench import speed
from dnp_ext.bench.speed import SpeedSettings, run_round, run_speed
from dnp_ext.client import SCRIPT_KEY, Txt2ImgResult, WebUIError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeServer:
    """Costs: one sampling pass = `scale` seconds, a DNS pass = steps/20 of that, captioning 0.1; a DNS cache."""

    def __init__(self, clock: Clock, url: str = "http://fake", scale: float = 1.0, preview: bool = True):
        self.clock, self.base_url, self.scale, self.preview = clock, url, scale, preview
        self.cache: dict[str, list[bytes]] = {}
        self.passes = 0
        self.payloads: list[dict[str, Any]] = []

    def get(self, path: str) -> Any:
        assert path == speed.CACHE_PATH
        return {"dns_passes": self.passes}

    def txt2img(self, payload: dict[str, Any]) -> Txt2ImgResult:
        self.payloads.append(payload)
        cost = self.scale
        images = [f"img {payload['seed']}".encode()]
        script = payload.get("alwayson_scripts", {}).get(SCRIPT_KEY)
        if script:
            args = script["args"][0]
            if "dns_preview" in args and not self.preview:
                raise WebUIError("HTTP 422", status=422, message="unknown argument(s) 'dns_preview'")
            key = json.dumps(payload, sort_keys=True)
            if key not in self.cache:
                steps = args.get("dns_steps") or payload["steps"]
                cost += self.scale * steps / payload["steps"] * args.get("dns_preview", 1.0) + 0.1
                self.passes += 1
                self.cache[key] = [b"dnp " + images[0]]
            images = self.cache[key]
        self.clock.now += cost
        return Txt2ImgResult(images, {}, ["info"])


def test_payloads_of_the_variants():
    s = SpeedSettings(steps=20, captioner="blip", preview=0.25, sampler="Euler")
    plain = s.payload("plain", 7)
    assert "alwayson_scripts" not in plain and plain["seed"] == 7 and plain["batch_size"] == 2
    assert plain["sampler_name"] == "Euler" and "scheduler" not in plain
    args = s.payload("dnp_half_steps", 7)["alwayson_scripts"][SCRIPT_KEY]["args"][0]
    assert args == {"enabled": True, "captioner": "blip", "dns_scale": 7.5, "dns_steps": 10}
    assert s.payload("dnp_preview", 7)["alwayson_scripts"][SCRIPT_KEY]["args"][0]["dns_preview"] == 0.25


def test_round_times_each_variant_and_checks_the_hit():
    clock = Clock()
    server = FakeServer(clock)
    rnd = run_round(server, SpeedSettings(), 100, speed.VARIANTS, {}, clock)
    assert rnd.seconds == pytest.approx(
        {"plain": 1.0, "dnp": 2.1, "dnp_half_steps": 1.6, "dnp_preview": 1.6, "dnp_cache_hit": 1.0}
    )
    assert rnd.hit_identical is True and rnd.hit_dns_passes == 0
    seeds = {p["seed"] for p in server.payloads}
    assert seeds == {100}
    hit, full = server.payloads[-1], server.payloads[1]
    assert hit == full


def test_speed_table_medians_ratios_and_fresh_seeds(tmp_path: Path):
    clock = Clock()
    server = FakeServer(clock)
    result = run_speed([server], SpeedSettings(), rounds=3, warmup=1, seed_start=10, clock=clock)
    assert [r.seed for r in result.rounds] == [10, 12, 14]  # batch 2: seeds never overlap
    rows = {r["variant"]: r for r in result.rows()}
    assert rows["dnp"]["ratio"] == pytest.approx(2.1) and rows["dnp_cache_hit"]["ratio"] == pytest.approx(1.0)
    assert rows["plain"]["n"] == 3
    table = result.markdown()
    assert "| Auto-DNP, DNS preview 0.5 | 1.60 s | 1.60x |" in table
    assert "bit-identical to the miss: 3 of 3" in table and "during cache hits: 0" in table
    # every timed full run was a miss: one DNS pass each, 4 variants x (3 rounds + 1 warm-up) - hits
    assert server.passes == 3 * 4


def test_rounds_shared_over_several_webuis_ratios_within_a_round():
    clock = Clock()
    fast, slow = FakeServer(clock, "http://a", 1.0), FakeServer(clock, "http://b", 3.0)
    # one shared fake clock is not thread-safe; time with each server's own cost instead
    result = run_speed([fast, slow], SpeedSettings(), rounds=4, warmup=0, seed_start=1, variants=("plain", "dnp"))
    assert sorted(r.url for r in result.rounds) == ["http://a", "http://a", "http://b", "http://b"]
    assert len({p["seed"] for p in fast.payloads} & {p["seed"] for p in slow.payloads}) == 0


def test_server_without_preview_is_reported_not_fatal():
    clock = Clock()
    result = run_speed([FakeServer(clock, preview=False)], SpeedSettings(), 2, 0, 1, clock=clock)
    assert "dnp_preview" in result.unsupported
    assert "dnp_preview" not in {r["variant"] for r in result.rows()}
    assert "dnp_preview: not run" in result.markdown()


def test_cli_writes_table_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    clock = Clock()
    servers: list[FakeServer] = []

    def client(url: str, *args: Any) -> FakeServer:
        servers.append(FakeServer(clock, url))
        return servers[-1]

    monkeypatch.setattr(speed, "WebUIClient", client)
    monkeypatch.setattr(speed.time, "perf_counter", clock)
    out = tmp_path / "speed"
    argv = ["speed", "--url", "http://x", "--rounds", "2", "--seed", "5", "--out", str(out), "--size", "128x96"]
    assert cli.main(argv) == 0
    data = json.loads((out / "speed.json").read_text())
    assert data["urls"] == ["http://x"] and data["settings"]["width"] == 128 and data["settings"]["height"] == 96
    assert [r["seed"] for r in data["rounds"]] == [5, 7]
    assert (out / "speed.md").read_text() in capsys.readouterr().out
    assert cli.main(["speed", "--variants", "dnp"]) == 2
    assert cli.main(["speed", "--preview", "0"]) == 2
