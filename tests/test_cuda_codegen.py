"""The CUDA renderer: every kernel of a corpus of graphs compiles for sm_80 and sm_90, every C
template of the op table compiles as CUDA, and the renderer maps loops onto the GPU as designed.
Needs no GPU.

Compilers: every test compiles with NVRTC where its wheel is installed, else with nvcc (the
runtime's own order, `find_cuda_compiler`). Where both are here (CI), nvcc also compiles a subset
chosen to reach every part of the prelude and every dtype: the op-table kernel (every elementwise
op on every dtype), `casts_and_integer_ops` (int32/int64/bool, checked indices),
`dropout_rand` (Philox, uint32/uint64), `grad:gather_scatter_add` (atomic adds),
`matmul_float64` (the double GEMM) and `mlp_train_step` (a whole train step), for sm_90 only:
nvcc takes ~0.5 s a kernel file where NVRTC takes ~0.1 s, and the two differ in their front end
(system headers), not in the architecture. The prelude's integer types are checked to be the
same types under both.
"""
from __future__ import annotations

import re

import pytest

import graphc
from codegen.kernel_ir import Buffer, Const, Gemm, Kernel, Let, Load, Loop, Op, Program, Store, Var
from codegen.render_cuda import GEMM_TILE, THREADS, render_cuda_program
from graphc import dtypes
from graphc.backends.c import compile_pipeline
from graphc.ops import ELEMENTWISE, table
from runtime import CompileError, NvccCompiler, NVRTCCompiler
from cuda_corpus import CORPUS

ARCHES = ("sm_80", "sm_90")
TOOLCHAINS = {"nvrtc": NVRTCCompiler, "nvcc": NvccCompiler}
NVCC_ARCH = "sm_90"
NVCC_SUBSET = ("casts_and_integer_ops", "dropout_rand", "grad:gather_scatter_add", "matmul_float64",
               "mlp_train_step")


def cuda_compiler(arch: str, toolchain: str = None):
    """The named compiler (the test is skipped where it is missing), or by default NVRTC where it
    can be loaded, else nvcc."""
    if toolchain is not None:
        if not TOOLCHAINS[toolchain].available():
            pytest.skip(f"{toolchain} is not here")
        return TOOLCHAINS[toolchain](arch=arch)
    if NVRTCCompiler.available():
        return NVRTCCompiler(arch=arch)
    if NvccCompiler.available():
        return NvccCompiler(arch=arch)
    pytest.skip("neither NVRTC (pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12) nor nvcc is here")


