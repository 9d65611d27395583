"""A tour of graphc.trace and graphc.compile on a small train step.

    python examples/compile_tour.py                     # prints the traced graph, saves it as JSON
    python examples/compile_tour.py --out step.json --dot step.dot --plot loss.png

1. graphc.trace(train_step, x, y) returns the whole step as one static Graph: forward, loss,
   the backward derived by the autodiff pass, and the optimizer update. Nothing runs and no
   state changes. The graph prints as a table (one row per node: op, shape, dtype, inputs,
   attributes, and the line of this file that made it).
2. Graph.save writes it as JSON (Graph.load reads it back); Graph.to_dot gives Graphviz.
3. graphc.compile(train_step) traces once per input signature, compiles the graph to one native
   program and replays it; a new batch size is a new signature and traces again, with the reason
   recorded in stats().
The last line names the saved graph and the `graphc dump` command that shows it after each
compiler stage.
"""
from __future__ import annotations

import collections
import time

import numpy as np

import graphc
from graphc import nn, optim

from _common import Timer, add_common_arguments, check_arguments, log, parser_for, progress, save_plot


def blobs(rng, count: int, features: int = 4, classes: int = 3):
    """`count` points around `classes` random centres: a small, learnable classification problem."""
    centres = np.random.default_rng(1234).standard_normal((classes, features)) * 2.0
    labels = rng.integers(0, classes, count)
    points = centres[labels] + rng.standard_normal((count, features))
    return graphc.from_numpy(points.astype(np.float32)), graphc.from_numpy(labels.astype(np.int64))


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=200, help="compiled train steps to run (default 200)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--hidden", type=int, default=8, help="hidden units (default 8: a short table)")
    parser.add_argument("--out", default="step_graph.json", help="where to save the graph (default step_graph.json)")
    parser.add_argument("--dot", metavar="FILE", help="also write the graph as Graphviz DOT to FILE")
    parser.add_argument("--no-table", action="store_true", help="do not print the graph table")
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    if args.steps < 1 or args.batch_size < 2:
        parser.error("--steps must be at least 1 and --batch-size at least 2")

    graphc.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = nn.Sequential(nn.Linear(4, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 3))
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()

    def train_step(x, y):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    # 1. the whole step as one graph
    x, y = blobs(rng, args.batch_size)
    graph = graphc.trace(train_step, x, y)
    print(f"== graphc.trace(train_step, x, y): {len(graph)} nodes, {len(graph.outputs)} outputs")
    if not args.no_table:
        print(graph)
    counts = collections.Counter(node.op for node in graph.nodes())
    print("ops:", ", ".join(f"{op} x{n}" for op, n in counts.most_common()))
    print(f"outputs: the loss (%{graph.outputs[0]}), then the {len(graph.outputs) - 1} tensors the step updates "
          f"in place (parameters, gradients)")
    print("inputs:", ", ".join(f"{node.name} {list(node.shape)}" for node in graph.placeholders()))
    unchanged = all(p.grad is None for p in model.parameters())
    print(f"after trace: parameters untouched, gradients still None: {unchanged}")

    # 2. save, reload, DOT
    graph.save(args.out)
    reloaded = graphc.Graph.load(args.out)
    print(f"\n== Graph.save({args.out!r}); Graph.load gives an equal graph: {reloaded == graph}")
    if args.dot:
        with open(args.dot, "w") as handle:
            handle.write(graph.to_dot())
        print(f"DOT written to {args.dot} (render: dot -Tsvg {args.dot} -o step.svg)")

    # 3. compile and train
    print(f"\n== graphc.compile(train_step): {args.steps} steps on batches of {args.batch_size}")
    step = graphc.compile(train_step)
    losses, timer = [], Timer()
    started = time.perf_counter()
    bar = progress(range(args.steps), enabled=not args.no_progress, desc="train", unit="step")
    for i in bar:
        xb, yb = blobs(rng, args.batch_size)
        with timer:
            loss = step(xb, yb)
        losses.append(loss.item())
        if i % 50 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    total = time.perf_counter() - started
    stats = step.stats()
    traced = stats["traces"]
    log(f"{traced} call(s) traced: {', '.join(f'{1e3 * t:.1f} ms' for t in timer.times[:traced])}; the other "
        f"{args.steps - traced} replayed the compiled program: median {timer.median_ms():.3f} ms/step; "
        f"{args.steps} steps in {total:.2f} s")
    for entry in stats["history"]:
        reason = str(entry.get("reason", entry))
        log(f"  traced because: {reason if len(reason) <= 110 else reason[:107] + '...'}")
    log(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")

    # a new batch size is a new input signature: traced (and compiled) once more
    xb, yb = blobs(rng, args.batch_size // 2)
    step(xb, yb)
    reason = step.stats()["history"][-1]["reason"]
    print(f"a batch of {args.batch_size // 2}: traces {stats['traces']} -> {step.stats()['traces']} "
          f"(reason: {reason if len(reason) <= 110 else reason[:107] + '...'})")

    if args.plot:
        save_plot(args.plot, {"train loss": losses}, xlabel="step", title="compiled train step")
    print(f"graph saved to {args.out} ({len(graph)} nodes); inspect it after each compiler stage with: "
          f"graphc dump {args.out}")


if __name__ == "__main__":
    main()
