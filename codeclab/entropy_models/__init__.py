"""Latent entropy models, one file each, selected by name from :data:`ENTROPY_MODELS`.

* ``factorized`` (:mod:`.factorized`), ``scale_hyperprior`` and ``hyperprior`` (:mod:`.hyperprior`)
* ``autoregressive`` (:mod:`.autoregressive`, mbt2018), ``checkerboard`` (:mod:`.checkerboard`), ``charm``
  (:mod:`.channelwise`), ``acgc`` (:mod:`.acgc`), ``elic`` (:mod:`.elic`), ``mlicpp`` (:mod:`.mlicpp`),
  ``mlicv2`` (:mod:`.mlicv2`, a reconstruction from the paper)
* ``spatiotemporal`` (:mod:`.spatiotemporal`, STEM's P-frame model: takes the previous decoded latent)
* ``hclt`` (:mod:`.hclt`, probabilistic circuits coding pixel blocks losslessly)
* ``bounded`` (:mod:`.bounded`, WaLLoC), ``vq`` (:mod:`.vq`, with the index models of :mod:`.index_models`),
  ``mcquic`` (:mod:`.mcquic`, multi-level multi-codebook VQ with static per-codebook tables)

Building blocks: integer networks for exact entropy parameters (:mod:`.integer`), the factorized
density and Gaussian conditional layers (:mod:`.factorized`,
:mod:`.gaussian`) with their integer tables (:mod:`.tables`), and latent <-> symbol coding
(:mod:`.latent_coding`). The interface is in :mod:`.base`.
"""

from .base import ENTROPY_MODELS, LatentEntropyModel
from . import acgc, autoregressive, bounded, channelwise, checkerboard, elic, factorized, hclt, hyperprior, mcquic, mlicpp, mlicv2, spatiotemporal, vq  # noqa: F401,E501
from .factorized import EntropyBottleneck
from .gaussian import GaussianConditional
from .index_models import INDEX_MODELS
from .tables import TableEntropyModel

__all__ = [
    "ENTROPY_MODELS", "INDEX_MODELS", "EntropyBottleneck", "GaussianConditional", "LatentEntropyModel",
    "TableEntropyModel",
]
