"""codegen: kernel IR -> source text (C today; CUDA templates extend the same skeleton)."""
from codegen.kernel_ir import (Accumulate, Buffer, Const, Declare, Gemm, If, Kernel, Let, Load, Loop, Op,
                               Program, Store, Var)
from codegen.render_c import render_program

__all__ = ["Accumulate", "Buffer", "Const", "Declare", "Gemm", "If", "Kernel", "Let", "Load", "Loop", "Op",
           "Program", "Store", "Var", "render_program"]
