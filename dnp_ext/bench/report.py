"""Report: raw scores (JSON), a Table-2-style markdown table with bootstrap intervals, an SVG plot and an
HTML contact sheet for judging images side by side."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .run import DNS_DIR, METHODS, Record

METRICS = {  # key -> label, in table order
    "clip_full": "CLIP full-prompt",
    "clip_min": "CLIP min-object",
    "imagereward": "ImageReward",
    "hpsv2": "HPSv2",
}
METHOD_LABELS = {
    "plain": "SD (no negative)",
    "dnp": "auto-DNP",
    "dnp_preview": "auto-DNP, DNS preview",
    "universal": "universal negative",
    "random_caption": "random caption",
    "user": "user negative",
}
COLOURS = {
    "plain": "#7f7f7f",
    "dnp": "#d62728",
    "dnp_preview": "#ff7f0e",
    "universal": "#1f77b4",
    "random_caption": "#2ca02c",
    "user": "#9467bd",
}
N_BOOT = 2000


# ---- statistics -------------------------------------------------------------------------------------------


def _clusters(values: dict[tuple[int, int], float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt sums and counts of image scores keyed (prompt index, seed)."""
    by_prompt: dict[int, list[float]] = {}
    for (idx, _seed), v in values.items():
        by_prompt.setdefault(idx, []).append(v)
    keys = sorted(by_prompt)
    return (
        np.array([sum(by_prompt[k]) for k in keys], dtype=np.float64),
        np.array([len(by_prompt[k]) for k in keys], dtype=np.float64),
    )


def bootstrap_mean(
    values: dict[tuple[int, int], float], n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float, float]:
    """Mean over images and a 95% percentile interval from resampling prompts (images of one prompt are
    not independent, so prompts are the resampling unit)."""
    sums, counts = _clusters(values)
    mean = float(sums.sum() / counts.sum())
    if len(sums) < 2:
        return mean, mean, mean
    idx = np.random.default_rng(seed).integers(0, len(sums), size=(n_boot, len(sums)))
    boot = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    return mean, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def bootstrap_gain(
    values: dict[tuple[int, int], float], base: dict[tuple[int, int], float], n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float, float] | None:
    """Relative gain (mean(values) - mean(base)) / |mean(base)| on the (prompt, seed) pairs both have, with
    a paired bootstrap over prompts."""
    keys = sorted(set(values) & set(base))
    if not keys:
        return None
    s_m, c = _clusters({k: values[k] for k in keys})
    s_b, _ = _clusters({k: base[k] for k in keys})
    gain = float((s_m.sum() - s_b.sum()) / abs(s_b.sum()))
    if len(c) < 2:
        return gain, gain, gain
    idx = np.random.default_rng(seed).integers(0, len(c), size=(n_boot, len(c)))
    sb = s_b[idx].sum(axis=1)
    boot = (s_m[idx].sum(axis=1) - sb) / np.abs(sb)
    return gain, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def summarise(records: Sequence[Record], scores: dict[str, dict[str, Any]], n_boot: int = N_BOOT) -> dict[str, Any]:
    """set -> category ("all" too) -> method -> metric -> statistics."""
    table: dict[str, dict[str, dict[str, dict[str, dict[str, Any]]]]] = {}
    # (set, category, method, metric) -> {(index, seed): value}
    data: dict[tuple[str, str, str, str], dict[tuple[int, int], float]] = {}
    for r in records:
        for metric, v in scores.get(r.file, {}).items():
            if metric in METRICS and v is not None:
                for cat in (r.category, "all"):
                    data.setdefault((r.set, cat, r.method, metric), {})[(r.index, r.seed)] = float(v)
    for (set_, cat, method, metric), values in sorted(data.items()):
        mean, lo, hi = bootstrap_mean(values, n_boot)
        n_prompts = len({k[0] for k in values})
        # with a single prompt the prompt-level bootstrap has nothing to resample: no interval
        entry: dict[str, Any] = {
            "mean": mean,
            "ci95": [lo, hi] if n_prompts > 1 else None,
            "n_images": len(values),
            "n_prompts": n_prompts,
        }
        base = data.get((set_, cat, "plain", metric))
        if method != "plain" and base:
            g = bootstrap_gain(values, base, n_boot)
            if g is not None:
                entry["gain_vs_plain"] = g[0]
                entry["gain_ci95"] = [g[1], g[2]] if n_prompts > 1 else None
        table.setdefault(set_, {}).setdefault(cat, {}).setdefault(method, {})[metric] = entry
    return table


