"""The GPU reference path: MADDNESS encode + decode on a GPU, bit-exact with emulator/golden.py.

Two implementations of the same contract (docs/gpu.md):

* ``triton``: the kernels of :mod:`emulator.gpu_kernels` (a fused encode+decode kernel, and
  separate encode / decode kernels). With no CUDA GPU they run in the Triton interpreter:
  importing :mod:`emulator.gpu_kernels` sets ``TRITON_INTERPRET=1`` when no GPU is visible
  and the variable is unset (it must be set before triton is imported).
* ``torch``: :mod:`emulator.gpu_torch`, plain torch ops on any device; the fallback where
  Triton is not installed.

``impl="auto"`` picks Triton when it imports, else torch.

Both take the same host-prepared tables (:func:`prepare`): the thresholds as int32 *order
keys* (fp16 bit patterns mapped so that integer order is IEEE order with ``-0 == +0``), the
LUT transposed to (C, K, M) so one row's look-ups are contiguous over output columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from emulator import gpu_torch
from emulator.runner import BackendBase, Cell, LayerModel, RowsSession, RunResult
from learning.errors import HalutError
from learning.program import HardwareProgram
from learning.validate import as_float_matrix

IMPLS: tuple[str, ...] = ("auto", "triton", "torch")
MODES: tuple[str, ...] = ("auto", "fused", "split")
MAX_BLOCK = 1024


# ---- host-side tables ------------------------------------------------------------------
def order_keys(values: np.ndarray) -> np.ndarray:
    """int32 keys whose integer order is the value order of fp16 or int8 ``values``.

    fp16: bits ``b`` (as int16) map to ``-(b & 0x7fff)`` when the sign is set, else ``b``:
    ``-0`` and ``+0`` both give 0, subnormals and infinities keep their exact order (NaN
    has no key; programs and features never hold one). int8: the value itself.

    Parameters
    ----------
    values : array of float16 or int8, any shape

    Returns
    -------
    int32 array of the same shape
    """
    if values.dtype == np.float16:
        bits = values.view(np.int16).astype(np.int32)
        mag = bits & 0x7FFF
        return np.where(bits < 0, -mag, mag).astype(np.int32)
    if values.dtype == np.int8:
        return values.astype(np.int32)
    raise HalutError(f"order keys need float16 or int8 values, got {values.dtype}")


@dataclass(frozen=True, eq=False)
class PreparedProgram:
    """A program's tables on one torch device, in the layout the kernels read.

    dims (C, L) int32; thr_keys (C, K-1) int32; lut_t (C, K, M) int8 | float16;
    scale, bias (M,) float32; input_scale (1,) float32.
    """

    program: HardwareProgram
    device: torch.device
    dims: torch.Tensor
    thr_keys: torch.Tensor
    lut_t: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor
    input_scale: torch.Tensor

    @property
    def fp16_features(self) -> bool:
        return self.program.threshold_format == "fp16"

    @property
    def fp16_lut(self) -> bool:
        return self.program.lut_format == "fp16"


def prepare(program: HardwareProgram, device: str | torch.device | None = None
            ) -> PreparedProgram:
    """Copy ``program``'s tables to ``device`` (default: CUDA when available, else CPU)."""
    if not isinstance(program, HardwareProgram):
        raise HalutError(f"expected a HardwareProgram, got {type(program).__name__}")
    dev = resolve_device(device)

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, order="C", copy=True)).to(dev)

    return PreparedProgram(
        program=program, device=dev,
        dims=put(program.dims.astype(np.int32)),
        thr_keys=put(order_keys(program.thresholds)),
        lut_t=put(np.transpose(program.lut, (1, 2, 0))),
        scale=put(program.scale), bias=put(program.bias),
        input_scale=put(np.array([program.input_scale], dtype=np.float32)))


# ---- choices: device, implementation, blocks -------------------------------------------
def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device; None means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise HalutError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HalutError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    return dev


def triton_kernels() -> ModuleType | None:
    """:mod:`emulator.gpu_kernels` when Triton imports, else None."""
    try:
        from emulator import gpu_kernels
    except ImportError:
        return None
    return gpu_kernels


