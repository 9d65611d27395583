"""Differential fuzzing soak: random programs compiled by the C backend against the interpreter.

    python -m tests.fuzz --graphs 10000 [--seed N] [--max-seconds S] [--jobs J] [--batch B]
    python -m tests.fuzz --target cuda-emulator        the generated CUDA, run by tests/cuda_emulator.py
    python -m tests.fuzz --mode compiled --graphs 500  graphc.compile'd functions against running them
                                                       uncompiled (tests/compiled_programs.py)

Program k of seed N is drawn from its own seeded generator, so `--seed N --only k` replays it.
Several independent programs are gathered into one graph (`--batch`), since compiling dominates.
On a mismatch or a crash the failing program is minimized (delta debugging: fewer steps, smaller
shapes, simpler op variants, no differentiation, keeping each change that still fails the same way)
and printed as a stand-alone graphc script. The exit status is 1 when anything failed.
Compiled programs go to a temporary build cache unless `GRAPHC_CACHE_DIR` is set, so a soak does
not fill the user's cache with thousands of one-off builds.

`--mode compiled` soaks random compiled-function programs instead: a step with tensor arguments,
captured tensors and floats, a module and optimizer, backward(), gradient accumulation, in-place
updates, and changes the driver makes between calls, run through `graphc.compile` and uncompiled
from identical state; every result, `.grad`, parameter and optimizer state entry is compared after
each call. `--batch` is then the number of programs a worker process takes at a time. A program
that disagrees, or never replays although nothing changed between its calls, is minimized and
printed as a stand-alone script.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

if __package__:
    from . import compiled_programs, random_programs
else:   # imported by pytest, with tests/ on sys.path
    import compiled_programs
    import random_programs

RTOL = 1e-5
ATOL = 1e-5
MINIMIZE_ATTEMPTS = 400


# ---- running one graph both ways ----------------------------------------------------------------
# what runs the compiled side: the C backend, or the CUDA backend's source on the host emulator
# (matrix products by the tiled kernel, or as the runtime's library GEMM does them)
TARGETS = ("c", "cuda-emulator", "cuda-emulator-library-gemm")


def run_compiled(graph, bindings) -> list:
    """The compiled program's outputs (looked up at call time, so a test can wrap it); the target
    comes from GRAPHC_FUZZ_TARGET, which worker processes inherit."""
    target = os.environ.get("GRAPHC_FUZZ_TARGET", "c")
    if target == "c":
        from graphc.backends import c as c_backend
        return c_backend.CompiledGraph(graph)(bindings)
    if __package__:
        from .cuda_emulator import EmulatedCudaGraph
    else:
        from cuda_emulator import EmulatedCudaGraph
    return EmulatedCudaGraph(graph)(bindings, gemm_by_library=target == "cuda-emulator-library-gemm")


def difference(got, want) -> str | None:
    """Why a compiled output disagrees with the interpreter's, or None when it agrees."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"shape {list(got.shape)} != {list(want.shape)}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} != {want.dtype}"
    if want.size == 0:
        return None
    expected = want.astype(np.float64)
    actual = got.astype(np.float64)
    scale = max(1.0, float(np.nanmax(np.abs(expected)))) if np.isfinite(expected).any() else 1.0
    close = np.isclose(actual, expected, rtol=RTOL, atol=ATOL * scale, equal_nan=True)
    if close.all():
        return None
    worst = np.unravel_index(np.argmax(np.where(close, 0, np.abs(actual - expected) + 1)), want.shape)
    return (f"{int((~close).sum())} of {want.size} elements differ; at {list(map(int, worst))}: "
            f"compiled {actual[worst]!r}, interpreter {expected[worst]!r}")


@dataclass
class Failure:
    """How a group of programs failed: `signature` compares failures while minimizing."""
    signature: tuple          # ('mismatch',) or ('crash', stage, exception type)
    message: str
    culprits: list = field(default_factory=list)   # indices of the programs whose outputs differ


