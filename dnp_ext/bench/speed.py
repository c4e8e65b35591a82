"""python -m dnp_ext.bench speed: what Auto-DNP costs over a plain txt2img, against running WebUIs.

Each round times, back to back on one WebUI and with the same seeds: plain, Auto-DNP (full DNS), Auto-DNP
with the DNS steps halved, Auto-DNP with a DNS preview, and Auto-DNP again with the full-DNS settings (a
DNS cache hit). Rounds use fresh seeds, so every run but the hit is a cache miss. A round's ratio is a
variant's time over that round's plain time; the table shows the median time and the median ratio.
With several ``--url`` the rounds are shared out over the WebUIs (one thread each); ratios stay within a
round, so WebUIs on different hardware still give one table.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .client import SCRIPT_KEY, ClientError, Txt2ImgResult, WebUIClient, WebUIError, txt2img_body

VARIANTS = ("plain", "dnp", "dnp_half_steps", "dnp_preview", "dnp_cache_hit")
LABELS = {
    "plain": "plain",
    "dnp": "Auto-DNP, full DNS",
    "dnp_half_steps": "Auto-DNP, DNS steps halved",
    "dnp_preview": "Auto-DNP, DNS preview {preview:g}",
    "dnp_cache_hit": "Auto-DNP, DNS cache hit",
}
CACHE_PATH = "/dnp/v1/cache"


class Client(Protocol):
    base_url: str

    def txt2img(self, payload: dict[str, Any]) -> Txt2ImgResult: ...

    def get(self, path: str) -> Any: ...


@dataclass
class SpeedSettings:
    prompt: str = "a cat and a dog in a garden"
    steps: int = 20
    width: int = 256
    height: int = 256
    batch_size: int = 2
    cfg_scale: float = 7.0
    sampler: str | None = None
    scheduler: str | None = None
    captioner: str = "blip"
    dns_scale: float = 7.5
    preview: float = 0.5

    def payload(self, variant: str, seed: int) -> dict[str, Any]:
        body = txt2img_body(
            self.prompt,
            "",
            seed,
            steps=self.steps,
            width=self.width,
            height=self.height,
            cfg_scale=self.cfg_scale,
            batch_size=self.batch_size,
            sampler=self.sampler,
            scheduler=self.scheduler,
        )
        if variant != "plain":
            args: dict[str, Any] = {"enabled": True, "captioner": self.captioner, "dns_scale": self.dns_scale}
            if variant == "dnp_half_steps":
                args["dns_steps"] = max(1, self.steps // 2)
            if variant == "dnp_preview":
                args["dns_preview"] = self.preview
            body["alwayson_scripts"] = {SCRIPT_KEY: {"args": [args]}}
        return body


@dataclass
class Round:
    url: str
    seed: int
    seconds: dict[str, float] = field(default_factory=dict)
    hit_identical: bool | None = None  # the cache hit's images and infotexts equal the full run's
    hit_dns_passes: int | None = None  # DNS passes the server counted during the hit (0: a real hit)


@dataclass
class SpeedResult:
    settings: SpeedSettings
    rounds: list[Round]
    unsupported: dict[str, str]  # variant -> why the server refused it

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for v in VARIANTS:
            times = [r.seconds[v] for r in self.rounds if v in r.seconds]
            if not times:
                continue
            ratios = [r.seconds[v] / r.seconds["plain"] for r in self.rounds if v in r.seconds and "plain" in r.seconds]
            out.append(
                {
                    "variant": v,
                    "label": LABELS[v].format(preview=self.settings.preview),
                    "n": len(times),
                    "median_s": statistics.median(times),
                    "ratio": statistics.median(ratios) if ratios else None,
                }
            )
        return out

    def markdown(self) -> str:
        s = self.settings
        lines = [
            f"{s.width}x{s.height}, {s.steps} steps, batch {s.batch_size}, captioner {s.captioner}, "
            f"median of {len(self.rounds)} rounds",
            "",
            "| run | median time | vs plain |",
            "|---|---|---|",
        ]
        for row in self.rows():
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            lines.append(f"| {row['label']} | {row['median_s']:.2f} s | {ratio} |")
        hits = [r.hit_identical for r in self.rounds if r.hit_identical is not None]
        if hits:
            lines.append(f"\ncache hit bit-identical to the miss: {sum(hits)} of {len(hits)} rounds")
        passes = [r.hit_dns_passes for r in self.rounds if r.hit_dns_passes is not None]
        if passes:
            lines.append(f"DNS passes the server counted during cache hits: {sum(passes)}")
        for v, why in self.unsupported.items():
            lines.append(f"{v}: not run, the server refused it ({why})")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": asdict(self.settings),
            "rows": self.rows(),
            "rounds": [asdict(r) for r in self.rounds],
            "unsupported": self.unsupported,
        }


def dns_passes(client: Client) -> int | None:
    """The server's count of DNS passes so far, or None when it has no such counter."""
    try:
        stats = client.get(CACHE_PATH)
    except ClientError:
        return None
    value = stats.get("dns_passes") if isinstance(stats, dict) else None
    return value if isinstance(value, int) else None


