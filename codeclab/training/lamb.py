"""LAMB (You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
ICLR 2020), the optimiser of McQuic's released configs. For every parameter ``w`` with gradient ``g``::

    m = b1 m + (1 - b1) g              v = b2 v + (1 - b2) g^2
    m_hat = m / (1 - b1^t)             v_hat = v / (1 - b2^t)          (debias=True; else m, v)
    u = m_hat / (sqrt(v_hat) + eps) + weight_decay * w
    r = min(||w||, clamp) / ||u||      (1 when either norm is 0)
    w = w - lr * r * u

``clamp = 10`` bounds the weight norm in the trust ratio and ``debias=False`` is the default, as in
torch-optimizer's ``Lamb``, which McQuic imports; ``debias=True`` is the paper's bias-corrected form.
"""

from __future__ import annotations

import torch


def _check_settings(name: str, lr: float, betas, eps: float, weight_decay: float) -> None:
    if lr <= 0 or eps <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or weight_decay < 0:
        raise ValueError(f"invalid {name} settings: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")


def _evaluate(closure):
    """The loss of an optimiser's ``closure`` (with gradients on), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class Lamb(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 2e-4, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0,
                 clamp_value: float = 10.0, debias: bool = False):
        _check_settings("Lamb", lr, betas, eps, weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      clamp_value=clamp_value, debias=debias))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _evaluate(closure)
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["m"], state["v"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                m_hat, v_hat = (m / (1 - b1**t), v / (1 - b2**t)) if group["debias"] else (m, v)
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update + group["weight_decay"] * p
                weight_norm = p.norm().clamp(0, group["clamp_value"])
                update_norm = update.norm()
                trust = 1.0 if weight_norm == 0 or update_norm == 0 else float(weight_norm / update_norm)
                p.add_(update, alpha=-group["lr"] * trust)
        return loss


class FusedLamb(torch.optim.Optimizer):
    """apex's ``FusedLAMB`` (NVIDIA/apex ``apex/optimizers/fused_lamb.py`` with its
    ``multi_tensor_lamb`` kernel), the optimiser McQuic registers as ``Lamb`` at every 2022 commit
    and at the released commit 3dc1a82 (its configs pass only ``lr``: ``2.e-4 # PSNR: 5.e-3``), so
    apex's defaults hold: bias correction, decoupled weight decay 0.01, ``eps`` 1e-6, global
    gradient-norm clipping at ``max_grad_norm = 1``, no NVLAMB. Per step, over all parameters::

        c = max(||g||_global / max_grad_norm, 1)              g <- g / c
        m = b1 m + (1 - b1) g      v = b2 v + (1 - b2) g^2     m_hat, v_hat: / (1 - b^t)
        u = m_hat / (sqrt(v_hat) + eps) + weight_decay * w
        r = ||w|| / ||u|| (1 when either is 0) if weight_decay != 0 else 1
        w = w - lr * r * u

    A CPU reimplementation (apex needs CUDA); :class:`Lamb` (torch-optimizer's, no bias
    correction, a clamped trust ratio) stays available as ``codeclab.training.lamb.Lamb``.
    """

    def __init__(self, params, lr: float = 2e-4, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.01,
                 bias_correction: bool = True, max_grad_norm: float = 1.0):
        _check_settings("FusedLamb", lr, betas, eps, weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      bias_correction=bias_correction, max_grad_norm=max_grad_norm))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _evaluate(closure)
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return loss
        global_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        for group in self.param_groups:
            b1, b2 = group["betas"]
            clip = group["max_grad_norm"]
            divisor = float(global_norm / clip) if clip > 0 and float(global_norm) > clip else 1.0
            group["step"] = group.get("step", 0) + 1  # one step count per group, as apex
            t = group["step"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                g = p.grad / divisor
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                if group["bias_correction"]:
                    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
                else:
                    m_hat, v_hat = m, v
                update = m_hat / (v_hat.sqrt() + group["eps"])
                trust = 1.0
                if group["weight_decay"]:
                    update = update + group["weight_decay"] * p
                    weight_norm, update_norm = p.norm(), update.norm()
                    if weight_norm != 0 and update_norm != 0:
                        trust = float(weight_norm / update_norm)
                p.add_(update, alpha=-group["lr"] * trust)
        return loss
