"""Resumable generation: every (prompt, seed, method) becomes one PNG under <out>/<set>/<method>/.

Layout:  <out>/run.json                      generation settings (checked on resume)
         <out>/manifest.jsonl                one JSON record per finished image (last record wins)
         <out>/<set>/<method>/<index>_<seed>.png
         <out>/<set>/dns/<index>_<seed>.png  the DNS image behind each auto-DNP image
A job is done when its record and its files exist, so a rerun skips it. The record is appended before
the file is written (atomically): an interruption can cost at most the image in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..client import as_png
from .client import Txt2ImgResult, WebUIClient, dnp_script_args, txt2img_body
from .progress import Progress
from .prompts import Prompt, PromptSet

METHODS = ("plain", "dnp", "dnp_preview", "universal", "random_caption", "user")
DNP_METHODS = ("dnp", "dnp_preview")  # auto-DNP: full DNS, and DNS preview (GenSettings.dns_preview)
DNS_DIR = "dns"
DNS_DIRS = {"dnp": DNS_DIR, "dnp_preview": "dns_preview"}
MANIFEST = "manifest.jsonl"
RUN_FILE = "run.json"


@dataclass
class GenSettings:
    steps: int = 50
    width: int = 512
    height: int = 512
    cfg_scale: float = 7.5
    sampler: str | None = None  # None: the WebUI's default
    scheduler: str | None = None
    captioner: str = "blip2"
    dns_scale: float = 7.5
    dns_preview: float = 0.5  # of the dnp_preview method
    universal_negative: str = ""
    user_negative: str | None = None

    def payload(self, prompt: str, negative: str, seed: int) -> dict[str, Any]:
        return txt2img_body(
            prompt,
            negative,
            seed,
            steps=self.steps,
            width=self.width,
            height=self.height,
            cfg_scale=self.cfg_scale,
            sampler=self.sampler,
            scheduler=self.scheduler,
        )


@dataclass
class Record:
    set: str
    category: str
    index: int
    prompt: str
    seed: int
    method: str
    file: str  # relative to the output folder
    negative_prompt: str
    infotext: str = ""
    seconds: float = 0.0
    caption: str | None = None  # dnp: the negative the extension produced
    dns_file: str | None = None  # dnp: the DNS image
    donor: dict[str, Any] | None = None  # random_caption: whose caption was used

    @property
    def key(self) -> tuple[str, int, int, str]:
        return (self.set, self.index, self.seed, self.method)


@dataclass
class Job:
    prompt: Prompt
    seed: int
    method: str

    @property
    def key(self) -> tuple[str, int, int, str]:
        return (self.prompt.set, self.prompt.index, self.seed, self.method)

    def relpath(self, method: str | None = None) -> str:
        return f"{self.prompt.set}/{method or self.method}/{self.prompt.index:04d}_{self.seed}.png"


class SettingsMismatch(ValueError):
    pass


class FolderBusy(RuntimeError):
    pass


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """One run per output folder: two would make the same images twice."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    with open(out / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise FolderBusy(f"another benchmark run is using {out}") from e
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class Manifest:
    out: Path
    records: dict[tuple[str, int, int, str], Record] = field(default_factory=dict)

    @classmethod
    def load(cls, out: Path) -> Manifest:
        m = cls(out)
        path = out / MANIFEST
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = Record(**json.loads(line))
                except (json.JSONDecodeError, TypeError):
                    continue  # a line cut short by an interruption
                m.records[rec.key] = rec
        return m

    def add(self, rec: Record) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / MANIFEST, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(rec), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[rec.key] = rec

    def done(self, job: Job) -> Record | None:
        rec = self.records.get(job.key)
        if rec is None or rec.prompt != job.prompt.text or not (self.out / rec.file).exists():
            return None
        if rec.dns_file and not (self.out / rec.dns_file).exists():
            return None
        return rec


def check_settings(out: Path, settings: GenSettings) -> None:
    """Refuse to mix images made with other settings into one folder; unset values may be filled in."""
    path = out / RUN_FILE
    new = asdict(settings)
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8")).get("settings", {})
        diff = {k: (old[k], new[k]) for k in new if old.get(k) is not None and old.get(k) != new[k]}
        if diff:
            lines = ", ".join(f"{k}: folder has {a!r}, asked {b!r}" for k, (a, b) in diff.items())
            raise SettingsMismatch(
                f"{out} was generated with other settings ({lines}); use the same options or another --out"
            )
        new = {k: new[k] if new[k] is not None else old.get(k) for k in new}
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"settings": new}, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def parse_negative(infotext: str) -> str | None:
    """The "Negative prompt:" part of a WebUI infotext (last line holds the parameters)."""
    lines = infotext.strip().split("\n")
    for i, line in enumerate(lines[:-1]):
        if line.startswith("Negative prompt:"):
            return "\n".join([line[len("Negative prompt:") :], *lines[i + 1 : -1]]).strip()
    return None


