"""Training losses that are not part of any codec: the PatchGAN discriminator and LPIPS.

Only training imports this module; coding never needs it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017) as taming's ``NLayerDiscriminator`` with BatchNorm.

    ``main``: conv(4, s2) + LeakyReLU, then ``n_layers - 1`` blocks conv(4, s2) + BN + LeakyReLU
    (width doubling up to ``8 * ndf``), one conv(4, s1) + BN + LeakyReLU, and a 1-channel conv(4, s1).
    Each output logit judges one overlapping patch (70x70 pixels for ``n_layers=3``).
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.main = nn.Sequential(*layers)
        for module in self.modules():
            # taming's weights_init: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales.
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.main(x)


class LPIPS(nn.Module):
    """LPIPS-VGG (Zhang et al. 2018), the perceptual loss of VQGAN, from local weight files.

    ``d(x, y) = sum_l mean_hw || w_l * (phi_l(x)/|phi_l(x)| - phi_l(y)/|phi_l(y)|) ||^2`` over the
    VGG16 ``relu{1_2, 2_2, 3_3, 4_3, 5_3}`` features ``phi_l`` of inputs in [-1, 1]. Output ``[B]``.

    Args:
      vgg_weights: torchvision ``vgg16`` state_dict file (``vgg16-397923af.pth``; ``features.*`` used).
      lin_weights: the LPIPS linear layers (``lpips`` package's ``weights/v0.1/vgg.pth``, keys
        ``lin{0..4}.model.1.weight``; taming's ``vgg.pth`` is the same file).
    """

    _SLICES = (4, 9, 16, 23, 30)
    _CHANNELS = (64, 128, 256, 512, 512)

    def __init__(self, vgg_weights: str | Path, lin_weights: str | Path):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        features = make_layers(cfgs["D"])  # vgg16().features without building the classifier
        vgg_state = torch.load(vgg_weights, map_location="cpu", weights_only=True)
        features.load_state_dict({k[len("features."):]: v for k, v in vgg_state.items() if k.startswith("features.")})
        self.features = features[: self._SLICES[-1]]
        lin_state = torch.load(lin_weights, map_location="cpu", weights_only=True)
        self.lins = nn.ParameterList([nn.Parameter(lin_state[f"lin{i}.model.1.weight"].reshape(1, c, 1, 1))
                                      for i, c in enumerate(self._CHANNELS)])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # frozen network: never in training mode

    def _taps(self, x):
        taps, h, start = [], (x - self.shift) / self.scale, 0
        for end in self._SLICES:
            h = self.features[start:end](h)
            taps.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
            start = end
        return taps

    def forward(self, x, y):
        return sum(((a - b).pow(2) * w).sum(1).mean((1, 2)) for a, b, w in zip(self._taps(x), self._taps(y), self.lins))