def resolve_impl(impl: str) -> str:
    """``"triton"`` or ``"torch"`` for ``impl`` in :data:`IMPLS`."""
    if impl not in IMPLS:
        raise HalutError(f"unknown GPU implementation {impl!r}; choose one of {', '.join(IMPLS)}")
    if impl == "torch":
        return "torch"
    if triton_kernels() is None:
        if impl == "triton":
            raise HalutError("Triton is not installed (pip install triton); "
                             "use impl='torch' for the torch implementation")
        return "torch"
    return "triton"


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def default_blocks(N: int, M: int, interpreted: bool) -> tuple[int, int]:
    """(BLOCK_N, BLOCK_M): few large programs in the interpreter, register-sized on a GPU.

    The interpreter's cost is per launched program and per op, so it gets row blocks of up
    to 1024 (measured: 4096 rows x C = 32 took 3.7 s with 1024-row blocks, 45.7 s with 64)."""
    if interpreted:
        return min(MAX_BLOCK, _next_pow2(N)), min(64, _next_pow2(M))
    return 64, min(128, max(16, _next_pow2(M)))


def _check_block(name: str, value: int) -> int:
    if (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1
            or value > MAX_BLOCK or value & (value - 1)):
        raise HalutError(f"{name} must be a power of two between 1 and {MAX_BLOCK}, got {value!r}")
    return int(value)


# ---- inputs --------------------------------------------------------------------------
def activations(program: HardwareProgram, A: Any, device: torch.device) -> torch.Tensor:
    """Validated activations on ``device``: (N, D) float32, or float16 when given as a
    float16 torch tensor (every float16 is exact in float32, so nothing changes)."""
    if isinstance(A, torch.Tensor) and A.device.type != "cpu":
        t = A.detach()
        if t.dtype not in (torch.float16, torch.float32, torch.float64):
            raise HalutError(f"activations must be a float array (float16/32/64), "
                             f"got dtype {t.dtype}")
        if t.ndim != 2:
            raise HalutError(f"activations must be a 2-D matrix, got shape {tuple(t.shape)}")
        if t.numel() == 0:
            raise HalutError(f"activations is empty (shape {tuple(t.shape)})")
        if t.shape[1] != program.D:
            raise HalutError(f"activations must have {program.D} columns, "
                             f"got shape {tuple(t.shape)}")
        bad = torch.nonzero(~torch.isfinite(t))
        if bad.shape[0]:
            r, c = (int(v) for v in bad[0])
            kind = "NaN" if bool(torch.isnan(t[r, c])) else "inf"
            raise HalutError(f"activations hold {kind} at row {r}, column {c} "
                             "(the accelerator takes finite values only)")
        if t.dtype == torch.float64:
            t = t.to(torch.float32)
        return t.to(device).contiguous()
    if isinstance(A, torch.Tensor):
        A = A.detach().numpy()
    A32 = as_float_matrix(A, "activations", cols=program.D)
    return torch.from_numpy(A32).to(device)


