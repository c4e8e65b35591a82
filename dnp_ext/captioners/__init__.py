"""Captioners for diffusion-negative prompting and a small cache of their instances.

The same (name, source) instance is reused between runs so a model loads once; after each use the caller
releases it by the "dnp_captioner_after" policy ("offload" keeps it in RAM, "unload" drops it).
Hosts can add their own captioner (e.g. the WebUI's interrogator) with ``register_captioner``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .base import RELEASE_POLICIES, SETTINGS_SECTION, Captioner, CaptionerError, ModelCaptioner
from .hf import DEFAULT_BLIP, DEFAULT_BLIP2, Blip2Captioner, BlipCaptioner, HFCaptioner

__all__ = [
    "DEFAULT_BLIP",
    "DEFAULT_BLIP2",
    "DEFAULT_SOURCES",
    "RELEASE_POLICIES",
    "SETTINGS_SECTION",
    "SETTING_KEYS",
    "Blip2Captioner",
    "BlipCaptioner",
    "Captioner",
    "CaptionerError",
    "HFCaptioner",
    "ModelCaptioner",
    "available_captioners",
    "cached_captioners",
    "clear_cache",
    "make_captioner",
    "register_captioner",
    "release_all",
]

# WebUI option key holding each built-in captioner's model source, and its default.
SETTING_KEYS: dict[str, str] = {"blip2": Blip2Captioner.setting, "blip": BlipCaptioner.setting}
DEFAULT_SOURCES: dict[str, str] = {"blip2": DEFAULT_BLIP2, "blip": DEFAULT_BLIP}

# factory(source, device) -> Captioner
Factory = Callable[..., Captioner]
_FACTORIES: dict[str, Factory] = {"blip2": Blip2Captioner, "blip": BlipCaptioner}
_CACHE: dict[tuple[str, str], Captioner] = {}
_LOCK = threading.Lock()


def register_captioner(name: str, factory: Factory) -> None:
    """Add (or replace) a captioner; ``factory(source, device)`` must return a Captioner."""
    with _LOCK:
        _FACTORIES[name] = factory
        for key in [k for k in _CACHE if k[0] == name]:
            _CACHE.pop(key).release("unload")


def available_captioners() -> list[str]:
    return list(_FACTORIES)


def make_captioner(name: str, source: str | None = None, device: Any = "cpu", **kwargs: Any) -> Captioner:
    """Return the cached captioner for (name, source), creating it (unloaded) on first use.

    ``source`` falls back to the captioner's default.  A different device is applied to the cached
    instance (its model moves on the next caption).  Instances of ``name`` with another source are
    unloaded and dropped, so a changed setting does not keep the old model in memory.  Extra keyword
    arguments (dtype, max_new_tokens, num_beams) go to the constructor, and update a cached instance.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise CaptionerError(
            f"DNP: unknown captioner {name!r}; available: {', '.join(_FACTORIES)}",
            captioner=name,
        )
    source = (source or "").strip() or DEFAULT_SOURCES.get(name, "")
    key = (name, source)
    with _LOCK:
        for stale in [k for k in _CACHE if k[0] == name and k != key]:
            _CACHE.pop(stale).release("unload")
        captioner = _CACHE.get(key)
        if captioner is None:
            captioner = factory(source, device, **kwargs)
            _CACHE[key] = captioner
        else:
            if hasattr(captioner, "device"):
                captioner.device = device
            for attr, value in kwargs.items():
                if hasattr(captioner, attr):
                    setattr(captioner, attr, value)
        return captioner


def cached_captioners() -> list[Captioner]:
    with _LOCK:
        return list(_CACHE.values())


def release_all(policy: str) -> None:
    """Apply a release policy to every cached captioner."""
    for captioner in cached_captioners():
        captioner.release(policy)


def clear_cache() -> None:
    """Unload and forget every cached captioner."""
    with _LOCK:
        items = list(_CACHE.values())
        _CACHE.clear()
    for captioner in items:
        captioner.release("unload")
