"""NIRVANA: a video coded as the quantised weights of small networks, one per group of frames.

Maiya et al., "NIRVANA: Neural Implicit Representations of Videos with Adaptive Networks and
Autoregressive Patch-wise Modeling", CVPR 2023. The authors' code is not public (no repository
in the reference index; the NeRV paper lists mark it "todo"), so this follows the paper, and its
weight quantisation follows the first author's group's public LilNetX code
(Sharath-girish/LilNetX ``layers.py``, ``bitEstimator.py``), which the paper's section 3.3 uses.

Workflow (encoding is fitting; decoding is one forward pass per group)::

    frames 0..G-1   -> fit network 0 from scratch           -> code its integer weights q_0
    frames G..2G-1  -> start from network 0, fit network 1  -> code q_1 - q_0
    ...             -> start from network k-1, fit network k -> code q_k - q_{k-1}

* **Patch-wise model.** Each frame is cut into ``patch x patch`` tiles. A group's network maps
  a tile's grid coordinates (Fourier-encoded) through a two-layer MLP to a
  ``channels x b x b`` feature map (``b = patch / 2**stages``), ``stages`` 3x3 convolutions with
  pixel shuffle (x2 each) bring it to ``patch x patch``, and ``group_size`` heads (one 3x3
  convolution each) give the tile in each frame of the group. Fitting samples random tiles.
* **Quantised weights (LilNetX).** Every convolution and linear weight is a float proxy
  rounded with a straight-through estimator; a learned decoder maps the integers to the
  weights: a ``k*k x k*k`` matrix over each kernel's taps for a convolution, a scalar for a
  linear layer (``no_shift``, as LilNetX's configs). Biases stay float. The loss is
  ``MSE + rate_weight * bits / elements``, the bits from LilNetX's factorised density
  (:class:`BitEstimator`, one per kind of tensor: a channel per kernel tap for convolutions).
* **Autoregressive.** Group ``k``'s network starts from group ``k-1``'s; the coded integers
  are the difference, so a static group costs few bits.
* **Adaptive compute.** Group 0 fits for ``first_steps``; later groups for at most
  ``group_steps``, stopping as soon as they reach group 0's PSNR; a time budget caps every
  group's share (the encoder's ``time_budget``).

Exact and approximate: the integer weights round-trip exactly (rANS with the per-tensor
histograms the stream carries: :mod:`codeclab.implicit.weights`); the float decoders and biases
travel as float16 and the encoder fits with them rounded so; pixels come from a float32 forward
pass and may differ by a code value between CPUs (as every codec's synthesis does).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CodecLabError
from .architecture import ARCHITECTURE_FIELDS, check_architecture

# LilNetX's configs: the integer proxies start uniform in [-BOUNDARY, BOUNDARY].
BOUNDARY = 3.0
# SIREN's frequency factor (Sitzmann et al. 2020): sin(30 (W x + b)).
SIREN_OMEGA = 30.0


@dataclass(frozen=True)
class NirvanaConfig:
    """A NIRVANA encoder: the architecture (stored in each file) and the fitting recipe (not).

    Args:
        patch: tile side in pixels (a multiple of ``2**stages``).
        group_size: frames per network.
        channels: feature channels of the convolutions.
        stages: pixel-shuffle upsampling stages.
        hidden: MLP width.
        frequencies: Fourier frequencies per coordinate (``2**k * pi``, ``k < frequencies``) fed to
            the MLP beside the coordinates (0: the coordinates alone).
        siren: 1: SIREN MLP layers (the paper's); 0: GELU MLP layers (the named deviation ``siren=0``,
            used with Fourier features).
        rate_weights: the rate-loss weight of each rate level, lowest rate first.
        first_steps: fitting steps of the first group.
        group_steps: the most fitting steps of a later group.
        batch_patches: tiles per step.
        lr: Adam learning rate of the integer proxies (LilNetX's arch_lr).
        side_lr: Adam learning rate of the decoders and biases.
        group_lr_factor: both learning rates' factor for the groups after the first (Adam moves
            every proxy by about ``lr`` a step, so a full rate would change most integers).
        prob_lr: Adam learning rate of the density models.
        check_every: steps between a later group's PSNR checks (its early stop).
    """

    patch: int = 16
    group_size: int = 4
    channels: int = 24
    stages: int = 2
    hidden: int = 64
    frequencies: int = 0
    siren: int = 1
    rate_weights: tuple[float, ...] = (2e-2, 5e-3, 1e-3)
    first_steps: int = 1500
    group_steps: int = 400
    batch_patches: int = 64
    lr: float = 2e-2
    side_lr: float = 2e-3
    group_lr_factor: float = 0.02
    prob_lr: float = 1e-3
    check_every: int = 25

    def __post_init__(self):
        object.__setattr__(self, "rate_weights", tuple(float(w) for w in self.rate_weights))
        check_architecture(self.architecture())
        if not self.rate_weights or any(not 0 <= w < math.inf for w in self.rate_weights):
            raise CodecLabError(f"nirvana: rate_weights must be non-negative numbers, got {self.rate_weights}")
        for name in ("first_steps", "group_steps", "batch_patches", "check_every"):
            if int(getattr(self, name)) < 1:
                raise CodecLabError(f"nirvana: {name} must be at least 1")

    def architecture(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in ARCHITECTURE_FIELDS}

    @classmethod
    def from_dict(cls, values: dict) -> NirvanaConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CodecLabError(f"nirvana config: unknown key {unknown[0]!r}; known: {', '.join(sorted(known))}")
        try:
            return cls(**{k: (tuple(v) if k == "rate_weights" else v) for k, v in values.items()})
        except (TypeError, ValueError) as err:
            raise CodecLabError(f"nirvana config: {err}") from None

    def as_dict(self) -> dict:
        return asdict(self)


class _RoundStraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class QuantizedConv2d(nn.Module):
    """A 3x3 convolution whose weight is ``round(proxy)`` decoded by a ``9 x 9`` matrix over each
    kernel's taps (LilNetX ``Conv2d`` + ``ConvDecoder``, no shift)."""

    kind = "conv"

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        bound = 1 / math.sqrt(in_channels * 9)  # PyTorch's default bound, reached by the decoder's start
        self.proxy = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3).uniform_(-BOUNDARY, BOUNDARY))
        self.decoder = nn.Parameter(torch.eye(9) * (bound / BOUNDARY))
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))

    def weight(self, integers: torch.Tensor) -> torch.Tensor:
        return (integers.flatten(0, 1).flatten(1) @ self.decoder).reshape(integers.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(_RoundStraightThrough.apply(self.proxy)), self.bias, padding=1)

    @staticmethod
    def taps(values: torch.Tensor) -> torch.Tensor:
        """``[n, 9]``: one density channel per kernel tap (LilNetX's ``BitEstimator(9)``)."""
        return values.flatten(0, 1).flatten(1)


