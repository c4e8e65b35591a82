"""Tiny random-weight checkpoints that AUTOMATIC1111 1.10 loads offline: SD1, SDXL and SD2 (v-prediction).

Built by `tests/webui/fixtures.py MODEL --host a1111` with A1111's own interpreter. Each family is a
safetensors file plus a `.yaml` of the same base name, which A1111 reads instead of guessing the config
(modules/sd_models_config.find_checkpoint_config_near_filename), so every part can be tiny:

- sd1:   ldm LatentDiffusion, a tiny CLIP text encoder (HF folder with the real CLIP BPE tokenizer);
- sdxl:  sgm DiffusionEngine with A1111's two text encoders: the tiny CLIP (embedders.0, hidden layer) and
         open_clip's smallest built-in text tower, ViT-S-32-alt (embedders.1, width 256, pooled output);
         A1111 takes a model for SDXL when it has a `conditioner` and for SSD-1B when the middle block has
         no attention, so the middle block keeps its spatial transformer;
- sd2-v: ldm LatentDiffusion with `parameterization: "v"` and the ViT-S-32-alt tower as
         FrozenOpenCLIPEmbedder (A1111: is_sd2 when cond_stage_model has `.model`).

Why the odd choices:
- channels are multiples of 32 because every norm in ldm/sgm is GroupNorm(32, C);
- the VAE keeps 4 levels so latents are 1/8 of the image size, as the WebUI assumes (opt_f = 8);
- ldm/sgm zero-initialise the UNet's output convs (zero_module); left at zero the UNet ignores the prompt,
  so every all-zero parameter is re-randomised;
- the text encoders' LayerNorms get non-trivial weights: A1111's "Original" emphasis rescales the
  embedding by old_mean / new_mean, which is 0 / 0 (NaN) for a LayerNorm with weight 1 and bias 0;
- the yaml points the CLIP embedders' `version` at the local folder and open_clip's `version` (its
  pretrained tag) at null, so nothing is fetched from a hub.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

SEED = 1234
CROSS_ATTN_SHARPEN = 4.0
OPEN_CLIP_ARCH = "ViT-S-32-alt"  # the smallest text tower open_clip 2.20 ships: width 256, 10 layers
OPEN_CLIP_WIDTH = 256
SDXL_VECTOR_OUTDIM = 32  # ConcatTimestepEmbedderND size per number (SDXL: 256)

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

UNET_PARAMS: dict[str, Any] = {
    "image_size": 8,  # unused at inference
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

FAMILIES = ("sd1", "sdxl", "sd2-v")


def _ldm_config(text_encoder_dir: Path, *, v_prediction: bool, open_clip: bool) -> dict:
    """The v1/v2-inference.yaml structure with tiny sizes."""
    unet = dict(UNET_PARAMS)
    if open_clip:
        cond = {
            "target": "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder",
            "params": {"arch": OPEN_CLIP_ARCH, "version": None, "freeze": True, "layer": "penultimate"},
        }
        unet.update(context_dim=OPEN_CLIP_WIDTH, use_linear_in_transformer=True, num_heads=-1, num_head_channels=16)
    else:
        cond = {
            "target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder",
            "params": {"version": str(text_encoder_dir)},
        }
    params: dict[str, Any] = {
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
        "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": unet},
        "first_stage_config": {
            "target": "ldm.models.autoencoder.AutoencoderKL",
            "params": {
                "embed_dim": 4,
                "monitor": "val/rec_loss",
                "ddconfig": VAE_DDCONFIG,
                "lossconfig": {"target": "torch.nn.Identity"},
            },
        },
        "cond_stage_config": cond,
    }
    if v_prediction:
        params = {"parameterization": "v", **params}
    return {
        "model": {
            "base_learning_rate": 1.0e-04,
            "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
            "params": params,
        }
    }


def _sdxl_config(text_encoder_dir: Path) -> dict:
    """sd_xl_base.yaml with tiny sizes: context = CLIP hidden + open_clip width, vector = pooled + 6 numbers."""
    unet = dict(UNET_PARAMS)
    unet.pop("image_size")
    unet.update(
        adm_in_channels=OPEN_CLIP_WIDTH + 6 * SDXL_VECTOR_OUTDIM,
        num_classes="sequential",
        num_heads=-1,
        num_head_channels=16,
        use_linear_in_transformer=True,
        transformer_depth=[1, 1],
        context_dim=TEXT_HIDDEN + OPEN_CLIP_WIDTH,
        spatial_transformer_attn_type="softmax",
    )
    vector = [
        {
            "is_trainable": False,
            "input_key": key,
            "target": "sgm.modules.encoders.modules.ConcatTimestepEmbedderND",
            "params": {"outdim": SDXL_VECTOR_OUTDIM},
        }
        for key in ("original_size_as_tuple", "crop_coords_top_left", "target_size_as_tuple")
    ]
    return {
        "model": {
            "target": "sgm.models.diffusion.DiffusionEngine",
            "params": {
                "scale_factor": 0.13025,
                "disable_first_stage_autocast": True,
                "denoiser_config": {
                    "target": "sgm.modules.diffusionmodules.denoiser.DiscreteDenoiser",
                    "params": {
                        "num_idx": 1000,
                        "weighting_config": {"target": "sgm.modules.diffusionmodules.denoiser_weighting.EpsWeighting"},
                        "scaling_config": {"target": "sgm.modules.diffusionmodules.denoiser_scaling.EpsScaling"},
                        "discretization_config": {
                            "target": "sgm.modules.diffusionmodules.discretizer.LegacyDDPMDiscretization"
                        },
                    },
                },
                "network_config": {"target": "sgm.modules.diffusionmodules.openaimodel.UNetModel", "params": unet},
                "conditioner_config": {
                    "target": "sgm.modules.GeneralConditioner",
                    "params": {
                        "emb_models": [
                            {
                                "is_trainable": False,
                                "input_key": "txt",
                                "target": "sgm.modules.encoders.modules.FrozenCLIPEmbedder",
                                "params": {"version": str(text_encoder_dir), "layer": "hidden", "layer_idx": 1},
                            },
                            {
                                "is_trainable": False,
                                "input_key": "txt",
                                "target": "sgm.modules.encoders.modules.FrozenOpenCLIPEmbedder2",
                                "params": {
                                    "arch": OPEN_CLIP_ARCH,
                                    "version": None,
                                    "freeze": True,
                                    "layer": "penultimate",
                                    "always_return_pooled": True,
                                    "legacy": False,
                                },
                            },
                            *vector,
                        ]
                    },
                },
                "first_stage_config": {
                    "target": "sgm.models.autoencoder.AutoencoderKLInferenceWrapper",
                    "params": {
                        "embed_dim": 4,
                        "monitor": "val/rec_loss",
                        "ddconfig": {**VAE_DDCONFIG, "attn_type": "vanilla"},
                        "lossconfig": {"target": "torch.nn.Identity"},
                    },
                },
            },
        }
    }


def model_config(family: str, text_encoder_dir: Path) -> dict:
    if family == "sdxl":
        return _sdxl_config(text_encoder_dir)
    return _ldm_config(text_encoder_dir, v_prediction=family == "sd2-v", open_clip=family == "sd2-v")


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


def nontrivial_layernorms(model: Any, generator: Any = None) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm) and module.weight is not None:
            module.weight.copy_(1.0 + 0.2 * torch.randn(module.weight.shape, generator=generator))
            # A clearly non-zero mean keeps the emphasis rescale (old_mean / new_mean) finite.
            module.bias.copy_(0.5 + 0.2 * torch.randn(module.bias.shape, generator=generator))


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
        nontrivial_layernorms(model)

    text_dir = outdir / "clip-text"
    model.save_pretrained(str(text_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(text_dir))
    for leftover in tmp.iterdir():
        leftover.unlink()
    tmp.rmdir()
    return text_dir


def _add_repositories_to_path(webui_dir: Path | None) -> None:
    roots = [webui_dir] if webui_dir is not None else []
    roots.append(Path(sys.prefix).parent)  # the venv normally lives in <webui>/venv
    for root in roots:
        repos = root / "repositories"
        if (repos / "stable-diffusion-stability-ai" / "ldm").is_dir():
            for name in ("stable-diffusion-stability-ai", "generative-models"):
                sys.path.insert(0, str(repos / name))
            return
    raise RuntimeError(f"ldm (repositories/stable-diffusion-stability-ai) not found under {[str(r) for r in roots]}")


def _fix_pytorch_lightning() -> None:
    # ldm imports pytorch_lightning.utilities.distributed, which lightning 1.9 moved; A1111 aliases it too.
    import pytorch_lightning

    if "pytorch_lightning.utilities.distributed" not in sys.modules:
        sys.modules["pytorch_lightning.utilities.distributed"] = pytorch_lightning.utilities.rank_zero


def shape_weights(model: Any, skip_prefixes: tuple[str, ...]) -> None:
    """Re-randomise all-zero parameters (zero_module outputs, biases), sharpen cross-attention, and give the
    open_clip text tower non-trivial LayerNorms; the HF CLIP folder's weights are final already."""
    import torch

    generator = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(skip_prefixes):
                continue
            if not torch.any(param):
                # zero_module() outputs and biases: small random values; the transformer outputs (proj_out)
                # get more so that the prompt visibly changes the image.
                scale = (0.3 if "proj_out" in name else 0.05) if param.dim() > 1 else 0.02
                param.copy_(scale * torch.randn(param.shape, generator=generator))
            elif ".attn2.to_q." in name or ".attn2.to_k." in name:
                # Sharper cross-attention: with default init the softmax is nearly uniform over 77
                # mostly-padding tokens, which dilutes the few prompt tokens.
                param.mul_(CROSS_ATTN_SHARPEN)
        for name, module in model.named_modules():
            if name.endswith(("cond_stage_model.model", "embedders.1.model")):
                nontrivial_layernorms(module, generator)


