"""Self-contained model files: safetensors weights + entropy tables + JSON metadata.

A model file is a ``.safetensors`` file (no pickle: loading never executes code from the file)
whose string metadata holds:

* ``format``: ``"codeclab-model"``, ``format_version``
* ``codec``: the codec registry name; ``config``: JSON of its constructor arguments
* ``weights_sha256``: hash of every tensor in the file (weights and integer tables, under the
  names stored), checked on load. The model hash (:func:`.model_header.model_sha256`), whose
  first 8 bytes are written into each bitstream to catch decoding with the wrong model and by
  which ``decode`` finds a model in ``--models-dir``, is computed from the metadata: in format 8
  over the codec, config, tables fingerprint and weights hash; in older files it is the weights
  hash alone (what their bitstreams carry)
* ``tables_fingerprint``: hash of the entropy-model parameters the stored integer CDF tables
  were built from; a mismatch means stale tables and the file is refused (decoding must never
  depend on CDFs recomputed from floats on another machine)

* ``portable``: ``"true"`` when no float network computes what the arithmetic decoder depends
  on (integer entropy-parameter networks, :mod:`codeclab.entropy_models.integer`), so files
  decode identically on every machine; ``"false"`` for float ones (ACGC, a transformer index
  model, ``--arithmetic float``), whose files decode only under the configuration that wrote them
* ``lmbda`` (fixed-rate models trained for MSE by ``train.py``, or exported from its checkpoints):
  the training lambda, which ``--refine`` optimises for when given none; absent in older files
* ``base_model`` (format 9, optional): the model hash of another model file that holds the
  tensors this model shares with it (a video codec's frozen image codec), which this file does
  not store. Loading finds the base as ``decode`` finds models (:func:`model_search_dirs`), loads
  and checks it as a model of its own, and refuses a file whose tensors would change it; the
  model hash covers the base's, so a bitstream names both files

The weight of each integer convolution is stored as what the decoder computes with: ``int16``
integers (``int8`` for 8-bit layers) under its name and the ``int8`` shift of each output channel under ``<name>_shift``
(the float weight is ``w * 2^-shift``, from which the layer derives the same integers).

Before any codec is constructed, the config and the tensors' names, shapes and dtypes (read
from the header) are checked against the codec built on the ``meta`` device
(:mod:`.model_checks`); once loaded, the stored CDF tables are validated.

Versions: ``"9"`` (written now): a file may name a ``base_model``; the tensors are as in
``"8"``. ``"8"``: the model hash covers the config and tables, not the weights
alone; the tensors are as in ``"7"``. ``"7"``: the live classes lost their switches back to CodecLab's first
architectures, which became classes of :mod:`codeclab.compat` (registered names such as
``acgc_v1``, ``swinv2_v1``). ``"6"``: training and entropy-parameter details of cheng2020, McQuic and
STEM moved to the official code's (issue 29). ``"5"``: cheng2020's Gaussian mixture and WaLLoC's
lossless format moved to the official code's. ``"4"``: WaLLoC's synthesis moved to the official
AutoencoderKL decoder. ``"3"`` may hold integer weights, and S2LIC, ChARM and WaLLoC's mapping
moved to the official wiring. ``"2"`` stores the composed codec's names (``g_a``, ``g_s``,
``entropy_model.*``); ``"1"`` files (written before the transform/entropy-model composition)
stored each codec's own names. What each older format means now is declared per codec in
:mod:`codeclab.compat.model_files`; files keep their weights hash, so the bitstreams they wrote
keep decoding (``tests/formats/test_golden.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..codecs import CODECS, Codec, build_codec
from ..codecs.base import coding_transforms, with_arithmetic
from ..entropy_models.integer import Int8ConvMixin, IntegerConvMixin, integer_convolutions
from ..entropy_models.gaussian import GaussianConditional
from ..compat import migrate_config, migrate_tensors
from ..errors import CodecLabError
from ..files import write_atomically
from .model_checks import check_integer_layers, check_tables, check_tensors, planned_codec, tensor_specs
from .model_header import BASE_MODEL, FORMAT, FORMAT_VERSION, ModelHeader, model_sha256, read_header

def weights_sha256(codec_or_state: Codec | dict) -> str:
    """SHA-256 over every tensor of a state_dict (or a codec's), in name order (names, dtypes,
    shapes and bytes)."""
    state = codec_or_state.state_dict() if isinstance(codec_or_state, torch.nn.Module) else codec_or_state
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        # The raw bytes (as numpy's tobytes for the dtypes numpy has; bfloat16 too).
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def portable_codec(codec: Codec) -> Codec:
    """``codec`` with integer entropy-parameter networks (a converted copy with the same weights)
    when it has float ones that can be; otherwise ``codec`` itself."""
    if codec.entropy_model.portable:
        return codec
    try:
        return with_arithmetic(codec, "integer")
    except ValueError:
        return codec


def export_model(codec: Codec, path: str | Path, weights_dtype: str = "float32", arithmetic: str = "integer",
                 base_model: str | Path | None = None) -> Codec:
    """Write ``codec`` with freshly built entropy tables to ``path``; returns the codec written
    (its ``model_sha256`` set), which computes exactly what the file will.

    ``base_model``: a model file holding part of ``codec`` (the frozen image codec of a video
    codec): every tensor it has is left out of the file, which names it by hash instead
    (``base_model`` metadata); a tensor whose exported value differs from the base's is refused.

    ``arithmetic="integer"`` (default) converts float entropy-parameter networks to integer ones
    (:func:`portable_codec`; a post-training conversion, which a short quantisation-aware
    fine-tune can follow); ``"float"`` writes them as they are. ``weights_dtype`` ``"bfloat16"``
    or ``"float16"`` stores the float parameters at half the size; they are rounded first, and
    the tables are built from the rounded values. Buffers (tables, bounds) keep their dtype.
    """
    if weights_dtype not in WEIGHT_DTYPES:
        raise CodecLabError(f"weights dtype must be one of {', '.join(WEIGHT_DTYPES)}, got {weights_dtype!r}")
    if arithmetic not in ("integer", "float"):
        raise CodecLabError(f"arithmetic must be 'integer' or 'float', got {arithmetic!r}")
    if arithmetic == "integer":
        codec = portable_codec(codec)
    try:
        check_integer_layers(codec)
    except ValueError as err:
        raise CodecLabError(f"cannot export: {err}") from None
    dtype = WEIGHT_DTYPES[weights_dtype]
    integers = dict(integer_convolutions(codec))
    integer_weights = {f"{name}.weight" for name in integers}
    parameters = {name for name, _ in codec.named_parameters()}
    with torch.no_grad():
        for name, parameter in codec.named_parameters():
            if name not in integer_weights:
                parameter.copy_(parameter.to(dtype).float())
        for layer in integers.values():
            layer.weight.copy_(IntegerConvMixin.dequantize_weight(*layer.integer_weight(), layer.output_dim))
    codec.update_tables()
    tensors = {
        name: (t.to(dtype) if name in parameters else t).detach().cpu().contiguous().clone()
        for name, t in codec.state_dict().items()
    }
    for name, layer in integers.items():
        w_int, shift = layer.integer_weight()
        tensors[f"{name}.weight"] = w_int.to(torch.int8 if isinstance(layer, Int8ConvMixin) else torch.int16).contiguous()
        tensors[f"{name}.weight_shift"] = shift.to(torch.int8).contiguous()
    base_metadata = None
    if base_model is not None:
        base_metadata, tensors = _without_base(codec, tensors, base_model)
    digest = weights_sha256(tensors)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "codec": codec.codec_id,
        "config": json.dumps(codec.config, sort_keys=True),
        "weights_sha256": digest,
        "tables_fingerprint": codec.tables_fingerprint(),
        "weights_dtype": weights_dtype,
        "portable": str(codec.entropy_model.portable).lower(),
    }
    if codec.training_lmbda is not None and not codec.rate_levels:  # a variable-rate model's levels carry theirs
        metadata["lmbda"] = repr(codec.training_lmbda)
    if base_metadata is not None:
        metadata[BASE_MODEL] = model_sha256(base_metadata)
    write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    codec.model_sha256 = model_sha256(metadata)
    return codec


def _without_base(codec: Codec, tensors: dict, base_model: str | Path) -> tuple[dict, dict]:
    """The base model's metadata, and ``tensors`` less every tensor the base model stores: each
    weight checked to hold the base's value, and the base's stored entropy tables loaded into
    ``codec`` (tables rebuilt from floats may differ between machines; decoding uses the stored ones)."""
    header = _base_header(base_model)
    base = _read_tensors(base_model, header)
    tables = codec.table_buffer_names()
    for name, stored in base.items():
        mine = tensors.get(name)
        if name not in tables and (mine is None or mine.shape != stored.shape or not torch.equal(mine.double(), stored.double())):
            raise CodecLabError(f"the model's tensor {name} differs from base model {base_model}'s; export it without a base")
    codec.load_state_dict({name: base[name] for name in tables if name in base}, strict=False)
    return header.metadata, {name: t for name, t in tensors.items() if name not in base}


def _read_tensors(path: str | Path, header: ModelHeader) -> dict:
    """Every tensor of a model file under the current names, its weights hash checked."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            state = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CodecLabError(f"model file {path} is corrupt: {_first_line(err)}") from None
    if weights_sha256(state) != header.metadata.get("weights_sha256"):
        raise CodecLabError(f"model file {path} is corrupt: weights hash mismatch")
    return migrate_tensors(header.metadata["codec"], int(header.metadata["format_version"]), state)


