"""Triton kernels of the GPU reference path (the numeric contract of docs/numeric-contract.md).

Importing this module decides how Triton runs: Triton has no CPU backend, so when no CUDA
GPU is visible and ``TRITON_INTERPRET`` is unset, this module sets ``TRITON_INTERPRET=1``
*before* it imports triton and decorates its kernels (``triton.jit`` reads the variable at
decoration time). The kernels then run in the Triton interpreter (numpy, about 1 M
elements/s): bit-exact, for tests, not for speed. Set ``TRITON_INTERPRET=0`` yourself to
forbid the interpreter (a run without a GPU then fails with a clear error in emulator/gpu.py).

Kernels (all take host-prepared tables from :func:`emulator.gpu.prepare`):

* ``encode_kernel``  A (N, D) -> codes (N, C) uint8
* ``decode_kernel``  codes (N, C) -> acc (N, M) int32|float32 (optional) and y (N, M) float32
* ``fused_kernel``   A -> acc, y with the codes kept in registers (never written to memory)

Arithmetic, mirroring emulator/golden.py:

* features are compared as integer *order keys*: fp16 bits ``b`` map to ``-(b & 0x7fff)``
  when the sign is set, else ``b`` (so ``-0 == +0``, subnormals and infinities are ordered
  exactly, with no floating-point compare that a flush-to-zero mode could change); int8
  features are their value. Thresholds arrive as keys made the same way on the host.
* int8 conversion: ``float32(x) * input_scale``, saturate to [-128, 127], then round half to
  even with the fp32 magic number ``1.5 * 2**23`` (exact for ``|s| < 2**22``).
* accumulation: a sequential ``for c in range(C)`` loop, fp32 adds from +0.0 (fp16 LUT) or
  int32 adds (int8 LUT); no reduction primitive touches the codebook axis.
* dequantization: ``y = float32(acc) * scale + bias``, two rounded operations; launches pass
  ``enable_fp_fusion=False`` so no FMA is formed.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

import torch

if not torch.cuda.is_available() and "TRITON_INTERPRET" not in os.environ:
    os.environ["TRITON_INTERPRET"] = "1"

import triton  # noqa: E402  (must follow the TRITON_INTERPRET decision above)
import triton.language as tl  # noqa: E402

#: True when the kernels below were decorated for the Triton interpreter (CPU).
INTERPRETED: bool = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

# 1.5 * 2**23: adding and subtracting it rounds an fp32 value with |x| < 2**22 to an integer,
# ties to even (the fp32 add itself rounds to nearest even at unit spacing).
RNE_MAGIC = 12582912.0


@triton.jit
def _feature_keys(x, input_scale, FP16_FEAT: tl.constexpr):
    """fp32 activations (any shape) -> int32 order keys of the converted features."""
    if FP16_FEAT:
        h = x.to(tl.float16)  # round to nearest even, overflow to inf, subnormals kept
        b = h.to(tl.int16, bitcast=True).to(tl.int32)  # sign-extended bit pattern
        mag = b & 0x7FFF
        key = tl.where(b < 0, -mag, mag)
    else:
        s = (x * input_scale).to(tl.float32)
        s = tl.minimum(tl.maximum(s, -128.0), 127.0)
        r = (s + 12582912.0) - 12582912.0
        key = r.to(tl.int32)
    return key


@triton.jit
def _codebook_codes(a_ptr, stride_an, rows64, row_mask, dims_ptr, thr_ptr, c, input_scale,
                    L: tl.constexpr, K: tl.constexpr, FP16_FEAT: tl.constexpr):
    """Codes (BLOCK_N,) int32 of codebook ``c`` for the given rows: walk the heap tree."""
    code = tl.full(rows64.shape, 0, tl.int32)
    for level in tl.static_range(L):
        d = tl.load(dims_ptr + c * L + level)
        x = tl.load(a_ptr + rows64 * stride_an + d, mask=row_mask, other=0.0).to(tl.float32)
        key = _feature_keys(x, input_scale, FP16_FEAT)
        node = (1 << level) - 1 + code
        t = tl.load(thr_ptr + c * (K - 1) + node)
        code = 2 * code + (key > t).to(tl.int32)
    return code


@triton.jit
def _store_outputs(acc, rows64, cols, row_mask, col_mask, scale_ptr, bias_ptr, acc_ptr, y_ptr,
                   M, WRITE_ACC: tl.constexpr):
    """Dequantize ``y = float32(acc) * scale + bias`` and store y (and acc)."""
    scale = tl.load(scale_ptr + cols, mask=col_mask, other=0.0)
    bias = tl.load(bias_ptr + cols, mask=col_mask, other=0.0)
    prod = acc.to(tl.float32) * scale[None, :]
    y = prod + bias[None, :]
    offs = rows64[:, None] * M + cols[None, :]
    mask = row_mask[:, None] & col_mask[None, :]
    tl.store(y_ptr + offs, y, mask=mask)
    if WRITE_ACC:
        tl.store(acc_ptr + offs, acc, mask=mask)


@triton.jit
def encode_kernel(a_ptr, stride_an, dims_ptr, thr_ptr, codes_ptr, N, C, input_scale,
                  L: tl.constexpr, K: tl.constexpr, FP16_FEAT: tl.constexpr,
                  BLOCK_N: tl.constexpr):
    """codes[n, c] (uint8) for a block of BLOCK_N rows, every codebook."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    rows64 = rows.to(tl.int64)
    for c in range(C):
        code = _codebook_codes(a_ptr, stride_an, rows64, row_mask, dims_ptr, thr_ptr, c,
                               input_scale, L, K, FP16_FEAT)
        tl.store(codes_ptr + rows64 * C + c, code.to(tl.uint8), mask=row_mask)


