"""`SGD` with momentum, dampening, weight decay and Nesterov, in PyTorch's order of operations."""
from __future__ import annotations

from graphc.optim.optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent.

    Per parameter (PyTorch's update)::

        g = p.grad (+ weight_decay * p)
        buf = g (first step) or buf * momentum + (1 - dampening) * g
        g = g + momentum * buf (nesterov) or buf
        p -= lr * g
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused)
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)

    def _update_group(self, group) -> None:
        """Update every parameter of `group` that has a gradient (called under no_grad)."""
        from graphc.creation import zeros_like
        lr, momentum = group["lr"], group["momentum"]
        dampening, weight_decay = group["dampening"], group["weight_decay"]
        for p in self._params_with_grad(group):
            grad = p.grad if not group["maximize"] else -p.grad
            if weight_decay != 0:
                grad = grad.add(p, alpha=weight_decay)
            if momentum != 0:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    # a fresh leaf holding a copy of the gradient (no graph attached)
                    buf = zeros_like(p, dtype=grad.dtype).copy_(grad)
                    state["momentum_buffer"] = buf
                else:
                    buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
            p.add_(grad, alpha=-lr)