def load_checkpoint(path: str | Path) -> Codec:
    """The codec of a CodecLab Lightning training checkpoint; raises :class:`CodecLabError`.

    The checkpoint is read with ``torch.load(weights_only=True)``, which refuses anything but
    tensors and plain containers, so no code from the file runs.
    """
    path = Path(path)
    if not path.is_file():
        raise CodecLabError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        hparams, state = checkpoint["hyper_parameters"], checkpoint["state_dict"]
        codec_id, config = hparams["codec_id"], hparams["codec_config"]
        state = {k.removeprefix("codec."): v for k, v in state.items() if k.startswith("codec.")}
        lmbda = training_lmbda(hparams)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise CodecLabError(f"not a CodecLab training checkpoint: {path} ({_first_line(err)})") from None
    if not isinstance(codec_id, str) or codec_id not in CODECS:
        raise CodecLabError(f"checkpoint {path} names unknown codec {codec_id!r}")
    codec = _build_checked(codec_id, config, state, f"checkpoint {path} is refused")
    codec.training_lmbda = lmbda
    return codec


def _build_checked(codec_id: str, config, state: dict, refused: str) -> Codec:
    """The codec ``codec_id`` of ``config`` with the tensors ``state`` (its tables optional: export
    rebuilds them), built only once the config and the tensors' names, shapes and dtypes have
    passed :mod:`.model_checks`; otherwise a :class:`CodecLabError` ``"<refused>: <the problem>"``."""
    try:
        if not all(isinstance(t, torch.Tensor) for t in state.values()):
            raise ValueError("it holds something other than tensors")
        check_tensors(planned_codec(codec_id, config), tensor_specs(state), tables_optional=True)
        codec = build_codec(codec_id, config)
        codec.load_state_dict(state, strict=False)
    except (ValueError, RuntimeError) as err:
        raise CodecLabError(f"{refused}: {_first_line(err)}") from None
    return codec


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def training_lmbda(hparams) -> float | None:
    """The lambda of a training module's hyperparameters when it trained for MSE (the distortion
    ``--refine`` optimises); None otherwise."""
    return float(hparams["lmbda"]) if "lmbda" in hparams and hparams.get("distortion", "mse") == "mse" else None


