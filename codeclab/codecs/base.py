"""A codec: an analysis transform, a latent entropy model and a synthesis transform.

::

    x ──► g_a ──► y ──► entropy_model ──► y_hat ──► g_s ──► x_hat
                         │       ▲
                      streams ───┘   (through the entropy coder: codeclab or compressai)

* ``forward(x)``: training pass; ``x`` is ``[B, 3, H, W]`` in [0, 1] with H and W multiples of
  :attr:`Codec.downsampling`. Returns ``{"x_hat", "likelihoods": {name: tensor}}`` plus whatever
  the entropy model adds (``vq_loss``, ``indices``); the rate of a latent is
  ``-sum(log2(likelihood))`` bits.
* ``compress(x, coder)`` -> :class:`CompressedImage`; ``decompress(compressed, coder)`` ->
  ``[B, 3, H, W]`` (not clamped); the decoder's ``y_hat`` is bit-exact to the encoder's.

The ``y`` vocabulary, shared by every codec, the file formats and the tools::

    x ──analysis──► y ──compress_y(coder)──► streams ──decompress_y(coder)──► y_hat ──synthesis──► x_hat
    x ──quantize──► y_hat   (the decoder's latent, without coding: "compressed-domain" access)

The entropy coder is an argument of every compress/decompress call (a codec holds no coder):
a file is decoded with the coder that wrote it, whatever the codec last encoded with.

Entropy tables are built automatically: ``compress``/``decompress`` call :meth:`Codec.ensure_tables`,
which rebuilds the integer CDFs whenever the entropy-model parameters changed since they were
last built. A model file stores the tables with a fingerprint of the parameters they were built
from (see :mod:`codeclab.formats.model_file`), and decoding never rebuilds them.

Codecs are built by the functions registered in :data:`CODECS` (:mod:`.zoo`); each records its
registry name (``codec_id``, written into model files and bitstreams) and its arguments
(``config``, enough to rebuild it).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..coding import EntropyCoder
from ..entropy_models import EntropyBottleneck, LatentEntropyModel, TableEntropyModel
from ..entropy_models.integer import INTEGER_ARITHMETICS
from ..registry import Registry
from ..transforms.banded import banded_forward

CODECS = Registry("codec")


@dataclass
class CompressedImage:
    """Coded streams of one image, the padded input size ``(H, W)`` and the rate level (variable-rate
    models) the decoder needs, with ``y_hat``, the latent the decoder reconstructs (which a file's
    latent check covers)."""

    strings: list[bytes]
    size: tuple[int, int]
    level: int | None
    y_hat: Tensor


class Codec(nn.Module):
    """``g_a`` -> ``entropy_model`` -> ``g_s``; ``stride`` is the transforms' downsampling."""

    def __init__(self, g_a: nn.Module, g_s: nn.Module, entropy_model: LatentEntropyModel, stride: int):
        super().__init__()
        self.g_a, self.g_s, self.entropy_model = g_a, g_s, entropy_model
        self.stride = int(stride)
        self.codec_id: str = ""
        self.config: dict = {}
        self._tables_fingerprint: str | None = None
        # Speed-up for training and coding: run g_a and g_s under autocast to this dtype (e.g.
        # torch.bfloat16) and in this memory format (configure_transforms); the entropy model
        # always runs in float32 (bf16 spacing is 0.5 above |y| = 64).
        self.transform_dtype: torch.dtype | None = None
        self.memory_format = torch.contiguous_format
        # The model hash, set when loaded from a model file (codeclab.formats.model_header.model_sha256);
        # written into bitstreams.
        self.model_sha256: str | None = None
        # The MSE lambda a fixed-rate model was trained for (recorded in its model file): what
        # --refine optimises when given no lambda. None: unknown, or not an MSE-trained model.
        self.training_lmbda: float | None = None

    @property
    def downsampling(self) -> int:
        """Image height and width must be multiples of this (the container pads to it)."""
        return self.stride * self.entropy_model.downsampling

    @property
    def num_streams(self) -> int:
        return self.entropy_model.num_streams

    @property
    def rate_levels(self) -> int:
        """Rate levels of a variable-rate model (level ``L - 1`` is the highest rate); 0: fixed rate."""
        return self.entropy_model.rate_levels

    def _transform_precision(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.transform_dtype, enabled=self.transform_dtype is not None)

    def configure_transforms(self, dtype: torch.dtype | None, channels_last: bool) -> None:
        """Run ``g_a``/``g_s`` under autocast to ``dtype`` (None: float32) in NCHW or channels-last
        layout. Safe for decoding whenever the entropy model is portable: the decoder's arithmetic
        never sees the transforms' output except through the exactly coded ``y_hat``."""
        self.transform_dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.g_a.to(memory_format=self.memory_format)
        self.g_s.to(memory_format=self.memory_format)

    def _analysis(self, x: Tensor) -> Tensor:
        x = x.to(memory_format=self.memory_format)
        with self._transform_precision(x.device):
            if self.training or torch.is_grad_enabled():
                y = self.g_a(x).float()
            else:  # coding: GDN in place, band by band (the same values, without its image-sized temporaries)
                y = banded_forward(self.g_a, x, convolutions=False).float()
        # Coding hands the entropy model NCHW latents whatever the transforms' layout: a float
        # entropy model must see the same layout on the encoder as on the decoder (which builds
        # z_hat from symbols). Training keeps the transforms' layout (speed).
        return y if self.training else y.contiguous()

    def synthesis(self, y_hat: Tensor) -> Tensor:
        """``g_s(y_hat)`` under the transform settings (:meth:`configure_transforms`), float32 NCHW."""
        with self._transform_precision(y_hat.device):
            return self.g_s(y_hat.to(memory_format=self.memory_format)).float().contiguous()

    def portable_synthesis(self) -> Callable[[Tensor], Tensor]:
        """``y_hat -> g_s(y_hat)`` in float64 and NCHW, whatever the transform settings: what decoders
        use unless the file allows the fast path, so that a file decodes to the same pixels on
        every CPU. Float32 (and bf16) kernels sum in an order that depends on the instruction set
        and thread count, which moves a few percent of rounded samples by one; float64 kernels
        differ only near 1e-16, so a sample would change only if its value lay that close to a
        rounding boundary. Approximate, not exact: none changed in the measurements of
        reports/portable_pixels. It works on a float64 copy of ``g_s`` (made once per call of this
        method, shared by every tile or frame and thread), so the codec is left as it is, and
        runs a convolutional ``g_s`` in bands of rows (:mod:`codeclab.transforms.banded`), which
        bounds float64's unfolded buffers (a 1080p frame: 1.6 GB instead of 4.8 GB)."""
        g_s = copy.deepcopy(self.g_s).double().to(memory_format=torch.contiguous_format)
        return lambda y_hat: banded_forward(g_s, y_hat.double().contiguous())

    def forward(self, x: Tensor, level: Tensor | None = None) -> dict:
        """``level``: ``[B]`` rate levels of a variable-rate model, one per sample."""
        out = self.entropy_model(self._analysis(x), level)
        return {"x_hat": self.synthesis(out.pop("y_hat")), **out}

    def _check_size(self, x: Tensor) -> None:
        if x.shape[-2] % self.downsampling or x.shape[-1] % self.downsampling:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not a multiple of {self.downsampling}")

    def _latent_shape(self, size: tuple[int, int]) -> tuple[int, int]:
        return size[0] // self.stride, size[1] // self.stride

    @torch.no_grad()
    def analysis(self, x: Tensor) -> Tensor:
        """``y = g_a(x)`` of an input whose size is a multiple of :attr:`downsampling`."""
        self._check_size(x)
        return self._analysis(x)

    @torch.no_grad()
    def compress_y(self, y: Tensor, size: tuple[int, int], coder: EntropyCoder, level: int | None = None,
                   side: Tensor | None = None) -> CompressedImage:
        """Code ``y = g_a(x)`` of an input of ``size`` with ``coder``; re-coding one ``y`` at several
        levels runs only the entropy model (rate control). ``side``: a refined side latent to code
        instead of the one ``y`` implies (:mod:`.refinement`)."""
        if y.shape[0] != 1:
            raise ValueError(f"compress codes one image at a time; got a batch of {y.shape[0]}")
        self.ensure_tables()
        if side is None:
            strings, y_hat = self.entropy_model.compress(y, coder, level)
        else:
            strings, y_hat = self.entropy_model.compress(y, coder, level, side)
        return CompressedImage(strings, (int(size[0]), int(size[1])), level, y_hat)

    def compress(self, x: Tensor, coder: EntropyCoder, level: int | None = None) -> CompressedImage:
        return self.compress_y(self.analysis(x), x.shape[-2:], coder, level)

    @torch.no_grad()
    def decompress(self, compressed: CompressedImage, coder: EntropyCoder) -> Tensor:
        """The reconstruction: :meth:`synthesis` of :meth:`decompress_y`."""
        return self.synthesis(self.decompress_y(compressed.strings, compressed.size, coder, compressed.level))

    @torch.no_grad()
    def quantize(self, x: Tensor, level: int | None = None) -> Tensor:
        """The quantised latent ``y_hat`` the decoder will see, without coding it (encoder only)."""
        self.ensure_tables()
        return self.entropy_model.quantize(self.analysis(x), level)

    @torch.no_grad()
    def decompress_y(self, strings: list[bytes], size: tuple[int, int], coder: EntropyCoder,
                     level: int | None = None) -> Tensor:
        """``y_hat`` ``[1, M, H/stride, W/stride]`` of coded streams: entropy decoding only."""
        self.ensure_tables()
        return self.entropy_model.decompress(strings, self._latent_shape(size), coder, level)

    def aux_loss(self) -> Tensor:
        """Sum of the factorized densities' quantile losses (trains only ``quantiles``)."""
        losses = [m.loss() for m in self.modules() if isinstance(m, EntropyBottleneck)]
        return sum(losses) if losses else torch.zeros(())

    # Integer CDF tables ------------------------------------------------------------------

    def table_models(self) -> list[TableEntropyModel]:
        return [m for m in self.modules() if isinstance(m, TableEntropyModel)]

    def table_buffer_names(self) -> set[str]:
        """state_dict names of the integer tables (built from the weights, never learned)."""
        return {f"{prefix}.{name}" for prefix, module in self.named_modules()
                if isinstance(module, TableEntropyModel) for name in module.TABLE_BUFFERS}

    def tables_fingerprint(self) -> str:
        """SHA-256 of every parameter the integer CDF tables are computed from."""
        digest = hashlib.sha256()
        for module in self.table_models():
            for tensor in module.fingerprint_sources():
                digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def update_tables(self) -> None:
        """Rebuild every entropy model's integer CDF tables from the current parameters."""
        for module in self.table_models():
            module.update_tables()
        self._tables_fingerprint = self.tables_fingerprint()

    def tables_are_current(self) -> bool:
        built = all(m.tables_built() for m in self.table_models())
        return built and self._tables_fingerprint == self.tables_fingerprint()

    def ensure_tables(self) -> None:
        """Rebuild stale or missing tables (e.g. after a training step or a state_dict load)."""
        if not self.tables_are_current():
            self.update_tables()

    def mark_tables_current(self, fingerprint: str) -> None:
        """Declare loaded tables as built from parameters with this fingerprint."""
        self._tables_fingerprint = fingerprint


