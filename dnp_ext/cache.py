"""Exact DNS cache: a DNS batch's images, infotexts and captions, keyed on everything that makes them.

A DNS image and its caption are a pure function of the checkpoint and VAE, the prompt after styles, the
seeds, size, sampler, scheduler, steps, the DNS settings, every option that changes sampling, and the
captioner with its model source. The host lists those as plain values; anything it cannot name exactly is
``UNKNOWN``, and a key with an unknown part is no key at all: a miss, never a guess.

The unit is one DNS batch (the seeds sampled together, in order), not one image: on some hosts a seed's
image depends on the batch it is sampled in, and a hit must be bit-identical to a miss.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MB = 1024 * 1024
DEFAULT_CACHE_MB = 256


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()  # a key part the host cannot state exactly: makes the key a miss


def _plain(value: Any) -> Any:
    """The value as canonical JSON-able data; raises ValueError for UNKNOWN or anything not plain."""
    if value is UNKNOWN:
        raise ValueError("unknown key part")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)  # exact, and nan/inf survive
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("non-string mapping key")
        return {k: _plain(value[k]) for k in sorted(value)}
    raise ValueError(f"not a plain value: {type(value).__name__}")


def make_key(parts: Mapping[str, Any]) -> str | None:
    """A stable digest of the key parts, or None when any part is unknown or not plain data."""
    try:
        data = _plain(parts)
    except ValueError:
        return None
    text = json.dumps(data, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def image_nbytes(image: Any) -> int:
    """Memory an image holds: numpy-like ``nbytes``, else PIL size x bands x bytes per band."""
    nbytes = getattr(image, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    size, bands = getattr(image, "size", None), getattr(image, "getbands", None)
    if isinstance(size, tuple) and len(size) == 2 and callable(bands):
        per_band = {"I": 4, "F": 4, "I;16": 2, "I;16B": 2, "I;16L": 2}.get(getattr(image, "mode", ""), 1)
        return int(size[0]) * int(size[1]) * len(bands()) * per_band
    return len(repr(image).encode())


def _copy(image: Any) -> Any:
    copy = getattr(image, "copy", None)
    return copy() if callable(copy) else image


@dataclass(frozen=True)
class DnsEntry:
    """One DNS batch: its images and infotexts as sampled, and the captioner's raw captions."""

    images: tuple[Any, ...]
    infotexts: tuple[str, ...]
    captions: tuple[str, ...]

    @property
    def nbytes(self) -> int:
        text = sum(len(t.encode()) for t in (*self.infotexts, *self.captions))
        return sum(image_nbytes(im) for im in self.images) + text

    def copied(self) -> DnsEntry:
        """Fresh image objects, so that nobody's later edits reach the cache or another hit."""
        return DnsEntry(tuple(_copy(im) for im in self.images), self.infotexts, self.captions)


class DnsCache:
    """LRU of DNS entries bounded by memory (images count); a budget of 0 turns it off."""

    def __init__(self, budget_bytes: int = DEFAULT_CACHE_MB * MB) -> None:
        self._entries: OrderedDict[str, tuple[DnsEntry, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.budget = max(0, int(budget_bytes))
        self.used = 0
        self.hits = 0
        self.misses = 0

    def set_budget(self, budget_bytes: int) -> None:
        with self._lock:
            self.budget = max(0, int(budget_bytes))
            self._evict()

    def get(self, key: str | None) -> DnsEntry | None:
        if key is None or self.budget == 0:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found[0].copied()

    def put(self, key: str | None, entry: DnsEntry) -> bool:
        """Store a copy; False when off, keyless, or the entry alone is over the budget."""
        if key is None or self.budget == 0:
            return False
        size = entry.nbytes
        if size > self.budget:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.used -= old[1]
            self._entries[key] = (entry.copied(), size)
            self.used += size
            self._evict()
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.used = 0

    def _evict(self) -> None:
        while self.used > self.budget and self._entries:
            _, (_, size) = self._entries.popitem(last=False)
            self.used -= size

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._entries),
            "bytes": self.used,
            "budget_bytes": self.budget,
            "hits": self.hits,
            "misses": self.misses,
        }


def batch_key(common: Mapping[str, Any], per_image: Sequence[Mapping[str, Any]]) -> str | None:
    """Key of one DNS batch: the settings shared by the batch and each image's own parts, in batch order."""
    return make_key({"common": common, "images": list(per_image)})