def load_compressai(path: str | Path, codec_id: str) -> Codec:
    """The codec ``codec_id`` with the weights of a compressai state_dict at ``path`` (read with
    ``weights_only=True``); ``N`` and ``M`` are read off the weight shapes, the integer tables
    are rebuilt. Raises :class:`CodecLabError`."""
    from ..codecs.compressai_interop import COMPRESSAI_KEYS, from_compressai

    path = Path(path)
    if codec_id not in COMPRESSAI_KEYS:
        raise CodecLabError(f"no compressai conversion for {codec_id!r}; known: {', '.join(COMPRESSAI_KEYS)}")
    if not path.is_file():
        raise CodecLabError(f"state_dict not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = from_compressai(codec_id, state.get("state_dict", state))
        config = _compressai_sizes(codec_id, state)
        # compressai's tables (those of every table model) are rebuilt here, never taken
        state = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in GaussianConditional.TABLE_BUFFERS}
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise CodecLabError(f"not a compressai {codec_id} state_dict: {path} ({_first_line(err)})") from None
    return _build_checked(codec_id, config, state, f"not a compressai {codec_id} state_dict: {path}")


def _compressai_sizes(codec_id: str, state: dict) -> dict:
    """The builder arguments of a (renamed) compressai state_dict, read off its weight shapes."""
    if codec_id.startswith("cheng2020"):  # residual-block transforms, M = N, compressai's single Gaussian
        return {"N": int(state["g_a.0.conv1.weight"].shape[0]), "components": 1}
    sizes = {"N": int(state["g_a.0.weight"].shape[0])}
    hyper = state.get("entropy_model.h_a.0.weight")  # h_a's input is y
    sizes["M"] = int(hyper.shape[1] if hyper is not None else state["g_a.6.weight"].shape[0])
    if codec_id == "elic":
        groups = [state[f"entropy_model.spatial_context.{k}.weight"].shape[1] for k in range(16)
                  if f"entropy_model.spatial_context.{k}.weight" in state]
        sizes["groups"] = [int(g) for g in groups]
    return sizes


