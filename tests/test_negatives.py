import math

import pytest

from dnp_ext.negatives import (
    caption_to_negative,
    clean_caption,
    dns_prompt_pair,
    equalize_chunks,
    escape_prompt_syntax,
    merge_negative,
    split_extra_networks,
)


def test_clean_caption_whitespace_control_and_word_cap():
    assert clean_caption("  a  dog\n\tsitting\x00 on\u200b grass ,") == "a dog sitting on grass"
    long = " ".join(f"w{i}" for i in range(100))
    assert clean_caption(long).split() == [f"w{i}" for i in range(60)]
    assert clean_caption(long, max_words=5) == "w0 w1 w2 w3 w4"
    assert clean_caption("") == ""


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("a (red) car", r"a \(red\) car"),
        ("[cat:dog:0.5]", r"\[cat:dog:0.5\]"),
        ("<lora:foo:1> text", "lora:foo:1 text"),
        ("sky BREAK sea", "sky break sea"),
        ("cat AND dog", "cat and dog"),
        ("back\\slash", "back\\\\slash"),
        ("(word:1.5)", r"\(word:1.5\)"),
        ("ANDROID BREAKFAST", "ANDROID BREAKFAST"),
    ],
)
def test_escape_prompt_syntax(caption, expected):
    assert escape_prompt_syntax(caption) == expected


def _parse_attention(text):
    """The WebUI's emphasis parser (modules/prompt_parser.parse_prompt_attention), kept minimal."""
    import re

    re_attention = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:", re.X)
    res, round_b, square_b = [], [], []
    for m in re_attention.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\"):
            res.append([tok[1:], 1.0])
        elif tok == "(":
            round_b.append(len(res))
        elif tok == "[":
            square_b.append(len(res))
        elif weight is not None or tok in (")", "]"):
            return None  # emphasis syntax took effect
        else:
            res.append([tok, 1.0])
    if round_b or square_b:
        return None
    return "".join(t for t, _ in res)


def test_escaped_caption_parses_back_to_plain_text():
    caption = "a (very:1.3) [strange] photo \\ of ((things))"
    escaped = escape_prompt_syntax(caption)
    assert _parse_attention(escaped) == caption
    assert _parse_attention(caption) is None  # unescaped, the parser would apply emphasis


def test_caption_to_negative_cleans_then_escapes():
    assert caption_to_negative(" a (blurry)\nphoto ") == r"a \(blurry\) photo"


@pytest.mark.parametrize(
    ("user", "dnp", "mode", "expected"),
    [
        ("ugly", "a cat", "append", "ugly, a cat"),
        ("ugly,", "a cat", "append", "ugly, a cat"),
        ("ugly", "a cat", "prepend", "a cat, ugly"),
        ("ugly", "a cat", "replace", "a cat"),
        ("", "a cat", "append", "a cat"),
        ("   ", "a cat", "prepend", "a cat"),
        ("ugly", "", "append", "ugly"),
    ],
)
def test_merge_negative(user, dnp, mode, expected):
    assert merge_negative(user, dnp, mode) == expected


def test_merge_rejects_unknown_mode():
    with pytest.raises(ValueError, match="append, prepend, replace"):
        merge_negative("a", "b", "insert")


def test_split_extra_networks():
    text, tags = split_extra_networks("a cat <lora:fur:0.8>, sitting <hypernet:x:1>")
    assert tags == ["<lora:fur:0.8>", "<hypernet:x:1>"]
    assert text == "a cat , sitting "


@pytest.mark.parametrize(
    ("prompt", "positive", "negative"),
    [
        ("a cat and a dog", "", "a cat and a dog"),
        ("a cat <lora:fur:0.8>", "<lora:fur:0.8>", "a cat"),
        ("a cat AND a dog", "", "a cat, a dog"),
        ("a cat :1.2 AND a dog:0.5", "", "a cat, a dog"),
        ("(a cat:1.2), [a:b:0.5] BREAK dog", "", "(a cat:1.2), [a:b:0.5] BREAK dog"),
        ("", "", ""),
    ],
)
def test_dns_prompt_pair(prompt, positive, negative):
    assert dns_prompt_pair(prompt) == (positive, negative)


def fake_chunks(text: str) -> int:
    """A1111-like: words are tokens, BREAK closes a chunk, 75 tokens per chunk, at least one chunk."""
    chunks, current = 0, 0
    for word in text.split():
        if word == "BREAK":
            chunks, current = chunks + 1, 0
            continue
        if current == 75:
            chunks, current = chunks + 1, 0
        current += 1
    return chunks + (1 if current or chunks == 0 else 0)


def test_fake_chunks_model():
    assert fake_chunks("") == 1
    assert fake_chunks("a " * 75) == 1
    assert fake_chunks("a " * 76) == 2
    assert fake_chunks("a BREAK") == 1
    assert fake_chunks("a BREAK BREAK") == 2


def test_equalize_chunks_pads_to_the_longest_and_keeps_every_word():
    negs = ["w " * 10, "w " * 80, "w " * 160]
    out = equalize_chunks([n.strip() for n in negs], fake_chunks)
    assert [fake_chunks(o) for o in out] == [3, 3, 3]
    for before, after in zip(negs, out):
        assert after.startswith(before.strip())
        assert after.replace("BREAK", "").split() == before.split()


def test_equalize_chunks_leaves_equal_lengths_alone():
    negs = ["a b", "c d e"]
    assert equalize_chunks(negs, fake_chunks) == negs
    assert equalize_chunks([], fake_chunks) == []


def test_equalize_chunks_fails_loudly_when_padding_cannot_work():
    with pytest.raises(ValueError, match="cannot pad"):
        equalize_chunks(["a", "b " * 200], lambda t: 1 if "b" not in t else math.inf)  # type: ignore[arg-type,return-value]
