"""What a model file (or a checkpoint or state_dict to export) may ask for, checked before any
codec is constructed.

A config reaches the codec builders only after :func:`check_config` (every value of a known
type and within the range its argument name allows) and :func:`check_tensors` (the codec built
on the ``meta`` device, which allocates nothing, has at most :data:`MAX_PARAMETERS` elements and
exactly the tensors given: names, shapes, dtypes). A hostile config therefore fails in one line
instead of allocating gigabytes, and a file whose tensors do not fit its config fails before
any weight is read. Stored CDF tables are bounded here by size and validated by
:meth:`codeclab.coding.CdfTables.check` once loaded (:func:`check_tables`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import torch

from ..codecs import Codec, build_codec
from ..entropy_models.integer import Int8ConvMixin, integer_convolutions, uncalibrated_int8_layers

# Elements (parameters and buffers) a codec may have: 2 GB of float32.
MAX_PARAMETERS = 500_000_000
# Entries of all stored CDF tables together (64 MB of int32).
MAX_TABLE_ENTRIES = 1 << 24
# Integer arguments by name (such a name holds an integer, a list of them, or null):
# (lowest, highest); an integer under any other name is in DEFAULT_RANGE.
DEFAULT_RANGE = (0, 1024)
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    **dict.fromkeys(("rate_levels", "hidden", "encoder_hidden", "latent_channels", "decoder_channels", "decoder_blocks",
                     "parameter_hidden", "channel_hidden", "lrp_hidden", "attention_dim", "growth"),
                    DEFAULT_RANGE),
    **dict.fromkeys(("N", "M", "channels", "ch", "z_channels", "embed_dim", "prior_dim", "components", "num_slices",
                     "window", "heads", "prior_heads", "prior_groups", "groups", "norm_groups", "decoder_groups",
                     "max_support", "global_grid", "reweighting_reduction", "ch_mult", "m", "levels", "bits"), (1, 1024)),
    # numbers of blocks: each is a Python module even on the meta device
    **dict.fromkeys(("depths", "prior_depth", "token_mixing_depth", "num_res_blocks"), (1, 64)),
    "scale_table_levels": (2, 4096),
    "n_embed": (2, 65536),
    "k": (2, 65536),
    "resolution": (1, 4096),
    "attn_resolutions": (1, 4096),
}
MAX_DEPTH, MAX_ITEMS, MAX_STRING = 4, 64, 64

# Safetensors' dtype names.
DTYPE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}
STORED_FLOATS = ("F32", "BF16", "F16")  # export's weights dtypes

Spec = tuple[str, tuple[int, ...]]  # (safetensors dtype name, shape)


def check_config(config: Mapping) -> None:
    """``ValueError`` (one line) unless every value of ``config`` is JSON of bounded size whose
    numbers are finite and whose integers are within the range of their argument name."""
    if not isinstance(config, Mapping):
        raise ValueError("the config is not a JSON object")
    _check_value("config", config, "", 0)


def _check_value(path: str, value, name: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"{path} is nested too deeply")
    if value is None:
        return
    if name in INTEGER_RANGES and isinstance(value, (bool, float, str, Mapping)):
        raise ValueError(f"{path} = {json.dumps(value)[:MAX_STRING]} is not an integer")
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        low, high = INTEGER_RANGES.get(name, DEFAULT_RANGE)
        if not low <= value <= high:
            raise ValueError(f"{path} = {value} is outside [{low}, {high}]")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path} = {value} is not finite")
    elif isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ValueError(f"{path} is a string of over {MAX_STRING} characters")
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise ValueError(f"{path} has over {MAX_ITEMS} items")
        for i, item in enumerate(value):  # a list of sizes follows its argument's range
            _check_value(f"{path}[{i}]", item, name, depth + 1)
    elif isinstance(value, Mapping):
        if len(value) > MAX_ITEMS:
            raise ValueError(f"{path} has over {MAX_ITEMS} keys")
        for key, item in value.items():
            _check_value(f"{path}.{key}", item, str(key), depth + 1)
    else:
        raise ValueError(f"{path} has unsupported type {type(value).__name__}")


def planned_codec(codec_id: str, config: Mapping) -> Codec:
    """The codec ``codec_id`` of ``config`` (checked first) built on the ``meta`` device: its
    tensors have shapes and dtypes but no storage. ``ValueError`` (one line) when the builder
    refuses the config or the codec has over :data:`MAX_PARAMETERS` elements."""
    check_config(config)
    try:
        with torch.device("meta"):
            codec = build_codec(codec_id, config)
    except (KeyError, TypeError, ValueError, ArithmeticError, AssertionError, IndexError, RuntimeError) as err:
        raise ValueError(f"the codec refuses its config ({(str(err).splitlines() or [type(err).__name__])[0]})") from None
    elements = sum(t.numel() for t in codec.state_dict().values())
    if elements > MAX_PARAMETERS:
        raise ValueError(f"the config asks for {elements:,} parameters, over the limit of {MAX_PARAMETERS:,}")
    return codec


def tensor_specs(state: Mapping[str, torch.Tensor]) -> dict[str, Spec]:
    """The specs of real tensors (a checkpoint's or state_dict's), as :func:`check_tensors` takes them."""
    return {name: (DTYPE_NAMES.get(t.dtype, str(t.dtype)), tuple(t.shape)) for name, t in state.items()}


def check_tensors(codec: Codec, specs: Mapping[str, Spec], tables_optional: bool = False) -> None:
    """``ValueError`` (one line) unless ``specs`` are exactly ``codec``'s tensors: the same names
    and shapes, float weights in an export dtype (an integer convolution's weight also as
    ``int16``, an 8-bit one's as ``int8``, with its ``int8`` ``<name>_shift``), other buffers in their own dtype. CDF tables,
    whose sizes follow the trained weights, must have their buffer's dtype, one or two dimensions
    and :data:`MAX_TABLE_ENTRIES` entries in all; ``tables_optional``: they may be absent (rebuilt)."""
    expected = {name: (DTYPE_NAMES.get(t.dtype, str(t.dtype)), tuple(t.shape)) for name, t in codec.state_dict().items()}
    tables = codec.table_buffer_names()
    integer_weights = {f"{name}.weight": layer for name, layer in integer_convolutions(codec)}
    for name, layer in integer_weights.items():
        if f"{name}_shift" in specs:
            expected[f"{name}_shift"] = ("I8", (expected[name][1][layer.output_dim],))
    missing = sorted(set(expected) - set(specs) - (tables if tables_optional else set()))
    extra = sorted(set(specs) - set(expected))
    if missing or extra:
        raise ValueError(f"{'missing tensor ' + missing[0] if missing else 'unexpected tensor ' + extra[0]}"
                         f" ({len(missing)} missing, {len(extra)} unexpected)")
    entries = 0
    for name, (dtype, shape) in sorted(specs.items()):
        want_dtype, want_shape = expected[name]
        if name in tables:
            if dtype != want_dtype or not 1 <= len(shape) <= 2:
                raise ValueError(f"table {name} is {dtype} {list(shape)}, not a 1-D or 2-D {want_dtype} table")
            entries += math.prod(shape)
            continue
        if shape != want_shape:
            raise ValueError(f"tensor {name} has shape {list(shape)}, the config asks for {list(want_shape)}")
        stored_integers = ("I8",) if isinstance(integer_weights.get(name), Int8ConvMixin) else ("I16",)
        floats = STORED_FLOATS + (stored_integers if name in integer_weights and f"{name}_shift" in specs else ())
        if dtype not in (floats if want_dtype in STORED_FLOATS else (want_dtype,)):
            raise ValueError(f"tensor {name} is {dtype}, not {want_dtype}")
    if entries > MAX_TABLE_ENTRIES:
        raise ValueError(f"the CDF tables have {entries:,} entries, over the limit of {MAX_TABLE_ENTRIES:,}")


def check_tables(codec: Codec) -> None:
    """``ValueError`` (one line) unless every stored table set passes :meth:`CdfTables.check`."""
    for module in codec.table_models():
        try:
            module.tables().check()
        except ValueError as err:
            raise ValueError(f"bad entropy tables in {_module_name(codec, module)}: {err}") from None


def check_integer_layers(codec: Codec) -> None:
    """``ValueError`` (one line) if an 8-bit integer layer has no calibrated input grid (a file
    that could not code anything)."""
    uncalibrated = uncalibrated_int8_layers(codec)
    if uncalibrated:
        raise ValueError(f"8-bit layer {uncalibrated[0][0]} has no calibrated input grid")


def _module_name(codec: Codec, module: torch.nn.Module) -> str:
    return next(name for name, m in codec.named_modules() if m is module)