def seconds_per_image(records: Sequence[Record]) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for r in records:
        if r.seconds:
            out.setdefault(r.method, []).append(r.seconds)
    return {m: float(np.mean(v)) for m, v in out.items()}


# ---- markdown ---------------------------------------------------------------------------------------------


def _ordered(items: Sequence[str], order: Sequence[str]) -> list[str]:
    return [x for x in order if x in items] + sorted(x for x in items if x not in order)


def _cell(e: dict[str, Any] | None) -> str:
    if not e:
        return "–"
    s = f"{e['mean']:.4f} " + (f"[{e['ci95'][0]:.4f}, {e['ci95'][1]:.4f}]" if e["ci95"] else "[1 prompt]")
    if "gain_vs_plain" in e:
        gci = e.get("gain_ci95")
        mark = "*" if gci and (gci[0] > 0 or gci[1] < 0) else ""
        s += f" {e['gain_vs_plain'] * 100:+.1f}%{mark}"
    return s


def _ci(e: dict[str, Any]) -> tuple[float, float]:
    return (e["ci95"][0], e["ci95"][1]) if e.get("ci95") else (e["mean"], e["mean"])


def markdown_table(summary: dict[str, Any], secs: dict[str, float] | None = None) -> str:
    lines = [
        "# DNP benchmark",
        "",
        "Mean score, 95% bootstrap interval (prompts resampled), relative gain over SD without a negative "
        "on the same prompts and seeds (* : the gain's paired 95% interval excludes 0).",
        "",
    ]
    for set_, cats in summary.items():
        cat_names = [*_ordered([c for c in cats if c != "all"], []), "all"]
        methods = _ordered({m for c in cats.values() for m in c}, METHODS)
        metrics = _ordered({k for c in cats.values() for m in c.values() for k in m}, list(METRICS))
        for metric in metrics:
            lines += [
                f"## {set_}: {METRICS.get(metric, metric)}",
                "",
                "| method | " + " | ".join(cat_names) + " |",
                "|---|" + "---|" * len(cat_names),
            ]
            for m in methods:
                cells = [_cell(cats.get(c, {}).get(m, {}).get(metric)) for c in cat_names]
                lines.append(f"| {METHOD_LABELS.get(m, m)} | " + " | ".join(cells) + " |")
            n = cats["all"].get("plain", {}).get(metric) or next(iter(cats["all"].values())).get(metric, {})
            if n:
                lines += ["", f"{n['n_prompts']} prompts, {n['n_images']} images per method."]
            lines.append("")
    if secs:
        lines += [
            "## Seconds per image (generation, incl. DNS + captioning for auto-DNP)",
            "",
            "| method | s/image |",
            "|---|---|",
        ]
        lines += [f"| {METHOD_LABELS.get(m, m)} | {secs[m]:.2f} |" for m in _ordered(list(secs), METHODS)]
        lines.append("")
    return "\n".join(lines)


# ---- SVG plot ---------------------------------------------------------------------------------------------


