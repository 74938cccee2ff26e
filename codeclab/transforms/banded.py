"""Float64 synthesis in bands of rows: the values of one call, in a fraction of the memory.

Decoders run ``g_s`` in float64 (:meth:`codeclab.codecs.Codec.portable_synthesis`). Torch has no
float64 oneDNN kernels, so its convolutions unfold their whole input first (im2col): at 1080p
the 128-channel 5x5 transposed convolution of mbt2018-mean's synthesis fills a 3.3 GB buffer,
and one frame took 4.8 GB to synthesise (float32: 2.0 GB). :func:`banded_forward` runs each
layer of a sequential synthesis over bands of its output rows, so that buffer is at most
:data:`BAND_BYTES`, and pointwise layers (GDN, activations) overwrite their input band by band;
what remains is the input and output of one layer at a time. Encoders run their analysis with
only the pointwise layers in bands (``convolutions=False``), which saves GDN's temporaries and
changes no value.

What is exact and what is not: a band's rows take their values from the same input rows as one
call over the whole image (a transposed convolution's input band holds every row that reaches
the band; a convolution's is zero-padded where the image ends, as the layer pads it), so the
result is the same function. The float64 sums are blocked otherwise by the matrix products, so a
value may differ from one call's in its last bit (2^-52 relative; a decoded 8-bit sample moves
only if it lies that close to a rounding boundary). The bands depend only on the layer shapes and
:data:`BAND_BYTES`, never on the CPU, so decoded pixels stay the same on every CPU
(``tests/transforms/test_banded.py``).

Layers it bands: ``nn.Conv2d`` and ``nn.ConvTranspose2d`` with zero padding given as numbers,
and the pointwise :class:`~codeclab.transforms.layers.GDN`, ``nn.ReLU``, ``nn.LeakyReLU``,
``nn.Identity``. A synthesis that is not an ``nn.Sequential`` of those (attention, residual
blocks, pixel shuffles, wavelets) runs in one call (:func:`bandable` says which).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import GDN

BAND_BYTES = 64 << 20  # the largest unfolded buffer or pointwise temporary one band may need
POINTWISE = (GDN, nn.ReLU, nn.LeakyReLU, nn.Identity)


def _bandable_layer(layer: nn.Module) -> bool:
    if isinstance(layer, POINTWISE):
        return True
    if isinstance(layer, nn.ConvTranspose2d):
        # Rows past the last input's reach (output padding) would need the bias alone.
        # and a part must reach the last row of its band (kernel taps at least as tall as the stride).
        return (layer.padding_mode == "zeros" and layer.output_padding[0] <= layer.padding[0]
                and layer.dilation[0] * (layer.kernel_size[0] - 1) >= layer.stride[0] - 1)
    return isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros" and isinstance(layer.padding, tuple)


def bandable(g_s: nn.Module) -> bool:
    """Whether :func:`banded_forward` bands every layer of ``g_s`` (else it runs it in one call)."""
    return isinstance(g_s, nn.Sequential) and all(_bandable_layer(layer) for layer in g_s)


def _rows_per_band(bytes_per_row: int) -> int:
    return max(1, BAND_BYTES // max(1, bytes_per_row))


def _conv_transpose(layer: nn.ConvTranspose2d, x: Tensor) -> Tensor:
    (s, _), (k, _), (p, pw), (d, _) = layer.stride, layer.kernel_size, layer.padding, layer.dilation
    height = (x.shape[2] - 1) * s - 2 * p + d * (k - 1) + layer.output_padding[0] + 1
    width = (x.shape[3] - 1) * layer.stride[1] - 2 * pw + layer.dilation[1] * (layer.kernel_size[1] - 1) \
        + layer.output_padding[1] + 1
    out = x.new_empty(x.shape[0], layer.out_channels, height, width)
    # The unfolded buffer holds out_channels * kh * kw values per input pixel.
    band = _rows_per_band(layer.out_channels * k * layer.kernel_size[1] * x.shape[3] * x.element_size()) * s
    for top in range(0, height, band):
        bottom = min(top + band, height)
        # Input row i reaches output rows i*s - p + t*d, t < k: every row that reaches [top, bottom).
        first = max(0, (top + p - d * (k - 1)) // s)
        last = min(x.shape[2] - 1, (bottom - 1 + p) // s)
        part = F.conv_transpose2d(x[:, :, first : last + 1], layer.weight, layer.bias, stride=layer.stride,
                                  padding=(0, pw), output_padding=(0, layer.output_padding[1]), groups=layer.groups,
                                  dilation=layer.dilation)
        offset = first * s - p  # the output row of the part's first row
        out[:, :, top:bottom] = part[:, :, top - offset : bottom - offset]
    return out


def _conv(layer: nn.Conv2d, x: Tensor) -> Tensor:
    (s, _), (k, _), (p, pw), (d, _) = layer.stride, layer.kernel_size, layer.padding, layer.dilation
    height = (x.shape[2] + 2 * p - d * (k - 1) - 1) // s + 1
    width = (x.shape[3] + 2 * pw - layer.dilation[1] * (layer.kernel_size[1] - 1) - 1) // layer.stride[1] + 1
    out = x.new_empty(x.shape[0], layer.out_channels, height, width)
    # The unfolded buffer holds in_channels / groups * kh * kw values per output pixel.
    per_row = layer.in_channels // layer.groups * k * layer.kernel_size[1] * width * x.element_size()
    band = _rows_per_band(per_row)
    for top in range(0, height, band):
        bottom = min(top + band, height)
        first, last = top * s - p, (bottom - 1) * s - p + d * (k - 1)  # input rows, padding included
        part = x[:, :, max(first, 0) : min(last, x.shape[2] - 1) + 1]
        part = F.pad(part, (0, 0, max(0, -first), max(0, last - (x.shape[2] - 1))))
        out[:, :, top:bottom] = F.conv2d(part, layer.weight, layer.bias, stride=layer.stride, padding=(0, pw),
                                         dilation=layer.dilation, groups=layer.groups)
    return out


def _pointwise(layer: nn.Module, x: Tensor) -> Tensor:
    # GDN squares its input and convolves it: a few temporaries the size of the band.
    band = _rows_per_band(3 * x.shape[1] * x.shape[3] * x.element_size())
    for top in range(0, x.shape[2], band):
        x[:, :, top : top + band] = layer(x[:, :, top : top + band])
    return x


@torch.no_grad()
def banded_forward(net: nn.Module, x: Tensor, convolutions: bool = True) -> Tensor:
    """``net(x)``, band by band where :func:`bandable` (module docstring); ``x`` is not modified.
    ``convolutions=False`` bands only the pointwise layers of any ``nn.Sequential`` (in place: no
    temporaries the size of the image) and runs every other layer in one call, so the result is
    one call's, bit for bit: the encoders' analysis, whose float32 or bf16 convolutions keep
    their oneDNN kernels."""
    if not isinstance(net, nn.Sequential) or (convolutions and not bandable(net)):
        return net(x)
    source = x
    for layer in net:
        if convolutions and isinstance(layer, nn.ConvTranspose2d):
            x = _conv_transpose(layer, x)
        elif convolutions and isinstance(layer, nn.Conv2d):
            x = _conv(layer, x)
        elif isinstance(layer, POINTWISE):
            x = _pointwise(layer, x.clone() if x is source else x)
        else:
            x = layer(x)
    return x