def _codes_tensor(program: HardwareProgram, codes: Any, device: torch.device) -> torch.Tensor:
    arr = np.asarray(codes.detach().cpu() if isinstance(codes, torch.Tensor) else codes)
    if not np.issubdtype(arr.dtype, np.integer):
        raise HalutError(f"codes must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != program.C or arr.shape[0] == 0:
        raise HalutError(f"codes must have shape (N, C={program.C}) with N >= 1, "
                         f"got {arr.shape}")
    if arr.min() < 0 or arr.max() >= program.K:
        raise HalutError(f"codes must lie in [0, K={program.K}), got range "
                         f"[{arr.min()}, {arr.max()}]")
    return torch.from_numpy(arr.astype(np.uint8)).to(device)


# ---- the two implementations -----------------------------------------------------------
def _triton_ready(device: torch.device) -> ModuleType:
    k = triton_kernels()
    if k is None:
        raise HalutError("Triton is not installed (pip install triton); use impl='torch'")
    if device.type != "cuda" and not k.INTERPRETED:
        raise HalutError("Triton kernels need a CUDA GPU; without one set TRITON_INTERPRET=1 "
                         "before triton is first imported, or use impl='torch'")
    return k


def _blocks(N: int, M: int, interpreted: bool, block_n: int | None,
            block_m: int | None) -> tuple[int, int]:
    bn, bm = default_blocks(N, M, interpreted)
    return (bn if block_n is None else _check_block("block_n", block_n),
            bm if block_m is None else _check_block("block_m", block_m))


def _launch_options(num_warps: int | None) -> dict[str, Any]:
    """Launch options beyond the kernel's arguments (the interpreter ignores them)."""
    return {} if num_warps is None else {"num_warps": int(num_warps)}


def triton_encode(prep: PreparedProgram, A: torch.Tensor, block_n: int,
                  num_warps: int | None = None) -> torch.Tensor:
    """(N, C) uint8 codes on the device (Triton encode kernel); ``num_warps`` None is
    Triton's default (4)."""
    k = _triton_ready(prep.device)
    p = prep.program
    N = A.shape[0]
    codes = torch.empty((N, p.C), dtype=torch.uint8, device=prep.device)
    with np.errstate(all="ignore"):  # the interpreter's numpy casts warn on fp16 overflow
        k.encode_kernel[(k.cdiv(N, block_n),)](
            A, A.stride(0), prep.dims, prep.thr_keys, codes, N, p.C, p.input_scale,
            L=p.L, K=p.K, FP16_FEAT=prep.fp16_features, BLOCK_N=block_n, enable_fp_fusion=False,
            **_launch_options(num_warps))
    return codes


def triton_decode(prep: PreparedProgram, codes: torch.Tensor, block_n: int, block_m: int,
                  write_acc: bool = True, num_warps: int | None = None
                  ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(acc, y) on the device from (N, C) uint8 codes (Triton decode kernel)."""
    return _launch_lut_kernel(prep, "decode_kernel", codes.shape[0], block_n, block_m,
                              write_acc, (codes,), (), **_launch_options(num_warps))


def triton_fused(prep: PreparedProgram, A: torch.Tensor, block_n: int, block_m: int,
                 write_acc: bool = True, num_warps: int | None = None
                 ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(acc, y) on the device straight from activations (fused Triton kernel)."""
    p = prep.program
    return _launch_lut_kernel(prep, "fused_kernel", A.shape[0], block_n, block_m, write_acc,
                              (A, A.stride(0), prep.dims, prep.thr_keys), (p.input_scale,),
                              L=p.L, FP16_FEAT=prep.fp16_features,
                              **_launch_options(num_warps))


def _launch_lut_kernel(prep: PreparedProgram, name: str, N: int, block_n: int, block_m: int,
                       write_acc: bool, head: tuple[Any, ...], tail: tuple[Any, ...],
                       **consts: Any) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Allocate (acc, y) and launch ``decode_kernel`` or ``fused_kernel`` on N rows.

    The kernel's arguments are ``*head, lut_t, scale, bias, acc, y, N, M, C, *tail``, its
    constants K, FP16_LUT, WRITE_ACC, BLOCK_N, BLOCK_M plus ``consts`` (which may also hold
    launch options such as ``num_warps``); the grid is
    (N / block_n, M / block_m). Without ``write_acc`` the acc pointer is y's (never stored to).
    """
    k = _triton_ready(prep.device)
    p = prep.program
    acc, y = _outputs(prep, N, write_acc)
    with np.errstate(all="ignore"):  # the interpreter's numpy casts warn on fp16 overflow
        getattr(k, name)[(k.cdiv(N, block_n), k.cdiv(p.M, block_m))](
            *head, prep.lut_t, prep.scale, prep.bias, y if acc is None else acc, y, N, p.M, p.C,
            *tail, K=p.K, FP16_LUT=prep.fp16_lut, WRITE_ACC=write_acc, BLOCK_N=block_n,
            BLOCK_M=block_m, enable_fp_fusion=False, **consts)
    return acc, y


def _outputs(prep: PreparedProgram, N: int, write_acc: bool
             ) -> tuple[torch.Tensor | None, torch.Tensor]:
    acc_dtype = torch.float32 if prep.fp16_lut else torch.int32
    M = prep.program.M
    acc = torch.empty((N, M), dtype=acc_dtype, device=prep.device) if write_acc else None
    return acc, torch.empty((N, M), dtype=torch.float32, device=prep.device)


def torch_encode(prep: PreparedProgram, A: torch.Tensor) -> torch.Tensor:
    """(N, C) int64 codes on the device (torch implementation)."""
    gpu_torch.check_no_flush(prep.device)
    p = prep.program
    return gpu_torch.encode(A.to(torch.float32), prep.dims.to(torch.int64), prep.thr_keys, p.L,
                            prep.fp16_features, prep.input_scale)


def torch_decode(prep: PreparedProgram, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(acc, y) on the device (torch implementation)."""
    gpu_torch.check_no_flush(prep.device)
    return gpu_torch.decode(codes.to(torch.int64), prep.lut_t, prep.scale, prep.bias,
                            prep.fp16_lut)


# ---- public entry points ----------------------------------------------------------------
def _info(impl: str, device: torch.device, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"impl": impl, "device": str(device)}
    if impl == "triton":
        k = triton_kernels()
        info["interpreted"] = bool(k is not None and k.INTERPRETED)
    info.update(extra)
    return info


def run_gpu(program: HardwareProgram, A: Any, *, impl: str = "auto",
            device: str | torch.device | None = None, mode: str = "auto",
            block_n: int | None = None, block_m: int | None = None) -> RunResult:
    """Run ``program`` on activations ``A`` with the GPU reference path.

    Parameters
    ----------
    program : HardwareProgram
    A : (N, D) float16/32/64 numpy array or torch tensor, finite
    impl : "auto" (Triton if importable, else torch), "triton" or "torch"
    device : torch device; default CUDA when available, else CPU (Triton interpreter)
    mode : Triton only: "fused" (one kernel, codes stay in registers), "split" (encode
        kernel writes uint8 codes, decode kernel reads them), or "auto" (fused when one
        column block covers M, else split)
    block_n, block_m : Triton block sizes (powers of two); default from
        :func:`default_blocks`

    Returns
    -------
    RunResult with y (N, M) float32, acc (N, M) int32 | float32, backend "gpu" and
    info {"impl", "device", ...}
    """
    if not isinstance(program, HardwareProgram):
        raise HalutError(f"expected a HardwareProgram, got {type(program).__name__}")
    if mode not in MODES:
        raise HalutError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    which = resolve_impl(impl)
    dev = resolve_device(device)
    A_t = activations(program, A, dev)
    prep = prepare(program, dev)
    if which == "torch":
        acc_t, y_t = torch_decode(prep, torch_encode(prep, A_t))
        info = _info("torch", dev)
    else:
        k = _triton_ready(dev)
        bn, bm = _blocks(A_t.shape[0], program.M, k.INTERPRETED, block_n, block_m)
        if mode == "auto":
            mode = "fused" if bm >= program.M else "split"
        if mode == "fused":
            acc_o, y_t = triton_fused(prep, A_t, bn, bm)
        else:
            acc_o, y_t = triton_decode(prep, triton_encode(prep, A_t, bn), bn, bm)
        assert acc_o is not None
        acc_t = acc_o
        info = _info("triton", dev, mode=mode, block_n=bn, block_m=bm)
    return RunResult(y=y_t.cpu().numpy(), acc=acc_t.cpu().numpy(), backend="gpu", info=info)


class GpuBackend(BackendBase):
    """The GPU reference path as a backend object; options are :func:`run_gpu`'s (impl,
    device, mode, block_n, block_m)."""

    name = "gpu"

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - {"impl", "device", "mode", "block_n", "block_m"}
        if unknown:
            raise HalutError(f"unknown gpu option(s) {sorted(unknown)}")
        self.options = options

    def options_key(self) -> dict[str, Any]:
        return {k: str(v) for k, v in self.options.items()}

    def open(self, layer: LayerModel) -> RowsSession:
        program = layer.need_program(self.name)
        info: dict[str, Any] = {}

        def cell(A: np.ndarray) -> Cell:
            r = run_gpu(program, A, **self.options)  # one call per row tile
            info.update(r.info)
            assert r.acc is not None
            return Cell(y=r.y, acc=r.acc)

        return RowsSession(cell, info)


def encode(program: HardwareProgram, A: Any, *, impl: str = "auto",
           device: str | torch.device | None = None, block_n: int | None = None) -> np.ndarray:
    """Codes of activations ``A`` (N, D): (N, C) int32 in [0, K), as golden.encode gives."""
    which = resolve_impl(impl)
    dev = resolve_device(device)
    prep = prepare(program, dev)
    A_t = activations(program, A, dev)
    if which == "torch":
        codes = torch_encode(prep, A_t)
    else:
        k = _triton_ready(dev)
        bn, _ = _blocks(A_t.shape[0], program.M, k.INTERPRETED, block_n, None)
        codes = triton_encode(prep, A_t, bn)
    return codes.cpu().numpy().astype(np.int32)


def decode(program: HardwareProgram, codes: Any, *, impl: str = "auto",
           device: str | torch.device | None = None, block_n: int | None = None,
           block_m: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Accumulate and dequantize codes (N, C) in [0, K): (acc (N, M) int32 | float32,
    y (N, M) float32), as golden.accumulate and golden.dequantize give."""
    which = resolve_impl(impl)
    dev = resolve_device(device)
    prep = prepare(program, dev)
    codes_t = _codes_tensor(program, codes, dev)
    if which == "torch":
        acc_t, y_t = torch_decode(prep, codes_t)
    else:
        k = _triton_ready(dev)
        bn, bm = _blocks(codes_t.shape[0], program.M, k.INTERPRETED, block_n, block_m)
        acc_o, y_t = triton_decode(prep, codes_t, bn, bm)
        assert acc_o is not None
        acc_t = acc_o
    return acc_t.cpu().numpy(), y_t.cpu().numpy()
