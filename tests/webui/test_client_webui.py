"""`python -m dnp_ext.client` against a real WebUI (tiny checkpoint, tiny captioners)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dnp_ext.bench import pnginfo
from dnp_ext.client import main, negative_of, seed_of

from .conftest import WebUI

SMALL = ["--width", "64", "--height", "64", "--steps", "4", "--sampler", "Euler", "--cfg-scale", "7"]


def _base(webui: WebUI, out: Path) -> list[str]:
    argv = ["--url", webui.base_url, "--out", str(out), *SMALL]
    return [*argv, "--auth", ":".join(webui.auth)] if webui.auth else argv


def _params(text: str) -> str:
    return text.rsplit("\n", 1)[-1]


def test_generate_saves_pngs_with_dnp_infotext(webui: WebUI, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    webui.use_tiny_captioners()
    argv = ["generate", "a photo of a cat", "-n", "blurry", "--seed", "11", "--batch-size", "2", "--show-dns"]
    assert main([*argv, "--captioner", "blip2", *_base(webui, tmp_path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out

    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "00001-11-dns.png", "00001-11.png", "00002-12-dns.png", "00002-12.png",
    ]  # fmt: skip
    for seed in (11, 12):
        text = pnginfo.read_text((tmp_path / f"0000{seed - 10}-{seed}.png").read_bytes())["parameters"]
        params = _params(text)
        assert text.startswith("a photo of a cat\n") and seed_of(text) == seed
        for key in ("DNP", "DNP captioner", "DNS scale", "DNS steps"):
            assert re.search(rf"(^|, ){key}: ", params), (key, params)
        assert "DNP captioner: blip2" in params and "DNS scale: 7.5" in params
        negative = negative_of(text)
        assert negative.startswith("blurry, ") and len(negative) > len("blurry, "), "no caption merged in"
        assert f"  negative: {negative}\n" in out  # what the client printed is what the file records

        dns = pnginfo.read_text((tmp_path / f"0000{seed - 10}-{seed}-dns.png").read_bytes())["parameters"]
        assert "DNP: DNS image" in _params(dns) and seed_of(dns) == seed
        assert negative_of(dns) == "a photo of a cat"  # eq. 19: p in the negative slot


def test_generate_bad_value_is_reported(webui: WebUI, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["generate", "a cat", "--dns-scale", "-1", *_base(webui, tmp_path)]) == 1
    err = capsys.readouterr().err
    assert re.search(r"HTTP 4\d\d", err) and "dns_scale" in err, err
    assert not list(tmp_path.glob("*.png"))


def test_suggest_saves_dns_images_and_negatives(webui: WebUI, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # /dnp/v1/suggest is the review flow's route; this test follows its contract (see docs/CLIENT.md)
    webui.use_tiny_captioners()
    argv = ["suggest", "a photo of a dog", "-n", "blurry", "--seed", "21", "--batch-size", "2", "--json"]
    assert main([*argv, "--captioner", "blip2", *_base(webui, tmp_path)]) == 0, capsys.readouterr().err
    resp = json.loads(capsys.readouterr().out)

    assert "images" not in resp and resp["seeds"] == [21, 22]
    assert len(resp["captions"]) == len(resp["negative_prompts"]) == 2
    for i, seed in enumerate(resp["seeds"]):
        caption, negative = resp["captions"][i], resp["negative_prompts"][i]
        # the raw caption, and the user's negative with the cleaned caption appended
        assert caption and negative.startswith("blurry, ") and len(negative) > len("blurry, ")
        text = pnginfo.read_text((tmp_path / f"0000{i + 1}-{seed}-dns.png").read_bytes())["parameters"]
        assert "DNP: DNS image" in _params(text) and seed_of(text) == seed
    assert len(list(tmp_path.glob("*.png"))) == 2