class QuantizedLinear(nn.Module):
    """A linear layer whose weight is ``round(proxy)`` times a learned scalar (LilNetX ``Linear``
    + ``DenseDecoder``, no shift); its weights start uniform in ``[-bound, bound]`` (default:
    PyTorch's ``1 / sqrt(in_features)``), quantised to the proxies' integers."""

    kind = "dense"

    def __init__(self, in_features: int, out_features: int, weight_bound: float | None = None):
        super().__init__()
        bound = 1 / math.sqrt(in_features)
        weight_bound = bound if weight_bound is None else weight_bound
        self.proxy = nn.Parameter(torch.empty(out_features, in_features).uniform_(-BOUNDARY, BOUNDARY))
        self.decoder = nn.Parameter(torch.tensor([weight_bound / BOUNDARY]))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))

    def weight(self, integers: torch.Tensor) -> torch.Tensor:
        return integers * self.decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(_RoundStraightThrough.apply(self.proxy)), self.bias)

    @staticmethod
    def taps(values: torch.Tensor) -> torch.Tensor:
        return values.reshape(-1, 1)


class _Bitparm(nn.Module):
    """One layer of LilNetX's factorised density (Balle et al. 2018's), per channel."""

    def __init__(self, channels: int, final: bool = False):
        super().__init__()
        self.h = nn.Parameter(torch.randn(1, channels) * 0.01)
        self.b = nn.Parameter(torch.randn(1, channels) * 0.01)
        self.a = None if final else nn.Parameter(torch.randn(1, channels) * 0.01)

    def forward(self, x):
        x = x * F.softplus(self.h) + self.b
        return torch.sigmoid(x) if self.a is None else x + torch.tanh(x) * torch.tanh(self.a)


