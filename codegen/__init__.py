"""codegen: kernel IR -> source text (C, and CUDA with a launch manifest)."""
from codegen.kernel_ir import (Accumulate, Buffer, Const, Declare, Gemm, If, Kernel, Let, Load, Loop, Op,
                               Program, Store, Var)
from codegen.render_c import render_program
from codegen.render_cuda import Launch, render_cuda_program

__all__ = ["Accumulate", "Buffer", "Const", "Declare", "Gemm", "If", "Kernel", "Launch", "Let", "Load", "Loop",
           "Op", "Program", "Store", "Var", "render_cuda_program", "render_program"]
