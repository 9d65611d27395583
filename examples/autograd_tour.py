"""A tour of graphc's autograd, following PyTorch's autograd tutorials step by step.

    python examples/autograd_tour.py

1. y = x + 2, z = y * y * 3, out = z.mean(), out.backward()       (x.grad is 4.5 everywhere)
2. requires_grad_() flips a tensor into the graph
3. vector-Jacobian products: y.backward(v) for a non-scalar y
4. external gradients: Q = 3a**3 - b**2, Q.backward(gradient=...)  (dQ/da = 9a**2, dQ/db = -2b)
5. no_grad(), detach(), and what is excluded from the graph
6. the grad_fn chain: out.grad_fn.next_functions, down to AccumulateGrad
7. the backward graph itself is a graph: create_graph=True gives second derivatives

Each result is checked against its closed form; the last line counts the checks that passed.
"""
from __future__ import annotations

import numpy as np

import graphc

from _common import check_arguments, parser_for, progress

CHECKS = {"passed": 0, "failed": []}


def check(label: str, actual, expected, atol: float = 1e-5) -> None:
    actual = actual.numpy() if isinstance(actual, graphc.Tensor) else np.asarray(actual)
    expected = expected.numpy() if isinstance(expected, graphc.Tensor) else np.asarray(expected)
    if actual.dtype.kind in "fc" or expected.dtype.kind in "fc":
        ok = actual.shape == expected.shape and np.allclose(actual, expected, atol=atol, rtol=1e-5)
    else:
        ok = actual.shape == expected.shape and bool(np.all(actual == expected))
    CHECKS["passed" if ok else "failed"] = CHECKS["passed"] + 1 if ok else CHECKS["failed"] + [label]
    print(f"  [{'ok' if ok else 'FAILED'}] {label}")


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


def print_grad_fn_chain(fn, depth: int = 0, seen=None) -> None:
    """Walk grad_fn.next_functions from the output back to the leaves, one line per function."""
    seen = set() if seen is None else seen
    if fn is None:
        print("  " * depth + "None (a constant or a tensor that does not require grad)")
        return
    name = type(fn).__name__ if not callable(getattr(fn, "name", None)) else fn.name()
    leaf = getattr(fn, "variable", None)
    suffix = f" -> leaf of shape {tuple(leaf.shape)}" if leaf is not None else ""
    if fn in seen:  # GradFn objects compare equal when they stand for the same node
        print("  " * depth + name + " (shared: its inputs are shown above)")
        return
    print("  " * depth + name + suffix)
    seen.add(fn)
    for next_fn, _ in fn.next_functions:
        print_grad_fn_chain(next_fn, depth + 1, seen)


def tour_basics() -> None:
    section("1. y = x + 2; z = y * y * 3; out = z.mean(); out.backward()")
    x = graphc.ones(2, 2, requires_grad=True)
    print("x =", x)
    y = x + 2
    print("y =", y)
    print("y.grad_fn =", y.grad_fn)
    z = y * y * 3
    out = z.mean()
    print("z =", z)
    print("out =", out)
    out.backward()
    print("x.grad =", x.grad)
    # out = 3/4 * sum((x + 2)^2), so d out / dx = 3/2 * (x + 2) = 4.5 at x = 1
    check("out == 27", out.detach(), np.float32(27.0))
    check("x.grad == 1.5 * (x + 2) == 4.5", x.grad, np.full((2, 2), 4.5, np.float32))


def tour_requires_grad() -> None:
    section("2. requires_grad_() changes a tensor's flag in place")
    a = graphc.randn(2, 2)
    a = (a * 3) / (a - 1)
    print("a.requires_grad =", a.requires_grad)
    a.requires_grad_(True)
    print("after a.requires_grad_(True):", a.requires_grad)
    b = (a * a).sum()
    print("b.grad_fn =", b.grad_fn)
    check("requires_grad_ turned a into a leaf that requires grad", [a.requires_grad, a.is_leaf], [True, True])
    b.backward()
    check("d sum(a*a) / da == 2a", a.grad, 2 * a.detach())


def tour_vector_jacobian() -> None:
    section("3. vector-Jacobian product: y.backward(v) for a non-scalar y")
    x = graphc.randn(3, requires_grad=True)
    y = x * 2
    doublings = 1
    while y.data.pow(2).sum().sqrt() < 1000:  # Tensor.norm() is not in graphc yet
        y = y * 2
        doublings += 1
    print("y =", y)
    v = graphc.tensor([0.1, 1.0, 0.0001], dtype=graphc.float32)
    y.backward(v)
    print("x.grad =", x.grad)
    # y = 2**k * x, so the vector-Jacobian product is v * 2**k
    check(f"x.grad == v * 2**{doublings}", x.grad, v * 2.0 ** doublings)
    try:
        (x * 2).backward()
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        print(f"backward() on a non-scalar without gradient= raises: {first_line}")
        check("non-scalar backward without a gradient raises", True, True)
    else:
        check("non-scalar backward without a gradient raises", False, True)


