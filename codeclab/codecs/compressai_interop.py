"""compressai interoperability: state_dicts of compressai's ``bmshj2018-factorized``,
``bmshj2018-hyperprior``, ``mbt2018-mean``, ``mbt2018``, ``cheng2020-anchor``, ``cheng2020-attn`` and
``elic2022-official`` (CodecLab's ``elic``) <-> the same codecs here.

The transforms keep compressai's names (``g_a.*``, ``g_s.*``); everything compressai keeps at
the model root for the rate model lives in the codec's ``entropy_model``:

| compressai                 | CodecLab                                   |
| -------------------------- | ------------------------------------------ |
| ``g_a.*``, ``g_s.*``       | ``g_a.*``, ``g_s.*``                       |
| ``h_a.*``, ``h_s.*``       | ``entropy_model.h_a.*``, ``entropy_model.h_s.*`` |
| ``entropy_bottleneck.*``   | ``entropy_model.entropy_bottleneck.*``     |
| ``gaussian_conditional.*`` | ``entropy_model.gaussian_conditional.*``   |
| ``context_prediction.*``, ``entropy_parameters.*`` (mbt2018, cheng2020) | ``entropy_model.`` + the same |
| ``latent_codec.*`` (elic: nested latent codecs) | ``entropy_model.*`` (:func:`_elic_keys`) |

Layers, parameters and buffers are otherwise identical (the project's own GDN, factorized
density and Gaussian conditional; see :mod:`codeclab.transforms.layers`), so a converted model
computes the same latents, likelihoods, tables and symbols as compressai's.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from .base import Codec, rename_prefixes

_RATE_MODEL = {
    "h_a.": "entropy_model.h_a.",
    "h_s.": "entropy_model.h_s.",
    "entropy_bottleneck.": "entropy_model.entropy_bottleneck.",
    "gaussian_conditional.": "entropy_model.gaussian_conditional.",
}
_CONTEXT_MODEL = {
    **_RATE_MODEL,
    "context_prediction.": "entropy_model.context_prediction.",
    "entropy_parameters.": "entropy_model.entropy_parameters.",
}
def _elic_keys(max_groups: int = 16) -> dict[str, str | None]:
    """compressai's nested latent codecs of ``elic2022-official`` -> the flat SCCTX model. Its
    checkerboard masks and the Gaussian conditionals of groups 1.. (the same constants as group
    0's) have no counterpart (``None``: dropped)."""
    y = "latent_codec.y."
    keys: dict[str, str | None] = {
        "latent_codec.hyper.h_a.": "entropy_model.h_a.",
        "latent_codec.hyper.h_s.": "entropy_model.h_s.",
        "latent_codec.hyper.entropy_bottleneck.": "entropy_model.entropy_bottleneck.",
        f"{y}latent_codec.y0.y.gaussian_conditional.": "entropy_model.gaussian_conditional.",
    }
    for k in range(max_groups):
        group = f"{y}latent_codec.y{k}."
        if k:
            keys[f"{group}y.gaussian_conditional."] = None
        keys.update({
            f"{group}context_prediction.mask": None,
            f"{group}context_prediction.": f"entropy_model.spatial_context.{k}.",
            f"{group}entropy_parameters.": f"entropy_model.entropy_parameters.{k}.",
            f"{y}channel_context.y{k}.": f"entropy_model.channel_context.{k}.",
        })
    return keys


COMPRESSAI_KEYS: dict[str, dict[str, str | None]] = {
    "bmshj2018-factorized": {"entropy_bottleneck.": "entropy_model.entropy_bottleneck."},
    "bmshj2018-hyperprior": _RATE_MODEL,
    "mbt2018-mean": _RATE_MODEL,
    "mbt2018": _CONTEXT_MODEL,
    "cheng2020-anchor": _CONTEXT_MODEL,
    "cheng2020-attn": _CONTEXT_MODEL,
    "elic": _elic_keys(),
}


def from_compressai(codec_id: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A compressai state_dict of model ``codec_id`` renamed for the CodecLab codec of that name."""
    if codec_id not in COMPRESSAI_KEYS:
        raise KeyError(f"no compressai key mapping for codec {codec_id!r}; known: {', '.join(COMPRESSAI_KEYS)}")
    renamed = {rename_prefixes(k, COMPRESSAI_KEYS[codec_id]): v for k, v in state.items()}
    return {k: v for k, v in renamed.items() if k is not None}


def to_compressai(codec: Codec) -> dict[str, Tensor]:
    """``codec``'s state_dict under compressai's names (loads into compressai's model of the same
    name; for ``elic`` without the tensors :func:`from_compressai` drops, so load it non-strictly)."""
    inverse = {new: old for old, new in COMPRESSAI_KEYS[codec.codec_id].items() if new is not None}
    return {rename_prefixes(k, inverse): v for k, v in codec.state_dict().items()}


def load_compressai_state_dict(codec: Codec, state: Mapping[str, Tensor]) -> Codec:
    """Load a compressai state_dict into ``codec`` (strict); returns ``codec``."""
    codec.load_state_dict(from_compressai(codec.codec_id, state))
    return codec
