"""Layers of the learned-compression literature, owned by CodecLab so that coding imports no
training stack. Each is numerically identical to compressai 1.2.8's layer of the same name
(same parameters, buffers, state_dict keys and floating-point operations, in the same order;
``tests/transforms/test_layers.py`` checks outputs and gradients against compressai).

* :class:`LowerBound`: ``max(x, bound)`` whose gradient passes when it pushes ``x`` up.
* :class:`NonNegativeParametrizer`: ``x = max(p, bound)^2 - pedestal`` (Ballé et al. 2018).
* :class:`GDN`: generalized divisive normalisation (Ballé et al., ICLR 2016), and its inverse.
* :class:`ResidualBlock`, :class:`AttentionBlock`: Cheng et al. (CVPR 2020) blocks (the residual
  blocks take another activation, ``act``: MLIC++ uses GELU where compressai uses LeakyReLU).
* :func:`conv`, :func:`deconv`: strided 5x5 (de)convolutions with "same" padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _LowerBoundFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor) -> Tensor:
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, bound = ctx.saved_tensors
        # Below the bound the gradient still flows when it would move x upwards.
        passes = (x >= bound) | (grad_output < 0)
        return passes * grad_output, None


class LowerBound(nn.Module):
    """``max(x, bound)``; buffer ``bound`` ``[1]``."""

    bound: Tensor

    def __init__(self, bound: float):
        super().__init__()
        self.register_buffer("bound", torch.tensor([float(bound)]))

    def forward(self, x: Tensor) -> Tensor:
        return _LowerBoundFunction.apply(x, self.bound)


class NonNegativeParametrizer(nn.Module):
    """Stores a non-negative value ``x >= minimum`` as ``p`` with ``x = max(p, b)^2 - pedestal``.

    ``pedestal = offset^2`` (offset ``2^-18``) keeps gradients alive near zero;
    ``b = sqrt(minimum + pedestal)``.
    """

    pedestal: Tensor

    def __init__(self, minimum: float = 0.0, reparam_offset: float = 2**-18):
        super().__init__()
        self.minimum, self.reparam_offset = float(minimum), float(reparam_offset)
        pedestal = self.reparam_offset**2
        self.register_buffer("pedestal", torch.tensor([pedestal]))
        self.lower_bound = LowerBound((self.minimum + pedestal) ** 0.5)

    def init(self, x: Tensor) -> Tensor:
        """The parameter ``p`` that represents the value ``x``."""
        return torch.sqrt(torch.max(x + self.pedestal, self.pedestal))

    def forward(self, p: Tensor) -> Tensor:
        return self.lower_bound(p) ** 2 - self.pedestal


class GDN(nn.Module):
    """``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``; ``inverse=True`` multiplies instead (IGDN).

    Parameters ``beta`` ``[C]`` (>= 1e-6) and ``gamma`` ``[C, C]`` (>= 0), both stored through
    :class:`NonNegativeParametrizer`; initialised to ``beta = 1``, ``gamma = 0.1 I``.
    """

    def __init__(self, in_channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = bool(inverse)
        self.beta_reparam = NonNegativeParametrizer(minimum=float(beta_min))
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(in_channels)))
        self.gamma_reparam = NonNegativeParametrizer()
        self.gamma = nn.Parameter(self.gamma_reparam.init(float(gamma_init) * torch.eye(in_channels)))

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma).reshape(channels, channels, 1, 1)
        norm = F.conv2d(x**2, gamma, beta)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


def conv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """Strided convolution with ``kernel_size // 2`` padding (halves H and W at stride 2)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that multiplies H and W exactly by ``stride``."""
    return nn.ConvTranspose2d(
        in_channels, out_channels, kernel_size, stride=stride, output_padding=stride - 1, padding=kernel_size // 2
    )


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride)


