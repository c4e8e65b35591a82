"""The DNS cache in the WebUI: what a DNS batch depends on, read from the WebUI, and one cache per process.

Auto-DNP, Suggest and anything else that goes through ``RunAdapter`` share ``DNS_CACHE``. The key holds every
input of the nested DNS run (``dns.dns_processing``) and of the captioner, plus all of the WebUI's options (so
clip skip, eta, noise schedule, token merging, emphasis, ... and any option we do not know about), the loaded
checkpoint and VAE files, the files extra networks and embeddings come from, and the names of other extensions'
hooks into sampling (what such a hook does with its own state is not seen). What cannot be read is
``UNKNOWN``: that run is not cached.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modules import shared
from modules.shared import state

from ..args import DnpArgs, preview_steps
from ..cache import MB, UNKNOWN, DnsCache, DnsEntry, batch_key
from ..guidance import dns_to_webui_cfg_scale
from ..negatives import dns_prompt_pair
from .settings import CAPTIONER_SETTING, option

if TYPE_CHECKING:
    from .webui import WebUIHost

DNS_CACHE = DnsCache()
# DNS passes sampled in this process and their model evaluations (what the cache and the preview save, over HTTP)
COUNTERS = {"dns_passes": 0, "dns_evaluations": 0}
# options that change neither a DNS image nor its caption: changing them must not empty the cache
IGNORED_OPTIONS = frozenset({"dnp_cache_mb", "dnp_captioner_after", "dnp_offload_sd_model"})


def file_id(path: Any) -> Any:
    """A file as (path, size, mtime): a file changed on disk is another file."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return UNKNOWN
    return [os.path.abspath(str(path)), st.st_size, st.st_mtime_ns]


def folder_id(path: Any) -> Any:
    """Every file under a folder as (relative path, size, mtime)."""
    if not path or not os.path.isdir(path):
        return None
    out = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                return UNKNOWN
            out.append([os.path.relpath(full, path), st.st_size, st.st_mtime_ns])
    return sorted(out)


def options_part() -> Any:
    data = getattr(shared.opts, "data", None)
    if not isinstance(data, dict):
        return UNKNOWN
    return {k: v for k, v in data.items() if k not in IGNORED_OPTIONS}


def model_part() -> Any:
    model = shared.sd_model
    info = getattr(model, "sd_checkpoint_info", None)
    model_hash = getattr(model, "sd_model_hash", None)
    if info is None or not model_hash:
        return UNKNOWN
    from modules import sd_vae

    return {
        "hash": str(model_hash),
        "file": file_id(getattr(info, "filename", None)) or UNKNOWN,
        "vae": file_id(getattr(sd_vae, "loaded_vae_file", None)),
    }


def networks_part(prompts: Sequence[str]) -> Any:
    """Files the prompts' extra networks and embeddings may come from (folders, as names can't be resolved here)."""
    cmd = shared.cmd_opts
    part: dict[str, Any] = {"embeddings": folder_id(getattr(cmd, "embeddings_dir", None))}
    if any("<" in p for p in prompts):
        for key in ("lora_dir", "lyco_dir_backcompat", "hypernetwork_dir"):
            part[key] = folder_id(getattr(cmd, key, None))
    return part


SAMPLING_HOOKS = (
    "callbacks_extra_noise",
    "callbacks_cfg_denoiser",
    "callbacks_cfg_denoised",
    "callbacks_cfg_after_cfg",
)


def hooks_part() -> Any:
    """Other extensions' hooks into sampling, by name: one added or removed changes the key."""
    from modules import script_callbacks

    callbacks = getattr(script_callbacks, "callback_map", None)
    if not isinstance(callbacks, dict):
        return UNKNOWN
    return {k: sorted(str(getattr(c, "name", c)) for c in callbacks.get(k, [])) for k in SAMPLING_HOOKS}


def captioner_part(host: WebUIHost, name: str) -> Any:
    setting = CAPTIONER_SETTING.get(name)
    source = str(option(setting)).strip() if setting else None
    return {"name": name, "source": source, "folder": folder_id(source) if source else None, "host": host.name}


def number(value: Any) -> float | None:
    """A number as the sampler uses it: 0 and 0.0 are one key."""
    return None if value is None else float(value)


def sampler_noise(p: Any) -> list[float]:
    """s_churn, s_tmin, s_tmax, s_noise as the DNS run resolves them (unset: the option; s_tmax 0: infinity)."""
    opts = shared.opts

    def pick(name: str) -> float:
        value = getattr(p, name)
        return float(value if value is not None else getattr(opts, name))

    return [pick("s_churn"), pick("s_tmin"), pick("s_tmax") or float("inf"), pick("s_noise")]


def key_for(host: WebUIHost, p: Any, indices: Sequence[int], args: DnpArgs) -> str | None:
    """The cache key of the DNS batch for p's images at these indices (None: not cacheable)."""
    try:
        steps = args.dns_steps or p.steps
        pairs = [dns_prompt_pair(p.all_prompts[i]) for i in indices]
        common = {
            "host": host.name,
            "model": model_part(),
            "options": options_part(),
            "networks": networks_part([pos for pos, _ in pairs]),
            "captioner": captioner_part(host, args.captioner),
            "hooks": hooks_part(),
            "sampler": p.sampler_name,
            "scheduler": getattr(p, "scheduler", None),
            "steps": steps,
            "preview_steps": preview_steps(args.dns_preview, steps),
            "cfg_scale": dns_to_webui_cfg_scale(args.dns_scale),
            "dns_scale": args.dns_scale,
            "dns_preview": args.dns_preview,
            "size": [int(p.width), int(p.height)],
            "tiling": bool(p.tiling if p.tiling is not None else getattr(shared.opts, "tiling", False)),
            "subseed_strength": number(p.subseed_strength),
            "seed_resize_from": [int(p.seed_resize_from_w), int(p.seed_resize_from_h)],
            "eta": number(p.eta),
            # Forge: the distilled guidance of Flux-class models is a model input the DNS pass keeps (dns.py)
            "distilled_cfg_scale": number(getattr(p, "distilled_cfg_scale", None)),
            "s": sampler_noise(p),
        }
        # the variation seed makes no noise at strength 0 (nor infotext): a random one must not make a miss
        varied = bool(p.subseed_strength)
        images = [
            {"prompt": pos, "negative": neg, "seed": p.all_seeds[i], "subseed": p.all_subseeds[i] if varied else None}
            for i, (pos, neg) in zip(indices, pairs)
        ]
    except (AttributeError, IndexError, TypeError):
        return None
    return batch_key(common, images)


class RunMemo:
    """The cache as one run (script or suggest) sees it; a hit counts as the DNS and caption jobs done."""

    def __init__(self, host: WebUIHost, p: Any, args: DnpArgs) -> None:
        self.host, self.p, self.args = host, p, args
        self._keys: dict[tuple[int, ...], str | None] = {}  # read before the DNS pass, stored under the same key
        DNS_CACHE.set_budget(int(float(option("dnp_cache_mb") or 0) * MB))

    def lookup(self, indices: Sequence[int]) -> DnsEntry | None:
        key = self._keys[tuple(indices)] = key_for(self.host, self.p, indices, self.args)
        entry = DNS_CACHE.get(key)
        if entry is not None:
            state.nextjob()
            state.nextjob()
        return entry

    def store(self, indices: Sequence[int], entry: DnsEntry) -> None:
        DNS_CACHE.put(self._keys.get(tuple(indices)), entry)


def stats() -> dict[str, int]:
    return DNS_CACHE.stats() | COUNTERS
