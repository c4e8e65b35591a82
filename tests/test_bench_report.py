"""Report: bootstrap statistics, markdown table, SVG plot, contact sheet."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dnp_ext.bench import report
from dnp_ext.bench.run import Record


def test_bootstrap_mean_resamples_prompts() -> None:
    # prompt 0: images 1, 3; prompt 1: image 5. Mean over images = 3 (not the mean of prompt means).
    values = {(0, 0): 1.0, (0, 1): 3.0, (1, 0): 5.0}
    mean, lo, hi = report.bootstrap_mean(values, n_boot=4000)
    assert mean == pytest.approx(3.0)
    # resamples {0,0} -> 2, {1,1} -> 5 (p = 1/4 each), {0,1} -> 3: the 2.5/97.5 percentiles are 2 and 5
    assert lo == pytest.approx(2.0) and hi == pytest.approx(5.0)
    assert report.bootstrap_mean({(0, 0): 0.25, (0, 1): 0.75}) == (0.5, 0.5, 0.5)  # one prompt: no spread


def test_bootstrap_gain_is_paired_on_common_images() -> None:
    base = {(i, s): 0.2 + 0.01 * i + 0.001 * s for i in range(6) for s in range(3)}
    better = {k: v * 1.1 for k, v in base.items()}
    better[(99, 0)] = 5.0  # no plain counterpart: ignored
    gain, lo, hi = report.bootstrap_gain(better, base)  # type: ignore[misc]
    assert gain == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    assert report.bootstrap_gain({(1, 0): 1.0}, {(2, 0): 1.0}) is None


def _records_and_scores(tmp_path: Path) -> tuple[list[Record], dict[str, dict[str, float | None]]]:
    recs, scores = [], {}
    for idx, cat in [(0, "animals"), (1, "animals"), (66, "objects"), (67, "objects")]:
        for seed in range(3):
            for method, bonus in [("plain", 0.0), ("dnp", 0.02), ("universal", -0.01)]:
                f = f"ae/{method}/{idx:04d}_{seed}.png"
                (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / f).write_bytes(b"png")
                r = Record(
                    "ae",
                    cat,
                    idx,
                    f"prompt {idx} and more",
                    seed,
                    method,
                    f,
                    "" if method == "plain" else f"neg {method}",
                    seconds=1.0 + bonus * 100,
                )
                if method == "dnp":
                    r.caption, r.dns_file = r.negative_prompt, f"ae/dns/{idx:04d}_{seed}.png"
                recs.append(r)
                base = 0.30 + 0.01 * idx % 7 + 0.003 * seed
                scores[f] = {"clip_full": base + bonus, "clip_min": base - 0.1 + bonus, "clip_first": None}
    return recs, scores


def test_summary_and_table(tmp_path: Path) -> None:
    recs, scores = _records_and_scores(tmp_path)
    summary = report.summarise(recs, scores, n_boot=500)
    assert set(summary["ae"]) == {"animals", "objects", "all"}
    allp = summary["ae"]["all"]
    plain = [scores[r.file]["clip_full"] for r in recs if r.method == "plain"]
    assert allp["plain"]["clip_full"]["mean"] == pytest.approx(sum(plain) / len(plain))  # type: ignore[arg-type]
    assert allp["plain"]["clip_full"]["n_images"] == 12 and allp["plain"]["clip_full"]["n_prompts"] == 4
    assert "gain_vs_plain" not in allp["plain"]["clip_full"]
    g = allp["dnp"]["clip_full"]
    assert g["gain_vs_plain"] == pytest.approx(0.02 * 12 / sum(plain))  # type: ignore[arg-type]
    lo, hi = g["ci95"]
    assert lo <= g["mean"] <= hi
    assert "clip_first" not in allp["plain"]  # None values are left out

    md = report.markdown_table(summary, report.seconds_per_image(recs))
    assert "## ae: CLIP full-prompt" in md and "## ae: CLIP min-object" in md
    row = next(line for line in md.splitlines() if line.startswith("| auto-DNP") and "%" in line)
    assert row.count("|") == 5  # method + animals, objects, all
    assert re.search(r"\+\d+\.\d%\*", row)  # a consistent gain is marked significant
    assert "| SD (no negative) | 1.00 |" in md and "| auto-DNP | 3.00 |" in md


def test_svg_plot_is_valid_and_complete(tmp_path: Path) -> None:
    recs, scores = _records_and_scores(tmp_path)
    svg = report.svg_plot(report.summarise(recs, scores, n_boot=100))
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    points = [c for c in root.iter(f"{ns}circle") if c.find(f"{ns}title") is not None]
    assert len(points) == 2 * 3 * 3  # metrics x categories (incl. all) x methods
    assert all(0 <= float(c.get("cy", -1)) <= float(root.get("height", 0)) for c in points)


def test_write_report_and_contact_sheet(tmp_path: Path) -> None:
    recs, scores = _records_and_scores(tmp_path)
    paths = report.write_report(tmp_path, recs, scores, {"settings": {"steps": 3}}, n_boot=100)
    assert set(paths) == {"json", "table", "plot", "contact_ae"}
    data = json.loads(paths["json"].read_text())
    assert data["settings"] == {"steps": 3} and len(data["images"]) == len(recs)
    assert data["images"][0]["clip_full"] == scores[recs[0].file]["clip_full"]
    sheet = paths["contact_ae"].read_text()
    assert sheet.count("<tr>") == 1 + 4 * 3  # header + prompts x seeds
    heads = re.findall(r"<th>(.*?)</th>", sheet)
    assert heads == ["prompt", "SD (no negative)", "DNS image", "auto-DNP", "universal negative"]
    srcs = re.findall(r'<img loading="lazy" src="([^"]+)"', sheet)
    assert len(srcs) == 4 * 3 * 4
    existing = [s for s in srcs if (paths["contact_ae"].parent / s).exists()]
    assert len(existing) == 4 * 3 * 3  # the DNS files were not written in this test
    assert "negative: neg dnp" in sheet and 'name="ae/0/0"' in sheet


def test_single_prompt_has_no_interval_and_no_star(tmp_path: Path) -> None:
    recs, scores = _records_and_scores(tmp_path)
    one = [r for r in recs if r.index == 0]
    summary = report.summarise(one, scores, n_boot=100)
    e = summary["ae"]["all"]["dnp"]["clip_full"]
    assert e["n_prompts"] == 1 and e["ci95"] is None and e["gain_ci95"] is None
    row = next(line for line in report.markdown_table(summary).splitlines() if line.startswith("| auto-DNP"))
    assert "[1 prompt]" in row and "*" not in row
    ET.fromstring(report.svg_plot(summary))  # still a valid plot
