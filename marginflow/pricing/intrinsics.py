"""LLVM operations Numba does not expose, as intrinsics that vectorise: a multiply-add rounded
once (``llvm.fma``) and the reinterpretation of a float's bits as an integer and back (an
LLVM bitcast), in float64 and float32. The pricing kernels build their exponentials and
logarithms from them; Numba's own ``math.exp`` is a libm call LLVM cannot vectorise, and a
Python ``a * b + c`` may or may not be fused depending on the flags of the caller."""

from __future__ import annotations

from typing import Any

from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.extending import intrinsic

__all__ = ["bits_of_f32", "bits_of_f64", "f32_of_bits", "f64_of_bits", "fma_f32", "fma_f64"]


def _fma(t: Any) -> Any:
    """a · b + c in Numba type ``t``, rounded once."""

    def impl(typingctx, a, b, c):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            lt = context.get_value_type(t)
            fn = builder.module.declare_intrinsic("llvm.fma", [lt], ir.FunctionType(lt, [lt] * 3))
            return builder.call(fn, args)

        return t(t, t, t), codegen

    impl.__name__ = f"fma_{t}"
    return intrinsic(impl)


def _bitcast(source: Any, target: Any) -> Any:
    """The bits of a ``source`` value read as a ``target`` (types of the same width)."""

    def impl(typingctx, value):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            return builder.bitcast(args[0], context.get_value_type(target))

        return target(source), codegen

    impl.__name__ = f"{target}_of_{source}"
    return intrinsic(impl)


fma_f64: Any = _fma(types.float64)
fma_f32: Any = _fma(types.float32)
bits_of_f64: Any = _bitcast(types.float64, types.int64)
f64_of_bits: Any = _bitcast(types.int64, types.float64)
bits_of_f32: Any = _bitcast(types.float32, types.int32)
f32_of_bits: Any = _bitcast(types.int32, types.float32)
