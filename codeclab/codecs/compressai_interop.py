"""compressai interoperability: state_dicts of compressai's ``bmshj2018-factorized``,
``bmshj2018-hyperprior``, ``mbt2018-mean``, ``mbt2018``, ``cheng2020-anchor`` and ``cheng2020-attn``
<-> the same codecs here.

The transforms keep compressai's names (``g_a.*``, ``g_s.*``); everything compressai keeps at
the model root for the rate model lives in the codec's ``entropy_model``:

| compressai                 | CodecLab                                   |
| -------------------------- | ------------------------------------------ |
| ``g_a.*``, ``g_s.*``       | ``g_a.*``, ``g_s.*``                       |
| ``h_a.*``, ``h_s.*``       | ``entropy_model.h_a.*``, ``entropy_model.h_s.*`` |
| ``entropy_bottleneck.*``   | ``entropy_model.entropy_bottleneck.*``     |
| ``gaussian_conditional.*`` | ``entropy_model.gaussian_conditional.*``   |
| ``context_prediction.*``, ``entropy_parameters.*`` (mbt2018, cheng2020) | ``entropy_model.`` + the same |

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
COMPRESSAI_KEYS: dict[str, dict[str, str]] = {
    "bmshj2018-factorized": {"entropy_bottleneck.": "entropy_model.entropy_bottleneck."},
    "bmshj2018-hyperprior": _RATE_MODEL,
    "mbt2018-mean": _RATE_MODEL,
    "mbt2018": _CONTEXT_MODEL,
    "cheng2020-anchor": _CONTEXT_MODEL,
    "cheng2020-attn": _CONTEXT_MODEL,
}


def from_compressai(codec_id: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A compressai state_dict of model ``codec_id`` renamed for the CodecLab codec of that name."""
    if codec_id not in COMPRESSAI_KEYS:
        raise KeyError(f"no compressai key mapping for codec {codec_id!r}; known: {', '.join(COMPRESSAI_KEYS)}")
    return {rename_prefixes(k, COMPRESSAI_KEYS[codec_id]): v for k, v in state.items()}


def to_compressai(codec: Codec) -> dict[str, Tensor]:
    """``codec``'s state_dict under compressai's names (loads into compressai's model of the same name)."""
    inverse = {new: old for old, new in COMPRESSAI_KEYS[codec.codec_id].items()}
    return {rename_prefixes(k, inverse): v for k, v in codec.state_dict().items()}


def load_compressai_state_dict(codec: Codec, state: Mapping[str, Tensor]) -> Codec:
    """Load a compressai state_dict into ``codec`` (strict); returns ``codec``."""
    codec.load_state_dict(from_compressai(codec.codec_id, state))
    return codec
