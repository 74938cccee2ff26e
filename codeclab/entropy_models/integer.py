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

8-bit layers (:class:`Int8ConvMixin`, ``make_integer(..., bits=8)``, a hyperprior's
``arithmetic="int8"``): 7-bit weights and 8-bit inputs on a calibrated per-layer grid, so every
sum fits int32 and the CPU runs one int8 product per layer instead of a float64 convolution
(:class:`Int8Product`: CodecLab's AVX2 kernel, or ``torch._int_mm`` on CPUs with AVX-512 VNNI);
their outputs are on the same fixed-point grid as above. What they cost is precision, which
quantisation-aware fine-tuning buys back (measured for STEM in reports/video).

What stays approximate: the transforms ``g_a``/``g_s``, which never feed the decoder's
arithmetic, so they may run in bf16, channels-last or compiled.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codeclab.coding.native import Int8Matrix

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
INTEGER_ARITHMETICS = ("integer", "int8")  # the arithmetics of exact networks (15-bit and 8-bit layers)


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


def rounding_shift(acc: Tensor, shift: Tensor) -> Tensor:
    """``floor((acc + 2^(t-1)) 2^-t)`` per output channel ``t`` of ``shift`` (``t <= 0``: an exact
    left shift), for float64 integers ``|acc| < 2^52``: every step is exact in float64."""
    t = shift.view(1, -1, 1, 1)
    return torch.floor((acc + pow2(t - 1)) * pow2(-t))


class IntegerConvMixin:
    """Integer execution for ``nn.Conv2d``/``nn.ConvTranspose2d`` subclasses (same parameters and
    state_dict names as the float layer, so float weights load into it unchanged)."""

    output_dim: int  # the weight dimension of output channels

    def fan_in(self) -> int:
        return self.weight.numel() // self.weight.shape[self.output_dim]

    def weight_bits(self) -> int:
        fan_in = self.fan_in()
        bits = min(MAX_WEIGHT_BITS, ACCUMULATOR_BITS - 24 - math.ceil(math.log2(max(fan_in, 2))))
        if bits < 8:
            raise ValueError(f"fan-in {fan_in} is too wide for an exact integer layer")
        return bits

    def input_fraction_bits(self) -> int:
        """``a`` of the input grid ``q / 2^a`` the layer multiplies its weights with."""
        return FRACTION_BITS

    def input_integers(self, x: Tensor) -> Tensor:
        """The input on its grid, as float64 integers ``q``."""
        return to_fixed(x)

    def fake_quantized_input(self, x: Tensor) -> Tensor:
        return quantize_activation(x)

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
        """``round(bias * 2^(s_o + a))``: the bias on the accumulator's grid."""
        if self.bias is None:
            return torch.zeros_like(shift, dtype=torch.float64)
        scaled = self.bias.detach().double() * pow2(shift + self.input_fraction_bits())
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
        bias_scale = pow2(-(shift + self.input_fraction_bits()))
        bias = None if self.bias is None else _straight_through((self.integer_bias(shift) * bias_scale).to(x.dtype), self.bias)
        return quantize_activation(self._linear(self.fake_quantized_input(x), weight, bias))

    def _frozen_integers(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(w_int, shift, b_int)``, recomputed only when a parameter changed (in-place updates
        bump a tensor's version), since deriving them costs as much as a small layer."""
        key = tuple((p._version, p.data_ptr(), p.device) for p in (self.weight, self.bias) if p is not None)
        key += (self.input_fraction_bits(),)
        cache = self.__dict__.get("_integer_cache")
        if cache is None or cache[0] != key:
            w_int, shift = self.integer_weight()
            cache = (key, w_int, shift, self.integer_bias(shift))
            self.__dict__["_integer_cache"] = cache
        return cache[1:]

    def _exact(self, x: Tensor) -> Tensor:
        w_int, shift, bias = self._frozen_integers()
        n = self.input_integers(x)
        if integer_backend() == "int64" and x.device.type == "cpu":
            acc = self._linear(n.long(), w_int.long().to(x.device), None) + bias.long().view(1, -1, 1, 1)
            shift = shift.long().view(1, -1, 1, 1)
            out = torch.bitwise_right_shift(acc + torch.bitwise_left_shift(torch.ones_like(shift), shift - 1), shift).double()
        else:
            out = rounding_shift(self._linear(n, w_int.to(x.device), bias.to(x.device)), shift.to(x.device))
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


INT8_LIMIT = 127  # weights and inputs of 8-bit layers lie in [-127, 127]
WIDE_INPUT_LIMIT = 2**14 - 1  # inputs of two int8 digits: 128 hi + lo, hi in [-128, 127], lo in [0, 127]
INT32_MAX = 2**31 - 1
UNCALIBRATED = -128  # input_exponent of an 8-bit layer before calibrate_int8_inputs


INT8_KERNELS = ("native", "torch")


def int8_kernel() -> str:
    """The CPU's int8 product: ``torch`` (``torch._int_mm``, oneDNN) where the CPU has AVX-512 VNNI
    and oneDNN is on, the only case torch gives its fast kernel; ``native`` elsewhere (CodecLab's
    own AVX2 kernel, ``codeclab/coding/csrc/int8_gemm.hpp``), where ``torch._int_mm`` is a scalar
    loop 82x slower (reports/int8_product). Both give the same integers."""
    return "torch" if Int8Matrix.vnni and torch.backends.mkldnn.enabled else "native"


class Int8Product:
    """``a @ b`` in int32 for int8 rows ``a`` [m, k] and a fixed int8 matrix ``b`` [k, n] (packed
    once for the native kernel). Exact whenever every sum fits int32, which the 8-bit layers
    guarantee, so the kernels agree bit for bit."""

    def __init__(self, b: Tensor, kernel: str | None = None):
        self.kernel = kernel or int8_kernel()
        if self.kernel not in INT8_KERNELS:
            raise ValueError(f"the int8 kernel must be one of {', '.join(INT8_KERNELS)}, got {self.kernel!r}")
        self.b = b.contiguous()
        self.native = Int8Matrix(self.b.numpy()) if self.kernel == "native" else None

    def __call__(self, a: Tensor) -> Tensor:
        if self.native is None:
            return torch._int_mm(a, self.b)
        return torch.from_numpy(self.native.multiply(a.contiguous().numpy(), torch.get_num_threads()))


class Int8ConvMixin(IntegerConvMixin):
    """8-bit exact integer layers: weights ``clamp(round(w_o 2^s_o), +-127)`` (7 bits and a sign, the
    shift per output channel as above) and inputs ``q = clamp(floor(x 2^a + 1/2), +-127)`` on a
    per-layer grid ``2^-a`` (``input_exponent``, a buffer set from data by
    :func:`calibrate_int8_inputs`); ``|sum(w q)| <= 127^2 fan_in < 2^31``, so the sums are exact
    in int32, and the CPU computes them with int8 x int8 -> int32 products (:class:`Int8Product`),
    several times faster than the float64 of the wider layers. The output
    is on the usual fixed-point grid: ``n' = floor((acc + b_o) 2^-t + 1/2)``, ``t = s_o + a - F``
    (``t <= 0``: an exact left shift). Every backend (int8 kernel, float64 on CPU or CUDA, int64)
    gives the same integers. Coarser than the wider layers, so a network is fine-tuned
    quantisation-aware after its inputs are calibrated (in training the inputs are rounded and
    clamped straight-through; an uncalibrated layer passes them unrounded).

    ``input_digits = 2`` (:func:`wide_inputs`, for layers that read quantised latents, whose grid
    8-bit inputs would blur at high rates): 15-bit inputs ``q = 128 hi + lo``, ``hi`` in
    ``[-128, 127]``, ``lo`` in ``[0, 127]``, and two int8 products (``128 (hi.w) + lo.w``, each
    exact in int32)."""

    input_digits = 1

    def _init_int8(self) -> None:
        if self.fan_in() * (INT8_LIMIT + 1) * INT8_LIMIT > INT32_MAX:
            raise ValueError(f"fan-in {self.fan_in()} is too wide for an exact 8-bit layer")
        self.register_buffer("input_exponent", torch.tensor(UNCALIBRATED, dtype=torch.int8))

    def weight_bits(self) -> int:
        return 7

    def calibrated(self) -> bool:
        return int(self.input_exponent) != UNCALIBRATED

    def input_fraction_bits(self) -> int:
        if not self.calibrated():
            raise ValueError("an 8-bit integer layer needs calibrated inputs (calibrate_int8_inputs)")
        return int(self.input_exponent)

    @property
    def input_limit(self) -> int:
        """Largest ``|q|``: 127 (8 bits), or 16383 with two digits."""
        return INT8_LIMIT if self.input_digits == 1 else WIDE_INPUT_LIMIT

    def input_integers(self, x: Tensor) -> Tensor:
        scaled = x.double() * 2.0 ** self.input_fraction_bits()
        return torch.floor(scaled + 0.5).clamp_(-self.input_limit, self.input_limit)

    def fake_quantized_input(self, x: Tensor) -> Tensor:
        if not self.calibrated():
            return x
        scale = 2.0 ** -self.input_fraction_bits()
        inside = x.clamp(-self.input_limit * scale, self.input_limit * scale)  # the gradient stops where the input clamps
        return _straight_through((self.input_integers(x) * scale).to(x.dtype), inside)

    def _fake_quantized(self, x: Tensor) -> Tensor:
        if not self.calibrated():  # before calibration: the float layer, so calibration sees float inputs
            return self._linear(x, self.weight, self.bias)
        return super()._fake_quantized(x)

    def _exact(self, x: Tensor) -> Tensor:
        w_int, shift, bias = self._frozen_integers()
        q = self.input_integers(x)
        acc = self._accumulate(q, w_int.to(x.device)) + bias.to(x.device).view(1, -1, 1, 1)
        out = rounding_shift(acc, (shift + self.input_fraction_bits() - FRACTION_BITS).to(x.device))
        return from_fixed(out.clamp_(-ACTIVATION_MAX, ACTIVATION_MAX), x.dtype)

    def _accumulate(self, q: Tensor, w_int: Tensor) -> Tensor:
        """``sum(w q)`` as float64 integers: the int8 kernel where it applies, else float64 (exact:
        every partial sum is an integer below 2^31)."""
        if q.device.type == "cpu" and self._int8_kernel_applies():
            product = self._product(w_int)
            if self.input_digits == 1:
                return self._int8_kernel(q.to(torch.int8), product).double()
            high = torch.floor(q * 2.0**-7)
            low = q - high * 2**7
            return self._int8_kernel(high.to(torch.int8), product).double() * 2**7 + self._int8_kernel(low.to(torch.int8), product)
        return self._linear(q, w_int, None)

    def _product(self, w_int: Tensor) -> Int8Product:
        """The int8 weight as a kernel product, kept while the cached integers are current."""
        cache = self.__dict__.get("_kernel_cache")
        if cache is None or cache[0] is not w_int:
            cache = (w_int, Int8Product(self._weight_matrix(w_int.to(torch.int8))))
            self.__dict__["_kernel_cache"] = cache
        return cache[1]


class Int8Conv2d(Int8ConvMixin, IntegerConv2d):
    def _int8_kernel_applies(self) -> bool:
        return self.stride == (1, 1) and self.dilation == (1, 1) and self.groups == 1 and isinstance(self.padding, tuple)

    def _weight_matrix(self, w: Tensor) -> Tensor:
        return w.permute(2, 3, 1, 0).reshape(-1, w.shape[0])  # rows (kernel row, column, input channel)

    def _int8_kernel(self, q: Tensor, product: Int8Product) -> Tensor:
        """Convolution as one int8 matrix product over im2col rows (channels last), ``[B, O, H', W']`` int32."""
        out_channels, channels, (kh, kw) = self.out_channels, self.in_channels, self.kernel_size
        ph, pw = self.padding
        rows = F.pad(q.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))  # [B, H + 2ph, W + 2pw, C]
        batch, height, width = rows.shape[0], rows.shape[1] - kh + 1, rows.shape[2] - kw + 1
        sb, sh, sw, sc = rows.stride()
        windows = rows.as_strided((batch, height, width, kh, kw, channels), (sb, sh, sw, sh, sw, sc))
        acc = product(windows.reshape(-1, kh * kw * channels))
        return acc.view(batch, height, width, out_channels).permute(0, 3, 1, 2)


class Int8ConvTranspose2d(Int8ConvMixin, IntegerConvTranspose2d):
    def _int8_kernel_applies(self) -> bool:
        return self.dilation == (1, 1) and self.groups == 1

    def _weight_matrix(self, w: Tensor) -> Tensor:
        return w.reshape(w.shape[0], -1)  # [input channels, (output channel, kernel row, column)]

    def _int8_kernel(self, q: Tensor, product: Int8Product) -> Tensor:
        """Transposed convolution as one int8 product of every input position with every kernel
        tap, then col2im (``F.fold``, whose few overlapping sums are exact in float64)."""
        batch, channels, height, width = q.shape
        out_channels, (kh, kw) = self.out_channels, self.kernel_size
        (sh, sw), (ph, pw), (oph, opw) = self.stride, self.padding, self.output_padding
        taps = product(q.permute(0, 2, 3, 1).reshape(-1, channels))
        columns = taps.view(batch, height * width, out_channels * kh * kw).transpose(1, 2).double()
        out_h, out_w = (height - 1) * sh - 2 * ph + kh + oph, (width - 1) * sw - 2 * pw + kw + opw
        full = F.fold(columns, ((height - 1) * sh + kh + oph, (width - 1) * sw + kw + opw), (kh, kw), stride=(sh, sw))
        return full[..., ph : ph + out_h, pw : pw + out_w]


def wide_inputs(layer: nn.Module) -> None:
    """Give an 8-bit layer 15-bit inputs (two int8 digits); other layers are left as they are."""
    if isinstance(layer, Int8ConvMixin):
        layer.input_digits = 2


def uncalibrated_int8_layers(module: nn.Module) -> list[tuple[str, "Int8ConvMixin"]]:
    """``(name, layer)`` of every 8-bit layer of ``module`` whose input grid is not set yet."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, Int8ConvMixin) and not m.calibrated()]


def calibrate_int8_inputs(module: nn.Module, run, samples_per_layer: int = 1 << 18) -> int:
    """Set the input grid of every uncalibrated 8-bit layer of ``module``: ``run()`` (which calls
    ``module`` on representative data, in training mode) records the layers' inputs, and each
    layer gets the exponent ``a`` whose rounding and clamping to ``[-L, L] / 2^a`` (``L``: its
    :attr:`~Int8ConvMixin.input_limit`) has the least mean squared error on them. Returns how many
    layers were calibrated."""
    layers = [m for _, m in uncalibrated_int8_layers(module)]
    seen: dict[nn.Module, list[Tensor]] = {m: [] for m in layers}

    def record(layer, args):
        flat = args[0].detach().float().flatten()
        seen[layer].append(flat[:: max(1, flat.numel() // samples_per_layer)])

    hooks = [m.register_forward_pre_hook(record) for m in layers]
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    for layer in layers:
        if not seen[layer]:
            raise ValueError("calibration data never reached an 8-bit layer")
        x = torch.cat(seen[layer]).double()
        peak, limit = float(x.abs().max()) or 1.0, layer.input_limit
        top = math.floor(math.log2(limit / peak))  # no clamping at all from this exponent down
        errors = {}
        for a in range(top - 4, top + 9):
            q = torch.floor(x * 2.0**a + 0.5).clamp_(-limit, limit) * 2.0**-a
            errors[a] = float((x - q).square().mean())
        layer.input_exponent.fill_(max(-64, min(63, min(errors, key=errors.get))))
    return len(layers)


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


_INT8_LAYERS = {nn.Conv2d: Int8Conv2d, nn.ConvTranspose2d: Int8ConvTranspose2d}


def integer_layer(layer: nn.Module, bits: int = MAX_WEIGHT_BITS) -> nn.Module:
    """The integer counterpart of one float layer, with its parameters (shared, not copied);
    ``bits=8``: the 8-bit convolutions (:class:`Int8ConvMixin`)."""
    kind = (_INT8_LAYERS if bits == 8 and type(layer) in _INT8_LAYERS else _INTEGER_LAYERS)[type(layer)]
    if issubclass(kind, IntegerConvMixin):
        converted = kind.__new__(kind)
        converted.__dict__ = layer.__dict__  # same parameters, buffers and hyper-parameters
        if issubclass(kind, Int8ConvMixin):
            converted._init_int8()
        return converted
    if isinstance(layer, nn.LeakyReLU):
        if not 0 < layer.negative_slope < 1:
            raise ValueError(f"no integer leaky ReLU of slope {layer.negative_slope}")
        return kind(layer.negative_slope)
    return kind()


def make_integer(module: nn.Module, bits: int = MAX_WEIGHT_BITS) -> nn.Module:
    """Replace, in place, every float layer of ``module`` that has an integer counterpart (``bits``
    8: 8-bit convolutions); any other layer with parameters is refused (it would not be exact).
    Returns ``module``."""
    for name, child in module.named_children():
        if type(child) in _INTEGER_LAYERS.values() or type(child) in _INT8_LAYERS.values():
            continue
        if type(child) in _INTEGER_LAYERS:
            setattr(module, name, integer_layer(child, bits))
        elif isinstance(child, (nn.Sequential, nn.ModuleList)) or list(child.children()):
            make_integer(child, bits)
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