def check(programs: list) -> Failure | None:
    """Build `programs` into one graph, run it compiled and interpreted, compare every output."""
    from graphc import interpreter
    from graphc.schedule import build_graph
    stage = "build"
    try:
        builds = [random_programs.build(p) for p in programs]
        owners, nodes = [], []
        for k, built in enumerate(builds):
            for output in built.outputs:
                owners.append(k)
                nodes.append(output._node)
        gathered = build_graph(nodes)
        stage = "interpret"
        with np.errstate(all="ignore"):
            expected = interpreter.evaluate(gathered.graph, gathered.bindings)
        stage = "compile and run"
        compiled = run_compiled(gathered.graph, gathered.bindings)
    except Exception as error:   # a crash anywhere is a finding too
        return Failure(("crash", stage, type(error).__name__), f"{stage}: {type(error).__name__}: {error}")
    if len(compiled) != len(expected):
        return Failure(("crash", "compile and run", "OutputCount"),
                       f"{len(compiled)} compiled outputs for {len(expected)} graph outputs")
    culprits, messages = [], []
    for position, (got, want) in enumerate(zip(compiled, expected)):
        why = difference(got, want)
        if why is not None:
            k = owners[position]
            culprits.append(k)
            messages.append(f"program {k} output {builds[k].output_names[position - owners.index(k)]}: {why}")
    if culprits:
        return Failure(("mismatch",), "\n".join(messages), sorted(set(culprits)))
    return None


# ---- minimizing --------------------------------------------------------------------------------
def minimize(program, failure: Failure, attempts: int = MINIMIZE_ATTEMPTS):
    """The smallest program found that still fails like `failure` (greedy delta debugging: take
    the first simplification that keeps the failure, start again from it, stop at a fixpoint)."""
    tried = 0
    improved = True
    while improved and tried < attempts:
        improved = False
        for candidate in random_programs.simpler_variants(program):
            tried += 1
            found = check([candidate])
            if found is not None and found.signature == failure.signature:
                program, failure, improved = candidate, found, True
                break
            if tried >= attempts:
                break
    return program, failure


# ---- reproducers -------------------------------------------------------------------------------
def reproducer(programs: list, failure: Failure, origin: str) -> str:
    """A stand-alone script that rebuilds `programs` and compares compiled and interpreted runs."""
    lines = [f'"""graphc fuzz reproducer ({origin}): {failure.message.splitlines()[0]}', "",
             "Run it: python THIS_FILE.py (exit status 1 while compiled and interpreted results differ).",
             '"""', "import numpy as np", "", "import graphc", "from graphc import interpreter",
             "from graphc.backends.c import CompiledGraph", "from graphc.schedule import build_graph", ""]
    calls = []
    for k, program in enumerate(programs):
        built = random_programs.Built(program)
        try:
            random_programs.build(program, built)
        except Exception:   # the failure is building it: the script ends with the line that raises
            built.output_names = []
        lines.append(f"def program_{k}():")
        lines.append(f"    # {program.describe()}")
        for code in built.lines:
            lines.extend("    " + line for line in code.splitlines())
        lines.append(f"    return {{{', '.join(f'{n!r}: {n}' for n in built.output_names)}}}"
                     if built.output_names else "    return {}")
        lines.append("")
        calls.append(f"program_{k}()")
    lines += [
        "",
        "outputs = {}",
        *(f"outputs.update({{f'{k}.{{name}}': value for name, value in {call}.items()}})"
          for k, call in enumerate(calls)),
        "gathered = build_graph([tensor._node for tensor in outputs.values()])",
        "expected = interpreter.evaluate(gathered.graph, gathered.bindings)",
        "compiled = CompiledGraph(gathered.graph)(gathered.bindings)",
        "failed = False",
        "for name, got, want in zip(outputs, compiled, expected):",
        "    try:",
        "        scale = max(1.0, float(np.nanmax(np.abs(want)))) if np.size(want) else 1.0",
        "        np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),",
        f"                                   rtol={RTOL}, atol={ATOL} * scale)",
        "        print(f'{name}: compiled and interpreted agree')",
        "    except AssertionError as mismatch:",
        "        failed = True",
        "        print(f'{name}: MISMATCH{mismatch}')",
        "raise SystemExit(1 if failed else 0)",
    ]
    return "\n".join(lines) + "\n"


# ---- the soak ----------------------------------------------------------------------------------
def program_at(seed: int, index: int):
    """Program `index` of the soak with `seed` (its own generator: replayable alone)."""
    return random_programs.random_program(random.Random(f"graphc-fuzz:{seed}:{index}"))


@dataclass
class Finding:
    origin: str
    message: str
    minimized: list
    script: str


def check_batch(seed: int, indices: list) -> list:
    """Check programs `indices` of `seed` as one graph; minimize whatever fails. -> [Finding]
    (a failure of the soak's own machinery is reported as a finding too, never lost)"""
    try:
        return _check_batch(seed, indices)
    except Exception:
        import traceback
        return [Finding(f"--seed {seed}, programs {indices}",
                        "the fuzzer itself failed on these programs:\n" + traceback.format_exc(), [], "")]


