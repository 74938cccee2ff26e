"""Encoder-side latent refinement by Stochastic Gumbel Annealing (SGA).

Yang, Bamler & Mandt, "Improving Inference for Neural Image Compression", NeurIPS 2020; the
reference is the authors' ``sga.py`` (mandt-lab/improving-inference-for-neural-image-compression).

Workflow, for one image and a frozen codec::

    y0 = g_a(x), z0 = h_a(y0)                        initial latents (the amortised encoder)
    for t in 0 .. T-1:                               Adam(lr 5e-3) over (y, z)
        tau = clip(0.5 exp(-r (t - t0)), 1e-8, 0.5)  annealed temperature ("exp0")
        y~ = sga_round(y, mu, tau), z~ = sga_round(z, median, tau)
        loss = lmbda * 255^2 * MSE(x, g_s(y~)) + bits(y~ | z~) / pixels + bits(z~) / pixels
    code round(z - median) and round(y - mu(z_hat))  the ordinary coder: the decoder is unchanged

``sga_round(v, offset, tau)`` draws between the two grid points around ``v`` (the grid is
``offset + Z``: the means or medians the coder rounds around) with a Gumbel-softmax whose logits are
``-atanh(distance) / tau``, so ``v`` moves to the point that lowers the rate-distortion cost and
the relaxation hardens as ``tau`` falls.

Constants, as the reference: Adam with learning rate 0.005, 2000 iterations, ``tau`` held at 0.5
for ``t0 = 700`` iterations and then decaying with rate ``r = 1e-3``, logits clipped at
``1 - 1e-5``. Other iteration counts stretch the same schedule (``t0 = 0.35 T``, ``r = 2 / T``:
the final temperature stays ``0.5 e^-1.3``); at ``T = 2000`` this is the reference exactly.

What is exact and what is approximate: the file is an ordinary file of the codec (any decoder
reads it; decoding is as exact as for unrefined files). The optimisation itself is approximate:
integer entropy networks run in their quantisation-aware float form while optimising, so the
grid a relaxed value snaps to can differ from the coder's by the networks' last bit. The final
rounding happens in the coder, as the reference's ``np.round`` of the last iterate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..progress import progress_bar
from .base import Codec

REFERENCE_ITERATIONS = 2000
LEARNING_RATE = 5e-3
LOGIT_CLIP = 1e-5


@dataclass(frozen=True)
class SGASchedule:
    """The reference's "exp0" temperature schedule: ``clip(upper * exp(-rate * (t - warmup)), lower, upper)``."""

    iterations: int = REFERENCE_ITERATIONS
    upper: float = 0.5
    rate: float = 1e-3
    warmup: float = 700.0
    lower: float = 1e-8

    @classmethod
    def stretched(cls, iterations: int) -> SGASchedule:
        """The reference schedule (2000 iterations) stretched to ``iterations``."""
        if iterations < 1:
            raise ValueError(f"SGA needs at least one iteration, got {iterations}")
        factor = REFERENCE_ITERATIONS / iterations
        return cls(iterations=iterations, rate=1e-3 * factor, warmup=700.0 / factor)

    def temperature(self, t: int) -> float:
        return min(max(self.upper * math.exp(-self.rate * (t - self.warmup)), self.lower), self.upper)


