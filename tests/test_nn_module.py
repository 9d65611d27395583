"""nn.Module: registration, traversal, modes, conversion, state_dict, repr (golden strings
printed by PyTorch 2.13 for the same models), containers and Parameter."""
from __future__ import annotations

import copy
import pickle
import textwrap

import numpy as np
import pytest

import graphc
import runtime
import graphc.nn as nn
from models import LeNet as LeNet5
from nn_testing import reference_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("reference_backend")


class TutorialNet(LeNet5):
    """The LeNet of PyTorch's 60-minute blitz (tests/models.py), under the name the golden repr uses."""


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Conv2d(6, 16, 5),
            nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Dropout(0.5), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10), nn.LogSoftmax(dim=1))

    def forward(self, x):
        return self.classifier(self.features(x))


TUTORIAL_NET_REPR = """\
TutorialNet(
  (conv1): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))
  (conv2): Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))
  (fc1): Linear(in_features=400, out_features=120, bias=True)
  (fc2): Linear(in_features=120, out_features=84, bias=True)
  (fc3): Linear(in_features=84, out_features=10, bias=True)
)"""

LENET_REPR = """\
LeNet(
  (features): Sequential(
    (0): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))
    (1): ReLU()
    (2): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
    (3): Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))
    (4): BatchNorm2d(16, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    (5): ReLU()
    (6): AvgPool2d(kernel_size=2, stride=2, padding=0)
  )
  (classifier): Sequential(
    (0): Flatten(start_dim=1, end_dim=-1)
    (1): Linear(in_features=400, out_features=120, bias=True)
    (2): ReLU()
    (3): Dropout(p=0.5, inplace=False)
    (4): Linear(in_features=120, out_features=84, bias=True)
    (5): ReLU()
    (6): Linear(in_features=84, out_features=10, bias=True)
    (7): LogSoftmax(dim=1)
  )
)"""


def test_repr_matches_pytorch():
    assert repr(TutorialNet()) == TUTORIAL_NET_REPR
    assert repr(LeNet()) == LENET_REPR
    assert str(nn.Module()) == "Module()"
    nested = nn.Sequential(nn.ModuleList([nn.ReLU(), nn.ReLU()]), nn.ModuleDict({"a": nn.Tanh()}))
    assert repr(nested) == textwrap.dedent("""\
        Sequential(
          (0): ModuleList(
            (0-1): 2 x ReLU()
          )
          (1): ModuleDict(
            (a): Tanh()
          )
        )""")
    layers = {
        nn.Conv2d(3, 8, 3, stride=2, padding=1, dilation=2, bias=False):
            "Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 2), bias=False)",
        nn.Conv2d(4, 4, 3, padding="same", groups=2):
            "Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1), padding=same, groups=2)",
        nn.Linear(3, 4, bias=False): "Linear(in_features=3, out_features=4, bias=False)",
        nn.AvgPool2d(3, stride=2, padding=1): "AvgPool2d(kernel_size=3, stride=2, padding=1)",
        nn.AdaptiveAvgPool2d((1, 1)): "AdaptiveAvgPool2d(output_size=(1, 1))",
        nn.BatchNorm1d(4, momentum=None): "BatchNorm1d(4, eps=1e-05, momentum=None, affine=True, bias=True, "
                                          "track_running_stats=True)",
        nn.LayerNorm(10): "LayerNorm((10,), eps=1e-05, elementwise_affine=True, bias=True)",
        nn.Embedding(10, 3, padding_idx=0): "Embedding(10, 3, padding_idx=0)",
        nn.LeakyReLU(0.2, True): "LeakyReLU(negative_slope=0.2, inplace=True)",
        nn.ReLU(inplace=True): "ReLU(inplace=True)",
        nn.GELU("tanh"): "GELU(approximate='tanh')",
        nn.Softmax(): "Softmax(dim=None)",
        nn.Sigmoid(): "Sigmoid()",
        nn.Tanh(): "Tanh()",
        nn.Identity(): "Identity()",
        nn.CrossEntropyLoss(label_smoothing=0.1): "CrossEntropyLoss()",
        nn.MSELoss(): "MSELoss()",
    }
    for module, expected in layers.items():
        assert repr(module) == expected


