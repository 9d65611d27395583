"""`Adam` and `AdamW` (PyTorch's single-tensor update, with bias corrections as tensor ops)."""
from __future__ import annotations

from graphc import dtypes
from graphc.optim.optimizer import Optimizer


class Adam(Optimizer):
    """Adam (Kingma & Ba), as PyTorch computes it::

        step += 1
        g = p.grad (+ weight_decay * p, or p *= 1 - lr * weight_decay when decoupled: AdamW)
        m = m + (1 - beta1) * (g - m)                    # exp_avg.lerp_(g, 1 - beta1)
        v = v * beta2 + (1 - beta2) * g * g
        denom = sqrt(v) / sqrt(1 - beta2^step) + eps     # sqrt(max(v_max, v)) with amsgrad
        p -= lr / (1 - beta1^step) * m / denom

    The step count is a float32 tensor in `state['step']` and the bias corrections are tensor ops
    on it (computed in float64), so the update is the same graph at every step.
    """

    _decoupled_default = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if decoupled_weight_decay is None:
            decoupled_weight_decay = self._decoupled_default
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, p, amsgrad):
        from graphc.creation import tensor, zeros_like
        state = self.state[p]
        if not state:
            state["step"] = tensor(0.0, dtype=dtypes.float32)
            state["exp_avg"] = zeros_like(p)
            state["exp_avg_sq"] = zeros_like(p)
            if amsgrad:
                state["max_exp_avg_sq"] = zeros_like(p)
        return state

    def _update_group(self, group) -> None:
        """Update every parameter of `group` that has a gradient (called under no_grad)."""
        from graphc.tensor_ops import maximum
        beta1, beta2 = group["betas"]
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        amsgrad = group["amsgrad"]
        for p in self._params_with_grad(group):
            grad = p.grad if not group["maximize"] else -p.grad
            state = self._init_state(p, amsgrad)
            exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
            step_t.add_(1)
            if weight_decay != 0:
                if group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * weight_decay)
                else:
                    grad = grad.add(p, alpha=weight_decay)
            exp_avg.add_(grad - exp_avg, alpha=1 - beta1)
            exp_avg_sq.mul_(beta2).add_(grad * grad, alpha=1 - beta2)
            step = step_t.to(dtypes.float64)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2_sqrt = (1 - beta2 ** step).sqrt()
            step_size = lr / bias_correction1
            if amsgrad:
                state["max_exp_avg_sq"].copy_(maximum(state["max_exp_avg_sq"], exp_avg_sq))
                second = state["max_exp_avg_sq"]
            else:
                second = exp_avg_sq
            denom = (second.sqrt() / bias_correction2_sqrt).add(eps)
            p.add_((exp_avg / denom) * (-step_size))


class AdamW(Adam):
    """Adam with decoupled weight decay (default 1e-2): p *= 1 - lr * weight_decay before the step."""

    _decoupled_default = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