# A1111's infotext parameter syntax: key: value, key: "quoted, json-escaped value", ...
_RE_PARAM = re.compile(r'\s*([\w ./-]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse_params(infotext: str) -> dict[str, str]:
    """The "key: value" pairs of an infotext's last line (quoted values unquoted)."""
    out: dict[str, str] = {}
    for key, value in _RE_PARAM.findall(infotext.strip().split("\n")[-1]):
        if value.startswith('"') and value.endswith('"'):
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        out[key.strip()] = str(value).strip()
    return out


def caption_of(infotext: str, info: dict[str, Any]) -> str | None:
    """auto-DNP's caption n*: the extension's "DNP caption" key, else the negative the image was made with
    (the same thing when the user negative is empty and merge is append, as in this benchmark)."""
    params = parse_params(infotext) if infotext else {}
    if params.get("DNP caption"):
        return params["DNP caption"]
    neg = parse_negative(infotext) if infotext else None
    if neg is None:
        allneg = info.get("all_negative_prompts") or []
        neg = str(allneg[0]) if allneg else None
    return neg


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def random_caption_donor(job: Job, prompts: Sequence[Prompt]) -> Prompt | None:
    """The prompt whose auto-DNP caption (same seed) serves as this job's "random caption" negative.

    Drawn uniformly among the run's prompts of the same set with a different text, by an RNG seeded with
    (set, index, seed): reproducible, and independent of the order jobs run in.
    """
    pool = [q for q in prompts if q.set == job.prompt.set and q.text != job.prompt.text]
    if not pool:
        return None
    return random.Random(f"{job.prompt.set}|{job.prompt.index}|{job.seed}").choice(pool)


class Runner:
    """Runs jobs on one WebUI, or shares them out over several (one thread each, e.g. one GPU each)."""

    def __init__(
        self, client: WebUIClient | Sequence[WebUIClient], out: Path, settings: GenSettings, log: Any = None
    ) -> None:
        self.clients = list(client) if isinstance(client, Sequence) else [client]
        self.client, self.out, self.settings = self.clients[0], out, settings
        self._lock = threading.Lock()  # manifest, counts and progress, when several WebUIs work
        self.manifest = Manifest.load(out)
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self._warned_no_dns = False

    def jobs(self, sets: Iterable[PromptSet], seeds: Sequence[int], methods: Sequence[str]) -> list[Job]:
        """random_caption jobs come last: they need the auto-DNP captions of other prompts (so they
        bring the dnp jobs along)."""
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
        wanted = set(methods) | ({"dnp"} if "random_caption" in methods else set())
        first = [m for m in METHODS if m in wanted and m != "random_caption"]
        out = [Job(p, s, m) for ps in sets for p in ps.prompts for s in seeds for m in first]
        if "random_caption" in methods:
            out += [Job(p, s, "random_caption") for ps in sets for p in ps.prompts for s in seeds]
        return out

    def negative_for(self, job: Job, prompts: Sequence[Prompt]) -> tuple[str, dict[str, Any] | None]:
        m = job.method
        if m in ("plain", *DNP_METHODS):
            return "", None
        if m == "universal":
            return self.settings.universal_negative, None
        if m == "user":
            if not self.settings.user_negative:
                raise ValueError("method 'user' needs --user-negative")
            return self.settings.user_negative, None
        donor = random_caption_donor(job, prompts)
        if donor is None:
            raise LookupError("no other prompt in the set to borrow a caption from")
        rec = self.manifest.records.get((donor.set, donor.index, job.seed, "dnp"))
        negative = (rec.negative_prompt or rec.caption) if rec else None
        if not negative:
            raise LookupError(f"no auto-DNP caption yet for donor prompt {donor.index} seed {job.seed}")
        # exactly the negative auto-DNP used for the donor (its n*), now for the wrong prompt
        return negative, {"index": donor.index, "seed": job.seed, "prompt": donor.text}

    def _save(
        self, job: Job, negative: str, res: Txt2ImgResult, seconds: float, donor: dict[str, Any] | None
    ) -> Record:
        first = int(res.info.get("index_of_first_image", 0) or 0)  # a grid may come first
        if len(res.images) <= first:
            raise RuntimeError(f"WebUI returned no image for {job.key}")
        texts = res.infotexts
        infotext = texts[first] if len(texts) > first else ""
        rec = Record(
            job.prompt.set,
            job.prompt.category,
            job.prompt.index,
            job.prompt.text,
            job.seed,
            job.method,
            job.relpath(),
            negative,
            infotext,
            round(seconds, 3),
            donor=donor,
        )
        dns: bytes | None = None
        if job.method in DNP_METHODS:
            rec.caption = caption_of(infotext, res.info)
            rec.negative_prompt = parse_negative(infotext) or rec.caption or ""
            if len(res.images) > first + 1:  # show_dns: the DNS image follows the generated one
                dns = as_png(res.images[first + 1], texts[first + 1] if len(texts) > first + 1 else "")
                rec.dns_file = job.relpath(DNS_DIRS[job.method])
            elif not self._warned_no_dns:
                self.log("warning: the WebUI returned no DNS image (show_dns); the contact sheet will lack it")
                self._warned_no_dns = True
        image = as_png(res.images[first], infotext)
        with self._lock:
            self.manifest.add(rec)
        if dns is not None and rec.dns_file:
            _write_atomic(self.out / rec.dns_file, dns)
        _write_atomic(self.out / rec.file, image)
        return rec

    def run_job(self, job: Job, prompts: Sequence[Prompt], client: WebUIClient | None = None) -> Record:
        negative, donor = self.negative_for(job, prompts)
        payload = self.settings.payload(job.prompt.text, negative, job.seed)
        if job.method in DNP_METHODS:
            preview = self.settings.dns_preview if job.method == "dnp_preview" else None
            payload["alwayson_scripts"] = dnp_script_args(
                self.settings.captioner, self.settings.dns_scale, dns_preview=preview
            )
        t0 = time.monotonic()
        res = (client or self.client).txt2img(payload)
        return self._save(job, negative, res, time.monotonic() - t0, donor)

    def run(
        self,
        sets: Sequence[PromptSet],
        seeds: Sequence[int],
        methods: Sequence[str],
        progress: bool = True,
        lock: bool = True,
    ) -> dict[str, int]:
        """lock=False when the caller holds folder_lock already."""
        if lock:
            with folder_lock(self.out):
                return self.run(sets, seeds, methods, progress, lock=False)
        self.manifest = Manifest.load(self.out)  # what an earlier run left, read under the lock
        check_settings(self.out, self.settings)
        jobs = self.jobs(sets, seeds, methods)
        prompts = [p for ps in sets for p in ps.prompts]
        bar = Progress(len(jobs), "generate") if progress else None
        counts = {"generated": 0, "skipped": 0, "failed": 0}

        def one(job: Job, client: WebUIClient) -> None:
            if self.manifest.done(job):
                with self._lock:
                    counts["skipped"] += 1
                    if bar:
                        bar.skip()
                return
            try:
                self.run_job(job, prompts, client)
                outcome = "generated"
            except LookupError as e:  # random_caption without a donor: report, go on
                outcome = "failed"
                self.log(f"\nskipped {job.method} for prompt {job.prompt.index} seed {job.seed}: {e}")
            with self._lock:
                counts[outcome] += 1
                if bar:
                    bar.step()

        try:
            # random_caption borrows finished auto-DNP captions: it starts once every other job is done
            for phase in (
                [j for j in jobs if j.method != "random_caption"],
                [j for j in jobs if j.method == "random_caption"],
            ):
                self._share_out(phase, one)
        finally:
            if bar:
                bar.close()
        return counts

    def _share_out(self, jobs: list[Job], one: Any) -> None:
        """Run the jobs in order on one WebUI, or pulled from one queue by a thread per WebUI."""
        if len(self.clients) == 1:
            for job in jobs:
                one(job, self.client)
            return
        pending = list(reversed(jobs))
        errors: list[BaseException] = []

        def worker(client: WebUIClient) -> None:
            while not errors:
                with self._lock:
                    if not pending:
                        return
                    job = pending.pop()
                try:
                    one(job, client)
                except BaseException as e:  # handed to the caller, which stops the other workers
                    errors.append(e)

        threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in self.clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
