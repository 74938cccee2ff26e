"""Integer networks for the entropy parameters (Ballé, Johnston & Minnen, "Integer Networks for
Data Compression with Latent-Variable Models", ICLR 2019).

Why: the arithmetic decoder needs, for every symbol, exactly the table index and mean the
encoder used. A float network (hyper-synthesis, context model) that runs with another summation
order (another CPU, thread count, BLAS, memory layout, a GPU) moves a scale across a table
boundary now and then, and the file no longer decodes. These layers compute the same integers on
every machine, so the entropy parameters, and with them the decoded latents, are exact.

Arithmetic (every value between layers is fixed point ``n / 2^F``, :data:`FRACTION_BITS` ``F = 10``)::

    input      n    = clamp(floor(x * 2^F + 1/2), +-ACTIVATION_MAX)        ACTIVATION_MAX = 2^24 - 1
    weights    w_o  = clamp(round(w_o * 2^s_o), +-(2^b - 1))               one shift s_o per output channel,
                                                                           b <= 15 bits (fewer for a wide fan-in)
    bias       b_o  = round(bias_o * 2^(s_o + F))
    conv       acc  = sum(w * n) + b_o                                     |acc| < 2^52: exact
    output     n'   = clamp(floor((acc + 2^(s_o - 1)) / 2^s_o), +-ACTIVATION_MAX)   (rounding shift)

Activations act on ``n`` and stay integer: ReLU (clamped), leaky ReLU with its slope rounded to
``k/4096`` (``41/4096`` for torch's 0.01, ``819/4096`` for TensorFlow's 0.2; a rounding shift),
and ``0.5 tanh`` through a lookup table (:class:`HalfTanh`, for latent residual prediction).
Values are ``|n| < 2^24``, so they are also exact in float32: the layers
take and return float32 tensors holding ``n / 2^F``, and callers compare or add them with plain
IEEE operations (correctly rounded everywhere).

Execution:

* training mode: quantisation-aware training, the same formulas in float32 with straight-through
  rounding (clamps pass the gradient inside their range); in float64 this path equals the exact
  one bit for bit (``tests/entropy_models/test_integer.py``);
* eval mode, ``CODECLAB_INTEGER_BACKEND=float64`` (default): the integers held in float64. Every
  partial sum is an integer below 2^53, so any summation order (threads, BLAS, oneDNN, cuDNN,
  memory layout) gives the same result, on CPU and CUDA;
* ``int64``: the reference on int64 tensors (CPU; CUDA tensors fall back to float64).

What stays approximate: the transforms ``g_a``/``g_s``, which never feed the decoder's
arithmetic, so they may run in bf16, channels-last or compiled.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FRACTION_BITS = 10
ACTIVATION_MAX = 2**24 - 1
# Bits of |sum(w * n)| (weights x activations x fan-in) kept below 2^51, leaving room for the bias
# (clamped to 2^51) and the rounding half under 2^53.
ACCUMULATOR_BITS = 51
MAX_WEIGHT_BITS = 15
MAX_SHIFT = 40
LEAKY_SLOPE_SHIFT = 12  # slopes are k / 2^12: 41/4096 ~ 0.01 (torch's default), 819/4096 ~ 0.2 (TensorFlow's)
TANH_RANGE = 8  # 0.5 tanh(x) is within 2^-(F+1) of +-1/2 beyond |x| = 8
INTEGER_BACKENDS = ("float64", "int64")


def integer_backend() -> str:
    """The exact execution backend, from ``CODECLAB_INTEGER_BACKEND`` (default ``float64``)."""
    backend = os.environ.get("CODECLAB_INTEGER_BACKEND", "float64")
    if backend not in INTEGER_BACKENDS:
        raise ValueError(f"CODECLAB_INTEGER_BACKEND must be one of {', '.join(INTEGER_BACKENDS)}, got {backend!r}")
    return backend


def pow2(exponent: Tensor) -> Tensor:
    """``2^e`` in float64 for integer ``e`` in [-1022, 1023], built from its bits: exact on every
    device. ``torch.pow(2.0, e)`` goes through ``exp2``, which CUDA (and vectorised CPU code) may
    leave one ulp off; such a factor once moved one rounding shift per 442,368 values on an H200."""
    return torch.bitwise_left_shift(exponent.long() + 1023, 52).view(torch.float64)


def _straight_through(exact: Tensor, x: Tensor) -> Tensor:
    """``exact`` in the forward pass, the gradient of ``x``."""
    return x + (exact.to(x.dtype) - x).detach()


def to_fixed(x: Tensor) -> Tensor:
    """``n = clamp(floor(x * 2^F + 1/2))`` as float64 integers (exact for float32 and float64 ``x``)."""
    return torch.floor(x.double() * 2**FRACTION_BITS + 0.5).clamp_(-ACTIVATION_MAX, ACTIVATION_MAX)


def from_fixed(n: Tensor, dtype: torch.dtype) -> Tensor:
    """``n / 2^F`` (exact in float32 because ``|n| < 2^24``)."""
    return (n.double() * 2.0**-FRACTION_BITS).to(dtype)


def quantize_activation(x: Tensor) -> Tensor:
    """``x`` rounded to the fixed-point grid, straight-through in training."""
    return _straight_through(from_fixed(to_fixed(x), x.dtype), x)


class IntegerConvMixin:
    """Integer execution for ``nn.Conv2d``/``nn.ConvTranspose2d`` subclasses (same parameters and
    state_dict names as the float layer, so float weights load into it unchanged)."""

    output_dim: int  # the weight dimension of output channels

    def weight_bits(self) -> int:
        fan_in = self.weight.numel() // self.weight.shape[self.output_dim]
        bits = min(MAX_WEIGHT_BITS, ACCUMULATOR_BITS - 24 - math.ceil(math.log2(max(fan_in, 2))))
        if bits < 8:
            raise ValueError(f"fan-in {fan_in} is too wide for an exact integer layer")
        return bits

    def _per_output(self, t: Tensor) -> Tensor:
        shape = [1] * self.weight.ndim
        shape[self.output_dim] = -1
        return t.view(shape)

    def integer_weight(self) -> tuple[Tensor, Tensor]:
        """``(w_int, shift)``: float64 integers of the weight and the shift ``s_o`` of each output
        channel, a function of the float weight alone (frexp and rounding are exact)."""
        w = self.weight.detach().double()
        bits = self.weight_bits()
        peak = w.abs().amax(dim=[d for d in range(w.ndim) if d != self.output_dim])
        _, exponent = torch.frexp(peak)  # peak = m * 2^e, m in [0.5, 1)
        shift = (bits - exponent).clamp(1, MAX_SHIFT)
        limit = 2**bits - 1
        w_int = torch.round(w * pow2(self._per_output(shift))).clamp_(-limit, limit)
        return w_int, shift

    def integer_bias(self, shift: Tensor) -> Tensor:
        if self.bias is None:
            return torch.zeros_like(shift, dtype=torch.float64)
        scaled = self.bias.detach().double() * pow2(shift + FRACTION_BITS)
        return torch.round(scaled).clamp_(-(2.0**ACCUMULATOR_BITS), 2.0**ACCUMULATOR_BITS)

    @staticmethod
    def dequantize_weight(w_int: Tensor, shift: Tensor, output_dim: int) -> Tensor:
        """The float32 weight ``w_int * 2^-shift`` that :meth:`integer_weight` maps back to ``(w_int, shift)``."""
        shape = [1] * w_int.ndim
        shape[output_dim] = -1
        return (w_int.double() * pow2(-shift.view(shape))).float()

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self._fake_quantized(x)
        return self._exact(x)

    def _fake_quantized(self, x: Tensor) -> Tensor:
        w_int, shift = self.integer_weight()
        scale = pow2(-self._per_output(shift))
        weight = _straight_through((w_int * scale).to(x.dtype), self.weight)
        bias_scale = pow2(-(shift + FRACTION_BITS))
        bias = None if self.bias is None else _straight_through((self.integer_bias(shift) * bias_scale).to(x.dtype), self.bias)
        return quantize_activation(self._linear(quantize_activation(x), weight, bias))

    def _frozen_integers(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(w_int, shift, b_int)``, recomputed only when a parameter changed (in-place updates
        bump a tensor's version), since deriving them costs as much as a small layer."""
        key = tuple((p._version, p.data_ptr(), p.device) for p in (self.weight, self.bias) if p is not None)
        cache = self.__dict__.get("_integer_cache")
        if cache is None or cache[0] != key:
            w_int, shift = self.integer_weight()
            cache = (key, w_int, shift, self.integer_bias(shift))
            self.__dict__["_integer_cache"] = cache
        return cache[1:]

    def _exact(self, x: Tensor) -> Tensor:
        w_int, shift, bias = self._frozen_integers()
        n = to_fixed(x)
        if integer_backend() == "int64" and x.device.type == "cpu":
            acc = self._linear(n.long(), w_int.long().to(x.device), None) + bias.long().view(1, -1, 1, 1)
            shift = shift.long().view(1, -1, 1, 1)
            out = torch.bitwise_right_shift(acc + torch.bitwise_left_shift(torch.ones_like(shift), shift - 1), shift).double()
        else:
            acc = self._linear(n, w_int.to(x.device), bias.to(x.device))
            shift = shift.to(x.device).view(1, -1, 1, 1)
            out = torch.floor((acc + pow2(shift - 1)) * pow2(-shift))
        return from_fixed(out.clamp_(-ACTIVATION_MAX, ACTIVATION_MAX), x.dtype)


