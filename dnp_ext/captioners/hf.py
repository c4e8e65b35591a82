"""BLIP-2 and BLIP captioners on Hugging Face transformers.

Supported transformers: 4.30 (AUTOMATIC1111 1.10.x) through 5.x.  The model source comes from a WebUI setting
(a Hub id or a local folder), never from a request; remote code is never run.
"""

from __future__ import annotations

import gc
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .base import SETTINGS_SECTION, CaptionerError, ModelCaptioner, empty_device_cache

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_BLIP2 = "Salesforce/blip2-opt-2.7b"
DEFAULT_BLIP = "Salesforce/blip-image-captioning-large"

# Pickle weights transformers reads with torch.load when a folder has no safetensors (single file or shards).
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")

# A host's own check that its torch.load runs on a file: returns why it refuses the file, or None. A1111 sets
# one (its safe unpickler makes torch.load return None for what it refuses, which transformers then trips on).
PickleCheck = Callable[[str], "str | None"]
_pickle_check: PickleCheck | None = None


def set_pickle_check(check: PickleCheck | None) -> None:
    global _pickle_check
    _pickle_check = check


# A host's way to fetch a Hub model before loading: (captioner name, Hub id) -> local folder, or None to let
# transformers resolve the id itself (e.g. from the Hugging Face cache). The WebUI's downloads this way show
# their progress and stop on Interrupt.
HubFetcher = Callable[[str, str], "str | None"]
_hub_fetcher: HubFetcher | None = None


def set_hub_fetcher(fetch: HubFetcher | None) -> None:
    global _hub_fetcher
    _hub_fetcher = fetch


def transformers_version() -> tuple[int, int]:
    import transformers

    major, minor = transformers.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def looks_like_path(source: str) -> bool:
    """True for things that can only be a folder (a Hub id is "name" or "owner/name")."""
    return (
        os.path.isabs(source)
        or source.startswith(("./", "../", ".\\", "..\\", "~"))
        or "\\" in source
        or source.count("/") > 1
        or (len(source) > 1 and source[1] == ":")
    )


