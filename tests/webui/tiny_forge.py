"""Random-weight SD1.5 and SDXL checkpoints that Stable Diffusion WebUI Forge loads offline.

Built by `tests/webui/fixtures.py sd1|sdxl --host forge` with Forge's own interpreter (torch, transformers 4.46):
OUTDIR/checkpoints/tiny-forge-sd15.safetensors (fp16, about 0.63 GB, ~12 s on 2 cores) or
OUTDIR/checkpoints/tiny-forge-sdxl.safetensors (fp16, about 2.97 GB, ~100 s on 2 busy cores). Same inputs, same
bytes (with Forge dfdcbab6, torch 2.14.1: sd1 sha256 8d00f0df..., sdxl 1b50cc18...).

Why it is not as tiny as the A1111 one (tests/webui/tiny_a1111.py):
- Forge ignores any yaml for the architecture. It builds the text encoder and the VAE from its own full-size
  configs (backend/huggingface/runwayml/stable-diffusion-v1-5/{text_encoder,vae}/config.json) and copies the
  weights in (a shape mismatch is an error, a missing key leaves random init), so both must be full size:
  CLIP-L (123 M parameters) and the SD VAE (84 M).
- Only the UNet's shape comes from the weights (huggingface_guess.detection.detect_unet_config), and the SD15
  match needs model_channels 320 and context_dim 768; depth is free, so the UNet is cut to 2 levels with one
  res block each (about 0.1 G parameters instead of 0.86 G).
- The tokenizer is the real CLIP one that Forge ships under backend/huggingface; nothing is written for it.

SDXL: huggingface_guess matches SDXL-class UNets by model_channels 320, context_dim 2048, adm_in_channels 2816,
linear proj_in and the exact per-block transformer depths of the input side. The smallest listed member is
KOALA_700M (one res block per level, depths [0, 2, 5]); it is an SDXL subclass, so Forge loads it with its SDXL
engine (both SDXL text encoders, the SDXL VAE, the SDXL conditioning). The output side's depths are free and
kept at 1 per attention level, the middle block keeps one transformer: 585 M UNet parameters (SDXL: 2.6 G).
The text encoders are full size: CLIP-L (123 M) and OpenCLIP bigG (695 M), written in the checkpoint's open_clip
layout by huggingface_guess's own SDXL save conversion; the SDXL VAE (84 M).

Weights are random but chosen so that images are neither NaN nor blank and the prompt changes them:
- the text encoder's LayerNorms get weights around 1 and biases around 0.5: Forge's "Original" emphasis
  rescales the embedding by old_mean / new_mean, which is 0 / 0 for a LayerNorm left at weight 1, bias 0;
- all-zero parameters are re-randomised (unlike ldm, Forge's UNet class zero-initialises no output layer,
  so here that is only the norms' biases);
- cross-attention q/k are scaled up so the softmax over 77 tokens is not nearly uniform, and the spatial
  transformers' proj_out weights are scaled up, so that the prompt visibly changes the image (measured on
  64x64, 4 steps, Euler a: about 7/255 mean pixel change between two prompts, 25/255 between CFG and DNS).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

SEED = 4321
CROSS_ATTN_SHARPEN = 4.0
PROJ_OUT_GAIN = 4.0
SD15_REPO = Path("backend") / "huggingface" / "runwayml" / "stable-diffusion-v1-5"
SDXL_REPO = Path("backend") / "huggingface" / "stabilityai" / "stable-diffusion-xl-base-1.0"

# What huggingface_guess detects from these weights (plus SD15.unet_extra_config): the SD15 match needs
# model_channels 320, context_dim 768, no linear proj_in, no adm. Only depth is reduced.
UNET_CONFIG: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [1, 1],
    "channel_mult": [1, 2],
    "transformer_depth": [1, 1],
    "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1,
    "context_dim": 768,
    "use_linear_in_transformer": False,
    "use_spatial_transformer": True,
    "adm_in_channels": None,
    "num_heads": 8,
    "num_head_channels": -1,
}


# KOALA_700M's input side (what huggingface_guess matches), the smallest SDXL-class UNet it knows.
SDXL_UNET_CONFIG: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [1, 1, 1],
    "channel_mult": [1, 2, 4],
    "transformer_depth": [0, 2, 5],
    "transformer_depth_output": [0, 0, 1, 1, 1, 1],
    "transformer_depth_middle": 1,
    "context_dim": 2048,
    "use_linear_in_transformer": True,
    "use_spatial_transformer": True,
    "adm_in_channels": 2816,
    "num_classes": "sequential",
    "num_heads": -1,
    "num_head_channels": 64,
}
FAMILIES = {
    "sd1": ("tiny-forge-sd15", "SD15", UNET_CONFIG),
    "sdxl": ("tiny-forge-sdxl", "KOALA_700M", SDXL_UNET_CONFIG),
}


def find_forge(webui_dir: Path | None) -> Path:
    candidates = [webui_dir] if webui_dir is not None else []
    # The venv normally lives in <forge>/venv: find Forge from the interpreter too.
    candidates.append(Path(sys.prefix).parent)
    for path in candidates:
        if path is not None and (path / "backend" / "loader.py").is_file():
            return path.resolve()
    raise RuntimeError(f"Forge (backend/loader.py) not found in {[str(c) for c in candidates]}")


def _import_forge(forge: Path) -> None:
    """Make Forge's backend and its vendored packages importable, as modules_forge.initialization does."""
    for sub in ("repositories/huggingface_guess", "packages_3rdparty", "."):
        path = str(forge / sub)
        if path not in sys.path:
            sys.path.insert(0, path)
    # backend.args parses sys.argv at import; give it only what it needs (no GPU here or wanted).
    saved = sys.argv
    sys.argv = [saved[0], "--always-cpu"]
    try:
        importlib.import_module("backend.nn.unet")
        importlib.import_module("backend.nn.vae")
    finally:
        sys.argv = saved


