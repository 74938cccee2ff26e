"""RBQE: resource-efficient blind quality enhancement with early exits.

Xing, Xu, Li, Guan, "Early Exit or Not: Resource-Efficient Blind Quality Enhancement for
Compressed Images", ECCV 2020; wiring and constants as the official ``network.py``
(ryanxingql/rbqe), pinned in ``tests/postfilters/test_rbqe.py``.

A 6-scale UNet++ on the Y plane (1 channel in [0, 1], 32 features, no normalisation) with five
exits. Node ``X(i, j)`` (scale i, column j) is computed anti-diagonal by anti-diagonal, so exit k
needs only the nodes with ``i + j <= k``::

    X00 ─ X01 ─ X02 ─ X03 ─ X04 ─ X05        exit k = OutConv(ECA(X0k)) + x   (exit 5: no ECA)
     │  ╱  │  ╱  │  ╱  │  ╱  │  ╱
    X10 ─ X11 ─ X12 ─ X13 ─ X14              X(i,0) = Down(ECA(X(i-1,0)))
     │  ╱  │  ╱  │  ╱  │  ╱                  X(i,j) = Up(cat(ECA(X(i,0..j-1))), ECA(X(i+1,j-1)))
    X20 ─ X21 ─ X22 ─ X23                    (on the last anti-diagonal, i + j = 5, the lower
     │  ╱  │  ╱  │  ╱                          input X(i+1,j-1) enters without ECA)
    X30 ─ X31 ─ X32
     │  ╱  │  ╱
    X40 ─ X41
     │  ╱
    X50

Every use of a tensor has its own ECA (54 in all). Down: three 3x3 convolutions, the last with
stride 2; Up: a 2x2 stride-2 transposed convolution of the lower input, concatenated after the
skips, then two depthwise-separable 3x3 convolutions; ReLU after every convolution but the
output's. Training supervises all five exits; at inference an exit is taken when the IQAM
(:mod:`.iqam`) scores its 8-bit output at or above the threshold (JPEG 0.79, HEVC 0.89 in the
paper), exit 5 unconditionally, so lightly compressed images stop early and cost less.

The official code needs sides divisible by 32; :meth:`RBQE.enhance` pads by edge replication and
crops back (the official code has no padding).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.colour import rgb_to_ycbcr, to_uint8, ycbcr_to_rgb
from . import iqam
from .base import POSTFILTERS

FEATURES = 32
SCALES = 6  # exits = SCALES - 1
ECA_KERNEL = 3
# Thresholds of the paper's 1000-image test sets (official README).
PAPER_THRESHOLDS = {"jpeg": 0.79, "hevc": 0.89}
# Multiply-adds per exit for a 512x512 Y plane, G (official main_tradeoff.py, thop).
OFFICIAL_GMACS_512 = (10.2, 14.7, 18.7, 22.9, 27.6)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


class SeparableConv2d(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1, no activation between."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels),
                         nn.Conv2d(in_channels, out_channels, 1))


class ECA(nn.Module):
    """Efficient channel attention: ``x * sigmoid(conv1d_k3(mean over space))`` across channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, ECA_KERNEL, padding=ECA_KERNEL // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.conv(x.mean(dim=(2, 3))[:, None, :])[:, 0]
        return x * torch.sigmoid(weights)[:, :, None, None]


