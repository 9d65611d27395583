"""`RMSprop`, in PyTorch's order of operations::

    g = p.grad (+ weight_decay * p)
    v = alpha * v + (1 - alpha) * g * g
    centered:  m = alpha * m + (1 - alpha) * g;  avg = sqrt(v - m * m) + eps
    otherwise: avg = sqrt(v) + eps
    momentum:  b = momentum * b + g / avg;  p -= lr * b
    otherwise: p -= lr * g / avg
"""
from __future__ import annotations

from graphc import dtypes
from graphc.optim.optimizer import Optimizer


class RMSprop(Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        for name, value in (("learning rate", lr), ("epsilon value", eps), ("momentum value", momentum),
                            ("weight_decay value", weight_decay), ("alpha value", alpha)):
            if not 0.0 <= value:
                raise ValueError(f"Invalid {name}: {value}")
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def _init_state(self, p, group):
        from graphc.creation import tensor, zeros_like
        state = self.state[p]
        if not state:
            state["step"] = tensor(0.0, dtype=dtypes.float32)
            state["square_avg"] = zeros_like(p)
            if group["momentum"] > 0:
                state["momentum_buffer"] = zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = zeros_like(p)
        return state

    def _update_group(self, group) -> None:
        """Update every parameter of `group` that has a gradient (called under no_grad)."""
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        weight_decay, momentum = group["weight_decay"], group["momentum"]
        for p in self._params_with_grad(group):
            grad = p.grad if not group["maximize"] else -p.grad
            state = self._init_state(p, group)
            state["step"].add_(1)
            if weight_decay != 0:
                grad = grad.add(p, alpha=weight_decay)
            square_avg = state["square_avg"]
            square_avg.mul_(alpha).add_(grad * grad, alpha=1 - alpha)
            if group["centered"]:
                grad_avg = state["grad_avg"]
                grad_avg.mul_(alpha).add_(grad, alpha=1 - alpha)
                average = (square_avg - grad_avg * grad_avg).sqrt().add(eps)
            else:
                average = square_avg.sqrt().add(eps)
            if momentum > 0:
                buffer = state["momentum_buffer"]
                buffer.mul_(momentum).add_(grad / average)
                p.add_(buffer, alpha=-lr)
            else:
                p.add_(grad / average, alpha=-lr)