class BitEstimator(nn.Module):
    """LilNetX's cumulative density: four :class:`_Bitparm` layers; ``bits(x)`` is the
    self-information of integers ``x`` ([n, channels]) under ``P(x + 1/2) - P(x - 1/2)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.layers = nn.Sequential(_Bitparm(channels), _Bitparm(channels), _Bitparm(channels), _Bitparm(channels, final=True))

    def bits(self, x: torch.Tensor) -> torch.Tensor:
        probability = self.layers(x + 0.5) - self.layers(x - 0.5)
        return -torch.log2(probability.clamp_min(1e-9)).sum()


def fourier_features(coords: torch.Tensor, frequencies: int) -> torch.Tensor:
    """``[x, sin(2**k pi x), cos(2**k pi x)]`` for ``k < frequencies``, each coordinate."""
    scaled = coords[..., None] * (math.pi * 2.0 ** torch.arange(frequencies, dtype=coords.dtype))
    return torch.cat([coords, torch.sin(scaled).flatten(-2), torch.cos(scaled).flatten(-2)], dim=-1)


class GroupNetwork(nn.Module):
    """One group's network: tile coordinates -> the tile in each of the group's frames."""

    def __init__(self, patch: int, group_size: int, channels: int, stages: int, hidden: int, frequencies: int, siren: int):
        super().__init__()
        self.arch = {"patch": patch, "group_size": group_size, "channels": channels, "stages": stages, "hidden": hidden,
                     "frequencies": frequencies, "siren": siren}
        check_architecture(self.arch)
        self.base = patch >> stages
        inputs, features = 2 + 4 * frequencies, channels * self.base * self.base
        if siren:  # SIREN's initialisation: U(-1/n, 1/n) first, U(-sqrt(6/n)/omega, sqrt(6/n)/omega) after
            self.mlp = nn.ModuleList([QuantizedLinear(inputs, hidden, 1 / inputs),
                                      QuantizedLinear(hidden, features, math.sqrt(6 / hidden) / SIREN_OMEGA)])
        else:
            self.mlp = nn.ModuleList([QuantizedLinear(inputs, hidden), QuantizedLinear(hidden, features)])
        self.upsampling = nn.ModuleList([QuantizedConv2d(channels, 4 * channels) for _ in range(stages)])
        self.heads = nn.ModuleList([QuantizedConv2d(channels, 3) for _ in range(group_size)])

    def quantized_layers(self) -> list[QuantizedLinear | QuantizedConv2d]:
        return [*self.mlp, *self.upsampling, *self.heads]

    def forward(self, coords: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """``[n, frames, 3, patch, patch]`` in [0, 1] for tile coordinates ``[n, 2]`` in [-1, 1];
        ``frames``: the first heads only (a short last group)."""
        x = fourier_features(coords, self.arch["frequencies"])
        for layer in self.mlp:
            x = torch.sin(SIREN_OMEGA * layer(x)) if self.arch["siren"] else F.gelu(layer(x))
        x = x.reshape(-1, self.arch["channels"], self.base, self.base)
        for conv in self.upsampling:
            x = F.gelu(F.pixel_shuffle(conv(x), 2))
        heads = self.heads[: frames or len(self.heads)]
        return torch.stack([torch.sigmoid(head(x)) for head in heads], dim=1)

    def integers(self) -> list[torch.Tensor]:
        """The coded integers of every quantised weight, in layer order (int32)."""
        return [torch.round(layer.proxy.detach()).to(torch.int32) for layer in self.quantized_layers()]

    def floats(self) -> list[torch.Tensor]:
        """The float side information (decoders and biases), in layer order."""
        return [t for layer in self.quantized_layers() for t in (layer.decoder, layer.bias)]

    def load_coded(self, integers: list[torch.Tensor], floats: list[torch.Tensor]) -> None:
        """Set the network to decoded integers and float side information."""
        with torch.no_grad():
            for layer, values in zip(self.quantized_layers(), integers):
                layer.proxy.copy_(values.float())
            for tensor, values in zip(self.floats(), floats):
                tensor.copy_(values.float())

    def round_floats_to_half(self) -> None:
        """Round the float side information as the stream carries it (float16)."""
        with torch.no_grad():
            for tensor in self.floats():
                tensor.copy_(tensor.half().float())


def tile_grid(height: int, width: int, patch: int) -> tuple[int, int, torch.Tensor]:
    """``(rows, cols, coords [rows*cols, 2])``: tiles covering the frame padded up to ``patch``;
    coordinates (row, column) of tile centres in [-1, 1]."""
    rows, cols = -(-height // patch), -(-width // patch)
    ys = (torch.arange(rows, dtype=torch.float32) + 0.5) / rows * 2 - 1
    xs = (torch.arange(cols, dtype=torch.float32) + 0.5) / cols * 2 - 1
    return rows, cols, torch.cartesian_prod(ys, xs)


def frames_to_tiles(frames: np.ndarray, patch: int) -> torch.Tensor:
    """``[rows*cols, T, 3, patch, patch]`` float tiles of uint8 frames ``[T, H, W, 3]`` (edge-padded)."""
    count, height, width, _ = frames.shape
    rows, cols = -(-height // patch), -(-width // patch)
    padded = np.pad(frames, ((0, 0), (0, rows * patch - height), (0, cols * patch - width), (0, 0)), mode="edge")
    x = torch.from_numpy(padded).float().div_(255).reshape(count, rows, patch, cols, patch, 3)
    return x.permute(1, 3, 0, 5, 2, 4).reshape(rows * cols, count, 3, patch, patch).contiguous()


def tiles_to_frames(tiles: torch.Tensor, rows: int, cols: int, height: int, width: int) -> np.ndarray:
    """uint8 frames ``[T, height, width, 3]`` from tiles ``[rows*cols, T, 3, P, P]`` in [0, 1]."""
    n, count, _, patch, _ = tiles.shape
    x = tiles.reshape(rows, cols, count, 3, patch, patch).permute(2, 0, 4, 1, 5, 3).reshape(count, rows * patch, cols * patch, 3)
    return (x[:, :height, :width].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


@torch.no_grad()
def render_group(network: GroupNetwork, coords: torch.Tensor, frames: int, chunk: int = 256) -> torch.Tensor:
    """Every tile of the group's ``frames`` frames, ``chunk`` tiles at a time."""
    return torch.cat([network(coords[i : i + chunk], frames) for i in range(0, len(coords), chunk)])