class IntegerConv2d(IntegerConvMixin, nn.Conv2d):
    output_dim = 0

    def _linear(self, x, weight, bias):
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class IntegerConvTranspose2d(IntegerConvMixin, nn.ConvTranspose2d):
    output_dim = 1

    def _linear(self, x, weight, bias):
        return F.conv_transpose2d(x, weight, bias, self.stride, self.padding, self.output_padding, self.groups,
                                  self.dilation)


class IntegerReLU(nn.Module):
    """``max(n, 0)`` on the fixed-point grid (the input is already on it)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(quantize_activation(x))


def leaky_slope_numerator(slope: float) -> int:
    """``k`` of the integer slope ``k / 2^12`` nearest to ``slope`` (41 for 0.01, 819 for 0.2)."""
    return round(slope * 2**LEAKY_SLOPE_SHIFT)


class IntegerLeakyReLU(nn.Module):
    """``n`` for ``n >= 0``, else ``floor((k n + 2^11) / 2^12)``: slope ``k/4096`` (:func:`leaky_slope_numerator`)."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.numerator = leaky_slope_numerator(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        n = to_fixed(x)
        negative = torch.floor((n * self.numerator + 2 ** (LEAKY_SLOPE_SHIFT - 1)) * 2.0**-LEAKY_SLOPE_SHIFT)
        exact = from_fixed(torch.where(n < 0, negative, n), x.dtype)
        if not self.training:
            return exact
        return _straight_through(exact, F.leaky_relu(x, self.numerator / 2**LEAKY_SLOPE_SHIFT))


