"""The released MLIC++ ``state_dict`` (JiangWeibeta/MLIC, ``MLIC++/models/mlicpp.py``:
``MLICPlusPlus(config).state_dict()``, the ``"state_dict"`` of its checkpoints) <-> CodecLab's
``mlicpp`` codec (:func:`~.zoo.mlicpp`).

The released model wraps each transform stack in one attribute and keeps the rate model at its
root; every name below that prefix is the same here (layers, indices, ``fushion`` included):

| released                              | CodecLab                                       |
| ------------------------------------- | ---------------------------------------------- |
| ``g_a.analysis_transform.*``          | ``g_a.*``                                      |
| ``g_s.synthesis_transform.*``         | ``g_s.*``                                      |
| ``h_a.reduction.*``, ``h_s.increase.*`` | ``entropy_model.h_a.*``, ``entropy_model.h_s.*`` |
| ``entropy_bottleneck.*``, ``gaussian_conditional.*`` | ``entropy_model.`` + the same   |
| the context networks: ``local_context.*``, ``channel_context.*``, ``global_inter_context.*``, ... | ``entropy_model.`` + the same |

(the context networks: ``local_context``, ``channel_context``, ``global_inter_context``,
``global_intra_context``, ``entropy_parameters_anchor``, ``entropy_parameters_nonanchor``,
``lrp_anchor``, ``lrp_nonanchor``).

The released entropy tables (``_quantized_cdf``, ``_offset``, ``_cdf_length``, ``scale_table``) are
compressai's; CodecLab rebuilds its own from the loaded parameters (:meth:`~.base.Codec.ensure_tables`).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from .base import Codec, rename_prefixes

_ENTROPY_PARTS = (
    "entropy_bottleneck", "gaussian_conditional", "local_context", "channel_context", "global_inter_context",
    "global_intra_context", "entropy_parameters_anchor", "entropy_parameters_nonanchor", "lrp_anchor", "lrp_nonanchor",
)
MLICPP_KEYS: dict[str, str] = {
    "g_a.analysis_transform.": "g_a.",
    "g_s.synthesis_transform.": "g_s.",
    "h_a.reduction.": "entropy_model.h_a.",
    "h_s.increase.": "entropy_model.h_s.",
    **{f"{part}.": f"entropy_model.{part}." for part in _ENTROPY_PARTS},
}
TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def from_mlicpp(state: Mapping[str, Tensor], tables: bool = False) -> dict[str, Tensor]:
    """A released MLIC++ state_dict renamed for CodecLab's ``mlicpp`` codec (``tables=False``:
    without compressai's entropy tables, which CodecLab rebuilds)."""
    renamed = {rename_prefixes(k, MLICPP_KEYS): v for k, v in state.items()}
    return {k: v for k, v in renamed.items() if tables or k.rsplit(".", 1)[-1] not in TABLE_BUFFERS}


def to_mlicpp(codec: Codec) -> dict[str, Tensor]:
    """``codec``'s state_dict under the released MLIC++ names."""
    inverse = {new: old for old, new in MLICPP_KEYS.items()}
    return {rename_prefixes(k, inverse): v for k, v in codec.state_dict().items()}


def load_mlicpp_state_dict(codec: Codec, state: Mapping[str, Tensor]) -> Codec:
    """Load a released MLIC++ state_dict into ``codec`` (all parameters; the table buffers are
    rebuilt); returns ``codec``."""
    missing, unexpected = codec.load_state_dict(from_mlicpp(state), strict=False)
    missing = [k for k in missing if k.rsplit(".", 1)[-1] not in TABLE_BUFFERS]
    if missing or unexpected:
        raise KeyError(f"MLIC++ state_dict does not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return codec