def plain(value):
    """Hydra/OmegaConf containers and tuples -> JSON-serialisable dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v) for v in value]
    return value


def register_codec(name: str):
    """Register a builder ``(**config) -> Codec`` under ``name``; the codec it returns records
    ``codec_id = name`` and ``config`` = the builder's arguments with defaults filled in."""

    def decorate(builder):
        signature = inspect.signature(builder)

        @functools.wraps(builder)
        def build(*args, **kwargs) -> Codec:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            config = plain(dict(bound.arguments))
            codec = builder(**config)
            codec.codec_id, codec.config = name, config
            return codec

        build.codec_id = name
        return CODECS.register(name)(build)

    return decorate


def build_codec(codec_id: str, config: Mapping) -> Codec:
    """A new codec of the registered builder ``codec_id`` from its ``config``."""
    return CODECS.build(codec_id, **config)


TRANSFORM_DTYPES = {"fp32": None, "bf16": torch.bfloat16}
LAYOUTS = ("nchw", "channels_last")


def coding_transforms(codec: Codec) -> tuple[torch.dtype | None, bool]:
    """The transform settings ``(dtype, channels_last)`` for coding with ``codec``.

    Codecs with integer entropy-parameter networks get the fastest settings: bf16 and
    channels-last where the CPU computes bf16 natively (AVX-512 BF16/AMX), else float32
    channels-last. Others keep float32 NCHW (their reconstructions stay what they were).
    ``CODECLAB_TRANSFORMS`` (fp32, bf16) and ``CODECLAB_LAYOUT`` (nchw, channels_last) override."""
    fast = getattr(codec.entropy_model, "arithmetic", None) in INTEGER_ARITHMETICS
    native_bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    dtype_name = os.environ.get("CODECLAB_TRANSFORMS") or ("bf16" if fast and native_bf16 else "fp32")
    layout = os.environ.get("CODECLAB_LAYOUT") or ("channels_last" if fast else "nchw")
    if dtype_name not in TRANSFORM_DTYPES or layout not in LAYOUTS:
        raise ValueError(f"CODECLAB_TRANSFORMS must be one of {', '.join(TRANSFORM_DTYPES)} and CODECLAB_LAYOUT one "
                         f"of {', '.join(LAYOUTS)}; got {dtype_name!r}, {layout!r}")
    return TRANSFORM_DTYPES[dtype_name], layout == "channels_last"


def with_arithmetic(codec: Codec, arithmetic: str) -> Codec:
    """A copy of ``codec`` (same weights) whose entropy-parameter networks use ``arithmetic``
    (``"float"`` or ``"integer"``); ValueError for a codec without that choice."""
    config = copy.deepcopy(codec.config)
    if "arithmetic" in config:
        config["arithmetic"] = arithmetic
    elif isinstance(config.get("entropy"), dict):
        config["entropy"]["arithmetic"] = arithmetic
    else:
        raise ValueError(f"codec {codec.codec_id!r} has no choice of entropy-parameter arithmetic")
    converted = build_codec(codec.codec_id, config)
    converted.load_state_dict(codec.state_dict())
    converted.train(codec.training)
    converted.transform_dtype, converted.training_lmbda = codec.transform_dtype, codec.training_lmbda
    return converted


def rename_prefixes(key: str, prefixes: Mapping[str, str | None]) -> str | None:
    """``key`` with the first matching prefix of ``prefixes`` replaced by its value (None: the
    key has no counterpart)."""
    for old, new in prefixes.items():
        if key.startswith(old):
            return None if new is None else new + key[len(old):]
    return key