class HalfTanh(nn.Module):
    """``0.5 tanh(x)``: the bounded output of latent residual prediction (float networks)."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * torch.tanh(x)


def half_tanh_table() -> Tensor:
    """``floor(0.5 tanh(n / 2^F) 2^F + 1/2)`` for ``n`` in ``[-8 2^F, 8 2^F]``, float64 integers.

    tanh is not correctly rounded in every math library, but no entry lies within 10^-6 of a
    rounding tie (tested), so any library within that error builds the same table."""
    n = torch.arange(-TANH_RANGE * 2**FRACTION_BITS, TANH_RANGE * 2**FRACTION_BITS + 1, dtype=torch.float64)
    return torch.floor(0.5 * torch.tanh(n * 2.0**-FRACTION_BITS) * 2**FRACTION_BITS + 0.5)


class IntegerHalfTanh(HalfTanh):
    """``0.5 tanh`` through :func:`half_tanh_table` (inputs clamped to ``[-8, 8]``)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("table", half_tanh_table(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        limit = TANH_RANGE * 2**FRACTION_BITS
        index = (to_fixed(x).clamp_(-limit, limit) + limit).long()
        exact = from_fixed(self.table.to(x.device)[index], x.dtype)
        return _straight_through(exact, super().forward(x)) if self.training else exact


_INTEGER_LAYERS = {
    nn.Conv2d: IntegerConv2d,
    nn.ConvTranspose2d: IntegerConvTranspose2d,
    nn.ReLU: IntegerReLU,
    nn.LeakyReLU: IntegerLeakyReLU,
    HalfTanh: IntegerHalfTanh,
}


def integer_layer(layer: nn.Module) -> nn.Module:
    """The integer counterpart of one float layer, with its parameters (shared, not copied)."""
    kind = _INTEGER_LAYERS[type(layer)]
    if kind in (IntegerConv2d, IntegerConvTranspose2d):
        converted = kind.__new__(kind)
        converted.__dict__ = layer.__dict__  # same parameters, buffers and hyper-parameters
        return converted
    if isinstance(layer, nn.LeakyReLU):
        if not 0 < layer.negative_slope < 1:
            raise ValueError(f"no integer leaky ReLU of slope {layer.negative_slope}")
        return kind(layer.negative_slope)
    return kind()


def make_integer(module: nn.Module) -> nn.Module:
    """Replace, in place, every float layer of ``module`` that has an integer counterpart; any
    other layer with parameters is refused (it would not be exact). Returns ``module``."""
    for name, child in module.named_children():
        if type(child) in _INTEGER_LAYERS.values():
            continue
        if type(child) in _INTEGER_LAYERS:
            setattr(module, name, integer_layer(child))
        elif isinstance(child, (nn.Sequential, nn.ModuleList)) or list(child.children()):
            make_integer(child)
        elif any(True for _ in child.parameters(recurse=False)):
            raise ValueError(f"layer {type(child).__name__} has no integer counterpart")
    return module


_POINTWISE_ACTIVATIONS = (IntegerReLU, IntegerLeakyReLU, IntegerHalfTanh)


def exact_pointwise(network: nn.Module) -> bool:
    """True when ``network`` is, in eval mode, a chain of exact integer 1x1 convolutions and
    element-wise activations: each output position then depends on its own input position alone,
    with integers that do not depend on what else is evaluated beside it."""
    if network.training:
        return False
    leaves = [m for m in network.modules() if not list(m.children())]
    return bool(leaves) and all(
        isinstance(m, _POINTWISE_ACTIVATIONS)
        or (isinstance(m, IntegerConv2d) and m.kernel_size == (1, 1) and m.stride == (1, 1) and m.padding == (0, 0)
            and m.groups == 1)
        for m in leaves
    )


def at_positions(network: nn.Module, x: Tensor, mask: Tensor) -> Tensor:
    """``network(x)`` where the boolean ``[h, w]`` ``mask`` is set (callers read nothing else).

    An :func:`exact_pointwise` network runs on the selected positions only (half the work for a
    checkerboard pass; zeros elsewhere) and gives the very integers of the whole map. Any other
    network runs on the whole map, so float networks keep their summation order and the files
    they coded before still decode.
    """
    if not exact_pointwise(network):
        return network(x)
    picked = network(x[..., mask].unsqueeze(-1))[..., 0]  # [B, C, K, 1] -> [B, C_out, K]
    out = picked.new_zeros(*picked.shape[:2], *mask.shape)
    out[..., mask] = picked
    return out


def integer_convolutions(module: nn.Module):
    """``(name, layer)`` of every integer convolution in ``module``."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, IntegerConvMixin)]
