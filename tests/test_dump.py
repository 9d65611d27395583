"""`graphc dump` and `graphc cache`, run as a user runs them: `python -m graphc ...` in a subprocess."""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from graphc import dtypes
from graphc.ir.graph import Graph
from graphc.passes.autodiff import backward_graph
from graphc.passes.simplify import simplify

SCRIPT = textwrap.dedent("""\
    import sys
    import graphc
    from graphc import nn, optim

    graphc.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    @graphc.compile
    def train_step(x, y):
        optimizer.zero_grad()
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        return loss

    x, y = graphc.randn(16, 4), graphc.randint(0, 3, (16,))
    for step in range(3):
        loss = train_step(x, y)
    print("loss", float(loss), "args", sys.argv[1:])
    train_step.variants[0].graph.save(sys.argv[1])   # what the compiler received, to compare with
    with graphc.no_grad():
        for _ in range(2):   # realized lazily: interpreted once, compiled when the structure recurs
            print("lazy", (model(x) * 2).sum().item())
    """)
LOSS_LINE = "loss = criterion(logits, y)"
STAGE_HEADERS = ("| trace |", "| autograd |", "| simplify |", "| fuse |", "| memory |", "| c |")


def graphc_command(*args, cache_dir, cwd, env=None):
    environment = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir), GRAPHC_COMPILE_AFTER="1")
    environment.pop("GRAPHC_DUMP", None)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "graphc", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


