"""Run codecs over images: one measured point per (curve, setting, image), cached on disk.

Learned models run first, in this process (all cores, one model loaded at a time); classic codecs
then run in a process pool. Each point records the real byte count, bpp = bytes * 8 / (H * W),
the metrics of the 8-bit decoded image (see ``metrics``) and encode/decode wall seconds.

The cache holds one small JSON file per point, keyed by a hash of the codec's identity (class,
parameters, library versions; for a learned model the model file's SHA-256 and the entropy
coder), the setting and the image's pixel hash, so a re-run only computes new points.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from codeclab.coding import get_coder
from codeclab.evaluation import metrics
from codeclab.evaluation.classic import ClassicCodec
from codeclab.measures import bits_per_pixel
from codeclab.progress import progress_bar

CACHE_VERSION = 1  # bump when what a point contains or how it is measured changes


@dataclass
class EvalImage:
    """An evaluation image: a name, uint8 HxWx3 pixels and their SHA-256 (shape included)."""

    name: str
    pixels: np.ndarray
    digest: str = ""

    def __post_init__(self):
        if not self.digest:
            h = hashlib.sha256(repr(self.pixels.shape).encode())
            h.update(np.ascontiguousarray(self.pixels).tobytes())
            self.digest = h.hexdigest()


@dataclass
class LearnedCurve:
    """An RD curve of learned models: one point per model file, and per rate level of a
    variable-rate model file (``levels[model]``, the levels swept; settings ``"MODEL@LEVEL"``).

    ``load`` maps a path to a codec, ``encode(codec, image) -> bytes`` and
    ``decode(bytes, codec) -> image`` are the project's image-file functions; they are
    parameters so tests can pass a fake codec.
    """

    name: str
    models: list[str]
    coder: str | None = None
    load: Callable | None = None
    encode: Callable | None = None
    decode: Callable | None = None
    levels: dict = field(default_factory=dict)
    refine: int = 0
    # A post-filter network file applied to every decoded image (its time counts as decoding).
    postfilter: str | None = None
    _hashes: dict = field(default_factory=dict, repr=False)

    def settings(self) -> list[str]:
        """``MODEL`` for a fixed-rate model, ``MODEL@LEVEL`` for each swept level of a variable-rate one."""
        return [f"{m}@{level}" for m in self.models for level in self.levels[m]] if self.levels else list(self.models)

    @staticmethod
    def split(setting: str) -> tuple[str, int | None]:
        model, _, level = setting.rpartition("@")
        return (model, int(level)) if model and level.isdigit() else (setting, None)

    def __post_init__(self):
        if self.load is None:  # the real thing; imported late so tests need no model code
            from codeclab.formats.image_file import decode_image, encode_image
            from codeclab.formats.model_file import load_model

            self.load, self.encode, self.decode = load_model, encode_image, decode_image
        if self.postfilter:
            from codeclab.formats.network_file import load_postfilter

            network, decode = load_postfilter(self.postfilter), self.decode
            self.decode = lambda data, codec: network.enhance(np.asarray(decode(data, codec))).image

    def _sha256(self, path: str) -> str:
        """A file's SHA-256, read once per curve (identity is asked for every point)."""
        if path not in self._hashes:
            self._hashes[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return self._hashes[path]

    def identity(self, setting: str) -> dict:
        identity = {"class": "learned", "model_sha256": self._sha256(self.split(setting)[0]), "coder": self.coder}
        if self.postfilter:
            identity["postfilter_sha256"] = self._sha256(self.postfilter)
        return {**identity, "refine": self.refine} if self.refine else identity


@dataclass
class Job:
    curve: str
    kind: str  # "classic" | "learned"
    setting: Any
    image: EvalImage
    key: str
    version: str


def point_record(job: Job, nbytes: int, decoded: np.ndarray, enc_s: float, dec_s: float,
                 y_psnr: bool) -> dict:
    """The stored fields of one point (everything but the decoded image)."""
    h, w = job.image.pixels.shape[:2]
    rec = {"curve": job.curve, "kind": job.kind, "setting": job.setting, "image": job.image.name,
           "height": h, "width": w, "bytes": nbytes, "bpp": bits_per_pixel(nbytes, h, w)}
    rec.update(metrics.measure(job.image.pixels, decoded, y_psnr=y_psnr))
    rec.update({"encoding_time": enc_s, "decoding_time": dec_s, "version": job.version})
    return rec


class PointCache:
    """One JSON file per point under ``root`` (``None`` disables caching)."""

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root).expanduser() if root else None

    @staticmethod
    def key(identity: dict, setting: Any, digest: str, y_psnr: bool) -> str:
        blob = json.dumps([CACHE_VERSION, identity, setting, digest, y_psnr], sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.root is None:
            return None
        try:
            return json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, record: dict) -> None:
        if self.root is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)  # atomic: a killed run never leaves half a point


