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


class Lamb(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 2e-4, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0,
                 clamp_value: float = 10.0, debias: bool = False):
        if lr <= 0 or eps <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or weight_decay < 0:
            raise ValueError(f"invalid Lamb settings: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      clamp_value=clamp_value, debias=debias))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
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
