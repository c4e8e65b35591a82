"""A tiny random LoRA for the tiny SD1 checkpoint of tiny_sd.py, written with numpy only.

Keys are kohya-style (the names most LoRA files on the web use), which the WebUI's built-in Lora extension
maps to the ldm modules: ``lora_te_text_model_encoder_layers_<i>_self_attn_<proj>`` for the CLIP text
encoder and ``lora_unet_{down_blocks_0_attentions_0,mid_block_attentions_0,up_blocks_0_attentions_<j>}_
transformer_blocks_0_attn2_to_{k,v}`` for the UNet's cross-attention. Only those blocks are targeted: the
kohya names assume SD's 2 res-blocks per level, and the tiny UNet has 1, so only these map to the same
module in both layouts. Shapes are read from the checkpoint's safetensors header.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

RANK = 4
# kohya name -> the checkpoint key of the weight it patches
TEXT_LAYERS = 2
UNET_TARGETS = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2": "input_blocks.1.1.transformer_blocks.0.attn2",
    "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2": "middle_block.1.transformer_blocks.0.attn2",
    "lora_unet_up_blocks_0_attentions_0_transformer_blocks_0_attn2": "output_blocks.0.1.transformer_blocks.0.attn2",
    "lora_unet_up_blocks_0_attentions_1_transformer_blocks_0_attn2": "output_blocks.1.1.transformer_blocks.0.attn2",
}


def read_safetensors_header(path: Path) -> dict[str, dict]:
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    header.pop("__metadata__", None)
    return header


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """The safetensors layout: u64 header size, JSON header (name -> dtype, shape, byte range), raw data."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs, offset = [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for blob in blobs:
            fh.write(blob)


def lora_targets(checkpoint: Path) -> dict[str, tuple[int, int]]:
    """kohya module name -> (out_features, in_features) of the Linear it patches."""
    header = read_safetensors_header(checkpoint)
    targets: dict[str, tuple[int, int]] = {}
    for layer in range(TEXT_LAYERS):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            key = f"cond_stage_model.transformer.text_model.encoder.layers.{layer}.self_attn.{proj}.weight"
            targets[f"lora_te_text_model_encoder_layers_{layer}_self_attn_{proj}"] = tuple(header[key]["shape"])
    for kohya, module in UNET_TARGETS.items():
        for proj in ("to_k", "to_v"):
            key = f"model.diffusion_model.{module}.{proj}.weight"
            targets[f"{kohya}_{proj}"] = tuple(header[key]["shape"])
    return targets


def build_tiny_lora(checkpoint: Path, out: Path, seed: int = 0, std: float = 0.5) -> Path:
    """Write a rank-4 LoRA (alpha = rank, so scale 1) with weights large enough to change the image."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for name, (n_out, n_in) in lora_targets(checkpoint).items():
        tensors[f"{name}.lora_down.weight"] = rng.normal(0.0, std, (RANK, n_in)).astype(np.float32)
        tensors[f"{name}.lora_up.weight"] = rng.normal(0.0, std, (n_out, RANK)).astype(np.float32)
        tensors[f"{name}.alpha"] = np.array(float(RANK), dtype=np.float32)
    write_safetensors(out, tensors, {"ss_network_module": "networks.lora", "ss_network_dim": str(RANK)})
    return out