def _classic_worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # the pool already uses every core


def _classic_task(codec: ClassicCodec, job: Job, y_psnr: bool) -> dict:
    coded = codec.code(job.image.pixels, job.setting)
    return point_record(job, coded.nbytes, coded.decoded, coded.enc_s, coded.dec_s, y_psnr)


def evaluate(
    images: list[EvalImage],
    classic: list[ClassicCodec] = (),
    learned: list[LearnedCurve] = (),
    cache: PointCache | None = None,
    workers: int | None = None,
    y_psnr: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Measure every (curve, setting, image) point and return the records.

    Classic codecs that cannot run here are skipped with a notice through ``log``. Records come
    back in a stable order (curve, setting, image) whatever order the pool finished them in.
    """
    cache = cache or PointCache(None)
    workers = workers or os.cpu_count() or 1
    results: dict[str, dict] = {}
    order: list[str] = []
    todo_classic: list[tuple[ClassicCodec, Job]] = []
    todo_learned: list[tuple[LearnedCurve, Job]] = []

    def plan(kind, owner, identity, version, settings):
        for setting in settings:
            for img in images:
                key = cache.key(identity(setting), setting, img.digest, y_psnr)
                job = Job(owner.name, kind, setting, img, key, version)
                order.append(key)
                hit = cache.get(key)
                if hit is not None:
                    results[key] = {**hit, "curve": owner.name, "image": img.name}
                else:
                    (todo_classic if kind == "classic" else todo_learned).append((owner, job))

    for curve in learned:
        plan("learned", curve, curve.identity, "", curve.settings())
    for codec in classic:
        reason = codec.available()
        if reason:
            log(f"notice: skipping {codec.name}: {reason}")
            continue
        ident = codec.identity()
        plan("classic", codec, lambda _s, ident=ident: ident, ident["version"], codec.ladder)

    bar = progress_bar(total=len(order), initial=len(results), desc="eval", unit="pt", enabled=progress)

    def done(job: Job, rec: dict) -> None:
        cache.put(job.key, rec)
        results[job.key] = rec
        bar.update(1)

    # Learned models: sequential, in-process, so their timings get the whole machine.
    for curve in learned:
        for model in curve.models:
            jobs = [j for c, j in todo_learned if c is curve and curve.split(j.setting)[0] == model]
            if not jobs:
                continue
            codec = curve.load(model)
            options = {"refine": curve.refine} if curve.refine else {}
            if curve.coder:
                options["coder"] = get_coder(curve.coder)
            for job in jobs:
                level = curve.split(job.setting)[1]
                t0 = time.perf_counter()
                data = (curve.encode(codec, job.image.pixels, **options) if level is None
                        else curve.encode(codec, job.image.pixels, level, **options))
                t1 = time.perf_counter()
                decoded = curve.decode(data, codec)
                t2 = time.perf_counter()
                done(job, point_record(job, len(data), np.asarray(decoded), t1 - t0, t2 - t1,
                                       y_psnr))
            del codec

    if todo_classic:
        if workers <= 1:
            for codec, job in todo_classic:
                done(job, _classic_task(codec, job, y_psnr))
        else:
            # Not fork: the parent may have torch's thread pools running. A fork server that has
            # imported this module (torch included) once starts workers faster than spawn.
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
            with ProcessPoolExecutor(workers, mp_context=ctx,
                                     initializer=_classic_worker_init) as pool:
                futures = {pool.submit(_classic_task, codec, job, y_psnr): job
                           for codec, job in todo_classic}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
    bar.close()
    return [results[k] for k in dict.fromkeys(order)]
