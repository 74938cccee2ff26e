"""What a model file of an older format means now, per codec, dispatched on ``metadata["codec"]``
and the format version alone: :data:`TENSOR_NAMES_V1` renames format-1 tensors; :data:`DEFAULTS`
gives an argument added since (absent from a file of format ``<= last``: written before it
existed, so the value the builder had then); :data:`FIRST_VERSIONS` maps a part that moved to
its paper's code to its compat class, and :data:`ARCHITECTURES` says where each codec's config
holds parts (flat arguments or nested ``entropy``/``transform`` specs). Format 8 changed only
the model hash (:func:`codeclab.formats.model_header.model_sha256`), no tensor or config, so it
has no entry here; nor has format 9, which only added the optional ``base_model`` (a file without
it holds every tensor, as before).
"""

from __future__ import annotations

from collections.abc import Callable

from ..codecs.base import rename_prefixes
from ..codecs.compressai_interop import COMPRESSAI_KEYS
from ..codecs.vqgan import TAMING_KEYS

# Format-1 tensor names -> format-2 names, per codec (the others already used the composed names).
TENSOR_NAMES_V1: dict[str, dict[str, str]] = {
    **COMPRESSAI_KEYS,
    "walloc": {
        "encoder.": "g_a.encoder.",
        "decoder.": "g_s.decoder.",
        "entropy_bottleneck.": "entropy_model.entropy_bottleneck.",
    },
    "vqgan": {
        **TAMING_KEYS,
        "static_model.": "entropy_model.index_models.static.",
        "prior.": "entropy_model.index_models.transformer.",
    },
}

# codec -> (last format without the key, key, the value it had then)
DEFAULTS: dict[str, list[tuple[int, str, object]]] = {
    # WaLLoC: a grayscale PNG mosaic before the official three-plane WebP (format 5)
    "walloc": [(4, "lossless_format", "png")],
    # cheng2020 before issue 29 (format 6): nn.LeakyReLU() and no robust tails
    "cheng2020-anchor": [(5, "leaky_slope", 0.01), (5, "robust_tails", False)],
    "cheng2020-attn": [(5, "leaky_slope", 0.01), (5, "robust_tails", False)],
    # McQuic: the pre-April-2022 EMA and HEAD's reassignment
    "mcquic": [(5, "ema_rule", "counts"), (5, "reassign_rule", "head")],
    # STEM: the noisy residual for the rate and the spatial prior; P-frames rounded around their
    # predicted means (every file written before residual_grid existed, format 8 included: the
    # builder records every argument, so a file that has the key keeps its value); on the reference
    # grid, P-frame means rounded to the grid (format 9 files written before mean_offsets existed)
    "stem": [(5, "residual_rate", "noise"), (5, "context_input", "noise"), (8, "residual_grid", "mean"),
             (9, "mean_offsets", 0)],
}


# The format from which configs name their parts and hold no switch back to a first version.
PARTS_NAMED = 7

# Parts whose first version is the compat class ``<name>_v1``: (the switch that chose between the
# two while both lived in the live class, in formats 3-6, with its first-version values; the
# last format all of whose files used the first version; the arguments only the first version
# takes; those only the live one takes). ``input_bits`` left both: bounded_v1 rescales itself.
FIRST_VERSIONS: dict[str, tuple[str, tuple[str, ...], int, tuple[str, ...], tuple[str, ...]]] = {
    "acgc": ("architecture", ("legacy",), 2, ("attention_dim", "heads"), ()),
    "charm": ("architecture", ("legacy",), 2, (), ()),
    "swinv2": ("layout", ("legacy",), 2, ("growth",), ()),
    "bounded": ("mapping", ("legacy",), 2, (), ()),
    "autoregressive": ("mixture_layout", ("legacy",), 4, (), ()),
    "walloc": ("decoder", ("residual",), 3, ("decoder_blocks", "input_bits"), ("decoder_groups", "input_bits")),
}


def migrate_part(version: int, spec: dict) -> dict:
    """A part ``{"name", **options}`` (a transform or an entropy model) of a format-``version``
    file, now: its compat class where the file used the first version, without the switch."""
    name, spec = spec["name"], dict(spec)
    if name not in FIRST_VERSIONS:
        return spec
    switch, first_values, last, first_only, live_only = FIRST_VERSIONS[name]
    value = spec.pop(switch, None)
    first = value in first_values or (value is None and version <= last)
    dropped = live_only if first else first_only
    return {**{k: v for k, v in spec.items() if k not in dropped}, **({"name": f"{name}_v1"} if first else {})}


def _popped(config: dict, *keys: str) -> dict:
    return {key: config.pop(key) for key in keys if key in config}


def _entropy(version: int, entropy: dict, M: int) -> dict:
    entropy = migrate_part(version, entropy)
    if entropy["name"] == "checkerboard" and version <= 2 and entropy.get("hidden") is None:
        entropy["hidden"] = 8 * M // 3  # one width for both layers
    return entropy


def _named(spec: dict) -> str | dict:
    """A spec as a codec argument: its name alone when it has no options."""
    return spec if len(spec) > 1 else spec["name"]


def _s2lic(version: int, config: dict) -> None:
    name, swin = config.pop("transform", "swinv2"), _popped(config, "layout", "growth")
    config["transform"] = _named(migrate_part(version, {"name": name, **(swin if name == "swinv2" else {})}))
    config["entropy"] = _entropy(version, config.get("entropy") or {"name": "acgc"}, config.get("M", 320))


def _composed(version: int, config: dict) -> None:
    config["transform"] = migrate_part(version, config["transform"])
    config["entropy"] = _entropy(version, config["entropy"], config["entropy"]["M"])


def _cheng2020(version: int, config: dict) -> None:
    config["entropy"] = migrate_part(version, {"name": "autoregressive", **_popped(config, "mixture_layout")})["name"]


def _walloc(version: int, config: dict) -> None:
    bottleneck = {"name": config["bottleneck"], **_popped(config, "mapping")}
    config["bottleneck"] = migrate_part(version, bottleneck)["name"]
    transform = {"name": "walloc", **_popped(config, "decoder", "decoder_blocks")}
    config["transform"] = _named(migrate_part(version, transform))


ARCHITECTURES: dict[str, Callable[[int, dict], None]] = {
    "walloc": _walloc,
    "cheng2020-anchor": _cheng2020,
    "cheng2020-attn": _cheng2020,
    "s2lic": _s2lic,
    "composed": _composed,
}


def migrate_config(codec: str, version: int, config: dict) -> dict:
    """The arguments of ``codec``'s builder now for the ``config`` of a format-``version`` file."""
    config = dict(config)
    for last, key, value in DEFAULTS.get(codec, ()):
        if version <= last:
            config.setdefault(key, value)
    if codec in ARCHITECTURES and version < PARTS_NAMED:
        ARCHITECTURES[codec](version, config)
    return config


def migrate_tensors(codec: str, version: int, state: dict) -> dict:
    """The tensors of a format-``version`` file under the names of the current modules."""
    if version > 1:
        return state
    return {rename_prefixes(name, TENSOR_NAMES_V1.get(codec, {})): tensor for name, tensor in state.items()}
