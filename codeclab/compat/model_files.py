"""What a model file of an older format means now: its tensor names and its codec's arguments,
declared per codec and dispatched on ``metadata["codec"]`` and the format version alone.

Two kinds of change, one table each:

* :data:`DEFAULTS`: an argument added with a new default. A config of format ``<= last`` without
  it was written before it existed, so it means the value the builder computed then.
* :data:`ARCHITECTURES`: a part that moved to its paper's code. The config names the part (a
  registry name); a file of format ``<= last`` without a newer key, or with the switch that
  chose the first version while it lived in the live class (formats 3-6), names the compat part
  instead, and the switch leaves the config (format 7 dropped them).
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
    # STEM: the noisy residual for the rate and the spatial prior
    "stem": [(5, "residual_rate", "noise"), (5, "context_input", "noise")],
}


def _entropy(version: int, entropy: dict, M: int) -> dict:
    """An entropy-model spec ``{"name", **options}`` of a format-``version`` file, now."""
    entropy, name = dict(entropy), entropy["name"]
    if name in ("charm", "acgc"):  # ChARM and ACGC moved to the official wiring in format 3
        if entropy.pop("architecture", "legacy" if version <= 2 else None) == "legacy":
            entropy["name"] = f"{name}_v1"
        elif name == "acgc":  # sizes of the first version's attention only
            entropy.pop("attention_dim", None)
            entropy.pop("heads", None)
    if name == "checkerboard" and version <= 2 and entropy.get("hidden") is None:
        entropy["hidden"] = 8 * M // 3  # one width for both layers
    return entropy


def _swin(version: int, transform: dict) -> str | dict:
    """A SwinV2 transform spec of a format-``version`` file: the first layout before format 3."""
    transform = dict(transform)
    growth = transform.pop("growth", None)
    if transform.pop("layout", "legacy" if version <= 2 else None) != "legacy":
        return transform
    return {**transform, "name": "swinv2_v1", **({} if growth is None else {"growth": growth})}


def _s2lic(version: int, config: dict) -> None:
    transform = {"name": config.pop("transform", "swinv2"), "layout": config.pop("layout", None),
                 "growth": config.pop("growth", None)}
    if transform["name"] == "swinv2":
        transform = _swin(version, {k: v for k, v in transform.items() if v is not None})
        config["transform"] = transform if len(transform) > 1 else transform["name"]
    else:
        config["transform"] = transform["name"]
    config["entropy"] = _entropy(version, config.get("entropy") or {"name": "acgc"}, config.get("M", 320))


def _composed(version: int, config: dict) -> None:
    if config["transform"]["name"] == "swinv2":
        config["transform"] = _swin(version, config["transform"])
    config["entropy"] = _entropy(version, config["entropy"], config["entropy"]["M"])


def _cheng2020(version: int, config: dict) -> None:
    """The official mixture since format 5 (``mixture_layout`` chose it in formats 5-6)."""
    if config.pop("mixture_layout", "legacy" if version <= 4 else None) == "legacy":
        config["entropy"] = "autoregressive_v1"


def _walloc(version: int, config: dict) -> None:
    """The official mapping since format 3 (``mapping`` chose it in formats 3-6), the AutoencoderKL
    decoder since format 4 (``decoder`` chose it in formats 4-6)."""
    if config.pop("mapping", "legacy" if version <= 2 else None) == "legacy" and config["bottleneck"] == "bounded":
        config["bottleneck"] = "bounded_v1"
    blocks = config.pop("decoder_blocks", 4)
    if config.pop("decoder", "residual" if version <= 3 else None) == "residual":
        config["transform"] = {"name": "walloc_v1", "decoder_blocks": blocks}


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
    if codec in ARCHITECTURES:
        ARCHITECTURES[codec](version, config)
    return config


def migrate_tensors(codec: str, version: int, state: dict) -> dict:
    """The tensors of a format-``version`` file under the names of the current modules."""
    if version > 1:
        return state
    return {rename_prefixes(name, TENSOR_NAMES_V1.get(codec, {})): tensor for name, tensor in state.items()}