def saved_graph() -> Graph:
    graph = Graph()
    x = graph.placeholder("x", (4, 3), dtypes.float32)
    w = graph.placeholder("w", (3, 2), dtypes.float32)
    product = graph.call("matmul", [x, w], where="model.py:3")
    zero = graph.call("expand", [graph.constant(0.0, dtypes.float32)], shape=(4, 2))
    relu = graph.call("maximum", [product, zero], where="model.py:4")
    graph.output(graph.call("sum", [relu], axes=(0, 1), keepdims=False, where="model.py:5"))
    full, _ = backward_graph(graph, graph.outputs[0])
    return full


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A script and a saved graph, dumped once with --out (every stage and format)."""
    root = tmp_path_factory.mktemp("dump")
    (root / "train.py").write_text(SCRIPT)
    saved_graph().save(root / "saved.json")
    cache = root / "cache"
    result = graphc_command("dump", "train.py", "--out", "out", "--", "original.json", cache_dir=cache, cwd=root)
    assert result.returncode == 0, result.stderr
    return root, cache, result, kept_step(root / "out")


def kept_step(directory) -> int:
    """The index of the replayed train_step graph. Graphs are numbered in compile order, and with
    a warm cache graphc.compile also compiles the first trace (run once, not kept)."""
    graphs = json.loads((directory / "summary.json").read_text())["graphs"]
    return [g["index"] for g in graphs if g["name"] == "train_step" and g["kept"]][-1]


def test_out_writes_every_stage_and_a_summary(work):
    root, _, result, step = work
    out, g = root / "out", f"graph{step}"
    assert f"graph {step}: train_step (graphc.compile variant)" in result.stdout
    assert "lazily realized graph" in result.stdout          # the no_grad line, compiled lazily
    assert "args ['original.json']" in result.stderr          # the script's output goes to stderr
    for stage in ("trace", "autograd", "simplify", "fuse"):
        for extension in ("txt", "json", "dot"):
            assert (out / f"{g}.{stage}.{extension}").is_file()
    for name in (f"{g}.memory.txt", f"{g}.memory.json", f"{g}.c", f"{g}.c.json", "summary.txt", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())["graphs"][step]
    assert summary["origin"] == "graphc.compile" and summary["name"] == "train_step"
    assert summary["nodes"]["backward"] > 0 and summary["nodes"]["update"] > 0
    assert summary["kernels"] == len(summary["fused"]) > 1
    assert summary["arena_bytes"] > 0 and summary["cache"] in ("hit", "miss")


def test_json_round_trips_to_the_compiled_graphs(work):
    root, _, _, step = work
    out = root / "out" / f"graph{step}"
    original = Graph.load(root / "original.json")
    assert Graph.load(f"{out}.trace.json") == original
    assert Graph.load(f"{out}.autograd.json") == original
    assert Graph.load(f"{out}.simplify.json") == simplify(original)[0]
    fuse = json.loads(open(f"{out}.fuse.json").read())
    members = {m for kernel in fuse["kernels"] for m in kernel["members"]}
    assert members <= {node["id"] for node in fuse["nodes"]}
    parts = json.loads(open(f"{out}.autograd.json").read())["parts"]
    assert {"input", "forward", "backward", "update"} == set(parts.values())


def test_dot_parses_with_kernels_as_clusters(work):
    pydot = pytest.importorskip("pydot")
    root, _, _, step = work
    out = root / "out" / f"graph{step}"
    fuse = json.loads(open(f"{out}.fuse.json").read())
    graph = pydot.graph_from_dot_data(open(f"{out}.fuse.dot").read())[0]   # (pydot parses slowly: two files)
    assert len(graph.get_subgraphs()) == len(fuse["kernels"])
    assert len(graph.get_nodes()) >= len(fuse["nodes"]) and graph.get_edges()
    autograd = pydot.graph_from_dot_data(open(f"{out}.autograd.dot").read())[0]
    assert [s.get_label() for s in autograd.get_subgraphs()] == ['"forward"', '"backward"', '"update"']


def test_dumped_c_source_compiles(work, tmp_path):
    import runtime
    root, _, _, step = work
    source = (root / "out" / f"graph{step}.c").read_text()
    assert "graphc_entry" in source and LOSS_LINE in (root / "out" / f"graph{step}.fuse.txt").read_text()
    artifact = runtime.CCompiler(blas=True).compile(source, cache=runtime.BuildCache(tmp_path / "fresh"))
    assert not artifact.cache_hit and artifact.path.is_file()


def test_dumped_cuda_source_compiles_with_nvrtc(work, tmp_path):
    import runtime
    if not runtime.NVRTCCompiler.available():
        pytest.skip("NVRTC is not installed (pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12)")
    root, _, _, step = work
    source = (root / "out" / f"graph{step}.cu").read_text()
    assert "train.py:14: " in source   # provenance comments name the user's lines, as in the C
    artifact = runtime.NVRTCCompiler(arch="sm_80").compile(source, cache=runtime.BuildCache(tmp_path / "fresh"))
    assert artifact.path.is_file()


def test_out_writes_build_sh_with_the_runtimes_build_commands(work, tmp_path):
    """build.sh (printed too) builds every dumped .c into a library with its entry point, with the
    include directory of cblas.h and OpenBLAS's link flags, and every .cu with nvcc where it is here."""
    import ctypes
    import shutil
    import runtime
    from graphc.backends.c import vector_flags
    from runtime.openblas import openblas_flags
    root, _, result, step = work
    out = root / "out"
    sources = sorted(out.glob("graph*.c"))
    assert "#include <cblas.h>" in (out / f"graph{step}.c").read_text()     # the step's matmuls call BLAS
    blas = openblas_flags()
    script = (out / "build.sh").read_text()
    assert f"-I{blas.include_dir}" in script and f"-l{blas.library}" in script
    assert os.access(out / "build.sh", os.X_OK)
    # the printed commands are the runtime's, for the files where they were written
    assert "`sh out/build.sh` builds the sources as graphc did:" in result.stdout
    options = {"blas": True, "extra_flags": vector_flags(), "sanitize": runtime.sanitize_requested()}
    printed = " ".join(runtime.c_build_command(f"out/graph{step}.c", f"out/graph{step}.so", **options))
    assert "  " + printed in result.stdout
    copy = shutil.copytree(out, tmp_path / "moved")        # the script builds where it is, run from anywhere
    built = subprocess.run(["sh", str(copy / "build.sh")], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    for source in sources:
        library = ctypes.CDLL(str(copy / f"{source.stem}.so"))
        assert library.graphc_entry is not None
    for cuda in sorted(copy.glob("graph*.cu")) if runtime.NvccCompiler.available() else ():
        ptx = (copy / f"{cuda.stem}.ptx").read_text()
        names = re.findall(r'extern "C" __global__ void __launch_bounds__\(\d+\) (\w+)\(', cuda.read_text())
        assert names and all(f".entry {name}(" in ptx for name in names), cuda.name


def test_stage_all_prints_every_stage_with_provenance(work):
    root, cache, _, _ = work
    result = graphc_command("dump", "train.py", "--stage", "all", "--", "again.json", cache_dir=cache, cwd=root)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    step = re.findall(r"graph (\d+): train_step \(graphc.compile variant\)", text)[-1]   # the replayed one
    for header in STAGE_HEADERS:
        assert f"=== graph {step} {header}" in text, header   # (the C header is a /* comment */)
    assert f"=== graph {step} | cuda |" in text and 'extern "C" __global__' in text   # the CUDA rendering
    assert "build cache hit" in text                                # compiled by the fixture's run
    assert f"from train.py:14  {LOSS_LINE}" in text                # kernels name the user's line
    assert "parameter 0.weight" in text and "optimizer state 'momentum_buffer'" in text
    assert "/* kernel_0" in text and "void graphc_entry" in text    # the C source as compiled


def test_stdout_json_and_dot(work):
    pydot = pytest.importorskip("pydot")
    root, cache, _, _ = work
    result = graphc_command("dump", "saved.json", "--format", "json", "--stage", "trace,memory",
                            cache_dir=cache, cwd=root)
    assert result.returncode == 0, result.stderr
    dumped = json.loads(result.stdout)["graphs"][0]
    assert Graph.from_dict(dumped["trace"]) == Graph.load(root / "saved.json")
    assert dumped["memory"]["format"] == "graphc-memory-plan-1"
    result = graphc_command("dump", "saved.json", "--format", "dot", "--stage", "fuse,trace",
                            cache_dir=cache, cwd=root)
    assert result.returncode == 0, result.stderr
    assert len(pydot.graph_from_dot_data(result.stdout)) == 2


def test_saved_graph_dump(work):
    root, cache, _, _ = work
    result = graphc_command("dump", "saved.json", "--stage", "all", "--out", "saved_out", "--format", "json",
                            cache_dir=cache, cwd=root)
    assert result.returncode == 0, result.stderr
    assert "saved graph saved.json" in result.stdout
    assert Graph.load(root / "saved_out" / "graph0.trace.json") == Graph.load(root / "saved.json")
    cuda = json.loads((root / "saved_out" / "graph0.cuda.json").read_text())
    assert cuda["language"] == "cuda" and cuda["launches"]
    assert all(f'__global__ void __launch_bounds__' in cuda["source"] or launch["name"] in cuda["source"]
               for launch in cuda["launches"])


def test_graph_option_picks_one_graph(work):
    root, cache, _, _ = work
    result = graphc_command("dump", "train.py", "--stage", "summary,trace", "--graph", "1", "--", "x.json",
                            cache_dir=cache, cwd=root)
    assert result.returncode == 0, result.stderr
    assert "graph 1: " in result.stdout and "=== graph 1 | trace |" in result.stdout
    assert "graph 0" not in result.stdout and "graph 2" not in result.stdout


def test_graphc_dump_environment_variable(work):
    root, cache, _, step = work
    environment = dict(os.environ, GRAPHC_CACHE_DIR=str(cache), GRAPHC_COMPILE_AFTER="1",
                       GRAPHC_DUMP=str(root / "env_dump"))
    result = subprocess.run([sys.executable, "train.py", "env.json"], cwd=root, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "GRAPHC_DUMP wrote" in result.stderr
    env_step = kept_step(root / "env_dump")
    assert Graph.load(root / "env_dump" / f"graph{env_step}.trace.json") == Graph.load(root / "env.json")
    assert (root / "env_dump" / f"graph{env_step}.c").read_text() == (root / "out" / f"graph{step}.c").read_text()


def test_cache_list_and_clear(work, tmp_path):
    root, _, _, _ = work
    cache = tmp_path / "cache"
    result = graphc_command("dump", "saved.json", "--stage", "summary", cache_dir=cache, cwd=root)
    assert "build cache miss" in result.stdout
    listing = graphc_command("dump", "--cache", cache_dir=cache, cwd=root)
    assert listing.returncode == 0 and f"build cache {cache}: 1 entries" in listing.stdout
    assert "shared-library" in listing.stdout
    cleared = graphc_command("cache", "clear", cache_dir=cache, cwd=root)
    assert cleared.returncode == 0 and "removed 1 entries" in cleared.stdout
    assert not list(cache.glob("pipelines/*/*.pickle"))   # stored compiler pipelines go too
    assert ": 0 entries" in graphc_command("cache", cache_dir=cache, cwd=root).stdout


@pytest.mark.parametrize("arguments, message", [
    (["dump", "saved.json", "--stage", "bogus"], "unknown stage 'bogus'"),
    (["dump", "missing.py"], "no such file: missing.py"),
    (["dump", "saved.json", "--graph", "3"], "--graph 3 is out of range"),
    (["dump", "saved.json", "--format", "svg"], "invalid choice: 'svg'"),
    (["dump", "train.py", "--graph", "x"], "invalid int value: 'x'"),
    (["cache", "nuke"], "invalid choice: 'nuke'"),
])
def test_bad_arguments_give_one_line_and_status_2(work, arguments, message):
    root, cache, _, _ = work
    result = graphc_command(*arguments, cache_dir=cache, cwd=root)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and message in lines[0], result.stderr


@pytest.mark.parametrize("command", [[], ["dump"], ["cache"]])
def test_help_explains_with_an_example(command, tmp_path):
    result = graphc_command(*command, "--help", cache_dir=tmp_path, cwd=tmp_path)
    assert result.returncode == 0
    assert "example" in result.stdout and "graphc" in result.stdout