def load_source(path: str | Path, compressai: str | None = None) -> Codec:
    """A codec to export: from a compressai state_dict (``compressai``: its model name), a model
    file (``.safetensors``) or a training checkpoint. Raises :class:`CodecLabError`."""
    if compressai:
        return load_compressai(path, compressai)
    if Path(path).suffix == ".safetensors":
        return load_model(path)
    return load_checkpoint(path)


def init_weights(codec: Codec, path: str | Path) -> list[str]:
    """Copy the weights of a model file or training checkpoint at ``path`` into ``codec``, for
    every tensor name and shape they share (entropy tables excepted); returns the names of
    ``codec``'s tensors that kept their initialisation. Raises :class:`CodecLabError`."""
    source = load_source(path)
    # Integer tables are rebuilt from the weights, never carried over into a new architecture.
    tables = codec.table_buffer_names() | source.table_buffer_names()
    target = codec.state_dict()
    shared = {k: v for k, v in source.state_dict().items() if k not in tables and k in target and target[k].shape == v.shape}
    if not shared:
        raise CodecLabError(f"{path} shares no weights with codec {codec.codec_id!r}")
    codec.load_state_dict(shared, strict=False)
    return sorted(k for k in target if k not in shared and k not in tables)


def read_model_header(path: str | Path) -> ModelHeader:
    """The header of a model file, its codec known; raises :class:`CodecLabError`."""
    header = read_header(path)
    if header.metadata.get("codec") not in CODECS:
        raise CodecLabError(f"unknown codec {header.metadata.get('codec')!r} in {path}; known: {', '.join(sorted(CODECS))}")
    return header


def read_metadata(path: str | Path) -> dict:
    """The metadata of a model file, validated; raises :class:`CodecLabError`."""
    return read_model_header(path).metadata


def model_search_dirs(extra: list[Path] | None = None, near: Path | None = None) -> list[Path]:
    """Where a model named by hash is looked for, in order: ``extra`` (``--models-dir``), the folders
    of ``$CODECLAB_MODELS``, the folder of the file that names it (``near``: a bitstream, or a model
    with a base) and its ``zoo/``, then ``models/`` and ``models/zoo/`` under the working folder."""
    dirs = list(extra or []) + [Path(d) for d in os.environ.get("CODECLAB_MODELS", "").split(os.pathsep) if d]
    if near is not None:
        dirs += [near.parent, near.parent / "zoo"]
    return dirs + [Path("models"), Path("models/zoo")]


