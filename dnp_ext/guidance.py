"""Guidance rules of the paper as pure tensor math (one small class per rule, like diffusers' guiders).

Works on anything with ``+``, ``-`` and scalar ``*`` (torch tensors, numpy arrays, floats).
Equation numbers follow Desai & Vasconcelos, "Improving image synthesis with diffusion-negative sampling".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ClassifierFreeGuidance:
    """Eq. 3: eps = eps_uncond + s * (eps_p - eps_uncond); a negative prompt n takes the uncond slot."""

    scale: float

    def __call__(self, eps_uncond: T, eps_cond: T) -> T:
        return eps_uncond + self.scale * (eps_cond - eps_uncond)  # type: ignore[operator]


@dataclass(frozen=True)
class NegativePromptGuidance:
    """Eq. 4, the paper's three-term form: eps = eps_empty + s * (eps_p - eps_n)."""

    scale: float

    def __call__(self, eps_empty: T, eps_p: T, eps_n: T) -> T:
        return eps_empty + self.scale * (eps_p - eps_n)  # type: ignore[operator]


@dataclass(frozen=True)
class DiffusionNegativeGuidance:
    """Eq. 19, diffusion-negative sampling (DNS): eps = eps_empty + s * (eps_empty - eps_p).

    It samples what the model itself finds least like p. In the WebUI's two-slot CFG this is
    positive = "" and negative = p with CFG scale ``webui_cfg_scale`` = s + 1, because
    eps_p + w * (eps_empty - eps_p) = eps_empty + (w - 1) * (eps_empty - eps_p).
    """

    scale: float

    def __call__(self, eps_empty: T, eps_p: T) -> T:
        return eps_empty + self.scale * (eps_empty - eps_p)  # type: ignore[operator]

    @property
    def webui_cfg_scale(self) -> float:
        return dns_to_webui_cfg_scale(self.scale)

    def as_cfg(self) -> ClassifierFreeGuidance:
        """The same rule as the WebUI runs it: CFG with uncond = eps_p and cond = eps_empty."""
        return ClassifierFreeGuidance(self.webui_cfg_scale)


def dns_to_webui_cfg_scale(dns_scale: float) -> float:
    """The paper's DNS scale s -> the WebUI CFG scale that realises eq. 19 with (positive "", negative p)."""
    return float(dns_scale) + 1.0


def webui_cfg_scale_to_dns(cfg_scale: float) -> float:
    return float(cfg_scale) - 1.0


def negative_has_no_effect(cfg_scale: float) -> bool:
    """At CFG scale 1 eq. 3 is eps_p alone: the negative prompt (n* included) cancels out. Forge does not even
    compute its branch there (sampling_function_inner's CFG-1 shortcut); A1111 computes it with weight 0."""
    return math.isclose(float(cfg_scale), 1.0)


def cfg1_warnings(cfg_scale: float, hires_cfg_scale: float | None = None) -> list[str]:
    """What to tell the user when n* cannot act on the images (it is still made and recorded)."""
    out = []
    if negative_has_no_effect(cfg_scale):
        out.append(
            "Diffusion-Negative Prompting: CFG scale is 1, so the negative prompt (with n*) has no effect on the "
            "images; n* was made and recorded anyway. Use a CFG scale above 1 for n* to act."
        )
    if hires_cfg_scale is not None and negative_has_no_effect(hires_cfg_scale):
        out.append(
            "Diffusion-Negative Prompting: the hires pass runs at CFG scale 1, so its negative prompt (with n*) "
            "has no effect there."
        )
    return out
