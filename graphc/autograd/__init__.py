"""graphc.autograd: symbolic reverse mode with PyTorch's API."""
from graphc.autograd.anomaly import detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from graphc.autograd.engine import backward, grad
from graphc.autograd.functions import AccumulateGrad, GradFn
from graphc.autograd.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from graphc.autograd.variable import Variable


__all__ = ["backward", "grad", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "Variable", "GradFn", "AccumulateGrad", "set_detect_anomaly", "detect_anomaly", "is_anomaly_enabled"]