class UpNode(nn.Module):
    """``X(i, j)``: the lower node up-sampled, after the ``j`` skips, through two separable convolutions."""

    def __init__(self, skips: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(FEATURES, FEATURES, 2, stride=2)
        self.fuse = nn.Sequential(SeparableConv2d(FEATURES * (skips + 1), FEATURES), nn.ReLU(),
                                  SeparableConv2d(FEATURES, FEATURES), nn.ReLU())

    def forward(self, skips: list[torch.Tensor], lower: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([*skips, F.relu(self.up(lower))], dim=1))


def _down() -> nn.Sequential:
    return nn.Sequential(_conv3x3(FEATURES, FEATURES), nn.ReLU(), _conv3x3(FEATURES, FEATURES), nn.ReLU(),
                         _conv3x3(FEATURES, FEATURES, stride=2), nn.ReLU())


@dataclass
class Enhanced:
    """An enhanced RGB image, the exit it left at (1-based), the exits' IQAM scores, seconds, and
    (when asked for) exit 5's image."""

    image: np.ndarray
    exit: int
    scores: list[float]
    seconds: float
    last: np.ndarray | None = None


@POSTFILTERS.register("rbqe")
class RBQE(nn.Module):
    """The RBQE network and its early-exit inference.

    Args:
        codec_type: ``"jpeg"`` (8x8 IQAM patches) or ``"hevc"`` (4x4): the codec whose artefacts
            the IQAM looks for (the paper trains one model per codec).
        threshold: exit when the IQAM score (two decimals) is at least this; ``None``: the
            paper's for ``codec_type``.
    """

    exits = SCALES - 1

    def __init__(self, codec_type: str = "jpeg", threshold: float | None = None):
        super().__init__()
        if codec_type not in iqam.PATCH_SIZE:
            raise ValueError(f"codec_type must be one of {', '.join(iqam.PATCH_SIZE)}, got {codec_type!r}")
        self.codec_type = codec_type
        self.threshold = PAPER_THRESHOLDS[codec_type] if threshold is None else float(threshold)
        self.config = {"codec_type": codec_type, "threshold": threshold}
        self.input = nn.Sequential(_conv3x3(1, FEATURES), nn.ReLU(), _conv3x3(FEATURES, FEATURES), nn.ReLU())
        self.down = nn.ModuleList(_down() for _ in range(self.exits))
        self.nodes = nn.ModuleDict({f"{i}{j}": UpNode(j) for j in range(1, SCALES) for i in range(SCALES - j)})
        self.eca = nn.ModuleDict()
        for i in range(self.exits):
            self.eca[f"down{i}"] = ECA()  # on X(i,0) before Down
        for key in self.nodes:
            i, j = int(key[0]), int(key[1])
            for s in range(j):
                self.eca[f"skip{i}{j}_{s}"] = ECA()
            if i + j < self.exits:
                self.eca[f"lower{i}{j}"] = ECA()
        for k in range(1, self.exits):
            self.eca[f"exit{k}"] = ECA()
        self.out = nn.ModuleList(SeparableConv2d(FEATURES, 1) for _ in range(self.exits))

    def _node(self, x: dict, i: int, j: int) -> torch.Tensor:
        if j == 0:
            return self.down[i - 1](self.eca[f"down{i - 1}"](x[i - 1, 0]))
        skips = [self.eca[f"skip{i}{j}_{s}"](x[i, s]) for s in range(j)]
        lower = x[i + 1, j - 1]
        if i + j < self.exits:
            lower = self.eca[f"lower{i}{j}"](lower)
        return self.nodes[f"{i}{j}"](skips, lower)

    def _exit(self, x: dict, k: int, image: torch.Tensor) -> torch.Tensor:
        features = x[0, k] if k == self.exits else self.eca[f"exit{k}"](x[0, k])
        return self.out[k - 1](features) + image

    def _diagonal(self, x: dict, k: int) -> None:
        for i in range(k, -1, -1):  # X(k,0) first: each node needs the one below-left of it
            x[i, k - i] = self._node(x, i, k - i)

    def forward(self, image: torch.Tensor, exits: int | None = None) -> list[torch.Tensor]:
        """The outputs of exits 1..``exits`` (default all) for ``[B, 1, H, W]`` in [0, 1], sides
        divisible by ``2^exits``."""
        exits = self.exits if exits is None else exits
        x = {(0, 0): self.input(image)}
        outputs = []
        for k in range(1, exits + 1):
            self._diagonal(x, k)
            outputs.append(self._exit(x, k, image))
        return outputs

    def exit_kmacs_per_pixel(self, side: int = 256) -> list[float]:
        """Multiply-adds per pixel of exits 1..5 (convolutions, counted by
        ``torch.utils.flop_counter`` on a ``side`` x ``side`` Y plane)."""
        from torch.utils.flop_counter import FlopCounterMode

        out = []
        for k in range(1, self.exits + 1):
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                self(torch.zeros(1, 1, side, side), k)
            out.append(counter.get_total_flops() / 2 / side**2 / 1e3)
        return out

    def pad_to_exits(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` ([B, 1, H, W]) edge-padded to sides divisible by ``2^exits`` (crop the output back)."""
        multiple = 2**self.exits
        h, w = image.shape[-2:]
        return F.pad(image, (0, -w % multiple, 0, -h % multiple), mode="replicate")

    @torch.no_grad()
    def enhance_y(self, y: np.ndarray, all_exits: bool = False) -> tuple[np.ndarray, int, list[float], np.ndarray]:
        """Early-exit enhancement of an 8-bit Y plane: the float output in [0, 255], the exit
        taken, the scores of the exits tried, and the last exit computed's output (with
        ``all_exits``, every exit is computed and that is exit 5's: the fixed-depth network)."""
        h, w = y.shape
        image = self.pad_to_exits(torch.from_numpy(np.asarray(y, dtype=np.float32) / 255.0)[None, None])
        x = {(0, 0): self.input(image)}
        scores, chosen = [], None
        for k in range(1, self.exits + 1):
            self._diagonal(x, k)
            out = (self._exit(x, k, image)[0, 0, :h, :w].clamp(0, 1) * 255).double().numpy()
            if chosen is None and k < self.exits:
                # The official IQAM reads the output saved as 8 bits (truncated).
                scores.append(round(iqam.quality_score(np.floor(out).astype(np.uint8), self.codec_type), 2))
                if scores[-1] >= self.threshold:
                    chosen = (out, k)
            if chosen is not None and not all_exits:
                break
        output, taken = chosen or (out, self.exits)
        return output, taken, scores, out

    def enhance(self, rgb: np.ndarray, all_exits: bool = False) -> Enhanced:
        """Enhance a decoded ``[H, W, 3]`` uint8 image: its BT.601 full-range Y (rounded to 8
        bits, as the official Y planes) goes through the network; Cb and Cr are kept. With
        ``all_exits`` the result also holds exit 5's image (``last``; same decision, more work)."""
        start = time.perf_counter()
        ycbcr = rgb_to_ycbcr(rgb, "bt601", "full")
        y, k, scores, last = self.enhance_y(to_uint8(ycbcr[..., 0]), all_exits)

        def with_y(plane):
            planes = ycbcr.copy()
            planes[..., 0] = plane
            return to_uint8(ycbcr_to_rgb(planes, "bt601", "full"))

        return Enhanced(with_y(y), k, scores, time.perf_counter() - start, with_y(last) if all_exits else None)
