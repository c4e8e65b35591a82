"""Captioner interface shared by the Hugging Face captioners and any host-provided one.

A captioner turns a batch of PIL images into one caption each, in one batched call.  Models load lazily on
the first ``caption()`` and the caller hands memory back with ``release(policy)`` after each use.
"""

from __future__ import annotations

import gc
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

RELEASE_POLICIES = ("offload", "unload")

# Where the user changes the captioner's model; named in every error so the fix is findable.
SETTINGS_SECTION = "Settings > Diffusion-Negative Prompting"


class CaptionerError(RuntimeError):
    """A captioner could not load or run.

    The message names the captioner, the setting to change and the fix; the original exception is chained
    (``raise CaptionerError(...) from exc``).
    """

    def __init__(self, message: str, *, captioner: str = "", setting: str = "") -> None:
        super().__init__(message)
        self.captioner = captioner
        self.setting = setting


def empty_device_cache() -> None:
    """Return cached accelerator memory to the driver (no-op without CUDA/MPS)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is always there in a WebUI
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None:
        try:
            if torch.backends.mps.is_available():
                mps.empty_cache()
        except (AttributeError, RuntimeError):  # older torch without torch.mps.empty_cache
            pass


class Captioner(ABC):
    """Anything that captions images: the Hugging Face models here, or a host's own captioner."""

    name: str = ""

    @abstractmethod
    def caption(self, images: list[Image.Image]) -> list[str]:
        """Return one stripped caption per image, in order, from ONE batched call; loads lazily."""

    @abstractmethod
    def release(self, policy: str) -> None:
        """ "offload": move the model to the CPU (kept in RAM); "unload": drop it and free the memory."""

    def check(self) -> None:  # noqa: B027 - optional hook, most captioners have nothing to check
        """Cheap preflight, before any work: raise CaptionerError for what is wrong already (no loading)."""


class ModelCaptioner(Captioner):
    """A captioner backed by a model that loads lazily and can be offloaded or unloaded.

    Subclasses implement ``_load`` (build and return the model objects, on ``self.device``), ``_move``
    (put the loaded objects on a device) and ``_caption`` (one batched generation).  This class adds lazy
    loading, a lock (the WebUI API may call from several threads) and the release policies.
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.device = device
        self._lock = threading.RLock()
        self._loaded: Any = None  # whatever _load returned; None while not loaded
        self._loaded_on: Any = None  # device the loaded objects are on now

    # -- to implement ----------------------------------------------------------------------------------
    @abstractmethod
    def _load(self) -> Any:
        """Load the model on ``self.device``; raise CaptionerError on failure."""

    @abstractmethod
    def _move(self, loaded: Any, device: Any, *, compute: bool) -> None:
        """Move already loaded objects to ``device``; ``compute`` is False when only parking them."""

    @abstractmethod
    def _caption(self, loaded: Any, images: list[Image.Image]) -> list[str]:
        """Caption ``images`` in one batched call with the loaded objects."""

    # -- public API ------------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def caption(self, images: list[Image.Image]) -> list[str]:
        """Return one stripped caption per image, in order; loads (or moves back) the model first."""
        images = list(images)
        if not images:
            return []
        with self._lock:
            loaded = self._ensure_loaded()
            captions = self._caption(loaded, images)
        if len(captions) != len(images):  # a model contract violation, not a user error
            raise RuntimeError(f"{self.name}: got {len(captions)} captions for {len(images)} images")
        return [c.strip() for c in captions]

    def release(self, policy: str) -> None:
        """Free accelerator memory after use.

        "offload": move the model to the CPU (kept in RAM for the next run) and empty the CUDA cache.
        "unload": drop the model entirely and collect it.
        """
        if policy not in RELEASE_POLICIES:
            raise ValueError(f"release policy must be one of {RELEASE_POLICIES}, got {policy!r}")
        with self._lock:
            if self._loaded is None:
                return
            if policy == "offload":
                if _device_type(self._loaded_on) != "cpu":
                    self._move(self._loaded, "cpu", compute=False)
                    self._loaded_on = "cpu"
            else:
                self._loaded = None
                self._loaded_on = None
                gc.collect()
            empty_device_cache()

    def residency(self) -> tuple[int | None, bool]:
        """(bytes of the loaded weights, None when not loaded; whether they are on a GPU now)."""
        with self._lock:
            if self._loaded is None:
                return None, False
            module = self._module(self._loaded)
            size = None
            if module is not None and hasattr(module, "parameters"):
                size = sum(int(t.numel()) * int(t.element_size()) for t in module.parameters())
            return size, _device_type(self._loaded_on) not in ("cpu", "meta")

    def _module(self, loaded: Any) -> Any:
        """The torch module holding the weights (for residency); subclasses with another layout override it."""
        return getattr(loaded, "model", loaded)

    # -- helpers ---------------------------------------------------------------------------------------
    def _ensure_loaded(self) -> Any:
        if self._loaded is None:
            self._loaded = self._load()
            self._loaded_on = self.device
        elif str(self._loaded_on) != str(self.device):
            self._move(self._loaded, self.device, compute=True)
            self._loaded_on = self.device
        return self._loaded

    def __repr__(self) -> str:
        state = f"loaded on {self._loaded_on}" if self._loaded is not None else "not loaded"
        return f"<{type(self).__name__} {self.name!r} device={self.device} {state}>"


def _device_type(device: Any) -> str:
    return getattr(device, "type", None) or str(device).split(":", 1)[0]