def _is_oom(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    text = str(exc).lower()
    return isinstance(exc, (MemoryError, RuntimeError)) and (
        "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
    )


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    image_processor: Any
    dtype: Any  # dtype the weights were loaded in


class HFCaptioner(ModelCaptioner):
    """Common loading, device and error handling of the transformers captioners."""

    name: ClassVar[str] = ""
    setting: ClassVar[str] = ""  # WebUI option key holding the source
    default_source: ClassVar[str] = ""
    model_type: ClassVar[str] = ""  # config.json "model_type" the folder must hold
    model_class: ClassVar[str] = ""  # transformers class name

    def __init__(
        self,
        source: str | None = None,
        device: Any = "cpu",
        dtype: Any = None,
        max_new_tokens: int = 40,
        num_beams: int = 1,
    ) -> None:
        super().__init__(device)
        self.source = (source or "").strip() or self.default_source
        self.dtype = dtype  # None: fp16 on CUDA, fp32 elsewhere
        self.max_new_tokens = int(max_new_tokens)
        self.num_beams = int(num_beams)

    # -- errors --------------------------------------------------------------------------------------
    def error(self, problem: str, fix: str, cause: BaseException | None = None) -> CaptionerError:
        detail = ""
        if cause is not None:
            first = (str(cause).strip().splitlines() or [""])[0][:300]
            detail = f" [{type(cause).__name__}: {first}]" if first else f" [{type(cause).__name__}]"
        err = CaptionerError(
            f"DNP captioner '{self.name}': {problem}. Fix: {fix}. The model is set by '{self.setting}' "
            f"in {SETTINGS_SECTION} (now {self.source!r}).{detail}",
            captioner=self.name,
            setting=self.setting,
        )
        if cause is not None:  # as `raise err from cause` would, also where the error is raised later
            err.__cause__ = cause
        return err

    def _load_error(self, exc: BaseException, local: bool) -> CaptionerError:
        other = "or choose another captioner"
        if _is_oom(exc):
            return self.error(
                "out of memory while loading the model",
                f"free memory (set 'dnp_captioner_after' to 'unload', close other models or programs), {other}",
                exc,
            )
        if isinstance(exc, ImportError):
            missing = getattr(exc, "name", None) or "a package"
            return self.error(
                f"the Python package {missing!r} is missing or too old",
                f"install it into the WebUI's Python environment, {other}",
                exc,
            )
        if local:
            return self.error(
                f"the folder {self.source!r} does not hold a loadable {self.model_type} model "
                "(config.json, weights, tokenizer and preprocessor_config.json)",
                f"point '{self.setting}' to a folder holding the model (e.g. a download of "
                f"{self.default_source}), {other}",
                exc,
            )
        return self.error(
            f"{self.source!r} could not be loaded from the Hugging Face cache or Hub "
            "(offline, not found, or an incomplete download)",
            f"download it once while online (or with `huggingface-cli download {self.source}`), "
            f"point '{self.setting}' to a folder holding the model, {other}",
            exc,
        )

    # -- loading -------------------------------------------------------------------------------------
    def target_dtype(self, device: Any) -> Any:
        import torch

        if self.dtype is not None:
            return getattr(torch, self.dtype) if isinstance(self.dtype, str) else self.dtype
        return torch.float16 if _device_type(device) == "cuda" else torch.float32

    def check(self) -> None:
        source, local = self._resolve_source()
        if local:
            refused = self._refused_pickle(source, local)
            if refused is not None:
                raise refused

    # -- pickle weights the host refuses -------------------------------------------------------------
    def _pickle_weights(self, source: str, local: bool) -> list[str]:
        """The torch.load files transformers would read for this source: none where safetensors exist."""

        def find(name: str) -> str | None:
            if local:
                path = os.path.join(source, name)
                return path if os.path.isfile(path) else None
            try:
                from huggingface_hub import try_to_load_from_cache

                found = try_to_load_from_cache(source, name)
            except Exception:  # no hub package or a malformed id: nothing cached to look at
                return None
            return found if isinstance(found, str) else None

        if any(find(name) for name in SAFETENSORS_WEIGHTS):
            return []
        single, index = (find(name) for name in PICKLE_WEIGHTS)
        if single:
            return [single]
        if not index:
            return []
        import json

        try:
            with open(index, encoding="utf-8") as fh:
                shards = sorted(set(json.load(fh).get("weight_map", {}).values()))
        except (OSError, ValueError, AttributeError):
            return []
        return [f for f in (find(name) for name in shards) if f]

    def _refused_pickle(self, source: str, local: bool, cause: BaseException | None = None) -> CaptionerError | None:
        """The host's torch.load would refuse one of the weights files: say so, not "not a loadable folder"."""
        if _pickle_check is None:
            return None
        for path in self._pickle_weights(source, local):
            reason = _pickle_check(path)
            if reason is None:
                continue
            target = source if local else "/a/folder/of/your/choice"
            convert = (
                f'python -c "from transformers import {self.model_class} as M; '
                f"M.from_pretrained('{source}').save_pretrained('{target}', safe_serialization=True)\""
            )
            return self.error(
                f"the WebUI's safe unpickler refuses the weights file {path!r} ({reason}), so no weights reach "
                "the model: it rejects pickle (.bin) files saved by recent torch releases",
                f"convert the weights to safetensors with the WebUI's Python: {convert}"
                + ("" if local else f" and point '{self.setting}' to that folder")
                + ", or start the WebUI with --disable-safe-unpickle (only for files you trust)",
                cause,
            )
        return None

    def _resolve_source(self) -> tuple[str, bool]:
        path = os.path.expanduser(self.source)
        if os.path.isdir(path):
            return path, True
        if looks_like_path(self.source):
            raise self.error(
                f"the folder {self.source!r} does not exist",
                f"point '{self.setting}' to a folder holding the model (e.g. a download of "
                f"{self.default_source}), or set it to a Hugging Face id such as {self.default_source!r}",
                FileNotFoundError(path),
            )
        return self.source, False

    def _load(self) -> _Loaded:
        source, local = self._resolve_source()
        if not local and _hub_fetcher is not None:
            from .download import DownloadError

            try:
                folder = _hub_fetcher(self.name, source)
            except DownloadError as exc:
                raise self.error(
                    f"{source!r} could not be downloaded ({exc})",
                    f"check the network (or HF_ENDPOINT / HF_TOKEN) and run again: the download resumes; or "
                    f"download it elsewhere and point '{self.setting}' to its folder",
                    exc,
                ) from exc
            if folder is not None:
                source, local = folder, True
        try:
            import torch  # noqa: F401
            import transformers
        except ImportError as exc:
            raise self._load_error(exc, local) from exc
        common: dict[str, Any] = {"local_files_only": True} if local else {}
        model = None
        try:
            config_dict, _ = transformers.PretrainedConfig.get_config_dict(source, **common)
            found = config_dict.get("model_type")
            if not found:  # no (usable) config.json: not a model folder at all
                raise self._load_error(FileNotFoundError(f"no config.json with a model_type in {source}"), local)
            if found != self.model_type:
                raise self.error(
                    f"{self.source!r} holds a {found!r} model, not a {self.model_type!r} model",
                    f"point '{self.setting}' to a {self.model_type} model such as {self.default_source!r}, "
                    "or choose the captioner that matches this model",
                )
            # trust_remote_code=False and a concrete model class: code shipped in a folder never runs.
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=False, **common)
            image_processor = transformers.AutoImageProcessor.from_pretrained(source, trust_remote_code=False, **common)
            dtype = self.target_dtype(self.device)
            kwargs: dict[str, Any] = dict(common)
            version = transformers_version()
            kwargs["dtype" if version >= (4, 56) else "torch_dtype"] = dtype
            if version < (5, 0) and _has_accelerate():
                kwargs["low_cpu_mem_usage"] = True  # skip the random init: halves peak RAM
            model = getattr(transformers, self.model_class).from_pretrained(source, **kwargs)
            model.eval()
            model.to(self.device)
            loaded = _Loaded(model=model, tokenizer=tokenizer, image_processor=image_processor, dtype=dtype)
            self._prepare(loaded)
            return loaded
        except CaptionerError:
            raise
        except Exception as exc:  # every load failure becomes an actionable message
            # Drop the half-loaded model now, including the references held by the traceback's frames.
            model = None
            traceback.clear_frames(exc.__traceback__)
            gc.collect()
            empty_device_cache()
            raise (self._refused_pickle(source, local, exc) or self._load_error(exc, local)) from exc

    def _prepare(self, loaded: _Loaded) -> None:
        """Model-specific setup after loading."""

    def _move(self, loaded: _Loaded, device: Any, *, compute: bool) -> None:
        dtype = self.target_dtype(device)
        if compute and dtype != loaded.dtype:  # e.g. loaded fp16 for CUDA, now asked to run on the CPU
            loaded.model.to(device=device, dtype=dtype)
            loaded.dtype = dtype
        else:
            loaded.model.to(device)

    # -- captioning ----------------------------------------------------------------------------------
    def _pixel_values(self, loaded: _Loaded, images: list[Image.Image]) -> Any:
        import torch

        rgb = [im.convert("RGB") for im in images]
        pixels = loaded.image_processor(images=rgb, return_tensors="pt")["pixel_values"]
        vision_dtype = next(loaded.model.vision_model.parameters()).dtype
        return torch.as_tensor(pixels).to(device=self.device, dtype=vision_dtype)

    def _generate_kwargs(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "do_sample": False}

    def _caption(self, loaded: _Loaded, images: list[Image.Image]) -> list[str]:
        import torch

        try:
            with torch.no_grad():
                sequences = self._generate(loaded, images)
        except Exception as exc:
            if _is_oom(exc):
                empty_device_cache()
                raise self.error(
                    f"out of memory while captioning {len(images)} image(s)",
                    "free memory (lower the batch size, set 'dnp_captioner_after' to 'unload'), "
                    "or choose another captioner",
                    exc,
                ) from exc
            raise
        texts = loaded.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        return [t.strip() for t in texts]

    def _generate(self, loaded: _Loaded, images: list[Image.Image]) -> Any:
        raise NotImplementedError