def test_parameter():
    p = nn.Parameter(graphc.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert repr(p) == "Parameter containing:\ntensor([[1., 2.],\n        [3., 4.]], requires_grad=True)"
    assert isinstance(p, graphc.Tensor) and p.requires_grad and p.is_leaf and p.grad_fn is None
    frozen = nn.Parameter(graphc.ones(2), requires_grad=False)
    assert not frozen.requires_grad
    # made from a pending value, and sharing memory with the tensor it was made from
    source = graphc.ones(3) * 2
    q = nn.Parameter(source)
    with graphc.no_grad():
        q.add_(1.0)
    np.testing.assert_array_equal(source.numpy(), [3.0, 3.0, 3.0])
    (q * q).sum().backward()
    np.testing.assert_array_equal(q.grad.numpy(), [6.0, 6.0, 6.0])
    clone = copy.deepcopy(q)
    assert isinstance(clone, nn.Parameter) and clone.requires_grad
    with graphc.no_grad():
        clone.zero_()
    np.testing.assert_array_equal(q.detach().numpy(), [3.0, 3.0, 3.0])
    with pytest.raises(RuntimeError, match="floating point"):
        nn.Parameter(graphc.tensor([1, 2]))


def test_registration_and_traversal():
    net = LeNet()
    names = [name for name, _ in net.named_parameters()]
    assert names == ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
                     "features.4.weight", "features.4.bias", "classifier.1.weight", "classifier.1.bias",
                     "classifier.4.weight", "classifier.4.bias", "classifier.6.weight", "classifier.6.bias"]
    assert all(isinstance(p, nn.Parameter) for p in net.parameters())
    assert [n for n, _ in net.named_buffers()] == [
        "features.4.running_mean", "features.4.running_var", "features.4.num_batches_tracked"]
    assert list(net.state_dict()) == names[:6] + [n for n, _ in net.named_buffers()] + names[6:]
    assert [n for n, _ in net.named_children()] == ["features", "classifier"]
    assert len(list(net.modules())) == 1 + 1 + 7 + 1 + 8
    assert [n for n, _ in net.named_modules()][:3] == ["", "features", "features.0"]
    assert net.get_submodule("features.4") is net.features[4]
    assert net.get_parameter("classifier.6.bias") is net.classifier[6].bias
    assert sum(p.numel() for p in net.parameters()) == (156 + 2416 + 32 + 48120 + 10164 + 850)
    assert sum(1 for _ in net.parameters(recurse=False)) == 0


def test_shared_modules_and_parameters_are_listed_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = self.a
            self.extra = nn.Parameter(graphc.zeros(1))
    tied = Tied()
    assert [n for n, _ in tied.named_parameters()] == ["extra", "a.weight", "a.bias"]
    assert list(tied.state_dict()) == ["extra", "a.weight", "a.bias", "b.weight", "b.bias"]
    assert len(list(tied.named_parameters(remove_duplicate=False))) == 5