def build(family: str, outdir: Path, webui_dir: Path | None = None) -> dict[str, str]:
    import torch
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    if family not in FAMILIES:
        raise ValueError(f"A1111 fixture families: {FAMILIES}")
    torch.set_num_threads(1)
    outdir = outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    text_dir = build_text_encoder(outdir)

    _add_repositories_to_path(webui_dir)
    _fix_pytorch_lightning()
    from ldm.util import instantiate_from_config

    config = model_config(family, text_dir)
    torch.manual_seed(SEED + 1)
    model = instantiate_from_config(copy.deepcopy(OmegaConf.create(config).model)).eval()
    shape_weights(model, skip_prefixes=("cond_stage_model.transformer.", "conditioner.embedders.0."))

    state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    name = {"sd1": "tiny-sd1", "sdxl": "tiny-sdxl", "sd2-v": "tiny-sd2-v"}[family]
    ckpt_dir = outdir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = ckpt_dir / f"{name}.safetensors"
    yaml_path = ckpt_dir / f"{name}.yaml"
    save_file(state, str(ckpt))
    OmegaConf.save(OmegaConf.create(config), str(yaml_path))
    return {
        "text_encoder": str(text_dir),
        "checkpoint_dir": str(ckpt_dir),
        "checkpoint": str(ckpt),
        "config": str(yaml_path),
        "checkpoint_title": ckpt.name,
    }
