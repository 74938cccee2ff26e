"""Files of the networks that are not codecs: post-filters (RBQE) and JSCC models (SwinJSCC).

A network file is a safetensors file (no pickle) whose string metadata holds ``format``
(``"codeclab-network"``), ``format_version`` (``"1"``), ``kind`` (the registry: ``postfilter`` or
``jscc``), ``name`` (the entry in it), ``config`` (JSON of the constructor arguments) and
``weights_sha256``. Loading checks it as a model file is checked (:mod:`.model_checks`): the
config's values are bounded, the network is built on the ``meta`` device and its tensors'
names, shapes and dtypes are compared with the header before any weight is read, and the
weights' hash is verified, so a hostile file fails in one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import CodecLabError
from ..files import write_atomically
from .model_checks import MAX_PARAMETERS, check_config
from .model_file import WEIGHT_DTYPES, weights_sha256
from .model_header import read_header

NETWORK_FORMAT = "codeclab-network"
NETWORK_FORMAT_VERSION = "1"
READABLE_VERSIONS = ("1",)


def _registry(kind: str):
    if kind == "postfilter":
        from ..postfilters import POSTFILTERS

        return POSTFILTERS
    if kind == "jscc":
        from ..jscc import JSCC_MODELS

        return JSCC_MODELS
    raise CodecLabError(f"unknown network kind {kind!r}; known: jscc, postfilter")


def save_network(network: nn.Module, kind: str, path: str | Path, weights_dtype: str = "float32") -> None:
    """Write ``network`` (registered in ``kind``'s registry, with a ``config`` dict) to ``path``."""
    if weights_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype must be one of {', '.join(WEIGHT_DTYPES)}, got {weights_dtype!r}")
    _registry(kind)[network.registry_name]  # registered: a file that could not load is never written
    state = {name: t.detach().cpu().to(WEIGHT_DTYPES[weights_dtype]).contiguous()
             for name, t in network.state_dict().items()}
    metadata = {"format": NETWORK_FORMAT, "format_version": NETWORK_FORMAT_VERSION, "kind": kind,
                "name": network.registry_name, "config": json.dumps(network.config),
                "weights_sha256": weights_sha256(state), "weights_dtype": weights_dtype}
    write_atomically(Path(path), lambda tmp: save_file(state, str(tmp), metadata=metadata))


def _read_header(path: str | Path, kind: str):
    header = read_header(path, NETWORK_FORMAT, READABLE_VERSIONS, "network file")
    if header.metadata.get("kind") != kind:
        raise CodecLabError(f"{path} holds a {header.metadata.get('kind')!r} network, not a {kind}")
    return header


def read_network_name(path: str | Path, kind: str) -> str:
    """The registry name of the network in a network file of ``kind`` (header only)."""
    return str(_read_header(path, kind).metadata.get("name"))


def load_network(path: str | Path, kind: str) -> nn.Module:
    """The network of a network file of ``kind`` (float32, eval mode); raises :class:`CodecLabError`."""
    header = _read_header(path, kind)
    meta = header.metadata
    registry = _registry(kind)
    try:
        config = json.loads(meta["config"])
        check_config(config)
        with torch.device("meta"):
            planned = registry.build(meta["name"], **config)
        expected = {name: tuple(t.shape) for name, t in planned.state_dict().items()}
        if sum(map(math.prod, expected.values())) > MAX_PARAMETERS:
            raise ValueError("the config asks for too many parameters")
        stored = {name: shape for name, (dtype, shape) in header.specs.items()}
        if stored != expected:
            wrong = sorted(set(stored) ^ set(expected)) or sorted(n for n in stored if stored[n] != expected[n])
            raise ValueError(f"its tensors do not fit the config (first: {wrong[0]})")
        if any(dtype not in ("F32", "BF16", "F16") for dtype, _ in header.specs.values()):
            raise ValueError("a tensor is not float32, bfloat16 or float16")
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise CodecLabError(f"network file {path} is refused: {(str(err).splitlines() or [type(err).__name__])[0]}") from None
    try:
        with safe_open(str(path), framework="pt") as handle:
            state = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CodecLabError(f"network file {path} is corrupt: {err}") from None
    if weights_sha256(state) != meta.get("weights_sha256"):
        raise CodecLabError(f"network file {path} is corrupt: weights hash mismatch")
    network = registry.build(meta["name"], **config)
    network.load_state_dict({name: t.float() for name, t in state.items()})
    return network.eval()


def load_postfilter(path: str | Path) -> nn.Module:
    """The post-filter of a network file (``codeclab decode --postfilter``, ``eval.py postfilter=``)."""
    return load_network(path, "postfilter")