@triton.jit
def _tile(N, M, FP16_LUT: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):
    """This program's rows64, row_mask, cols, col_mask and a zero accumulator.

    The accumulator is (BLOCK_N, BLOCK_M) float32 +0.0 for an fp16 LUT, else int32 0.
    """
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < N
    col_mask = cols < M
    rows64 = rows.to(tl.int64)
    if FP16_LUT:
        acc = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    else:
        acc = tl.full((BLOCK_N, BLOCK_M), 0, tl.int32)
    return rows64, row_mask, cols, col_mask, acc


@triton.jit
def _add_lut(acc, lut_ptr, c, code, cols, col_mask, M, K: tl.constexpr):
    """``acc + lut_t[c, code[n], cols]``: gather codebook ``c``'s LUT rows and add them."""
    offs = (c * K + code)[:, None] * M + cols[None, :]
    v = tl.load(lut_ptr + offs, mask=col_mask[None, :], other=0)
    return acc + v.to(acc.dtype)


@triton.jit
def decode_kernel(codes_ptr, lut_ptr, scale_ptr, bias_ptr, acc_ptr, y_ptr, N, M, C,
                  K: tl.constexpr, FP16_LUT: tl.constexpr, WRITE_ACC: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):
    """acc[n, m] = sum over c = 0..C-1 in order of lut[c, code[n, c], m]; then dequantize.

    ``lut_ptr`` points at the LUT transposed to (C, K, M) so a row's look-ups are contiguous
    in m.
    """
    rows64, row_mask, cols, col_mask, acc = _tile(N, M, FP16_LUT, BLOCK_N, BLOCK_M)
    for c in range(C):
        code = tl.load(codes_ptr + rows64 * C + c, mask=row_mask, other=0).to(tl.int32)
        acc = _add_lut(acc, lut_ptr, c, code, cols, col_mask, M, K)
    _store_outputs(acc, rows64, cols, row_mask, col_mask, scale_ptr, bias_ptr, acc_ptr, y_ptr,
                   M, WRITE_ACC)


@triton.jit
def fused_kernel(a_ptr, stride_an, dims_ptr, thr_ptr, lut_ptr, scale_ptr, bias_ptr, acc_ptr,
                 y_ptr, N, M, C, input_scale,
                 L: tl.constexpr, K: tl.constexpr, FP16_FEAT: tl.constexpr,
                 FP16_LUT: tl.constexpr, WRITE_ACC: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):
    """Encode and decode in one pass: each codebook's codes live only in registers."""
    rows64, row_mask, cols, col_mask, acc = _tile(N, M, FP16_LUT, BLOCK_N, BLOCK_M)
    for c in range(C):
        code = _codebook_codes(a_ptr, stride_an, rows64, row_mask, dims_ptr, thr_ptr, c,
                               input_scale, L, K, FP16_FEAT)
        acc = _add_lut(acc, lut_ptr, c, code, cols, col_mask, M, K)
    _store_outputs(acc, rows64, cols, row_mask, col_mask, scale_ptr, bias_ptr, acc_ptr, y_ptr,
                   M, WRITE_ACC)


def cdiv(a: int, b: int) -> int:
    return int(triton.cdiv(a, b))