def psnr_of(mse: float) -> float:
    return 10 * math.log10(1 / max(mse, 1e-12))


@dataclass
class GroupFit:
    steps: int
    psnr: float
    seconds: float
    estimated_bits: float


def fit_group(network: GroupNetwork, targets: torch.Tensor, coords: torch.Tensor, previous: list[torch.Tensor] | None,
              config: NirvanaConfig, rate_weight: float, max_steps: int, stop_psnr: float | None, deadline: float,
              generator: torch.Generator, on_step: Callable[[], None] | None = None) -> GroupFit:
    """Fit ``network`` to ``targets`` (``[tiles, frames, 3, P, P]``) for at most ``max_steps``, by
    ``MSE + rate_weight * bits / elements`` where the bits are those of the integers' change from
    ``previous`` (None: of the integers themselves); stop early once ``stop_psnr`` is reached (checked
    every ``config.check_every`` steps) or at ``deadline`` (``time.monotonic()``)."""
    frames = targets.shape[1]
    layers = network.quantized_layers()
    estimators = {kind: BitEstimator(channels) for kind, channels in (("conv", 9), ("dense", 1))}
    used = {layer.kind for layer in layers}
    factor = 1.0 if previous is None else config.group_lr_factor
    optimizer = torch.optim.Adam([{"params": [layer.proxy for layer in layers], "lr": config.lr * factor},
                                  {"params": network.floats(), "lr": config.side_lr * factor}])
    prob_optimizer = torch.optim.Adam([p for kind in used for p in estimators[kind].parameters()], lr=config.prob_lr)
    references = previous or [torch.zeros_like(layer.proxy) for layer in layers]
    elements = sum(layer.proxy.numel() for layer in layers)
    started, steps, bits = time.monotonic(), 0, torch.tensor(0.0)

    def full_psnr() -> float:
        network.round_floats_to_half()
        return psnr_of(F.mse_loss(render_group(network, coords, frames), targets).item())

    # The PSNR measured and the step it was measured at (a render of every tile: not repeated at the end).
    psnr, measured = (full_psnr(), 0) if stop_psnr is not None else (-math.inf, None)
    while steps < max_steps and time.monotonic() < deadline and not (stop_psnr is not None and psnr >= stop_psnr):
        batch = torch.randint(len(coords), (min(config.batch_patches, len(coords)),), generator=generator)
        prediction = network(coords[batch], frames)
        distortion = F.mse_loss(prediction, targets[batch])
        bits = sum(estimators[layer.kind].bits(layer.taps(_RoundStraightThrough.apply(layer.proxy) - reference.float()))
                   for layer, reference in zip(layers, references))
        loss = distortion + rate_weight * bits / elements
        optimizer.zero_grad(set_to_none=True)
        prob_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        prob_optimizer.step()
        steps += 1
        if on_step is not None:
            on_step()
        if stop_psnr is not None and steps % config.check_every == 0:
            psnr, measured = full_psnr(), steps
    if measured != steps:
        psnr = full_psnr()
    return GroupFit(steps, psnr, time.monotonic() - started, float(bits.detach()))