def _nontrivial_layernorms(model: Any, generator: Any) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.weight.copy_(1.0 + 0.2 * torch.randn(module.weight.shape, generator=generator))
            # A clearly non-zero mean keeps the emphasis rescale (old_mean / new_mean) finite.
            module.bias.copy_(0.5 + 0.2 * torch.randn(module.bias.shape, generator=generator))


def _shape_unet(model: Any, generator: Any) -> None:
    import torch

    for name, param in model.named_parameters():
        if not torch.any(param):
            # Only the norms' biases here (Forge's UNet class has no zero_module); small values, not 0.
            param.copy_(0.02 * torch.randn(param.shape, generator=generator))
        elif ".attn2.to_q." in name or ".attn2.to_k." in name:
            param.mul_(CROSS_ATTN_SHARPEN)
        elif name.endswith("proj_out.weight"):
            param.mul_(PROJ_OUT_GAIN)  # the spatial transformers carry the prompt: let them weigh more


def _text_encoders_sd1(forge: Path, generator: Any) -> dict[str, Any]:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(SEED + 1)
    clip = CLIPTextModel(CLIPTextConfig.from_pretrained(str(forge / SD15_REPO / "text_encoder"))).eval()
    _nontrivial_layernorms(clip, generator)
    return {
        "cond_stage_model.transformer." + k: v for k, v in clip.state_dict().items() if not k.endswith("position_ids")
    }


def _text_encoders_sdxl(forge: Path, generator: Any) -> dict[str, Any]:
    """CLIP-L and OpenCLIP bigG at full size, in the checkpoint layout (huggingface_guess's SDXL save conversion,
    the inverse of what Forge's loader does)."""
    import huggingface_guess.model_list as model_list
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    state: dict[str, Any] = {}
    torch.manual_seed(SEED + 1)
    clip_l = CLIPTextModel(CLIPTextConfig.from_pretrained(str(forge / SDXL_REPO / "text_encoder"))).eval()
    _nontrivial_layernorms(clip_l, generator)
    state.update({"clip_l.transformer." + k: v for k, v in clip_l.state_dict().items()})
    del clip_l
    torch.manual_seed(SEED + 4)
    config_g = CLIPTextConfig.from_pretrained(str(forge / SDXL_REPO / "text_encoder_2"))
    clip_g = CLIPTextModelWithProjection(config_g).eval()
    _nontrivial_layernorms(clip_g, generator)
    state.update({"clip_g.transformer." + k: v for k, v in clip_g.state_dict().items()})
    del clip_g
    state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
    return model_list.SDXL(dict(SDXL_UNET_CONFIG)).process_clip_state_dict_for_saving(state)


def build_state_dict(forge: Path, family: str) -> dict[str, Any]:
    import torch

    _import_forge(forge)
    from backend.nn.unet import IntegratedUNet2DConditionModel
    from backend.nn.vae import IntegratedAutoencoderKL

    repo = SDXL_REPO if family == "sdxl" else SD15_REPO
    unet_config = FAMILIES[family][2]
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        state = (_text_encoders_sdxl if family == "sdxl" else _text_encoders_sd1)(forge, generator)

        torch.manual_seed(SEED + 2)
        vae = IntegratedAutoencoderKL.from_config(IntegratedAutoencoderKL.load_config(str(forge / repo / "vae"))).eval()
        for k, v in vae.state_dict().items():
            state["first_stage_model." + k] = v
        del vae

        torch.manual_seed(SEED + 3)
        unet = IntegratedUNet2DConditionModel.from_config(unet_config).eval()
        _shape_unet(unet, generator)
        for k, v in unet.state_dict().items():
            state["model.diffusion_model." + k] = v
        del unet

    # fp16 halves the file; Forge computes in fp32 on the CPU whatever the stored dtype.
    return {k: v.to(torch.float16).contiguous().clone() for k, v in state.items()}


def check_guess(state: dict[str, Any], family: str) -> None:
    """Fail early, with a clear message, if Forge would not read this file as this family with this UNet."""
    import huggingface_guess

    _, want, unet_config = FAMILIES[family]
    guess = huggingface_guess.guess(state)
    if guess is None or type(guess).__name__ != want:
        raise RuntimeError(f"huggingface_guess does not see {want}: {type(guess).__name__}")
    for key in ("model_channels", "num_res_blocks", "channel_mult", "transformer_depth", "context_dim"):
        if guess.unet_config.get(key) != unet_config[key]:
            raise RuntimeError(f"guessed {key}={guess.unet_config.get(key)!r}, built {unet_config[key]!r}")


def build(family: str, outdir: Path, webui_dir: Path | None = None) -> dict[str, str]:
    import torch
    from safetensors.torch import save_file

    if family not in FAMILIES:
        raise ValueError(f"Forge fixture families: {tuple(FAMILIES)}")
    torch.set_num_threads(1)
    forge = find_forge(webui_dir)
    state = build_state_dict(forge, family)
    check_guess(state, family)
    ckpt_dir = outdir.resolve() / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = ckpt_dir / f"{FAMILIES[family][0]}.safetensors"
    tmp = ckpt.with_suffix(".part")
    save_file(state, str(tmp))
    tmp.replace(ckpt)  # never leave a half-written checkpoint where the WebUI would list it
    return {"checkpoint_dir": str(ckpt_dir), "checkpoint": str(ckpt), "checkpoint_title": ckpt.name}