def _compiled(kernel: str, *, fp16_features: bool, fp16_lut: bool, K: int, block_n: int,
              block_m: int, a_dtype: str, write_acc: bool, num_warps: int, arch: int) -> Any:
    """``triton.compile`` of one kernel ahead of time for CUDA ``sm_<arch>`` (no GPU needed)."""
    if INTERPRETED:
        raise RuntimeError("kernels were decorated for the interpreter; set TRITON_INTERPRET=0")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if a_dtype not in ("fp32", "fp16"):
        raise ValueError(f"a_dtype must be 'fp32' or 'fp16', got {a_dtype!r}")
    a = f"*{a_dtype}"
    lut = "*fp16" if fp16_lut else "*i8"
    acc = "*fp32" if fp16_lut else "*i32"
    L = int(K).bit_length() - 1
    table: dict[str, tuple[object, dict[str, str], dict[str, object]]] = {
        "encode_kernel": (encode_kernel, {
            "a_ptr": a, "stride_an": "i32", "dims_ptr": "*i32", "thr_ptr": "*i32",
            "codes_ptr": "*u8", "N": "i32", "C": "i32", "input_scale": "fp32"},
            {"L": L, "K": K, "FP16_FEAT": fp16_features, "BLOCK_N": block_n}),
        "decode_kernel": (decode_kernel, {
            "codes_ptr": "*u8", "lut_ptr": lut, "scale_ptr": "*fp32", "bias_ptr": "*fp32",
            "acc_ptr": acc, "y_ptr": "*fp32", "N": "i32", "M": "i32", "C": "i32"},
            {"K": K, "FP16_LUT": fp16_lut, "WRITE_ACC": write_acc, "BLOCK_N": block_n,
             "BLOCK_M": block_m}),
        "fused_kernel": (fused_kernel, {
            "a_ptr": a, "stride_an": "i32", "dims_ptr": "*i32", "thr_ptr": "*i32",
            "lut_ptr": lut, "scale_ptr": "*fp32", "bias_ptr": "*fp32", "acc_ptr": acc,
            "y_ptr": "*fp32", "N": "i32", "M": "i32", "C": "i32", "input_scale": "fp32"},
            {"L": L, "K": K, "FP16_FEAT": fp16_features, "FP16_LUT": fp16_lut,
             "WRITE_ACC": write_acc, "BLOCK_N": block_n, "BLOCK_M": block_m}),
    }
    fn, sig, consts = table[kernel]
    signature: dict[str, str] = {**sig, **{name: "constexpr" for name in consts}}
    src = ASTSource(fn=fn, signature=signature, constexprs=consts)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32),
                          options={"enable_fp_fusion": False, "num_warps": num_warps})


def compile_asm(kernel: str, *, fp16_features: bool = True, fp16_lut: bool = True, K: int = 16,
                block_n: int = 64, block_m: int = 64, a_dtype: str = "fp32",
                write_acc: bool = True, num_warps: int = 4, arch: int = 90,
                sass: bool = False) -> dict[str, str]:
    """PTX (and, with ``sass``, the SASS that ``ptxas`` made of it) of one kernel compiled
    ahead of time for CUDA ``sm_<arch>``, exactly as a launch with these arguments compiles
    it (``enable_fp_fusion=False``), but without a GPU.

    ``kernel`` is ``"encode_kernel"``, ``"decode_kernel"`` or ``"fused_kernel"``; ``a_dtype``
    the activations' type (``"fp32"``, or ``"fp16"`` for a float16 device tensor). The SASS
    comes from the ``cuobjdump`` in Triton's wheel. Only possible when the kernels were not
    decorated for the interpreter: run it in a process with ``TRITON_INTERPRET=0``.
    """
    compiled = _compiled(kernel, fp16_features=fp16_features, fp16_lut=fp16_lut, K=K,
                         block_n=block_n, block_m=block_m, a_dtype=a_dtype,
                         write_acc=write_acc, num_warps=num_warps, arch=arch)
    out = {"ptx": str(compiled.asm["ptx"])}
    if sass:
        out["sass"] = str(compiled.asm["sass"])
    return out


def compile_ptx(kernel: str, *, fp16_features: bool = True, fp16_lut: bool = True, K: int = 16,
                block_n: int = 64, block_m: int = 64, arch: int = 90, a_dtype: str = "fp32",
                write_acc: bool = True, num_warps: int = 4) -> str:
    """PTX of one kernel compiled ahead of time for CUDA ``sm_<arch>`` (no GPU needed).

    Used to check, without a GPU, what the compiled arithmetic is (no ``fma``, no ``.ftz``).
    Only possible when the kernels were not decorated for the interpreter: run it in a
    process with ``TRITON_INTERPRET=0``. See :func:`compile_asm` for the arguments.
    """
    return compile_asm(kernel, fp16_features=fp16_features, fp16_lut=fp16_lut, K=K,
                       block_n=block_n, block_m=block_m, a_dtype=a_dtype, write_acc=write_acc,
                       num_warps=num_warps, arch=arch)["ptx"]


_SASS_OP = re.compile(r"^\S+\t(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)")


def sass_opcodes(sass: str) -> Counter[str]:
    """Count of each SASS opcode (with its modifiers, e.g. ``FADD``, ``F2I.TRUNC.NTZ``) in
    ``cuobjdump -sass`` text as :func:`compile_asm` returns it."""
    ops: Counter[str] = Counter()
    for line in sass.splitlines():
        m = _SASS_OP.match(line.strip())
        if m:
            ops[m.group(1)] += 1
    return ops