def load_model(path: str | Path, search_dirs: list[Path] | None = None) -> Codec:
    """Load a model file for coding (eval mode, tables verified); raises :class:`CodecLabError`.

    The config and the tensors the header declares (with its base model's, if it names one) are
    checked (:mod:`.model_checks`) before any tensor is read or any codec built. ``search_dirs``:
    folders searched first for a base model (:func:`model_search_dirs`)."""
    header = read_model_header(path)
    metadata, codec_id, version = header.metadata, header.metadata["codec"], int(header.metadata["format_version"])
    base_path = _find_base(path, metadata, search_dirs)
    base_specs = {}
    if base_path is not None:
        base_header = _base_header(base_path)
        base_specs = migrate_tensors(base_header.metadata["codec"], int(base_header.metadata["format_version"]),
                                     base_header.specs)
    try:
        config = migrate_config(codec_id, version, json.loads(metadata["config"]))
        specs = migrate_tensors(codec_id, version, header.specs)
        repeated = sorted(set(specs) & set(base_specs))
        if repeated:
            raise ValueError(f"tensor {repeated[0]} is in its base model too")
        check_tensors(planned_codec(codec_id, config), {**base_specs, **specs})
        lmbda = float(metadata["lmbda"]) if "lmbda" in metadata else None
    except (KeyError, TypeError, ValueError, AttributeError) as err:  # JSON too
        raise CodecLabError(f"model file {path} is refused: {_first_line(err)}") from None
    state = _read_tensors(path, header)
    base = {} if base_path is None else load_model(base_path).state_dict()
    try:
        codec = build_codec(codec_id, config)
        codec.load_state_dict({**base, **_float_weights(codec, state)})
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CodecLabError(f"model file {path} does not match codec {codec_id!r}: {_first_line(err)}") from None
    loaded = codec.state_dict()
    changed = next((name for name, tensor in base.items() if not torch.equal(loaded[name], tensor)), None)
    if changed:  # a tensor shared with the base (the same module under two names) was overwritten
        raise CodecLabError(f"model file {path} is refused: it changes its base model's tensor {changed}")
    codec.training_lmbda = lmbda
    if codec.tables_fingerprint() != metadata.get("tables_fingerprint"):
        raise CodecLabError(f"model file {path} has stale entropy tables; re-export it with 'codeclab export'")
    try:
        check_tables(codec)
        check_integer_layers(codec)
    except ValueError as err:
        raise CodecLabError(f"model file {path} is refused: {err}") from None
    codec.mark_tables_current(metadata["tables_fingerprint"])
    codec.model_sha256 = model_sha256(metadata)
    try:
        codec.configure_transforms(*coding_transforms(codec))
    except ValueError as err:
        raise CodecLabError(str(err)) from None
    return codec.eval()


def find_base_model(path: str | Path, search_dirs: list[Path] | None = None) -> Path | None:
    """The model file that the model file ``path`` names as its base model (None: it names none),
    looked for in ``search_dirs``, then :func:`model_search_dirs` near ``path``; raises
    :class:`CodecLabError` when the name is malformed or no such file is found."""
    return _find_base(path, read_metadata(path), search_dirs)


def _find_base(path: str | Path, metadata: dict, search_dirs: list[Path] | None) -> Path | None:
    base_hash = metadata.get(BASE_MODEL)
    if base_hash is None:
        return None
    try:
        wanted = bytes.fromhex(base_hash)
    except (TypeError, ValueError):
        wanted = b""
    if len(wanted) != 32:
        raise CodecLabError(f"model file {path} is refused: its base model hash is not 64 hex digits")
    found = find_model(wanted, model_search_dirs(search_dirs, Path(path)))
    if found is None:
        raise CodecLabError(f"model file {path} needs its base model {base_hash[:16]}, not found beside it, in its zoo/, "
                            f"$CODECLAB_MODELS or models/; pass its folder with --models-dir")
    return found


def _base_header(path: str | Path) -> ModelHeader:
    """The header of a base model, which must hold all its tensors itself (no chains of bases)."""
    header = read_model_header(path)
    if BASE_MODEL in header.metadata:
        raise CodecLabError(f"base model {path} has a base model itself; a base model must be self-contained")
    return header


def _float_weights(codec: Codec, state: dict) -> dict:
    """``state`` with each stored integer weight (and its ``_shift``) back as the float weight."""
    state = dict(state)
    for name, layer in integer_convolutions(codec):
        shift = state.pop(f"{name}.weight_shift", None)
        if shift is not None:
            state[f"{name}.weight"] = IntegerConvMixin.dequantize_weight(state[f"{name}.weight"], shift, layer.output_dim)
    return state


def find_model(model_hash: bytes, search_dirs: list[Path]) -> Path | None:
    """The ``*.safetensors`` model in ``search_dirs`` whose model hash (:func:`.model_header.model_sha256`)
    starts with ``model_hash`` (the first of identical copies). Files of formats before 8 are named
    by their weights alone, so a copy with the same weights and another config or codec would
    match as well: several different matches are an error, never a silent choice."""
    matches: dict[tuple, Path] = {}
    for folder in search_dirs:
        if not folder.is_dir():
            continue
        for candidate in sorted(folder.glob("*.safetensors")):
            try:
                metadata = read_metadata(candidate)
                if bytes.fromhex(model_sha256(metadata)).startswith(model_hash):
                    described = (metadata.get("codec"), metadata.get("config"), metadata.get("tables_fingerprint"))
                    matches.setdefault(described, candidate)
            except (CodecLabError, ValueError, KeyError):
                continue
    if len(matches) > 1:
        names = ", ".join(str(path) for path in matches.values())
        raise CodecLabError(f"several different model files match the file's model hash {model_hash.hex()} ({names}); name one with -m")
    return next(iter(matches.values()), None)