def nvcc_besides_nvrtc():
    """nvcc for the second pass, which runs only where NVRTC compiled everything first."""
    if not NVRTCCompiler.available():
        pytest.skip("no NVRTC: every test here already compiled with nvcc (or was skipped)")
    return cuda_compiler(NVCC_ARCH, "nvcc")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """A fresh build cache: every kernel is really compiled, never found from an earlier run."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cuda-cache"))


_rendered: dict = {}


def rendered(name: str):
    """(program IR, CUDA source, manifest) of a corpus graph, built once per session."""
    if name not in _rendered:
        _, program, _, _ = compile_pipeline(CORPUS[name]())
        source, manifest = render_cuda_program(program)
        _rendered[name] = (program, source, manifest)
    return _rendered[name]


def graph_of(function, *shapes, dtype=graphc.float32):
    return graphc.trace(function, *[graphc.randn(*s, dtype=dtype) for s in shapes])


def render(function, *shapes, dtype=graphc.float32):
    _, program, _, _ = compile_pipeline(graph_of(function, *shapes, dtype=dtype))
    source, manifest = render_cuda_program(program)
    return program, source, manifest


def function_text(source: str, name: str) -> str:
    start = source.index(f" {name}(\n")
    return source[start:source.index("\n}\n", start)]


# ---- every kernel of the corpus compiles ----------------------------------------------------------
def check_compiles(compiler, name: str):
    program, source, manifest = rendered(name)
    try:
        artifact = compiler.compile(source)
    except CompileError as error:
        pytest.fail(f"{name} does not compile with {compiler.toolchain} for {compiler.arch}:\n{error}")
    assert artifact.kind == "cubin" and artifact.read_bytes()[:4] == b"\x7fELF"
    functions = re.findall(r'extern "C" __global__ void __launch_bounds__\(\d+\) (\w+)\(', source)
    assert functions == [launch.name for launch in manifest]
    assert len(functions) >= len(program.kernels)
    # each launch's function symbol is in the cubin under its C name
    cubin = artifact.read_bytes()
    for launch in manifest:
        assert launch.name.encode() + b"\0" in cubin


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_compiles(name, arch):
    check_compiles(cuda_compiler(arch), name)


@pytest.mark.parametrize("name", NVCC_SUBSET)
def test_corpus_subset_compiles_with_nvcc_too(name):
    check_compiles(nvcc_besides_nvrtc(), name)


def prelude_probe() -> str:
    """A program's source (prelude included) with compile-time checks of its integer types appended."""
    buffers = [Buffer("x", "int64_t", 4, "input", 0), Buffer("y", "int64_t", 4, "output", 1)]
    body = [Loop("i", 4, [Store("y", Var("i"), Op("GRAPHC_MAX({0}, INT64_C(-3))", (Load("x", Var("i")),)))],
                 parallel=True)]
    source, _ = render_cuda_program(Program("probe", buffers, [Kernel("kernel_0", body, buffers=["x", "y"])]))
    return source + """
template <typename A, typename B> struct graphc_same { static const bool value = false; };
template <typename A> struct graphc_same<A, A> { static const bool value = true; };
static_assert(graphc_same<int64_t, long>::value && graphc_same<uint64_t, unsigned long>::value,
              "int64_t is glibc's (LP64) type");
static_assert(graphc_same<int32_t, int>::value && graphc_same<uint32_t, unsigned int>::value, "int32_t");
static_assert(graphc_same<int8_t, signed char>::value && graphc_same<uint8_t, unsigned char>::value, "int8_t");
static_assert(graphc_same<decltype(INT64_C(1)), int64_t>::value, "INT64_C makes an int64_t");
static_assert(graphc_same<decltype(INT64_MIN), int64_t>::value && INT64_MIN == -9223372036854775807 - 1, "INT64_MIN");
static_assert(INT32_MIN == -2147483647 - 1, "INT32_MIN");
"""


@pytest.mark.parametrize("toolchain", sorted(TOOLCHAINS))
def test_prelude_integer_types_are_the_same_under_every_compiler(toolchain):
    """NVRTC gets the prelude's own typedefs, nvcc the host's <stdint.h>: the same types either way
    (so the host's 8-byte int64 buffers and record are what kernels read, and overloads and
    template arguments resolve alike)."""
    cuda_compiler("sm_80", toolchain).compile(prelude_probe())


def test_every_op_template_compiles_as_cuda():
    """Each elementwise op's C template, with operands of every dtype the op accepts, in one kernel."""
    statements, buffers = [], []
    for op in sorted(table.OPS.values(), key=lambda o: o.name):
        if op.category != ELEMENTWISE:
            continue
        for dtype in dtypes.ALL:
            arity = len(set(re.findall(r"\{(\d)\}", op.c)))
            operand_types = [dtypes.bool_] + [dtype] * (arity - 1) if op.name == "where" else [dtype] * arity
            attrs = {"dtype": "float32"} if op.name == "cast" else {}
            try:
                _, result = op.infer([(4,)] * arity, operand_types, attrs)
            except ValueError:
                continue
            name = f"{op.name}_{dtype.name}"
            for position, operand_type in enumerate(operand_types):
                buffers.append(Buffer(f"{name}_in{position}", operand_type.c_type, 4, "input", len(buffers)))
            buffers.append(Buffer(f"{name}_out", result.c_type, 4, "output", len(buffers)))
            template = op.c.replace("{ctype}", result.c_type)
            args = tuple(Load(f"{name}_in{p}", Var("i")) for p in range(arity))
            statements.append(Store(f"{name}_out", Var("i"), Op(template, args)))
    assert len(statements) > 60
    program = Program("op_table", buffers, [Kernel("kernel_0", [Loop("i", 4, statements, parallel=True)],
                                                   buffers=[b.name for b in buffers])])
    source, _ = render_cuda_program(program)
    for arch in ARCHES:
        cuda_compiler(arch).compile(source)
    if NVRTCCompiler.available() and NvccCompiler.available():
        cuda_compiler(NVCC_ARCH, "nvcc").compile(source)