class Blip2Captioner(HFCaptioner):
    """BLIP-2 (default Salesforce/blip2-opt-2.7b), the captioner of the DNP paper."""

    name = "blip2"
    setting = "dnp_blip2_model"
    default_source = DEFAULT_BLIP2
    model_type = "blip-2"
    model_class = "Blip2ForConditionalGeneration"
    _expand_image_tokens = False

    def _prepare(self, loaded: _Loaded) -> None:
        # transformers >= 4.45 places the query outputs at image-token positions of input_ids; older ones
        # concatenate them in front.  Both are made to see the same prompt: [<image> x num_query_tokens]
        # (new) + BOS.  A config saved before 4.45 lacks image_token_index, which 4.47+ cannot run, so it
        # is filled in here (in memory only).
        import inspect

        import transformers

        model = loaded.model
        config = model.config
        self._expand_image_tokens = (
            "num_query_tokens" in inspect.signature(transformers.Blip2Processor.__init__).parameters
        )
        if self._expand_image_tokens and getattr(config, "image_token_index", None) is None:
            config.image_token_index = self._free_token_id(loaded)

    def _free_token_id(self, loaded: _Loaded) -> int:
        """An id for the image placeholders of a pre-4.45 config; their embeddings get replaced anyway."""
        rows = loaded.model.get_input_embeddings().num_embeddings
        bos = loaded.model.config.text_config.bos_token_id
        candidates = [
            loaded.tokenizer.convert_tokens_to_ids("<image>") if "<image>" in loaded.tokenizer.get_vocab() else None,
            loaded.model.config.text_config.pad_token_id,
            rows - 1,
        ]
        for cand in candidates:
            if cand is not None and 0 <= cand < rows and cand != bos:
                return int(cand)
        return rows - 1

    def _prompt_ids(self, loaded: _Loaded, batch: int) -> Any:
        import torch

        config = loaded.model.config
        ids: list[int] = []
        if self._expand_image_tokens:
            ids += [int(config.image_token_index)] * int(config.num_query_tokens)
        if config.text_config.bos_token_id is not None:
            ids.append(int(config.text_config.bos_token_id))
        return torch.tensor([ids] * batch, dtype=torch.long, device=self.device)

    def _generate(self, loaded: _Loaded, images: list[Image.Image]) -> Any:
        import torch

        pixel_values = self._pixel_values(loaded, images)
        input_ids = self._prompt_ids(loaded, len(images))
        out = loaded.model.generate(
            pixel_values=pixel_values,
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            **self._generate_kwargs(),
        )
        out = out if isinstance(out, torch.Tensor) else out.sequences
        # Newer versions return the prompt too; drop it so placeholders never reach the caption.
        n = input_ids.shape[1]
        if n and out.shape[1] >= n and torch.equal(out[:, :n], input_ids):
            out = out[:, n:]
        return out


class BlipCaptioner(HFCaptioner):
    """BLIP captioning (default Salesforce/blip-image-captioning-large)."""

    name = "blip"
    setting = "dnp_blip_model"
    default_source = DEFAULT_BLIP
    model_type = "blip"
    model_class = "BlipForConditionalGeneration"

    def _generate(self, loaded: _Loaded, images: list[Image.Image]) -> Any:
        import torch

        out = loaded.model.generate(pixel_values=self._pixel_values(loaded, images), **self._generate_kwargs())
        return out if isinstance(out, torch.Tensor) else out.sequences


def _has_accelerate() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def _device_type(device: Any) -> str:
    return getattr(device, "type", None) or str(device).split(":", 1)[0]
