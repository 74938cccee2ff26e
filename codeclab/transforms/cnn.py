"""Convolutional transforms of the Ballé/Minnen hyperprior line.

Layer order, module indices and layers (:mod:`.layers`) follow compressai's ``bmshj2018-*`` and ``mbt2018-mean`` models
exactly, so their state_dicts load into codecs built from these functions.

Shapes (``x``: ``[B, 3, H, W]``, H and W multiples of 16):
  * :func:`analysis`: ``[B, 3, H, W] -> [B, M, H/16, W/16]`` (four stride-2 5x5 convolutions, GDN).
  * :func:`synthesis`: the inverse shape map (transposed convolutions, inverse GDN).
  * :func:`hyper_analysis`: ``[B, M, h, w] -> [B, N, h/4, w/4]``.
  * :func:`hyper_synthesis`: ``[B, N, h/4, w/4] -> [B, M, h, w]`` (scales) or ``[B, 2M, h, w]``
    (scales and means, ``mean_scale=True``).

References: Ballé et al., "End-to-end Optimized Image Compression", ICLR 2017;
Ballé et al., "Variational image compression with a scale hyperprior", ICLR 2018;
Minnen et al., "Joint Autoregressive and Hierarchical Priors for Learned Image Compression",
NeurIPS 2018.
"""

from torch import nn

from .base import TRANSFORMS, TransformPair
from .layers import GDN, conv, deconv


def analysis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))


def synthesis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        deconv(M, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True),
        deconv(N, 3),
    )


def hyper_analysis(N: int, M: int, mean_scale: bool) -> nn.Sequential:
    # mbt2018-mean feeds y itself (LeakyReLU); bmshj2018 feeds |y| (ReLU).
    act = nn.LeakyReLU if mean_scale else nn.ReLU
    return nn.Sequential(conv(M, N, stride=1, kernel_size=3), act(inplace=True), conv(N, N), act(inplace=True), conv(N, N))


def hyper_synthesis(N: int, M: int, mean_scale: bool) -> nn.Sequential:
    if mean_scale:
        return nn.Sequential(
            deconv(N, M), nn.LeakyReLU(inplace=True),
            deconv(M, M * 3 // 2), nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, M * 2, stride=1, kernel_size=3),
        )
    # The final ReLU keeps predicted scales non-negative.
    return nn.Sequential(
        deconv(N, N), nn.ReLU(inplace=True),
        deconv(N, N), nn.ReLU(inplace=True),
        conv(N, M, stride=1, kernel_size=3), nn.ReLU(inplace=True),
    )


@TRANSFORMS.register("cnn")
def cnn_transforms(N: int, M: int) -> TransformPair:
    """:func:`analysis` and :func:`synthesis` at width ``N`` with ``M`` latent channels (stride 16)."""
    return TransformPair(analysis(N, M), synthesis(N, M), 16)