def sga_round(values: Tensor, offsets: Tensor | None, temperature: float, generator: torch.Generator | None = None) -> Tensor:
    """One SGA sample between the grid points ``offsets + floor/ceil(values - offsets)``.

    The reference samples a two-class relaxed one-hot (Concrete) variable with logits
    ``-atanh(v - floor(v)) / tau`` (down) and ``-atanh(ceil(v) - v) / tau`` (up) at temperature
    ``tau``; with two classes its "up" weight is ``sigmoid((l_up - l_down + logistic noise) / tau)``
    (the difference of two Gumbel variables is logistic), which is what is drawn here."""
    v = values if offsets is None else values - offsets
    down, up = torch.floor(v), torch.ceil(v)
    logit_down = -torch.atanh((v - down).clamp(-1 + LOGIT_CLIP, 1 - LOGIT_CLIP)) / temperature
    logit_up = -torch.atanh((up - v).clamp(-1 + LOGIT_CLIP, 1 - LOGIT_CLIP)) / temperature
    uniform = torch.rand(v.shape, generator=generator, dtype=v.dtype, device=v.device).clamp(1e-12, 1 - 1e-12)
    noise = torch.log(uniform) - torch.log1p(-uniform)
    weight_up = torch.sigmoid((logit_up - logit_down + noise) / temperature)
    rounded = down + weight_up * (up - down)
    return rounded if offsets is None else rounded + offsets


@dataclass
class Refinement:
    """Refined latents and the rate-distortion loss (hard rounding, estimated bits) before and after."""

    y: Tensor
    side: Tensor | None
    initial_loss: float
    final_loss: float


def refinement_lambda(codec: Codec, level: int | None, lmbda: float | None) -> float:
    """The lambda to refine for: given, the level's lambda of a variable-rate model, or the
    training lambda a fixed-rate model's file records."""
    if lmbda is not None:
        return float(lmbda)
    if level is None and codec.training_lmbda is not None:
        return codec.training_lmbda
    if level is None:
        raise ValueError(f"{codec.codec_id or 'this codec'} is a fixed-rate model: refinement needs its training lambda")
    return float(codec.entropy_model.gain_bank.lmbdas[level])


def refine_latents(codec: Codec, x: Tensor, level: int | None = None, schedule: SGASchedule = SGASchedule(),
                   lmbda: float | None = None, size: tuple[int, int] | None = None, seed: int = 0,
                   progress: bool = False) -> Refinement:
    """SGA over the latents of one padded image ``x`` ``[1, 3, H, W]``; the distortion counts the
    top-left ``size`` pixels (the image before padding; default all), the rate divides by them.
    ``progress``: a bar per iteration on a terminal."""
    model = codec.entropy_model
    if not model.refinable:
        raise ValueError(f"{codec.codec_id or type(model).__name__} cannot be refined (its entropy model has no relaxed pass)")
    lmbda = refinement_lambda(codec, level, lmbda)
    height, width = size or tuple(x.shape[-2:])
    target = x[..., :height, :width]
    generator = torch.Generator(device=x.device).manual_seed(seed)

    def loss(y, side, rounding) -> Tensor:
        out = model.relaxed(y, side, level, rounding)
        x_tilde = codec.synthesis(out["y_hat"])[..., :height, :width]
        bits = sum(-torch.log2(likelihoods).sum() for likelihoods in out["likelihoods"].values())
        return lmbda * 255**2 * torch.mean((x_tilde - target) ** 2) + bits / (height * width)

    with torch.no_grad():
        y = codec.analysis(x)
        side = model.side_latent(y)
    was_training = codec.training
    codec.train()  # integer networks in their differentiable (quantisation-aware) form
    try:
        with torch.no_grad():  # the coder's rounding, round(v - offset) + offset
            initial = float(loss(y, side, model.round_ste))
        y = y.clone().requires_grad_(True)
        side = None if side is None else side.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([v for v in (y, side) if v is not None], lr=LEARNING_RATE)
        for t in progress_bar(range(schedule.iterations), desc="refine", unit="it", enabled=progress):
            tau = schedule.temperature(t)
            optimizer.zero_grad(set_to_none=True)
            loss(y, side, lambda v, offsets, tau=tau: sga_round(v, offsets, tau, generator)).backward()
            optimizer.step()
        y, side = y.detach(), None if side is None else side.detach()
        with torch.no_grad():
            final = float(loss(y, side, model.round_ste))
    finally:
        codec.train(was_training)
    return Refinement(y, side, initial, final)
