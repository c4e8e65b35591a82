"""Build a deterministic tiny random-weight checkpoint that a WebUI host loads as a given model family.

Run it from the project root with the WebUI's own interpreter (its torch, transformers and safetensors):

    <webui>/venv/bin/python tests/webui/fixtures.py MODEL --host HOST --out DIR [--webui-dir <webui>]

MODEL is sd1, sdxl or sd2-v; HOST is a1111 or forge. The last stdout line is the checkpoint's path;
DIR/fixture.json holds the manifest (family, host, checkpoint, checkpoint_dir, checkpoint_title, and on A1111
the `config` yaml and the `text_encoder` folder whose CLIP tokenizer the chunk counter uses).

- a1111 (tests/webui/tiny_a1111.py): a `.yaml` beside the checkpoint makes every part tiny, all three families;
- forge (tests/webui/tiny_forge.py): Forge builds the text encoders and the VAE at full size from its own
  configs whatever the file says, and takes only the UNet's shape from the weights: sd1 and sdxl.
Same inputs, same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HOSTS = ("a1111", "forge")
MODELS = ("sd1", "sdxl", "sd2-v")
MANIFEST = "fixture.json"


def build(model: str, host: str, out: Path, webui_dir: Path | None) -> dict[str, str]:
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    if host == "a1111":
        import tiny_a1111

        manifest = tiny_a1111.build(model, out, webui_dir)
    else:
        import tiny_forge

        manifest = tiny_forge.build(model, out, webui_dir)
    manifest = {"family": model, "host": host, **manifest}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=MODELS)
    parser.add_argument("--host", choices=HOSTS, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--webui-dir",
        type=Path,
        default=Path(os.environ["SD_WEBUI_DIR"]) if os.environ.get("SD_WEBUI_DIR") else None,
        help="the WebUI install; default $SD_WEBUI_DIR, else the folder holding this interpreter's venv",
    )
    args = parser.parse_args(argv)
    if args.host == "forge" and args.model == "sd2-v":
        parser.error("sd2-v is built for a1111 only (Forge: not part of this fixture set)")
    manifest = build(args.model, args.host, args.out.resolve(), args.webui_dir)
    print(manifest["checkpoint"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