def tour_external_gradient() -> None:
    section("4. external gradients: Q = 3a**3 - b**2; Q.backward(gradient=ones)")
    a = graphc.tensor([2.0, 3.0], requires_grad=True)
    b = graphc.tensor([6.0, 4.0], requires_grad=True)
    Q = 3 * a ** 3 - b ** 2
    print("Q =", Q)
    external_grad = graphc.tensor([1.0, 1.0])
    Q.backward(gradient=external_grad)
    print("9 * a**2 == a.grad:", (9 * a ** 2 == a.grad).detach())
    print("-2 * b == b.grad:", (-2 * b == b.grad).detach())
    check("a.grad == 9a**2 == [36, 81]", a.grad, np.array([36.0, 81.0], np.float32))
    check("b.grad == -2b == [-12, -8]", b.grad, np.array([-12.0, -8.0], np.float32))


def tour_no_grad_and_detach() -> None:
    section("5. no_grad(), detach(), and exclusion from the graph")
    x = graphc.randn(3, requires_grad=True)
    print("x.requires_grad =", x.requires_grad)
    print("(x ** 2).requires_grad =", (x ** 2).requires_grad)
    with graphc.no_grad():
        print("inside no_grad(): (x ** 2).requires_grad =", (x ** 2).requires_grad)
        inside = (x ** 2).requires_grad
    y = x.detach()
    print("y = x.detach(): y.requires_grad =", y.requires_grad)
    print("x.eq(y).all() =", bool(x.eq(y).all()))
    check("no_grad results and detach() do not require grad", [inside, y.requires_grad], [False, False])
    check("detach() keeps the values", y, x.detach().numpy())

    p, q = graphc.rand(5, 5), graphc.rand(5, 5)
    r = graphc.rand(5, 5, requires_grad=True)
    print("a = p + q requires grad?", (p + q).requires_grad, "  b = p + r requires grad?", (p + r).requires_grad)
    check("only operations on tensors that require grad are recorded", [(p + q).requires_grad, (p + r).requires_grad],
          [False, True])

    model = graphc.nn.Linear(4, 3)
    for parameter in model.parameters():
        parameter.requires_grad_(False)     # freeze, as when fine-tuning a pretrained model
    model.head = graphc.nn.Linear(3, 2)     # a new layer's parameters require grad by default
    out = model.head(model(graphc.randn(5, 4))).sum()
    out.backward()
    frozen = [p.grad is None for name, p in model.named_parameters() if not name.startswith("head")]
    print("frozen parameters have no grad:", all(frozen),
          " head.weight.grad shape:", tuple(model.head.weight.grad.shape))
    check("frozen parameters get no gradient; the new head does", [all(frozen), model.head.weight.grad is not None],
          [True, True])


def tour_grad_fn_chain() -> None:
    section("6. the grad_fn chain, from the output back to the leaves")
    x = graphc.ones(2, 2, requires_grad=True)
    y = x + 2
    out = (y * y * 3).mean()
    print("out.grad_fn =", out.grad_fn)
    print("out.grad_fn.next_functions =", out.grad_fn.next_functions)
    print_grad_fn_chain(out.grad_fn)
    names = []
    fn = out.grad_fn
    while fn is not None and fn.next_functions:
        names.append(type(fn).__name__ if not callable(getattr(fn, "name", None)) else fn.name())
        fn = fn.next_functions[0][0]
    check("first functions of the chain: Mean, Mul, Mul", names[:3], ["MeanBackward0", "MulBackward0", "MulBackward0"])


def tour_second_derivative() -> None:
    section("7. create_graph=True: the gradient is itself differentiable")
    x = graphc.tensor([0.5, 1.0, 2.0], requires_grad=True)
    y = (x ** 3).sum()
    (grad,) = graphc.autograd.grad(y, x, create_graph=True)
    print("dy/dx = 3x**2 =", grad.detach())
    (second,) = graphc.autograd.grad(grad.sum(), x)
    print("d2y/dx2 = 6x =", second)
    check("first derivative 3x**2", grad.detach(), 3 * x.detach() ** 2)
    check("second derivative 6x", second, 6 * x.detach())


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    graphc.manual_seed(args.seed)
    tours = [tour_basics, tour_requires_grad, tour_vector_jacobian, tour_external_gradient,
             tour_no_grad_and_detach, tour_grad_fn_chain, tour_second_derivative]
    # no bar here: the tour prints as it goes, and a bar would interleave with it
    for tour in progress(tours, enabled=False):
        tour()
    total = CHECKS["passed"] + len(CHECKS["failed"])
    if CHECKS["failed"]:
        print(f"\nautograd tour: {CHECKS['passed']}/{total} checks passed; failed: {', '.join(CHECKS['failed'])}")
        raise SystemExit(1)
    print(f"\nautograd tour: {CHECKS['passed']}/{total} checks passed")


if __name__ == "__main__":
    main()