def test_setattr_rules():
    module = nn.Module()
    module.weight = nn.Parameter(graphc.ones(2))
    module.register_buffer("stat", graphc.zeros(2))
    module.register_buffer("scratch", graphc.zeros(1), persistent=False)
    module.child = nn.ReLU()
    module.plain = 3
    assert list(module._parameters) == ["weight"] and list(module._modules) == ["child"]
    assert list(module.state_dict()) == ["weight", "stat"]
    module.stat = graphc.ones(2)  # assigning a tensor to a buffer name replaces the buffer
    np.testing.assert_array_equal(module.state_dict()["stat"].numpy(), [1.0, 1.0])
    with pytest.raises(TypeError, match="cannot assign 'graphc.Tensor' as parameter 'weight'"):
        module.weight = graphc.ones(2)
    with pytest.raises(TypeError, match="cannot assign 'int' as child module 'child'"):
        module.child = 5
    module.weight = None
    assert module.weight is None and list(module.parameters()) == []
    del module.child
    assert not hasattr(module, "child")
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'missing'"):
        module.missing
    with pytest.raises(KeyError, match="attribute 'plain' already exists"):
        module.register_buffer("plain", graphc.zeros(1))

    class Forgetful(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(graphc.ones(1))
    with pytest.raises(AttributeError, match=r"cannot assign parameters before Module.__init__\(\) call"):
        Forgetful()
    with pytest.raises(NotImplementedError, match='missing the required "forward" function'):
        nn.Module()(graphc.ones(1))


def test_train_eval_requires_grad_apply_and_hooks(rng):
    net = LeNet()
    assert net.training and all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        net.train("yes")
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_()
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "LeNet" and seen[0] == "Conv2d"
    calls = []
    handle = net.features.register_forward_hook(lambda m, inputs, output: calls.append(tuple(output.shape)))
    pre = net.classifier.register_forward_pre_hook(lambda m, inputs: (inputs[0] * 0,))
    out = net.eval()(graphc.tensor(rng.standard_normal((2, 1, 28, 28)).astype(np.float32)))
    assert calls == [(2, 16, 5, 5)]
    # the pre-hook zeroed the classifier's input: every row is the same
    np.testing.assert_allclose(out[0].detach().numpy(), out[1].detach().numpy())
    handle.remove()
    pre.remove()
    net(graphc.zeros(1, 1, 28, 28))
    assert len(calls) == 1


def test_zero_grad(rng):
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    net(graphc.tensor(rng.standard_normal((4, 3)).astype(np.float32))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_double_keeps_parameter_identity(rng):
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    weight = net[0].weight
    values = weight.detach().numpy().copy()
    assert net.to(graphc.float64) is net
    assert net[0].weight is weight and weight.dtype is graphc.float64 and weight.requires_grad
    np.testing.assert_array_equal(weight.detach().numpy(), values)
    assert net[1].running_mean.dtype is graphc.float64
    assert net[1].num_batches_tracked.dtype is graphc.int64  # integer buffers keep their dtype
    out = net(graphc.tensor(rng.standard_normal((5, 3))))
    assert out.dtype is graphc.float64
    out.sum().backward()
    assert weight.grad.dtype is graphc.float64
    net.float()
    assert weight.dtype is graphc.float32 and weight.grad.dtype is graphc.float32
    assert net.to("cpu") is net and net.cpu() is net
    if not runtime.cuda_available():   # without a GPU, the error says what is missing
        with pytest.raises(RuntimeError, match="CUDA"):
            net.to("cuda")


def test_state_dict_round_trip(rng):
    graphc.manual_seed(1)
    net = LeNet()
    x = graphc.tensor(rng.standard_normal((3, 1, 28, 28)).astype(np.float32))
    net(x)  # a training step moves the batch-norm statistics
    net.eval()
    expected = net(x).detach().numpy()
    saved = pickle.loads(pickle.dumps(net.state_dict()))  # as torch.save/torch.load would
    fresh = LeNet()
    assert not np.allclose(fresh.eval()(x).detach().numpy(), expected)
    result = fresh.load_state_dict(saved)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    np.testing.assert_allclose(fresh(x).detach().numpy(), expected, rtol=1e-6)
    assert fresh.features[4].num_batches_tracked.item() == 1
    # state_dict values are detached views of the live parameters, as in PyTorch
    state = net.state_dict()
    assert not state["classifier.1.weight"].requires_grad
    with graphc.no_grad():
        net.classifier[1].bias.fill_(0.5)
    np.testing.assert_array_equal(state["classifier.1.bias"].numpy(), np.full(120, 0.5, np.float32))


def test_load_state_dict_errors():
    net = TutorialNet()
    state = dict(net.state_dict())
    state["fc1.weight"] = graphc.zeros(120, 401)
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(state)
    assert str(info.value).startswith(
        "load_state_dict: Error(s) in loading state_dict for TutorialNet:\n\tsize mismatch for fc1.weight: "
        "copying a param with shape graphc.Size([120, 401]) from checkpoint, the shape in current model is "
        "graphc.Size([120, 400]).\n  at ")
    assert "test_nn_module.py:" in str(info.value)
    state = dict(TutorialNet().state_dict())
    del state["fc3.bias"]
    state["fc4.weight"] = graphc.zeros(1)
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(state)
    assert str(info.value).startswith(
        'load_state_dict: Error(s) in loading state_dict for TutorialNet:\n\tMissing key(s) in state_dict: '
        '"fc3.bias". \n\tUnexpected key(s) in state_dict: "fc4.weight". \n  at ')
    assert "test_nn_module.py:" in str(info.value) and "HINT: pass strict=False" in str(info.value)
    result = net.load_state_dict(state, strict=False)
    assert result.missing_keys == ["fc3.bias"] and result.unexpected_keys == ["fc4.weight"]
    np.testing.assert_array_equal(net.fc1.weight.detach().numpy(), state["fc1.weight"].numpy())
    # a size mismatch is an error even when not strict
    state["fc2.bias"] = graphc.zeros(3)
    with pytest.raises(RuntimeError, match="size mismatch for fc2.bias"):
        net.load_state_dict(state, strict=False)


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear)
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is seq[0]
    seq.append(nn.Sigmoid())
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear", "Sigmoid"]
    with pytest.raises(IndexError, match="index 9 is out of range"):
        seq[9]
    from collections import OrderedDict
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert list(dict(named.named_children())) == ["fc", "act"] and named.fc is named[0]

    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.ReLU())
    layers += [nn.Tanh()]
    assert len(layers) == 5 and len(list(layers.parameters())) == 6
    assert repr(layers).splitlines()[1] == "  (0-2): 3 x Linear(in_features=2, out_features=2, bias=True)"
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2

    table = nn.ModuleDict({"a": nn.Linear(1, 1), "b": nn.ReLU()})
    table["c"] = nn.Tanh()
    assert list(table.keys()) == ["a", "b", "c"] and "b" in table and len(table) == 3
    assert [n for n, _ in table.named_parameters()] == ["a.weight", "a.bias"]

    plist = nn.ParameterList([nn.Parameter(graphc.ones(2)), graphc.zeros(3)])
    assert [n for n, _ in plist.named_parameters()] == ["0", "1"] and isinstance(plist[1], nn.Parameter)
    pdict = nn.ParameterDict({"w": nn.Parameter(graphc.ones(2))})
    assert [n for n, _ in pdict.named_parameters()] == ["w"]


def test_pickle_module():
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    x = graphc.randn(4, 2)
    net(x)
    twin = pickle.loads(pickle.dumps(net))
    assert isinstance(twin[0].weight, nn.Parameter) and twin[0].weight.requires_grad
    with graphc.no_grad():
        np.testing.assert_array_equal(twin(x).numpy(), net(x).numpy())


def test_deepcopy_module():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    twin = copy.deepcopy(net)
    with graphc.no_grad():
        twin[0].weight.fill_(1.0)
    assert not np.all(net[0].weight.detach().numpy() == 1.0)
    assert isinstance(twin[0].weight, nn.Parameter)
    assert twin[1].running_var is not net[1].running_var
