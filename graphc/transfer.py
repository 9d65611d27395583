"""Copying a tensor's values to another device: `Tensor.to(device)`, `.cuda()`, `.cpu()`.

A transfer is not a graph op: it computes the tensor (on its own device), copies the values into
a fresh array on the target and returns a new leaf tensor owning it, so the copy never aliases the
original. It is not differentiable yet, so moving a tensor that is part of a gradient computation
is refused rather than silently cutting the gradient; moving leaves before training (data,
`Module.to`) is what PyTorch code does anyway.
"""
from __future__ import annotations

import numpy as np

from graphc import capture
from graphc.errors import TraceError
from graphc import devices
from graphc.autograd.grad_mode import is_grad_enabled
from graphc.errors import GraphcError, op_error
from graphc.lazy import strided_view
from graphc.size import device as Device
from graphc.tensor import Tensor


def to_device(tensor: Tensor, target: Device, where: str) -> Tensor:
    """A copy of `tensor` on `target` (a device normalized by `devices.require`)."""
    context = capture.active()
    if context is not None:
        raise TraceError(
            f"to: moving a tensor to {target} inside graphc.compile is not supported (at {where}): "
            f"the copy would be made once, when the function is traced.\nHINT: move the inputs and "
            f"the model before calling the compiled function")
    if tensor.requires_grad and is_grad_enabled():
        raise op_error("to", f"copying a tensor that requires grad from {tensor.device} to {target} "
                             f"is not differentiable in graphc yet", where,
                       hint="create it on the device (graphc.randn(..., device='cuda', "
                            "requires_grad=True)), move it before setting requires_grad, or move "
                            ".detach()", kind=GraphcError)
    tensor._realize()
    source = tensor._storage.device
    view = strided_view(tensor._storage, tensor._shape, tensor._strides, tensor._offset)
    host = np.array(view, order="C") if source.type == "cpu" else devices.to_host(view, source)
    array = devices.from_host(host, target) if target.type != "cpu" else host
    return Tensor._on_device(array.reshape(tensor._shape), target)
