"""Tiny random-weight BLIP-2 and BLIP folders for tests, built offline with the running transformers.

Folders saved by one transformers release may not load in another, so build them with the interpreter
that will load them:

    python -m tests.tiny_captioners OUTDIR      # -> OUTDIR/blip2 (with image_token_index) and OUTDIR/blip

The layout follows the Hub repos: model + config, tokenizer files, preprocessor_config.json and, for BLIP-2
with ``image_token_index``, processor_config.json with num_query_tokens plus an ``<image>`` token (the
current Hub layout of Salesforce/blip2-opt-2.7b); without it, the pre-2024 layout.  Captions are gibberish.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

IMAGE_SIZE = 32
NUM_QUERY_TOKENS = 4

# Words for the tokenizers' vocabularies; content is irrelevant, a realistic shape is enough.
_WORD_TEXT = (
    "a an the of and with in on at near by under over behind front top side background foreground "
    "photo picture image painting drawing render close up view shot portrait landscape scene "
    "man woman person people child boy girl dog cat horse bird car bus train tree trees flower grass "
    "house building street city road sky cloud clouds sun water sea beach mountain field forest room "
    "table chair bed window door wall floor light dark red blue green yellow white black brown gray "
    "small large big old young sitting standing walking running holding wearing looking is are two "
    "blurry blurred noisy distorted deformed bad quality low resolution text watermark"
)
WORDS = _WORD_TEXT.split()


def _save_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _round_up(n: int, multiple: int = 8) -> int:
    return (n + multiple - 1) // multiple * multiple


def _spread_weights(model, std: float = 0.2) -> None:
    """Re-draw the matrices with a larger spread than the default init (0.02), so that captions depend on
    the image (with the default, every image gets the same caption and ordering bugs would go unseen)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * std)


def _image_processor():
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


def _opt_tokenizer(tmp: Path):
    """A byte-level BPE tokenizer with OPT's special tokens (<s> 0, <pad> 1, </s> 2, <unk> 3)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [" ".join(WORDS[i : i + 8]) for i in range(0, len(WORDS), 8)] * 4
    tok.train_from_iterator(corpus, trainer=trainer)
    # OPT prepends </s> as BOS.
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    src = tmp / "opt-tokenizer"
    src.mkdir()
    tok.save(str(src / "tokenizer.json"))
    _save_json(
        src / "tokenizer_config.json",
        {
            "tokenizer_class": "GPT2Tokenizer",
            "bos_token": "</s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "add_prefix_space": False,
            "model_max_length": 512,
        },
    )
    return AutoTokenizer.from_pretrained(str(src))


def _bert_tokenizer(tmp: Path):
    """A WordPiece tokenizer from a BERT-style vocab.txt, plus BLIP's [DEC] (BOS) and [ENC] tokens."""
    from transformers import AutoTokenizer

    letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,'-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters)]
    vocab += [w for w in dict.fromkeys(WORDS) if w not in vocab]
    src = tmp / "bert-tokenizer"
    src.mkdir()
    (src / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    _save_json(
        src / "tokenizer_config.json",
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512},
    )
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    return tokenizer


def build_tiny_blip2(folder: str | Path, image_token_index: bool = True) -> Path:
    """Save a tiny BLIP-2 (ViT + Q-Former + OPT) to ``folder``; returns the folder."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _opt_tokenizer(Path(tmp))
    base_len = len(tokenizer)
    # Room above the tokenizer, as on the Hub (50265 tokens, 50272 rows): pre-4.45 folders get their
    # <image> placeholder id from there.
    vocab_size = _round_up(base_len + 1)
    extra: dict = {}
    if image_token_index:
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
        extra["image_token_index"] = tokenizer.convert_tokens_to_ids("<image>")
        assert extra["image_token_index"] < vocab_size
    hidden = 32
    config = Blip2Config(
        vision_config={
            "hidden_size": hidden,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
        qformer_config={
            "hidden_size": hidden,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "cross_attention_frequency": 1,
            "encoder_hidden_size": hidden,
            "vocab_size": 64,
            "max_position_embeddings": 64,
        },
        text_config={
            "model_type": "opt",
            "vocab_size": vocab_size,
            "hidden_size": hidden,
            "word_embed_proj_dim": hidden,
            "ffn_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 128,
            "bos_token_id": tokenizer.convert_tokens_to_ids("</s>"),
            "eos_token_id": tokenizer.convert_tokens_to_ids("</s>"),
            "pad_token_id": tokenizer.convert_tokens_to_ids("<pad>"),
        },
        num_query_tokens=NUM_QUERY_TOKENS,
        **extra,
    )
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config).eval()
    _spread_weights(model)
    # safetensors: the WebUI's safe unpickler rejects .bin files written by a newer torch
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    _image_processor().save_pretrained(str(folder))
    if image_token_index:
        _save_json(
            folder / "processor_config.json",
            {"num_query_tokens": NUM_QUERY_TOKENS, "processor_class": "Blip2Processor"},
        )
    return folder


def build_tiny_blip(folder: str | Path) -> Path:
    """Save a tiny BLIP captioning model (ViT + BERT-style text decoder) to ``folder``."""
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _bert_tokenizer(Path(tmp))
    hidden = 32
    sep = tokenizer.convert_tokens_to_ids("[SEP]")
    config = BlipConfig(
        vision_config={
            "hidden_size": hidden,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
        text_config={
            "vocab_size": _round_up(len(tokenizer)),
            "hidden_size": hidden,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "encoder_hidden_size": hidden,
            "max_position_embeddings": 64,
            "bos_token_id": tokenizer.convert_tokens_to_ids("[DEC]"),
            "eos_token_id": sep,
            "sep_token_id": sep,
            "pad_token_id": tokenizer.convert_tokens_to_ids("[PAD]"),
        },
        projection_dim=hidden,
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    _spread_weights(model)
    # safetensors: the WebUI's safe unpickler rejects .bin files written by a newer torch
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    _image_processor().save_pretrained(str(folder))
    return folder


def save_as_pickle(src: str | Path, dst: str | Path) -> Path:
    """Copy a captioner folder with its safetensors weights re-saved as pytorch_model.bin by this torch (the
    file A1111's safe unpickler refuses from recent torch releases); returns ``dst``."""
    import shutil

    import torch
    from safetensors.torch import load_file

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("model.safetensors"):
            shutil.copy2(f, dst / f.name)
    torch.save(load_file(str(src / "model.safetensors")), str(dst / "pytorch_model.bin"))
    return dst


def build_all(outdir: str | Path) -> dict[str, Path]:
    outdir = Path(outdir)
    return {
        "blip2": build_tiny_blip2(outdir / "blip2", image_token_index=True),
        "blip": build_tiny_blip(outdir / "blip"),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.tiny_captioners OUTDIR", file=sys.stderr)
        return 2
    for name, path in build_all(args[0]).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
