"""Codecs: an analysis transform, a latent entropy model and a synthesis transform
(:class:`~.base.Codec`), registered by name in :data:`CODECS` (:mod:`.zoo`, :mod:`.vqgan`, :mod:`.mcquic`, :mod:`.lossless`, and the video
codec STEM in :mod:`.stem`)."""

from .base import CODECS, Codec, CompressedImage, build_codec, register_codec
from .lossless import pc_lossless
from .compressai_interop import from_compressai, load_compressai_state_dict, to_compressai
from .mcquic import McQuic, fixed_rate_bpp, mcquic
from .mlicpp_interop import from_mlicpp, load_mlicpp_state_dict, to_mlicpp
from .stem import VideoCodec, stem
from .vqgan import VQGAN, load_taming_state_dict, vqgan
from .zoo import (
    bmshj2018_factorized, bmshj2018_hyperprior, cheng2020_anchor, cheng2020_attn, compose, elic, mbt2018, mbt2018_mean,
    mlicpp, mlicv2, s2lic, walloc,
)

__all__ = [
    "CODECS", "McQuic", "VQGAN", "Codec", "CompressedImage", "bmshj2018_factorized", "bmshj2018_hyperprior", "build_codec",
    "cheng2020_anchor", "cheng2020_attn", "elic",
    "compose", "from_compressai", "from_mlicpp", "load_compressai_state_dict", "load_mlicpp_state_dict",
    "load_taming_state_dict", "fixed_rate_bpp", "mbt2018", "mcquic", "mbt2018_mean", "mlicpp", "mlicv2", "pc_lossless", "register_codec",
    "s2lic", "stem", "to_compressai",
    "to_mlicpp", "VideoCodec", "vqgan", "walloc",
]
