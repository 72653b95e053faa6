"""GPU reference path throughput: Triton encode+decode against dense matmul and the traffic floor.

Shapes: N = 65536 rows, D = 512, C = 32, K = 16, M in {64, 512}, fp16 thresholds with int8
and fp16 LUTs. For each shape it times (median, L2 flushed, triton.testing.do_bench):

* the fused kernel and the split (encode -> uint8 codes -> decode) pair over a few block
  sizes, writing y only (inference) and y + acc (what run_gpu returns);
* torch.matmul of the same (N, D) x (D, M) in fp16 and in fp32 (TF32 off);
* a device-to-device copy of 1 GiB, whose bandwidth prices the traffic floor: the bytes the
  kernels must move (the 32-byte sectors of A holding the gathered features, the LUT, the
  outputs) over that bandwidth.

Targets on an H100: best kernel >= 50 % of the traffic floor, faster than fp16 matmul at
M = 512. Without a CUDA GPU it writes {"skipped": ...}. ``--cpu-smoke`` runs the same code
path on tiny shapes in the Triton interpreter and writes nothing (a check of this script).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from common import write_result

N_ROWS, D, C, K = 65536, 512, 32, 16
MS = (64, 512)
SECTOR = 32  # bytes per DRAM/L2 sector on NVIDIA GPUs


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """A function that returns the median milliseconds of a callable on ``device``."""
    if device.type == "cuda":
        import triton.testing

        def cuda_ms(fn: Callable[[], object]) -> float:
            return float(triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"))
        return cuda_ms

    def cpu_ms(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(times))
    return cpu_ms


def copy_bandwidth(device: torch.device, ms: Callable[[Callable[[], object]], float],
                   nbytes: int) -> float:
    """Bytes/s of a large device-to-device copy (read + write counted)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    t = ms(lambda: dst.copy_(src))
    return 2 * nbytes / (t * 1e-3)