def svg_plot(summary: dict[str, Any]) -> str:
    """Dot-and-whisker panels (one per set and metric): mean and 95% interval per category and method.
    The y axis is zoomed to the data, so points, not bars."""
    panels = []
    for set_, cats in summary.items():
        metrics = _ordered({k for c in cats.values() for m in c.values() for k in m}, list(METRICS))
        for metric in metrics:
            panels.append((set_, metric, cats))
    methods_all = _ordered({m for _, _, cats in panels for c in cats.values() for m in c}, METHODS)
    pw, ph, left, top = 640, 260, 70, 40
    height = top + len(panels) * (ph + 70) + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{pw + left + 170}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    for i, m in enumerate(methods_all):  # legend
        y = top + 20 * i
        out.append(
            f'<circle cx="{left + pw + 25}" cy="{y}" r="5" fill="{COLOURS.get(m, "#000")}"/>'
            f'<text x="{left + pw + 36}" y="{y + 4}">{html.escape(METHOD_LABELS.get(m, m))}</text>'
        )
    for p, (set_, metric, cats) in enumerate(panels):
        y0 = top + p * (ph + 70)
        cat_names = [c for c in cats if c != "all"] + ["all"]
        entries = [cats[c][m][metric] for c in cat_names for m in cats[c] if metric in cats[c][m]]
        lo = min(_ci(e)[0] for e in entries)
        hi = max(_ci(e)[1] for e in entries)
        pad = (hi - lo) * 0.1 or abs(hi) * 0.05 or 0.01
        lo, hi = lo - pad, hi + pad

        def ys(v: float, lo: float = lo, hi: float = hi, y0: int = y0) -> float:
            return y0 + ph - (v - lo) / (hi - lo) * ph

        out.append(
            f'<text x="{left}" y="{y0 - 12}" font-size="14" font-weight="bold">'
            f"{html.escape(set_)}: {html.escape(METRICS.get(metric, metric))}"
            '<tspan font-size="11" font-weight="normal"> (mean, 95% bootstrap interval)</tspan></text>'
        )
        out.append(f'<rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
        for t in range(5):  # y ticks
            v = lo + (hi - lo) * t / 4
            out.append(
                f'<line x1="{left - 4}" x2="{left + pw}" y1="{ys(v):.1f}" y2="{ys(v):.1f}" '
                f'stroke="#eee"/><text x="{left - 6}" y="{ys(v) + 4:.1f}" text-anchor="end">{v:.3f}</text>'
            )
        slot = pw / len(cat_names)
        for ci, c in enumerate(cat_names):
            cx = left + slot * (ci + 0.5)
            out.append(f'<text x="{cx:.1f}" y="{y0 + ph + 18}" text-anchor="middle">{html.escape(c)}</text>')
            present = [m for m in methods_all if metric in cats.get(c, {}).get(m, {})]
            for mi, m in enumerate(present):
                e = cats[c][m][metric]
                x = cx + (mi - (len(present) - 1) / 2) * min(18.0, slot / (len(present) + 1))
                col = COLOURS.get(m, "#000")
                a, b = _ci(e)
                out.append(
                    f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{ys(a):.1f}" y2="{ys(b):.1f}" '
                    f'stroke="{col}" stroke-width="2"/>'
                    f'<circle cx="{x:.1f}" cy="{ys(e["mean"]):.1f}" r="4" fill="{col}">'
                    f"<title>{html.escape(METHOD_LABELS.get(m, m))} {c}: {e['mean']:.4f} "
                    f"[{a:.4f}, {b:.4f}]</title></circle>"
                )
    out.append("</svg>")
    return "\n".join(out)


# ---- contact sheet ----------------------------------------------------------------------------------------

_SHEET_JS = """
const KEY = 'dnp-judge:' + document.title;
const saved = JSON.parse(localStorage.getItem(KEY) || '{}');
for (const [name, value] of Object.entries(saved)) {
  const el = document.querySelector(`input[name="${CSS.escape(name)}"][value="${CSS.escape(value)}"]`);
  if (el) el.checked = true;
}
document.addEventListener('change', e => {
  if (e.target.type !== 'radio') return;
  saved[e.target.name] = e.target.value;
  localStorage.setItem(KEY, JSON.stringify(saved));
});
function exportJudgements() {
  const blob = new Blob([JSON.stringify(saved, null, 1)], {type: 'application/json'});
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob); a.download = 'judgements.json'; a.click();
}
"""


def contact_sheet(
    set_name: str, records: Sequence[Record], scores: dict[str, dict[str, Any]], out_dir: Path, sheet_dir: Path
) -> str:
    """plain | DNS | auto-DNP | other methods, one row per prompt and seed, with a preference vote."""
    by_key: dict[tuple[int, int], dict[str, Record]] = {}
    for r in records:
        if r.set == set_name:
            by_key.setdefault((r.index, r.seed), {})[r.method] = r
    methods = _ordered({m for d in by_key.values() for m in d}, METHODS)
    cols = (
        [m for m in ("plain",) if m in methods]
        + ([DNS_DIR] if "dnp" in methods else [])
        + [m for m in methods if m != "plain"]
    )
    rel = os.path.relpath(out_dir, sheet_dir)

    def img(path: str, caption: str, score: dict[str, Any] | None) -> str:
        src = html.escape(Path(rel, path).as_posix())
        s = ""
        if score and score.get("clip_full") is not None:
            s = f"<br><small>CLIP {score['clip_full']:.3f}"
            s += f" / min {score['clip_min']:.3f}" if score.get("clip_min") is not None else ""
            s += "</small>"
        cap = html.escape(caption[:160] + ("…" if len(caption) > 160 else ""))
        return (
            f'<a href="{src}" target="_blank"><img loading="lazy" src="{src}"></a>'
            f'<div class="neg" title="{html.escape(caption)}">{cap}</div>{s}'
        )

    head = "".join(f"<th>{'DNS image' if c == DNS_DIR else html.escape(METHOD_LABELS.get(c, c))}</th>" for c in cols)
    rows = []
    for (idx, seed), recs in sorted(by_key.items()):
        any_rec = next(iter(recs.values()))
        cells = []
        for c in cols:
            if c == DNS_DIR:
                d = recs.get("dnp")
                cells.append(
                    f"<td>{img(d.dns_file, 'what the prompt is not (DNS)', None)}</td>"
                    if d and d.dns_file
                    else "<td>–</td>"
                )
                continue
            r = recs.get(c)
            if r is None:
                cells.append("<td>–</td>")
                continue
            neg = "negative: " + (r.negative_prompt or "(none)")
            cells.append(f"<td>{img(r.file, neg, scores.get(r.file))}</td>")
        name = f"{set_name}/{idx}/{seed}"
        choices = [m for m in methods if m in recs] + ["tie"]
        vote = " ".join(
            f'<label><input type="radio" name="{html.escape(name)}" value="{m}">'
            f"{html.escape(METHOD_LABELS.get(m, m))}</label>"
            for m in choices
        )
        rows.append(
            f'<tr><td class="p"><b>{html.escape(any_rec.prompt)}</b><br>{html.escape(any_rec.category)}'
            f' · #{idx} · seed {seed}<div class="vote">best: {vote}</div></td>{"".join(cells)}</tr>'
        )
    title = f"DNP contact sheet: {set_name}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:sans-serif;margin:1em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:top;text-align:center}}
td.p{{text-align:left;max-width:16em}} img{{width:192px;height:auto;display:block;margin:auto}}
.neg{{font-size:11px;color:#555;max-width:192px;margin:auto}} .vote{{font-size:12px;margin-top:.5em}}
.vote label{{display:block}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>One row per prompt and seed. Pick the best image of each row; choices stay in this browser
(localStorage). <button onclick="exportJudgements()">download judgements (JSON)</button></p>
<table><tr><th>prompt</th>{head}</tr>
{chr(10).join(rows)}
</table>
<script>{_SHEET_JS}</script>
</body></html>
"""


# ---- everything -------------------------------------------------------------------------------------------


def write_report(
    out: Path, records: Sequence[Record], scores: dict[str, dict[str, Any]], meta: dict[str, Any], n_boot: int = N_BOOT
) -> dict[str, Path]:
    """results.json, table.md, plot.svg, contact_<set>.html under <out>/report/."""
    rdir = out / "report"
    rdir.mkdir(parents=True, exist_ok=True)
    summary = summarise(records, scores, n_boot)
    secs = seconds_per_image(records)
    images = [{**asdict(r), **scores.get(r.file, {})} for r in records]
    paths = {"json": rdir / "results.json", "table": rdir / "table.md", "plot": rdir / "plot.svg"}
    paths["json"].write_text(
        json.dumps(
            {**meta, "seconds_per_image": secs, "summary": summary, "images": images}, indent=1, ensure_ascii=False
        ),
        encoding="utf-8",
    )
    paths["table"].write_text(markdown_table(summary, secs), encoding="utf-8")
    if summary:
        paths["plot"].write_text(svg_plot(summary), encoding="utf-8")
    else:
        paths.pop("plot")
    for set_ in _ordered({r.set for r in records}, []):
        p = rdir / f"contact_{set_}.html"
        p.write_text(contact_sheet(set_, records, scores, out, rdir), encoding="utf-8")
        paths[f"contact_{set_}"] = p
    return paths
