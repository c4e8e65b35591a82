"""Auto-DNP orchestration, host-independent: DNS images -> captions -> per-image negatives n*.

A host (the A1111 or Forge glue) supplies the parts that need a WebUI through ``DnpHost``; everything
here is plain Python so it is tested with a fake host.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from .args import DnpArgs
from .cache import DnsEntry
from .negatives import caption_to_negative, clean_caption, equalize_chunks, merge_negative


class Stop(Enum):
    NONE = "none"
    SKIP = "skip"  # the user skipped the current batch
    INTERRUPT = "interrupt"  # the user stopped the whole run


class DnpHost(Protocol):
    def run_dns(self, indices: Sequence[int]) -> tuple[list[Any], list[str]]:
        """DNS images (and their infotexts) for the run's images at these indices, one batched pass."""

    def caption(self, images: Sequence[Any]) -> list[str]:
        """One batched captioner call."""

    def release_captioner(self) -> None:
        """Move the captioner off the GPU or unload it, per the user's memory setting."""

    def count_chunks(self, negative: str) -> int:
        """How many 75-token chunks the WebUI encodes this negative prompt into."""

    def poll(self) -> Stop:
        """Whether the user pressed Skip or Interrupt since the last poll (and clear a Skip)."""

    def set_phase(self, text: str) -> None:
        """Show progress text; called once per job (DNS batch, caption batch)."""


class DnsMemo(Protocol):
    """The DNS cache as one run sees it: a hit replaces both the DNS pass and the captioning of a batch."""

    def lookup(self, indices: Sequence[int]) -> DnsEntry | None:
        """The cached DNS batch for the run's images at these indices, or None (a miss)."""

    def store(self, indices: Sequence[int], entry: DnsEntry) -> None:
        """Remember a DNS batch just sampled and captioned."""


@dataclass
class DnpPlan:
    """Which images get a DNS image of their own, per batch of the run."""

    batches: list[list[int]]  # image indices per batch
    dns_batches: list[list[int]]  # indices that get a DNS image, per batch (empty: shares batch 0's)

    @classmethod
    def make(cls, n_images: int, batch_size: int, per_image: bool) -> DnpPlan:
        batches = [list(range(i, min(i + batch_size, n_images))) for i in range(0, n_images, batch_size)]
        if per_image:
            dns = [list(b) for b in batches]
        else:
            dns = [[0] if k == 0 else [] for k in range(len(batches))]
        return cls(batches, dns)

    @property
    def jobs(self) -> int:
        """Progress jobs DNP adds: one per DNS batch and one per caption batch."""
        return 2 * sum(1 for b in self.dns_batches if b)


@dataclass
class DnpResult:
    negatives: list[str]  # merged negative per image of the run
    captions: list[str]  # cleaned (not escaped) caption per image of the run
    dns_images: list[Any] = field(default_factory=list)  # in seed order
    dns_infotexts: list[str] = field(default_factory=list)
    skipped_batches: list[int] = field(default_factory=list)  # dropped from the run
    interrupted: bool = False


def run_auto_dnp(
    host: DnpHost, args: DnpArgs, user_negatives: Sequence[str], batch_size: int, memo: DnsMemo | None = None
) -> DnpResult:
    """DNS per seed, caption each batch in one call, merge with the user's negatives, equalise chunks.

    A batch the memo holds is neither sampled nor captioned: its images, infotexts and raw captions are
    the ones a miss made, so the result is the same. Skip drops the batch being prepared from the run
    (with one shared DNS image, every batch); Interrupt stops the whole run. Either way no negative is
    half-applied, and a stopped batch is not remembered.
    """
    n = len(user_negatives)
    plan = DnpPlan.make(n, batch_size, args.per_image)
    result = DnpResult(negatives=list(user_negatives), captions=[""] * n)
    done: dict[int, tuple[list[int], list[Any], list[str]]] = {}  # batch -> (indices, images, infotexts)
    hits: dict[int, DnsEntry] = {}
    skipped: set[int] = set()

    def stopped(k: int) -> bool:
        stop = host.poll()
        if stop is Stop.INTERRUPT:
            result.interrupted = True
        elif stop is Stop.SKIP:
            skipped.update([k] if args.per_image else range(len(plan.batches)))
        return stop is not Stop.NONE

    for k, indices in enumerate(plan.dns_batches):
        if not indices:
            continue
        entry = memo.lookup(indices) if memo is not None else None
        if entry is not None:
            host.set_phase(f"DNP: cached DNS images, batch {k + 1} of {len(plan.batches)}")
            hits[k] = entry
            done[k] = (indices, list(entry.images), list(entry.infotexts))
            continue
        host.set_phase(f"DNP: diffusion-negative sampling, batch {k + 1} of {len(plan.batches)}")
        images, infotexts = host.run_dns(indices)
        if stopped(k):
            if result.interrupted:
                return result
            continue
        done[k] = (indices, images, infotexts)

    try:
        for k, (indices, images, infotexts) in done.items():
            if k in skipped:
                continue
            if k in hits:
                captions = list(hits[k].captions)
            else:
                host.set_phase(f"DNP: captioning, batch {k + 1} of {len(plan.batches)}")
                captions = host.caption(images)
                if len(captions) != len(images):
                    raise RuntimeError(f"captioner returned {len(captions)} captions for {len(images)} images")
                if stopped(k):
                    if result.interrupted:
                        return result
                    continue
                if memo is not None:
                    memo.store(indices, DnsEntry(tuple(images), tuple(infotexts), tuple(captions)))
            for i, caption in zip(indices, captions):
                result.captions[i] = clean_caption(caption)  # control characters never reach infotext or JSON
    finally:
        host.release_captioner()

    if not args.per_image:
        result.captions = [result.captions[0]] * n

    for k in sorted(done):
        if k not in skipped:
            result.dns_images.extend(done[k][1])
            result.dns_infotexts.extend(done[k][2])
    kept = [b for k, b in enumerate(plan.batches) if k not in skipped]
    merged = negatives_for(user_negatives, result.captions, args.merge, kept, host.count_chunks)
    for b in kept:
        for i in b:
            result.negatives[i] = merged[i]
    result.skipped_batches = sorted(skipped)
    return result


def negatives_for(
    user_negatives: Sequence[str],
    captions: Sequence[str],
    merge: str,
    batches: Sequence[Sequence[int]],
    count_chunks: Callable[[str], int],
) -> list[str]:
    """Each image's user negative merged with its n*, chunk counts equal within each batch."""
    out = list(user_negatives)
    for indices in batches:
        merged = [merge_negative(user_negatives[i], caption_to_negative(captions[i]), merge) for i in indices]
        for i, neg in zip(indices, equalize_chunks(merged, count_chunks)):
            out[i] = neg
    return out