def a_sector_bytes(dims: np.ndarray, n_rows: int, row_bytes: int, itemsize: int) -> int:
    """Bytes of the 32-byte sectors of A that hold the gathered features (rows start at
    multiples of ``row_bytes``, a multiple of 32 here)."""
    sectors = np.unique((dims.ravel().astype(np.int64) * itemsize) // SECTOR).size
    assert row_bytes % SECTOR == 0
    return n_rows * sectors * SECTOR


def bench_shape(M: int, N: int, device: torch.device, ms: Callable[[Callable[[], object]], float],
                bandwidth: float, lut_format: str, configs: list[tuple[int, int]]
                ) -> dict[str, Any]:
    from emulator import golden
    from emulator.gpu import activations, prepare, triton_decode, triton_encode, triton_fused
    from emulator.vectors import random_activations, random_program

    rng = np.random.default_rng(M)
    program = random_program(rng, C=C, K=K, M=M, D=D, threshold_format="fp16",
                             lut_format=lut_format)
    A_np = random_activations(rng, program, N)
    prep = prepare(program, device)
    A32 = activations(program, A_np, device)
    A16 = A32.to(torch.float16)
    lut_bytes = program.lut.nbytes
    acc_bytes = N * M * 4
    row: dict[str, Any] = {"M": M, "N": N, "threshold_format": "fp16", "lut_format": lut_format}

    # sanity: the timed kernels are the bit-exact ones
    sample = min(N, 512)
    g = golden.run(program, A_np[:sample])
    _, y = triton_fused(prep, A32[:sample], 64, min(64, 1 << (M - 1).bit_length()))
    row["bit_exact_sample"] = bool(np.array_equal(y.cpu().numpy().view(np.uint32),
                                                  g.y.view(np.uint32)))

    kernels: list[dict[str, Any]] = []
    for a_name, A in (("fp32", A32), ("fp16", A16)):
        a_bytes = a_sector_bytes(program.dims, N, D * A.element_size(), A.element_size())
        for write_acc in (False, True):
            out_bytes = acc_bytes * (2 if write_acc else 1)
            floor_ms = (a_bytes + lut_bytes + out_bytes) / bandwidth * 1e3
            for bn, bm in configs:
                if bm > max(16, 1 << (M - 1).bit_length()):
                    continue
                A_, bn_, bm_, wa = A, bn, bm, write_acc

                def fused(A_: torch.Tensor = A_, bn_: int = bn_, bm_: int = bm_,
                          wa: bool = wa) -> object:
                    return triton_fused(prep, A_, bn_, bm_, write_acc=wa)

                def split(A_: torch.Tensor = A_, bn_: int = bn_, bm_: int = bm_,
                          wa: bool = wa) -> object:
                    return triton_decode(prep, triton_encode(prep, A_, bn_), bn_, bm_,
                                         write_acc=wa)

                for mode, fn in (("fused", fused), ("split", split)):
                    t = ms(fn)
                    kernels.append({"mode": mode, "A": a_name, "write_acc": write_acc,
                                    "block_n": bn, "block_m": bm, "ms": t,
                                    "floor_ms": floor_ms, "floor_fraction": floor_ms / t,
                                    "rows_per_s": N / (t * 1e-3)})
    row["kernels"] = kernels

    B32 = torch.randn(D, M, device=device, dtype=torch.float32)
    B16 = B32.to(torch.float16)
    torch.backends.cuda.matmul.allow_tf32 = False
    row["matmul_fp32_ms"] = ms(lambda: torch.matmul(A32, B32))
    row["matmul_fp16_ms"] = ms(lambda: torch.matmul(A16, B16))

    def best(pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        return min((k for k in kernels if pred(k)), key=lambda k: k["ms"])

    row["best_y_only"] = best(lambda k: not k["write_acc"])
    row["best_fp32_input_y_only"] = best(lambda k: not k["write_acc"] and k["A"] == "fp32")
    row["best_with_acc"] = best(lambda k: k["write_acc"])
    row["speedup_vs_matmul_fp16"] = row["matmul_fp16_ms"] / row["best_y_only"]["ms"]
    row["speedup_vs_matmul_fp32"] = row["matmul_fp32_ms"] / row["best_y_only"]["ms"]
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny shapes in the Triton interpreter; writes no result file")
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        device = torch.device("cpu")
        from emulator import gpu_kernels  # noqa: F401  (sets TRITON_INTERPRET=1 first)
        ms = timer(device)
        bw = copy_bandwidth(device, ms, 1 << 22)
        rows = [bench_shape(M, 32, device, ms, bw, "int8", [(32, 16)]) for M in (8, 40)]
        assert all(r["bit_exact_sample"] for r in rows), rows
        print({"cpu_smoke": "ok", "rows": [(r["M"], len(r["kernels"])) for r in rows]})
        return
    if not torch.cuda.is_available():
        reason = ("no CUDA GPU: torch.cuda.is_available() is False; run "
                  "`.venv/bin/python bench/bench_gpu.py` on a machine with an NVIDIA GPU")
        print(f"bench_gpu skipped: {reason}", file=sys.stderr)
        write_result("gpu", {"skipped": reason})
        return
    try:
        from emulator import gpu_kernels  # noqa: F401
    except ImportError as exc:
        write_result("gpu", {"skipped": f"Triton does not import: {exc}"})
        return
    device = torch.device("cuda")
    ms = timer(device)
    bw = copy_bandwidth(device, ms, 1 << 30)
    configs = [(32, 64), (64, 64), (128, 64), (32, 128), (64, 128), (64, 256), (128, 128)]
    rows = []
    for lut_format in ("int8", "fp16"):
        for M in MS:
            rows.append(bench_shape(M, N_ROWS, device, ms, bw, lut_format, configs))
    h100_targets = {
        f"M={r['M']} lut={r['lut_format']}": {
            "floor_fraction_ge_0.5": r["best_y_only"]["floor_fraction"] >= 0.5,
            "faster_than_fp16_matmul": r["speedup_vs_matmul_fp16"] > 1.0,
        } for r in rows}
    write_result("gpu", {
        "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "triton": __import__("triton").__version__, "N": N_ROWS, "D": D, "C": C, "K": K,
        "copy_bandwidth_GBps": bw / 1e9, "results": rows, "targets": h100_targets})


if __name__ == "__main__":
    main()