def _check_batch(seed: int, indices: list) -> list:
    programs = [program_at(seed, k) for k in indices]
    failure = check(programs)
    if failure is None:
        return []
    findings = []
    for k, program in zip(indices, programs):
        alone = check([program])
        if alone is None:
            continue
        small, small_failure = minimize(program, alone)
        origin = f"--seed {seed} --only {k}{_target_flag()}"
        findings.append(Finding(origin, alone.message, [small],
                                reproducer([small], small_failure, origin)))
    if not findings:   # only fails together: drop programs while it still fails
        group = list(zip(indices, programs))
        for item in list(group):
            rest = [entry for entry in group if entry is not item]
            found = check([p for _, p in rest]) if rest else None
            if found is not None and found.signature == failure.signature:
                group, failure = rest, found
        origin = f"--seed {seed}, programs {[k for k, _ in group]} in one graph"
        findings.append(Finding(origin, failure.message, [p for _, p in group],
                                reproducer([p for _, p in group], failure, origin)))
    return findings


def _target_flag() -> str:
    target = os.environ.get("GRAPHC_FUZZ_TARGET", "c")
    return "" if target == "c" else f" --target {target}"


# ---- compiled-function programs (--mode compiled) ------------------------------------------------
def check_compiled_batch(seed: int, indices: list) -> list:
    """Check compiled-function programs `indices` of `seed`, one at a time; minimize what fails.
    -> [Finding] (a failure of the machinery itself is a finding too)"""
    findings = []
    for k in indices:
        origin = f"--mode compiled --seed {seed} --only {k}"
        try:
            finding = _check_compiled(compiled_programs.program_at(seed, k), origin)
        except Exception:
            import traceback
            finding = Finding(origin, "the fuzzer itself failed on this program:\n" + traceback.format_exc(), [], "")
        if finding is not None:
            findings.append(finding)
    return findings


def _check_compiled(program, origin: str):
    outcome = compiled_programs.check(program)
    if outcome.problems:
        small = compiled_programs.minimize(outcome)
        more = len(outcome.problems) - 1
        message = outcome.problems[0] + (f" (and {more} more disagreements)" if more else "")
        if small.program != program:
            message += f"\nminimized, it fails with: {small.problems[0]}"
        return Finding(origin, message, [small.program], compiled_programs.reproducer(small, origin))
    if outcome.replays < 1 and not program.expects_retraces:
        history = "; ".join(f"{entry['reason']} ({entry.get('note', 'kept')})" for entry in outcome.stats["history"])
        return Finding(origin, f"never replayed: {outcome.stats['traces']} traces for "
                               f"{outcome.stats['driver_calls']} calls, though nothing changed between "
                               f"calls: {history}", [program], compiled_programs.reproducer(outcome, origin))
    return None


def _replay_flags(worker) -> str:
    return " --mode compiled" if worker is check_compiled_batch else _target_flag()


def _worker_setup():
    os.environ.setdefault("GRAPHC_NUM_THREADS", "1")   # the soak's parallelism is its processes


def _progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None and sys.stderr.isatty():
        bar = tqdm(total=total, unit="graph", smoothing=0.05)
        return bar.update, bar.close
    state = {"done": 0, "shown": 0, "started": time.perf_counter()}

    def update(count):
        state["done"] += count
        if state["done"] - state["shown"] >= 500 or state["done"] == total:
            state["shown"] = state["done"]
            print(f"  {state['done']}/{total} programs, {time.perf_counter() - state['started']:.0f} s",
                  file=sys.stderr, flush=True)
    return update, lambda: None


