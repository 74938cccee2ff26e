"""A model file's header, read without torch.

A safetensors file begins with the size of its header (8 bytes, little endian) and the header
itself, JSON: each tensor's ``{"dtype", "shape", "data_offsets"}`` and, under ``"__metadata__"``,
the string metadata :mod:`.model_file` writes (format, version, codec, config, hashes). Reading
that JSON directly keeps torch out of ``codeclab info`` and of the search for a model by hash;
:func:`.model_file.load_model` reads and checks the tensors themselves through safetensors.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import CodecLabError
from ..files import check_input
from .container import MODEL_HASH_BYTES

FORMAT = "codeclab-model"
FORMAT_VERSION = "9"
READABLE_VERSIONS = ("1", "2", "3", "4", "5", "6", "7", "8", "9")
# The first format whose model hash covers the codec, config and tables, not the weights alone.
MODEL_HASH_COVERS_CONFIG = 8
# Metadata key (format 9) naming, by its model hash, the model file that holds the tensors a
# model shares with it (a video codec's image codec), which the file itself does not store.
BASE_MODEL = "base_model"
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


@dataclass(frozen=True)
class ModelHeader:
    metadata: dict[str, str]
    # name -> (safetensors dtype name, shape), for checks before any tensor is read
    specs: dict[str, tuple[str, tuple[int, ...]]]
    tensor_bytes: int

    @property
    def tensors(self) -> int:
        return len(self.specs)

    def describe(self) -> dict:
        meta = self.metadata
        try:
            config = json.loads(meta.get("config", "{}"))
        except json.JSONDecodeError:
            raise CodecLabError("corrupt model file: its config is not JSON") from None
        info = {
            "format": "model", "format_version": meta["format_version"], "codec": meta.get("codec"), "config": config,
            "weights_sha256": meta.get("weights_sha256", ""), "model_hash": model_sha256(meta)[: 2 * MODEL_HASH_BYTES],
            "tables_fingerprint": meta.get("tables_fingerprint"),
            "weights_dtype": meta.get("weights_dtype", "float32"), "portable": meta.get("portable") == "true",
            "tensors": self.tensors, "tensor_bytes": self.tensor_bytes,
        }
        if BASE_MODEL in meta:
            info["base_model"] = meta[BASE_MODEL]
        levels = config_rate_levels(config)
        if levels:
            info.update(rate_levels=levels, default_rate=f"--quality {DEFAULT_QUALITY} (level {quality_to_level(levels, DEFAULT_QUALITY)})")
        else:  # null: --refine needs --refine-lmbda
            info["training_lmbda"] = float(meta["lmbda"]) if "lmbda" in meta else None
        return info


def model_sha256(metadata: dict[str, str]) -> str:
    """The hash that names a model, whose first bytes each bitstream carries and ``--models-dir``
    searches by: from format 8, SHA-256 over the codec, config, tables fingerprint and weights hash
    as stored (a file with the same weights and another config is another model), and, for a file
    with a base model (format 9), the base model's hash, so the name covers the tensors read from
    both files; older files keep their weights hash, the name their bitstreams already carry."""
    if int(metadata["format_version"]) < MODEL_HASH_COVERS_CONFIG:
        return metadata.get("weights_sha256", "")
    fields = [metadata.get(key, "") for key in ("codec", "config", "tables_fingerprint", "weights_sha256")]
    if BASE_MODEL in metadata:
        fields.append(metadata[BASE_MODEL])
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


# The rate of a variable-rate model when none is chosen: the middle of its range.
DEFAULT_QUALITY = 0.5


def quality_to_level(rate_levels: int, quality: float) -> int:
    """The level nearest to ``quality`` in [0, 1] (0: the lowest rate, 1: the highest)."""
    return round(quality * (rate_levels - 1))


def config_rate_levels(config: dict) -> int:
    """Rate levels a model config asks for (top level, or its entropy model's); 0: fixed rate."""
    entropy = config.get("entropy")
    nested = entropy.get("rate_levels") if isinstance(entropy, dict) else None
    return int(config.get("rate_levels") or nested or 0)


def read_header(path: str | Path, file_format: str = FORMAT, versions: tuple[str, ...] = READABLE_VERSIONS,
                what: str = "model file") -> ModelHeader:
    """The header of a CodecLab model file (or of another safetensors ``file_format``: network
    files), format and version checked; raises :class:`CodecLabError`."""
    path = check_input(path, what)
    with path.open("rb") as handle:
        prefix = handle.read(8)
        size = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
        if not 0 < size <= min(MAX_HEADER_BYTES, path.stat().st_size - 8):
            raise CodecLabError(f"not a CodecLab {what}: {path} (no safetensors header)")
        raw = handle.read(size)
    try:
        header = json.loads(raw)
        metadata = header.pop("__metadata__", None) or {}
        tensor_bytes = sum(int(end) - int(begin) for begin, end in (t["data_offsets"] for t in header.values()))
        specs = {name: (str(t["dtype"]), tuple(int(n) for n in t["shape"])) for name, t in header.items()}
    except (ValueError, TypeError, KeyError, AttributeError):  # JSON, UTF-8 or structure
        raise CodecLabError(f"not a CodecLab {what}: {path} (corrupt safetensors header)") from None
    if not isinstance(metadata, dict) or metadata.get("format") != file_format:
        raise CodecLabError(f"not a CodecLab {what}: {path} (no codeclab metadata of {file_format})")
    if metadata.get("format_version") not in versions:
        raise CodecLabError(f"unsupported {what} format version {metadata.get('format_version')!r} in {path}")
    return ModelHeader(metadata, specs, tensor_bytes)
