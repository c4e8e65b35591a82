"""Count the 75-token chunks the WebUI encodes prompts into, independently of the extension.

Run it with the WebUI's interpreter (same transformers, ftfy and CLIP tokenizer files as the server):

    <webui>/venv/bin/python tests/webui/clip_chunks.py --webui-dir <webui> [--tokenizer <clip-text>] TEXTS.json

TEXTS.json holds a JSON list of prompts; the last stdout line is a JSON list of chunk counts.
Prompt syntax is parsed with the WebUI's own parser (emphasis, escapes, BREAK): A1111's
modules/prompt_parser, Forge's backend/text_processing/parsing (with the default "Original" emphasis),
whose text engine also uses the CLIP tokenizer Forge ships (the default --tokenizer there); the chunking below
follows the WebUI's documented defaults for SD1 text encoders: 75 tokens per chunk, a BREAK closes a chunk,
and a chunk that fills up moves the words after a comma within its last 20 tokens ("comma padding
backtrack") to the next chunk. Textual-inversion embeddings are not considered (tests load none).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20
FORGE_PARSER = Path("backend") / "text_processing" / "parsing.py"
FORGE_TOKENIZER = Path("backend") / "huggingface" / "runwayml" / "stable-diffusion-v1-5" / "tokenizer"


def count_chunks(pieces: list[tuple[list[int] | None, float]], comma: int) -> int:
    """pieces: (token ids, weight) per parsed piece; ids None for a BREAK."""
    chunks = 0
    length = 0  # tokens in the open chunk
    last_comma = -1  # position of the last comma in the open chunk
    for ids, _ in pieces:
        if ids is None:
            chunks, length, last_comma = chunks + 1, 0, -1
            continue
        for token in ids:
            if token == comma:
                last_comma = length
            elif length == CHUNK_LENGTH and last_comma != -1 and length - last_comma <= COMMA_BACKTRACK:
                # close the chunk after the comma; the tokens behind it open the next one
                chunks, length, last_comma = chunks + 1, length - (last_comma + 1), -1
            if length == CHUNK_LENGTH:
                chunks, length, last_comma = chunks + 1, 0, -1
            length += 1
    if length or not chunks:
        chunks += 1
    return chunks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", type=Path)
    parser.add_argument("--webui-dir", type=Path, required=True)
    parser.add_argument(
        "--tokenizer", type=Path, help="folder with the CLIP tokenizer files (Forge: default its own SD1.5 one)"
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(args.webui_dir))
    if (args.webui_dir / FORGE_PARSER).is_file():
        # Forge's text engine parses with its own copy of the attention parser (only needs re)
        from backend.text_processing import parsing

        def parse(text: str) -> list:
            return parsing.parse_prompt_attention(text, "Original")

        tokenizer_dir = args.tokenizer or args.webui_dir / FORGE_TOKENIZER
    else:
        from modules import prompt_parser  # only needs lark: safe to import without starting the WebUI

        parse = prompt_parser.parse_prompt_attention
        tokenizer_dir = args.tokenizer
    if tokenizer_dir is None:
        parser.error("--tokenizer is required for this WebUI")
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    comma = tokenizer.get_vocab()[",</w>"]
    counts = []
    for text in json.loads(args.texts.read_text(encoding="utf-8")):
        parsed = parse(text)
        pieces = []
        for piece, weight in parsed:
            if piece == "BREAK" and weight == -1:
                pieces.append((None, weight))
            else:
                ids = tokenizer([piece], truncation=False, add_special_tokens=False)["input_ids"][0]
                pieces.append((ids, weight))
        counts.append(count_chunks(pieces, comma))
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
