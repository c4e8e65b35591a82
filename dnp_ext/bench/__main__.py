"""python -m dnp_ext.bench: generate with a running WebUI, score (A&E CLIP protocol), report.

``python -m dnp_ext.bench speed --help``: what Auto-DNP costs in time (dnp_ext/bench/speed.py).

See docs/BENCHMARK.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .client import WebUIClient, WebUIError, WebUIUnavailable
from .prompts import PromptSet, load_set, universal_negative
from .run import METHODS, FolderBusy, GenSettings, Runner, SettingsMismatch, folder_lock


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dnp_ext.bench", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    g = ap.add_argument_group("WebUI")
    g.add_argument(
        "--url",
        action="append",
        default=None,
        help="base URL of a running WebUI (default http://127.0.0.1:7860); repeatable: jobs are shared out",
    )
    g.add_argument("--api-auth", default=None, metavar="USER:PASS", help="credentials of the WebUI's --api-auth")
    g.add_argument("--timeout", type=float, default=900.0, help="seconds per request")
    g.add_argument("--retries", type=int, default=2, help="retries on connection errors and HTTP 5xx")

    g = ap.add_argument_group("what to run")
    g.add_argument(
        "--prompts",
        action="append",
        default=None,
        metavar="SET",
        help="repeatable: 'ae', 'ae:animals,objects', 'hh', or a file (one prompt a line, or JSON "
        "list / {category: [prompts]}); default: ae",
    )
    g.add_argument("--per-category", type=int, default=50, help="first N prompts of each category (0: all)")
    g.add_argument("--seeds", type=int, default=32, help="number of seeds per prompt")
    g.add_argument("--seed-start", type=int, default=0, help="first seed")
    g.add_argument("--seed-list", default=None, help="explicit comma-separated seeds (overrides --seeds)")
    g.add_argument(
        "--methods",
        default=None,
        help=f"comma list of {', '.join(METHODS)}; default: all but 'dnp_preview' and 'user', plus 'user' when "
        "--user-negative is given",
    )
    g.add_argument("--user-negative", default=None, help="negative prompt of the 'user' method")
    g.add_argument(
        "--universal-negative",
        default=None,
        help="override the fixed list of the 'universal' method (default: dnp_ext/data/universal_negative.txt)",
    )
    g.add_argument("--out", type=Path, default=Path("bench-out"), help="output folder (reruns resume)")

    g = ap.add_argument_group("generation")
    g.add_argument("--steps", type=int, default=50)
    g.add_argument("--width", type=int, default=512)
    g.add_argument("--height", type=int, default=512)
    g.add_argument("--size", default=None, metavar="WxH", help="sets width and height")
    g.add_argument("--cfg-scale", type=float, default=7.5)
    g.add_argument("--sampler", default=None, help="sampler_name (default: the WebUI's)")
    g.add_argument("--scheduler", default=None, help="scheduler (default: the WebUI's)")
    g.add_argument("--captioner", default="blip2", choices=["blip2", "blip", "webui-blip"])
    g.add_argument("--dns-scale", type=float, default=7.5, help="the paper's s for the DNS image")
    g.add_argument("--dns-preview", type=float, default=0.5, help="dns_preview of the 'dnp_preview' method")

    g = ap.add_argument_group("scoring and report")
    g.add_argument("--clip-model", default="openai/clip-vit-base-patch16", help="HF id or local folder")
    g.add_argument("--device", default=None, help="torch device for scorers (default: cuda if available)")
    g.add_argument("--clip-batch", type=int, default=16)
    g.add_argument("--extra-scorers", default="", help="comma list: imagereward, hpsv2 (need their packages)")
    g.add_argument("--imagereward-model", default=None, help="ImageReward name or local .pt")
    g.add_argument("--hpsv2-model", default=None, help="HPSv2 version (v2.0, v2.1) or local checkpoint")
    g.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals")
    g.add_argument("--no-generate", action="store_true", help="only score and report what exists")
    g.add_argument("--no-score", action="store_true", help="do not score (report uses cached scores)")
    g.add_argument("--no-report", action="store_true")
    g.add_argument("--no-progress", action="store_true")
    return ap


def _settings(a: argparse.Namespace) -> GenSettings:
    if a.size:
        w, _, h = a.size.lower().partition("x")
        a.width, a.height = int(w), int(h or w)
    return GenSettings(
        steps=a.steps,
        width=a.width,
        height=a.height,
        cfg_scale=a.cfg_scale,
        sampler=a.sampler,
        scheduler=a.scheduler,
        captioner=a.captioner,
        dns_scale=a.dns_scale,
        dns_preview=a.dns_preview,
        universal_negative=a.universal_negative or universal_negative(),
        user_negative=a.user_negative,
    )


def _scorer_specs(a: argparse.Namespace) -> list[Any]:
    from .scoring import ScorerSpec

    def clip() -> Any:
        from .clip_score import ClipScorer

        return ClipScorer(a.clip_model, a.device, a.clip_batch)

    specs = [ScorerSpec("clip", str(a.clip_model), clip)]
    for name in _csv(a.extra_scorers):
        from .extra_scorers import EXTRA_SCORERS

        if name not in EXTRA_SCORERS:
            raise SystemExit(f"unknown scorer {name!r}; known: {', '.join(EXTRA_SCORERS)}")
        model = a.imagereward_model if name == "imagereward" else a.hpsv2_model
        cls = EXTRA_SCORERS[name]
        specs.append(ScorerSpec(name, str(model or "default"), lambda cls=cls, model=model: cls(model, a.device)))
    return specs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["speed"]:
        from .speed import main as speed

        return speed(argv[1:])
    a = build_parser().parse_args(argv)
    settings = _settings(a)
    opt_in = {"dnp_preview"} | (set() if a.user_negative else {"user"})
    methods = _csv(a.methods) if a.methods else [m for m in METHODS if m not in opt_in]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        print(f"unknown methods {bad}; known: {', '.join(METHODS)}", file=sys.stderr)
        return 2
    if "user" in methods and not a.user_negative:
        print("method 'user' needs --user-negative", file=sys.stderr)
        return 2
    seeds = [int(s) for s in _csv(a.seed_list)] if a.seed_list else list(range(a.seed_start, a.seed_start + a.seeds))
    try:
        sets: list[PromptSet] = [load_set(s, a.per_category or None) for s in (a.prompts or ["ae"])]
    except (OSError, ValueError) as e:
        print(f"prompts: {e}", file=sys.stderr)
        return 2
    urls = a.url or ["http://127.0.0.1:7860"]
    clients = [WebUIClient(u, a.api_auth, a.timeout, a.retries) for u in urls]
    client = clients[0]
    runner = Runner(clients, a.out, settings)
    jobs = runner.jobs(sets, seeds, methods)
    print(
        f"{sum(len(s.prompts) for s in sets)} prompts x {len(seeds)} seeds x "
        f"{len({j.method for j in jobs})} methods = {len(jobs)} images -> {a.out}",
        file=sys.stderr,
    )
    try:
        with folder_lock(a.out):
            return _generate_score_report(a, client, runner, sets, seeds, methods, settings)
    except FolderBusy as e:
        print(str(e), file=sys.stderr)
        return 2


def _generate_score_report(
    a: argparse.Namespace,
    client: WebUIClient,
    runner: Runner,
    sets: list[PromptSet],
    seeds: list[int],
    methods: list[str],
    settings: GenSettings,
) -> int:
    jobs = runner.jobs(sets, seeds, methods)
    started = time.time()
    if not a.no_generate:
        try:
            counts = runner.run(sets, seeds, methods, progress=not a.no_progress, lock=False)
        except KeyboardInterrupt:
            print("\ninterrupted: rerun the same command to resume", file=sys.stderr)
            return 130
        except SettingsMismatch as e:
            print(str(e), file=sys.stderr)
            return 2
        except WebUIError as e:
            print(f"\nthe WebUI refused the request: {e}", file=sys.stderr)
            return 2
        except WebUIUnavailable as e:
            print(f"\n{e}\nrerun the same command to resume", file=sys.stderr)
            return 3
        print(
            f"generated {counts['generated']}, already there {counts['skipped']}, skipped {counts['failed']}",
            file=sys.stderr,
        )
    records = [r for r in (runner.manifest.done(j) for j in jobs) if r is not None]
    if not records:
        print("no images to score or report", file=sys.stderr)
        return 0 if a.no_generate else 1
    specs = _scorer_specs(a)
    from .extra_scorers import MissingScorer
    from .scoring import score_records

    try:
        scores = score_records(
            a.out,
            records,
            specs,
            {s.name: s.object_split for s in sets},
            progress=not a.no_progress,
            compute=not a.no_score,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: scores so far are cached; rerun to go on", file=sys.stderr)
        return 130
    except MissingScorer as e:
        print(str(e), file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"scoring needs torch, transformers and Pillow ({e}); --no-score skips it", file=sys.stderr)
        return 2
    if a.no_report:
        return 0
    from dataclasses import asdict

    from .report import write_report

    meta = {
        "webui": {
            "url": [c.base_url for c in runner.clients] if len(runner.clients) > 1 else client.base_url,
            "sd_model_checkpoint": None if a.no_generate else client.current_model(),
        },
        "settings": asdict(settings),
        "sets": {s.name: len(s.prompts) for s in sets},
        "seeds": seeds,
        "methods": methods,
        "scorers": {s.name: s.model_id for s in specs},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(time.time() - started, 1),
    }
    paths = write_report(a.out, records, scores, meta, a.bootstrap)
    for kind, p in paths.items():
        print(f"{kind}: {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