def _parallel(batches: list, seed: int, jobs: int, deadline, worker=None):
    """Yield (batch, findings) from `jobs` worker processes running `worker` (default
    check_batch). A worker that dies (a crash in native code) breaks the pool: the batches it held
    are run again one by one in a fresh process, to name the one that kills it, and the soak goes
    on with a new pool."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool
    context = multiprocessing.get_context("spawn")
    worker = worker or check_batch

    def pool_of(size):
        return ProcessPoolExecutor(size, mp_context=context, initializer=_worker_setup)

    def isolated(group):
        with pool_of(1) as alone:
            try:
                return alone.submit(worker, seed, group).result()
            except BrokenProcessPool:
                replay = " or ".join(f"--seed {seed} --only {k}{_replay_flags(worker)}" for k in group)
                return [Finding(f"--seed {seed}, programs {group}",
                                f"the process checking these programs died (a crash in native code?); "
                                f"replay each alone: {replay}", [], "")]

    queue = list(batches)
    while queue:
        running, broken = {}, []
        with pool_of(jobs) as pool:
            while queue or running:
                while queue and len(running) < 2 * jobs and not broken and \
                        (deadline is None or time.perf_counter() < deadline):
                    group = queue.pop(0)
                    running[pool.submit(worker, seed, group)] = group
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    group = running.pop(future)
                    try:
                        yield group, future.result()
                    except BrokenProcessPool:
                        broken.append(group)
        for group in broken:
            yield group, isolated(group)
        if deadline is not None and time.perf_counter() > deadline:
            return


def soak(graphs: int, seed: int, max_seconds: float | None = None, jobs: int = 1, batch: int = 8,
         only: int | None = None, progress: bool = True, mode: str = "graphs") -> dict:
    """Check `graphs` programs of `seed` (or just program `only`). -> summary with the findings.
    `mode` "compiled" checks compiled-function programs (compiled_programs.py) instead."""
    worker = check_compiled_batch if mode == "compiled" else check_batch
    started = time.perf_counter()
    indices = [only] if only is not None else list(range(graphs))
    batches = [indices[i:i + batch] for i in range(0, len(indices), batch)]
    update, close = _progress(len(indices)) if progress else (lambda n: None, lambda: None)
    findings, done = [], 0
    deadline = None if max_seconds is None else started + max_seconds
    if jobs <= 1:
        for group in batches:
            if deadline is not None and time.perf_counter() > deadline:
                break
            findings.extend(worker(seed, group))
            done += len(group)
            update(len(group))
    else:
        for group, found in _parallel(batches, seed, jobs, deadline, worker):
            findings.extend(found)
            done += len(group)
            update(len(group))
    close()
    return {"programs": done, "seconds": time.perf_counter() - started, "findings": findings,
            "seed": seed}


def report(summary: dict, out=print, save_dir: str | None = None) -> None:
    findings = summary["findings"]
    for number, finding in enumerate(findings):
        out(f"\n=== finding {number + 1}: {finding.origin}\n{finding.message}")
        if finding.minimized:
            out(f"minimized: {finding.minimized[0].describe() if len(finding.minimized) == 1 else finding.minimized}")
        if finding.script:
            out("---- reproducer ----\n" + finding.script + "---- end ----")
            if save_dir:
                os.makedirs(save_dir, exist_ok=True)
                path = os.path.join(save_dir, f"repro_seed{summary['seed']}_{number + 1}.py")
                with open(path, "w") as handle:
                    handle.write(finding.script)
                out(f"(saved as {path})")
    out(f"{summary['programs']} programs (seed {summary['seed']}) in {summary['seconds']:.1f} s: "
        f"{len(findings)} failing")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--graphs", type=int, default=1000, help="programs to check (default 1000)")
    parser.add_argument("--seed", type=int, default=None, help="soak seed (default: random, printed)")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop starting new work after this")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--mode", choices=("graphs", "compiled"), default="graphs",
                        help="graphs: compiled graphs against the interpreter (default); compiled: "
                             "graphc.compile'd functions against running them uncompiled")
    parser.add_argument("--batch", type=int, default=None,
                        help="independent programs per compiled graph (default 8); with --mode compiled, "
                             "programs per worker task (default 4)")
    parser.add_argument("--only", type=int, default=None, help="check program ONLY of the seed alone")
    parser.add_argument("--save", default=None, help="directory to write reproducer scripts into")
    parser.add_argument("--target", choices=TARGETS, default="c",
                        help="what runs the compiled side (default c; the CUDA emulator needs g++)")
    args = parser.parse_args(argv)
    if args.mode == "compiled" and args.target != "c":
        parser.error("--mode compiled runs the C backend only (no --target)")
    batch = args.batch or (4 if args.mode == "compiled" else 8)
    os.environ["GRAPHC_FUZZ_TARGET"] = args.target
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 31)
    print(f"graphc fuzz: seed {seed}, {args.graphs if args.only is None else 1} programs, "
          f"{args.jobs} job(s), batches of {batch}, "
          + ("mode compiled" if args.mode == "compiled" else f"target {args.target}"), flush=True)
    temporary = None
    if "GRAPHC_CACHE_DIR" not in os.environ:
        temporary = tempfile.mkdtemp(prefix="graphc-fuzz-cache-")
        os.environ["GRAPHC_CACHE_DIR"] = temporary
    try:
        summary = soak(args.graphs, seed, args.max_seconds, args.jobs, batch, args.only, mode=args.mode)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    report(summary, save_dir=args.save)
    return 1 if summary["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