def _same(a: Txt2ImgResult, b: Txt2ImgResult) -> bool:
    return a.images == b.images and a.infotexts == b.infotexts


def run_round(
    client: Client,
    settings: SpeedSettings,
    seed: int,
    variants: Sequence[str],
    unsupported: dict[str, str],
    clock: Callable[[], float] = time.perf_counter,
) -> Round:
    """One round: every variant once, same seeds; the cache hit right after the full run it repeats."""
    rnd = Round(client.base_url, seed)
    full: Txt2ImgResult | None = None
    for v in variants:
        if v in unsupported:
            continue
        if v == "dnp_cache_hit" and full is None:
            continue
        before = dns_passes(client) if v == "dnp_cache_hit" else None
        payload = settings.payload("dnp" if v == "dnp_cache_hit" else v, seed)
        start = clock()
        try:
            result = client.txt2img(payload)
        except WebUIError as e:
            if e.status == 422 and v != "plain":
                unsupported[v] = e.message or str(e)
                continue
            raise
        rnd.seconds[v] = clock() - start
        if v == "dnp":
            full = result
        elif v == "dnp_cache_hit":
            assert full is not None
            rnd.hit_identical = _same(full, result)
            after = dns_passes(client) if before is not None else None
            rnd.hit_dns_passes = None if after is None or before is None else after - before
    return rnd


def run_speed(
    clients: Sequence[Client],
    settings: SpeedSettings,
    rounds: int,
    warmup: int = 1,
    seed_start: int | None = None,
    variants: Sequence[str] = VARIANTS,
    log: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> SpeedResult:
    """Warm-up rounds on every WebUI (not timed), then the rounds shared out over the WebUIs."""
    if seed_start is None:
        seed_start = random.randrange(1, 2**31 - 10**6)  # fresh seeds: earlier runs never make a hit
    stride = max(1, settings.batch_size)
    unsupported: dict[str, str] = {}
    done: list[Round] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int, client: Client) -> None:
        try:
            for w in range(warmup):
                run_round(client, settings, seed_start + (10**5 + i * warmup + w) * stride, variants, unsupported)
            for r in range(i, rounds, len(clients)):
                rnd = run_round(client, settings, seed_start + r * stride, variants, unsupported, clock)
                with lock:
                    done.append(rnd)
                if log:
                    times = ", ".join(f"{k} {v:.2f}s" for k, v in rnd.seconds.items())
                    log(f"round {r + 1}/{rounds} on {client.base_url}: {times}")
        except BaseException as e:  # handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, c), daemon=True) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    done.sort(key=lambda r: r.seed)
    return SpeedResult(settings, done, unsupported)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dnp_ext.bench speed",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--url", action="append", default=None, help="a running WebUI; repeatable (rounds shared out)")
    ap.add_argument("--api-auth", default=None, metavar="USER:PASS")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per request")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (the median is reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds per WebUI first (model loads)")
    ap.add_argument("--seed", type=int, default=None, help="first seed (default: random, so no earlier hit)")
    ap.add_argument("--prompt", default=SpeedSettings.prompt)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", default="256x256", metavar="WxH")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--cfg-scale", type=float, default=7.0)
    ap.add_argument("--sampler", default=None, help="sampler_name (default: the WebUI's)")
    ap.add_argument("--scheduler", default=None)
    ap.add_argument("--captioner", default="blip", choices=["blip2", "blip", "webui-blip"])
    ap.add_argument("--dns-scale", type=float, default=7.5)
    ap.add_argument("--preview", type=float, default=0.5, help="dns_preview of the preview variant")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--out", type=Path, default=Path("bench-speed"), help="folder for speed.md and speed.json")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or "plain" not in variants:
        allowed = ", ".join(VARIANTS)
        print(f"--variants must include plain and be among {allowed}; got {bad or variants}", file=sys.stderr)
        return 2
    if a.rounds < 1 or not 0 < a.preview <= 1:
        print("--rounds must be at least 1 and --preview in (0, 1]", file=sys.stderr)
        return 2
    w, _, h = a.size.lower().partition("x")
    settings = SpeedSettings(
        prompt=a.prompt,
        steps=a.steps,
        width=int(w),
        height=int(h or w),
        batch_size=a.batch_size,
        cfg_scale=a.cfg_scale,
        sampler=a.sampler,
        scheduler=a.scheduler,
        captioner=a.captioner,
        dns_scale=a.dns_scale,
        preview=a.preview,
    )
    clients = [WebUIClient(u, a.api_auth, a.timeout, 0) for u in (a.url or ["http://127.0.0.1:7860"])]
    try:
        result = run_speed(clients, settings, a.rounds, a.warmup, a.seed, variants, lambda s: print(s, file=sys.stderr))
    except ClientError as e:
        print(f"the WebUI failed: {e}", file=sys.stderr)
        return 3
    a.out.mkdir(parents=True, exist_ok=True)
    data = result.to_json() | {"urls": [c.base_url for c in clients], "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    (a.out / "speed.json").write_text(json.dumps(data, indent=1))
    table = result.markdown()
    (a.out / "speed.md").write_text(table)
    print(table)
    return 0