def subpel_conv3x3(in_channels: int, out_channels: int, r: int) -> nn.Sequential:
    """A 3x3 convolution to ``out * r^2`` channels and a pixel shuffle: ``x r`` upsampling."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels * r**2, 3, padding=1), nn.PixelShuffle(r))


def _leaky_relu() -> nn.Module:
    return nn.LeakyReLU(inplace=True)


class ResidualBlockWithStride(nn.Module):
    """``GDN(conv3x3(LReLU(conv3x3/s(x)))) + skip(x)`` (Cheng et al. 2020; a strided 1x1 skip).
    ``act``: a factory of the activation (default LeakyReLU, as compressai)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2, act=_leaky_relu):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.activation = act()
        self.conv2 = conv3x3(out_ch, out_ch)
        self.gdn = GDN(out_ch)
        self.skip = conv1x1(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.gdn(self.conv2(self.activation(self.conv1(x))))
        return out + (x if self.skip is None else self.skip(x))


class ResidualBlockUpsample(nn.Module):
    """``IGDN(conv3x3(LReLU(subpel(x)))) + subpel'(x)`` (Cheng et al. 2020; ``x upsample``;
    ``act`` as :class:`ResidualBlockWithStride`)."""

    def __init__(self, in_ch: int, out_ch: int, upsample: int = 2, act=_leaky_relu):
        super().__init__()
        self.subpel_conv = subpel_conv3x3(in_ch, out_ch, upsample)
        self.activation = act()
        self.conv = conv3x3(out_ch, out_ch)
        self.igdn = GDN(out_ch, inverse=True)
        self.upsample = subpel_conv3x3(in_ch, out_ch, upsample)

    def forward(self, x: Tensor) -> Tensor:
        return self.igdn(self.conv(self.activation(self.subpel_conv(x)))) + self.upsample(x)


class ResidualBlock(nn.Module):
    """``x + LReLU(conv3x3(LReLU(conv3x3(x))))``, with a 1x1 skip when the width changes (``act``
    as :class:`ResidualBlockWithStride`)."""

    def __init__(self, in_ch: int, out_ch: int, act=_leaky_relu):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch)
        self.activation = act()
        self.conv2 = conv3x3(out_ch, out_ch)
        self.skip = conv1x1(in_ch, out_ch) if in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.activation(self.conv2(self.activation(self.conv1(x))))
        identity = x if self.skip is None else self.skip(x)
        return out + identity


class ResidualBottleneckBlock(nn.Module):
    """``x + conv1x1(ReLU(conv3x3(ReLU(conv1x1(x)))))`` through ``min(in, out) / 2`` channels
    (He et al. 2016; ELIC's transforms, as compressai's)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        mid_ch = min(in_ch, out_ch) // 2
        self.conv1 = conv1x1(in_ch, mid_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(mid_ch, mid_ch)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(mid_ch, out_ch)
        self.skip = conv1x1(in_ch, out_ch) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.conv3(self.relu2(self.conv2(self.relu1(self.conv1(x)))))


class _ResidualUnit(nn.Module):
    """``ReLU(x + conv1x1(ReLU(conv3x3(ReLU(conv1x1(x))))))`` through a bottleneck of N/2."""

    def __init__(self, N: int):
        super().__init__()
        self.conv = nn.Sequential(
            conv1x1(N, N // 2), nn.ReLU(inplace=True), conv3x3(N // 2, N // 2), nn.ReLU(inplace=True), conv1x1(N // 2, N)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        out += x
        return self.relu(out)


class AttentionBlock(nn.Module):
    """Simplified attention of Cheng et al. 2020: ``x + a(x) * sigmoid(b(x))`` with ``a``, ``b``
    three residual units each (``b`` ends in a 1x1 convolution)."""

    def __init__(self, N: int):
        super().__init__()
        self.conv_a = nn.Sequential(_ResidualUnit(N), _ResidualUnit(N), _ResidualUnit(N))
        self.conv_b = nn.Sequential(_ResidualUnit(N), _ResidualUnit(N), _ResidualUnit(N), conv1x1(N, N))

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_a(x) * torch.sigmoid(self.conv_b(x))
        out += x
        return out