# ---- the renderer's mapping decisions -------------------------------------------------------------
def test_elementwise_is_one_thread_per_element_with_a_grid_stride_loop():
    program, source, manifest = render(lambda a, b: (a * b).exp() + b, (300, 70), (300, 70))
    (launch,) = manifest
    assert launch.block == (THREADS, 1, 1) and launch.shared_bytes == 0
    assert launch.blocks == -(-300 * 70 // THREADS) and launch.total_threads >= 300 * 70
    body = function_text(source, launch.name)
    assert "flat0 < 21000; flat0 += ((int64_t)gridDim.x * blockDim.x)" in body
    assert "const int64_t i1 = flat0 % 70;" in body and "const int64_t i0 = flat0 / 70;" in body
    assert launch.params == ("in0", "in1", "out0")
    assert "const float *__restrict__ in0" in body and "float *__restrict__ out0" in body


def test_softmax_is_one_block_per_row_with_block_reductions():
    program, source, manifest = render(lambda a: a.softmax(-1), (48, 500))
    (launch,) = manifest
    assert launch.grid == (48, 1, 1)
    assert launch.threads_per_block == 512 and launch.threads_per_block % 32 == 0
    assert launch.shared_bytes == 8 * 512 // 32
    body = function_text(source, launch.name)
    assert "flat0 = blockIdx.x; flat0 < 48; flat0 += gridDim.x" in body
    # max (with its NaN flag) and sum combined over the block; the normalize pass strided too
    assert body.count("graphc_block_reduce(") == 3
    assert "return (b > a ? b : a);" in body and "return a | b;" in body and "return a + b;" in body
    assert re.search(r"for \(int64_t flat\d+ = threadIdx.x; flat\d+ < 500; flat\d+ \+= blockDim.x\)", body)
    assert "__shfl_down_sync" in source


def test_full_reduction_is_one_block():
    program, source, manifest = render(lambda a: a.amax(), (70, 90))
    (launch,) = manifest
    assert launch.grid == (1, 1, 1) and launch.threads_per_block == 1024
    body = function_text(source, launch.name)
    assert "if (threadIdx.x == 0) out0[0] =" in body
    assert "(nan0 ? NAN : acc0)" in body


def test_matmul_with_epilogue_is_a_gemm_launch_then_a_pointwise_launch():
    program, source, manifest = render(lambda a, w: (a @ w).relu(), (40, 24), (24, 33))
    assert [launch.kernel for launch in manifest] == ["kernel_0", "kernel_1"]
    gemm, epilogue = manifest
    assert gemm.block == (GEMM_TILE, GEMM_TILE, 1)
    assert gemm.grid == (-(-33 // GEMM_TILE), -(-40 // GEMM_TILE), 1)
    assert "graphc_gemm<float, false, false>(in0 + 0, in1 + 0, t2 + 0," in function_text(source, gemm.name)
    assert epilogue.params == ("out0", "t2")


def test_convolution_splits_into_im2col_gemm_and_epilogue_in_order():
    program, source, manifest = render(lambda x, w: graphc.nn.functional.conv2d(x, w).relu(),
                                       (2, 3, 10, 10), (4, 3, 3, 3))
    conv = [launch for launch in manifest if launch.kernel == "kernel_0"]
    assert [launch.name for launch in conv] == ["kernel_0_0", "kernel_0_1"]
    assert "part 1 of 2" in conv[0].mapping and "tiled matmul C[4x64] = A[4x27] B[27x64], 2 batch" in conv[1].mapping
    assert conv[1].grid[2] == 2
    # every part carries the kernel's provenance comment
    for launch in conv:
        comment = source[:source.index(f" {launch.name}(\n")].rsplit("/*", 1)[1]
        assert "conv2d kernel writing" in comment and "test_cuda_codegen.py" in comment


def test_scatter_add_adds_atomically():
    program, source, manifest = rendered("grad:gather_scatter_add")
    assert re.search(r"graphc_atomic_add\(&t\d+\[", source) or re.search(r"graphc_atomic_add\(&out\d+\[", source)


def test_random_numbers_use_the_c_preludes_philox():
    program, source, manifest = rendered("dropout_rand")
    assert "graphc_uniform(" in source
    c_prelude = open("codegen/templates/prelude.c.jinja").read()
    rounds = re.search(r"for \(int round.*?\n  }\n", c_prelude, re.S).group(0)
    assert rounds in source   # the same rounds, constants and key schedule


def test_hand_written_gemm_edge_cases():
    buffers = [Buffer("a", "double", 12, "input", 0), Buffer("b", "double", 12, "input", 1),
               Buffer("c", "double", 16, "output", 2, restrict=False)]
    kernels = [Kernel("kernel_0", [Gemm("a", "b", "c", 4, 4, 0, False, False, 0, 4, 4, "double")],
                      buffers=["a", "b", "c"]),
               Kernel("kernel_1", [Gemm("a", "b", "c", 0, 4, 3, True, True, 0, 3, 4, "double")],
                      buffers=["a", "b", "c"]),
               Kernel("kernel_2", [Gemm("a", "b", "c", 2, 2, 3, True, False, 2, 2, 2, "double", batch=2,
                                        batch_stride_a=6, batch_stride_b=6, sum_batches=True)],
                      buffers=["a", "b", "c"])]
    source, manifest = render_cuda_program(Program("gemms", buffers, kernels))
    k_zero, empty, summed = manifest
    assert k_zero.blocks == 1                       # K == 0 still writes the zeros
    assert empty.blocks == 0                        # M == 0: nothing to launch
    assert summed.grid == (1, 1, 1) and "summed" in summed.mapping
    assert "double *c)" in function_text(source, "kernel_0")   # may alias: no __restrict__
    assert "graphc_gemm<double, true, false>(a + 0, b + 0, c + 0,\n      2, 2, 3, 2, 2, 2, 2, 6, 6, 0, true);" in source
    cuda_compiler("sm_80").compile(source)


def test_top_level_lets_are_recomputed_in_each_launch_that_reads_them():
    buffers = [Buffer("x", "float", 8, "input", 0), Buffer("y", "float", 8, "output", 1),
               Buffer("z", "float", 16, "output", 2)]
    scale = Let("scale", "float", Op("({0} * 2.0f)", (Load("x", Const("0")),)))
    body = [scale,
            Loop("i", 8, [Store("y", Var("i"), Op("({0} * {1})", (Load("x", Var("i")), Var("scale"))))], parallel=True),
            Loop("k", 16, [Store("z", Var("k"), Var("scale"))], parallel=True)]
    source, manifest = render_cuda_program(Program("lets", buffers, [Kernel("kernel_0", body, buffers=["x", "y", "z"])]))
    assert [launch.name for launch in manifest] == ["kernel_0_0", "kernel_0_1"]
    for launch in manifest:
        assert "const float scale = (x[0] * 2.0f);" in function_text(source, launch.name)
    assert manifest[1].params == ("x", "z")
    cuda_compiler("sm_90").compile(source)


def test_int32_max_reductions_are_built_with_ptxas_at_O0_and_others_are_not():
    """The workaround for a ptxas bug seen on an H100 (graphc/backends/cuda.py): an int32 min
    (a max over negated values) gets `-Xptxas -O0`; float and int64 reductions keep full ptxas."""
    from graphc.backends.cuda import ptxas_flags

    def source_for(dtype):
        values = graphc.arange(60).reshape(3, 4, 5).to(dtype)
        _, program, _, _ = compile_pipeline(graphc.trace(lambda x: x.amin(0), values))
        return render_cuda_program(program)[0]
    assert ptxas_flags(source_for(graphc.int32)) == ("-Xptxas", "-O0")
    assert ptxas_flags(source_for(graphc.int64)) == ptxas_flags(source_for(graphc.float32)) == ()
