"""Build a tiny random-weight SD1 checkpoint that a Stable Diffusion WebUI loads offline.

Run it with the WebUI's own interpreter (its venv has torch, transformers 4.30.x and safetensors), e.g.

    <webui>/venv/bin/python tests/webui/tiny_sd.py OUTDIR [--webui-dir <webui>]
    <webui>/venv/bin/python -m tests.webui.tiny_sd OUTDIR     (from the project root)

It writes
    OUTDIR/clip-text/                  tiny CLIP text encoder + the real CLIP BPE tokenizer (HF folder)
    OUTDIR/checkpoints/tiny-sd1.safetensors
    OUTDIR/checkpoints/tiny-sd1.yaml   same base name: A1111 reads it instead of guessing the config
and prints a JSON manifest of those paths on the last line of stdout.

Why the odd choices:
- channels are multiples of 32 because every norm in ldm is GroupNorm(32, C);
- the VAE keeps 4 levels so latents are 1/8 of the image size, as the WebUI assumes (opt_f = 8);
- ldm zero-initialises the UNet's output convs (zero_module); left at zero the UNet ignores the prompt,
  so every all-zero parameter is re-randomised;
- the text encoder's LayerNorms get non-trivial weights: A1111's "Original" emphasis rescales the
  embedding by old_mean / new_mean, which is 0 / 0 (NaN) for a LayerNorm with weight 1 and bias 0;
- the yaml points FrozenCLIPEmbedder's `version` at the local folder, so nothing is fetched from a hub.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

SEED = 1234
CKPT_NAME = "tiny-sd1"
CROSS_ATTN_SHARPEN = 4.0

# Text encoder: the real CLIP vocabulary (49408 tokens) and 77 positions, everything else tiny.
TEXT_HIDDEN = 32
TEXT_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": TEXT_HIDDEN,
    "intermediate_size": 64,
    "num_hidden_layers": 2,  # >= 2 so that "Clip skip: 2" has a layer to skip
    "num_attention_heads": 2,
    "max_position_embeddings": 77,
    "projection_dim": TEXT_HIDDEN,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}

UNET_PARAMS = {
    "image_size": 8,  # unused by ldm at inference
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 32,
    "attention_resolutions": [1, 2],  # cross-attention on both levels: the prompt matters everywhere
    "num_res_blocks": 1,
    "channel_mult": [1, 2],
    "num_heads": 2,
    "use_spatial_transformer": True,
    "transformer_depth": 1,
    "context_dim": TEXT_HIDDEN,
    "use_checkpoint": False,
    "legacy": False,
}

VAE_DDCONFIG = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 64,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 32,
    "ch_mult": [1, 1, 1, 1],  # 4 levels -> downsampling factor 8
    "num_res_blocks": 1,
    "attn_resolutions": [],
    "dropout": 0.0,
}


def model_config(text_encoder_dir: Path) -> dict:
    """The v1-inference.yaml structure with tiny sizes; `version` points at the local text encoder."""
    return {
        "model": {
            "base_learning_rate": 1.0e-04,
            "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
            "params": {
                "linear_start": 0.00085,
                "linear_end": 0.0120,
                "num_timesteps_cond": 1,
                "log_every_t": 200,
                "timesteps": 1000,
                "first_stage_key": "jpg",
                "cond_stage_key": "txt",
                "image_size": 8,
                "channels": 4,
                "cond_stage_trainable": False,
                "conditioning_key": "crossattn",
                "monitor": "val/loss_simple_ema",
                "scale_factor": 0.18215,
                "use_ema": False,
                "unet_config": {
                    "target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
                    "params": UNET_PARAMS,
                },
                "first_stage_config": {
                    "target": "ldm.models.autoencoder.AutoencoderKL",
                    "params": {
                        "embed_dim": 4,
                        "monitor": "val/rec_loss",
                        "ddconfig": VAE_DDCONFIG,
                        "lossconfig": {"target": "torch.nn.Identity"},
                    },
                },
                "cond_stage_config": {
                    "target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder",
                    "params": {"version": str(text_encoder_dir)},
                },
            },
        }
    }


def write_clip_tokenizer_files(outdir: Path) -> tuple[Path, Path]:
    """CLIP's vocab.json + merges.txt, by the project's one builder (tests/tiny_clip.py, stdlib only)."""
    root = str(Path(__file__).resolve().parents[2])  # run as a script by the WebUI's interpreter
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.tiny_clip import write_clip_tokenizer_files as write

    vocab_file, merges_file = write(outdir)
    size = len(json.loads(vocab_file.read_text(encoding="utf-8")))
    if size != TEXT_CONFIG["vocab_size"]:
        raise RuntimeError(f"unexpected CLIP vocab size {size}")
    return vocab_file, merges_file


def build_text_encoder(outdir: Path) -> Path:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tmp = outdir / "_tokenizer_src"
    vocab_file, merges_file = write_clip_tokenizer_files(tmp)
    tokenizer = CLIPTokenizer(
        str(vocab_file),
        str(merges_file),
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=77,
    )
    ids = tokenizer("a photo of a cat")["input_ids"]
    # The real CLIP ids for this sentence; guards against a vocabulary built the wrong way.
    if ids != [49406, 320, 1125, 539, 320, 2368, 49407]:
        raise RuntimeError(f"CLIP tokenizer mismatch: {ids}")

    torch.manual_seed(SEED)
    model = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1.0 + 0.2 * torch.randn_like(module.weight))
                # A clearly non-zero mean keeps the emphasis rescale (old_mean / new_mean) finite.
                module.bias.copy_(0.5 + 0.2 * torch.randn_like(module.bias))

    text_dir = outdir / "clip-text"
    model.save_pretrained(str(text_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(text_dir))
    for leftover in tmp.iterdir():
        leftover.unlink()
    tmp.rmdir()
    return text_dir


def _add_ldm_to_path(webui_dir: Path | None) -> None:
    candidates = []
    if webui_dir is not None:
        candidates.append(webui_dir / "repositories" / "stable-diffusion-stability-ai")
    # The venv normally lives in <webui>/venv: find the WebUI from the interpreter too.
    candidates.append(Path(sys.prefix).parent / "repositories" / "stable-diffusion-stability-ai")
    for path in candidates:
        if (path / "ldm").is_dir():
            sys.path.insert(0, str(path))
            return
    raise RuntimeError(f"ldm (stable-diffusion-stability-ai) not found in {[str(c) for c in candidates]}")


def _fix_pytorch_lightning() -> None:
    # ldm imports pytorch_lightning.utilities.distributed, which lightning 1.9 moved; A1111 aliases it too.
    import pytorch_lightning

    if "pytorch_lightning.utilities.distributed" not in sys.modules:
        sys.modules["pytorch_lightning.utilities.distributed"] = pytorch_lightning.utilities.rank_zero


def build_checkpoint(outdir: Path, text_dir: Path, webui_dir: Path | None) -> tuple[Path, Path]:
    import torch
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    _add_ldm_to_path(webui_dir)
    _fix_pytorch_lightning()
    from ldm.util import instantiate_from_config

    config = model_config(text_dir)
    torch.manual_seed(SEED + 1)
    model = instantiate_from_config(OmegaConf.create(config).model).eval()

    generator = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("cond_stage_model."):
                continue  # already final (saved in clip-text/ and loaded from there)
            if not torch.any(param):
                # zero_module() outputs and biases: give them small random values; the transformer
                # outputs (proj_out) get more so that the prompt visibly changes the image.
                scale = (0.3 if "proj_out" in name else 0.05) if param.dim() > 1 else 0.02
                param.copy_(scale * torch.randn(param.shape, generator=generator))
            elif ".attn2.to_q." in name or ".attn2.to_k." in name:
                # Sharper cross-attention: with default init the softmax is nearly uniform over 77
                # mostly-padding tokens, which dilutes the few prompt tokens.
                param.mul_(CROSS_ATTN_SHARPEN)

    state_dict = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    ckpt_dir = outdir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = ckpt_dir / f"{CKPT_NAME}.safetensors"
    yaml_path = ckpt_dir / f"{CKPT_NAME}.yaml"
    save_file(state_dict, str(ckpt))
    OmegaConf.save(OmegaConf.create(config), str(yaml_path))
    return ckpt, yaml_path


def build(outdir: Path, webui_dir: Path | None = None) -> dict[str, str]:
    import torch

    torch.set_num_threads(1)
    outdir = outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    text_dir = build_text_encoder(outdir)
    ckpt, yaml_path = build_checkpoint(outdir, text_dir, webui_dir)
    return {
        "text_encoder": str(text_dir),
        "checkpoint_dir": str(ckpt.parent),
        "checkpoint": str(ckpt),
        "config": str(yaml_path),
        "checkpoint_title": ckpt.name,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument(
        "--webui-dir",
        type=Path,
        default=Path(os.environ["SD_WEBUI_DIR"]) if os.environ.get("SD_WEBUI_DIR") else None,
        help="WebUI install (for its repositories/stable-diffusion-stability-ai); default $SD_WEBUI_DIR",
    )
    args = parser.parse_args(argv)
    manifest = build(args.outdir, args.webui_dir)
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
