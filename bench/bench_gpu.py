"""GPU reference path on a GPU: bit-exact with golden, timed against cuBLAS and the traffic floor.

For every shape (N rows in {16k, 256k, 1M}, D = 512, M in {64, 256, 1024}, C in {32, 64},
K = 16, fp16 thresholds, int8 and fp16 LUTs) it

1. checks the Triton encode, decode and fused kernels bit for bit: against golden
   (emulator/golden.py) on a sample of rows (start, middle, end), and over every element
   against each other and against the torch implementation of the same contract;
2. tunes (BLOCK_N, BLOCK_M, num_warps) of each kernel over a short list (median time);
3. times, with the best configuration (median of ``triton.testing.do_bench``, L2 flushed):
   fused (fp32 and fp16 activations; y only and y + acc), encode, decode (y only and
   y + acc), and split = encode + decode;
4. times ``torch.matmul`` of the same (N, D) x (D, M) in fp16 and in fp32 (cuBLAS, TF32
   off);
5. prices each kernel with the **traffic floor**: the bytes it must move (the 32-byte sectors
   of A that hold the gathered features, codes, the LUT, the outputs) over the bandwidth of a
   2 GiB device-to-device copy measured in the same run (read + write counted).

Reported per timed kernel: ms, bytes, achieved GB/s, ``floor_fraction`` (floor time / time =
achieved / copy bandwidth), ``op_floor_fraction`` (the fused floor, the least traffic the
layer needs, over the time) and the speed-up over fp16 and fp32 dense matmul. The SASS of
every binary launched is checked for FFMA and .FTZ (the no-FMA / no-flush rule).

The JSON goes to bench/results/gpu-<device>.json (written after each shape, so a run cut
short keeps what it measured). Target: the fused kernel at >= 50 % of the traffic floor at
N = 1M, M = 256. One command on a GPU machine: ``bash bench/gpu_device_check.sh``.

``--quick`` runs the same code on tiny shapes: in the Triton interpreter on a machine without
CUDA (a check of this script, seconds), compiled on a GPU. Without CUDA and without
``--quick`` it prints one line and exits 0 (so ``make bench`` passes on CPU machines).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import RESULTS  # also puts the repository root on sys.path

from learning.atomic import atomic_write_text

SECTOR = 32  # bytes per DRAM/L2 sector on NVIDIA GPUs
K = 16


@dataclass(frozen=True)
class Plan:
    """What one run measures."""

    ns: tuple[int, ...]
    D: int
    ms: tuple[int, ...]
    cs: tuple[int, ...]
    luts: tuple[str, ...]
    lut_configs: tuple[tuple[int, int, int | None], ...]  # (BLOCK_N, BLOCK_M, num_warps)
    encode_configs: tuple[tuple[int, int | None], ...]  # (BLOCK_N, num_warps)
    golden_rows: int
    copy_bytes: int
    rep_ms: int  # do_bench repetition time for the reported timings
    tune_rep_ms: int
    quick: bool = False


FULL = Plan(ns=(1 << 20, 1 << 18, 1 << 14), D=512, ms=(64, 256, 1024), cs=(32, 64),
            luts=("int8", "fp16"),
            lut_configs=((32, 64, 4), (64, 64, 4), (128, 64, 4), (64, 128, 4), (64, 128, 8),
                         (128, 128, 8), (64, 256, 8)),
            encode_configs=((64, 4), (128, 4), (256, 4), (256, 8)),
            golden_rows=2048, copy_bytes=2 << 30, rep_ms=60, tune_rep_ms=25)
# tiny shapes: ragged N, one and several column blocks, both LUT formats
QUICK = Plan(ns=(37,), D=24, ms=(8, 20), cs=(3,), luts=("int8", "fp16"),
             lut_configs=((16, 8, None), (32, 16, None)), encode_configs=((16, None), (64, None)),
             golden_rows=100, copy_bytes=1 << 22, rep_ms=1, tune_rep_ms=1, quick=True)


# ---- measurement helpers ---------------------------------------------------------------------
Timer = Callable[[Callable[[], object], int], float]


def make_timer(device: torch.device) -> Timer:
    """``ms(fn, rep_ms)``: median milliseconds of ``fn`` on ``device``."""
    if device.type == "cuda":
        import triton.testing

        def cuda_ms(fn: Callable[[], object], rep: int) -> float:
            return float(triton.testing.do_bench(fn, warmup=max(5, rep // 4), rep=rep,
                                                 return_mode="median"))
        return cuda_ms

    def cpu_ms(fn: Callable[[], object], rep: int) -> float:
        # one call: on CPU the kernels run in the interpreter, and only the script is checked
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    return cpu_ms


def copy_bandwidth(device: torch.device, ms: Timer, nbytes: int, rep: int) -> dict[str, float]:
    """Bytes/s of a large device-to-device copy, read + write counted."""
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    t = ms(partial(dst.copy_, src), rep)
    return {"bytes": float(nbytes), "ms": t, "Bps": 2 * nbytes / (t * 1e-3)}


def a_sector_bytes(dims: np.ndarray, n_rows: int, row_bytes: int, itemsize: int) -> int:
    """Bytes of the 32-byte sectors of A that hold the gathered features (row starts are
    multiples of ``row_bytes``, a multiple of 32 for the benchmark's D)."""
    sectors = np.unique((dims.ravel().astype(np.int64) * itemsize) // SECTOR).size
    if row_bytes % SECTOR:  # rows straddle sectors: count every sector a row touches
        return n_rows * math.ceil(row_bytes / SECTOR) * SECTOR
    return n_rows * sectors * SECTOR


def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def bits(t: torch.Tensor) -> torch.Tensor:
    """A tensor's elements as integers of the same width (compare bit patterns)."""
    return t.view(torch.int32) if t.dtype in (torch.float32, torch.int32) else t


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(bits(a), bits(b)))


def compiled_binaries() -> dict[str, Any]:
    """Every compiled Triton binary of the three kernels in this process, by hash (uses
    Triton's per-device kernel caches; empty where this Triton lays them out otherwise)."""
    from emulator import gpu_kernels as k
    out: dict[str, Any] = {}
    for name in ("encode_kernel", "decode_kernel", "fused_kernel"):
        caches = getattr(getattr(k, name), "device_caches", {})
        try:
            for entry in caches.values():
                for ck in entry[0].values():
                    out[f"{name}:{getattr(ck, 'hash', id(ck))}"] = ck
        except (AttributeError, TypeError, IndexError):
            continue
    return out


def binary_facts(key: str, ck: Any) -> dict[str, Any]:
    """num_warps, registers, spills, shared memory and the SASS check of one binary."""
    from emulator.gpu_kernels import sass_opcodes
    md = getattr(ck, "metadata", None)
    facts: dict[str, Any] = {"kernel": key.split(":")[0], "hash": key.split(":")[1][:16],
                             "num_warps": getattr(md, "num_warps", None),
                             "shared_bytes": getattr(md, "shared", None),
                             "n_regs": getattr(ck, "n_regs", None),
                             "n_spills": getattr(ck, "n_spills", None)}
    try:
        ops = sass_opcodes(str(ck.asm["sass"]))
        facts["sass_ffma"] = sum(v for op, v in ops.items() if op.startswith(("FFMA", "DFMA")))
        facts["sass_ftz"] = sum(v for op, v in ops.items() if ".FTZ" in op)
        facts["sass_loads"] = {op: v for op, v in sorted(ops.items()) if op.startswith("LDG")}
        facts["sass_local_memory"] = sum(v for op, v in ops.items()
                                         if op.startswith(("STL", "LDL")))
    except Exception as exc:  # no cuobjdump, another Triton layout, ...
        facts["sass_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return facts


# ---- programs and data ---------------------------------------------------------------------
def make_program(C: int, M: int, D: int, lut: str) -> Any:
    """Same dims and thresholds for every (M, lut) of a given C (random_program draws them
    first from the same seed), so one activation matrix serves all of them."""
    from emulator.vectors import random_program
    return random_program(np.random.default_rng(1000 + C), C=C, K=K, M=M, D=D,
                          threshold_format="fp16", lut_format=lut)


def device_activations(program: Any, N: int, device: torch.device, seed: int) -> torch.Tensor:
    """(N, D) float32 on the device, as emulator.vectors.random_activations makes them (normal
    values, ~15 % of the gathered features exactly on a threshold of their level), but drawn
    on the device (a 1M x 512 matrix in numpy would take seconds per shape)."""
    from emulator.vectors import threshold_as_float
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    A = torch.randn((N, program.D), generator=g, device=device, dtype=torch.float32)
    t = torch.from_numpy(threshold_as_float(program)).to(device)
    for c in range(program.C):
        for level in range(program.L):
            rows = torch.nonzero(torch.rand(N, generator=g, device=device) < 0.15)[:, 0]
            nodes = (1 << level) - 1 + torch.randint(0, 1 << level, (rows.numel(),),
                                                     generator=g, device=device)
            A[rows, int(program.dims[c, level])] = t[c, nodes]
    return A


def sample_rows(N: int, want: int) -> np.ndarray:
    """Row indices checked against golden: all rows, or three blocks (start, middle, end)."""
    if want >= N:
        return np.arange(N)
    r = want // 3
    mid = N // 2 - r // 2
    return np.concatenate([np.arange(r), np.arange(mid, mid + r), np.arange(N - r, N)])


# ---- one shape -------------------------------------------------------------------------------
class Shape:
    """Checks, tunes and times one (N, C, M, lut) shape."""

    def __init__(self, plan: Plan, N: int, C: int, M: int, lut: str, A32: torch.Tensor,
                 A16: torch.Tensor, device: torch.device, ms: Timer, bw: float,
                 matmul: dict[str, float]) -> None:
        from emulator.gpu import prepare
        self.plan, self.N, self.C, self.M, self.lut = plan, N, C, M, lut
        self.program = make_program(C, M, plan.D, lut)
        # the activations were drawn for this C's dims and thresholds (ties on thresholds)
        assert np.array_equal(self.program.dims, make_program(C, plan.ms[0], plan.D,
                                                              plan.luts[0]).dims)
        self.prep = prepare(self.program, device)
        self.A32, self.A16, self.ms, self.bw, self.matmul = A32, A16, ms, bw, matmul
        p = self.program
        self.lut_bytes = p.lut.nbytes
        self.out_bytes = N * M * 4
        self.codes_bytes = N * C
        self.a_bytes = {name: a_sector_bytes(p.dims, N, plan.D * it, it)
                        for name, it in (("fp32", 4), ("fp16", 2))}
        self.fused_floor_bytes = self.a_bytes["fp32"] + self.lut_bytes + self.out_bytes

    # kernels, as the bench calls them
    def encode(self, cfg: tuple[int, int | None], A: torch.Tensor) -> torch.Tensor:
        from emulator.gpu import triton_encode
        return triton_encode(self.prep, A, cfg[0], num_warps=cfg[1])

    def decode(self, cfg: tuple[int, int, int | None], codes: torch.Tensor,
               write_acc: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        from emulator.gpu import triton_decode
        return triton_decode(self.prep, codes, cfg[0], cfg[1], write_acc, num_warps=cfg[2])

    def fused(self, cfg: tuple[int, int, int | None], A: torch.Tensor,
              write_acc: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        from emulator.gpu import triton_fused
        return triton_fused(self.prep, A, cfg[0], cfg[1], write_acc, num_warps=cfg[2])

    def lut_configs(self) -> list[tuple[int, int, int | None]]:
        cap = max(16, 1 << (self.M - 1).bit_length())  # no column block wider than that
        return [c for c in self.plan.lut_configs if c[1] <= cap]

    # 1. bit-exactness
    def check(self, enc: tuple[int, int | None], cfg: tuple[int, int, int | None],
              fcfg: tuple[int, int, int | None]) -> dict[str, Any]:
        from emulator import golden
        from emulator.gpu import torch_decode, torch_encode
        idx = sample_rows(self.N, self.plan.golden_rows)
        idx_t = torch.from_numpy(idx).to(self.A32.device)
        g = golden.run(self.program, self.A32[idx_t].cpu().numpy())
        codes = self.encode(enc, self.A32)
        acc_d, y_d = self.decode(cfg, codes, True)
        acc_f, y_f = self.fused(fcfg, self.A32, True)
        _, y_f_only = self.fused(fcfg, self.A32, False)
        _, y_d_only = self.decode(cfg, codes, False)
        assert acc_d is not None and acc_f is not None

        def golden_eq(acc: torch.Tensor, y: torch.Tensor) -> bool:
            return (np.array_equal(acc[idx_t].cpu().numpy().view(np.uint32),
                                   g.acc.view(np.uint32))
                    and np.array_equal(y[idx_t].cpu().numpy().view(np.uint32),
                                       g.y.view(np.uint32)))

        acc_t, y_t = torch_decode(self.prep, torch_encode(self.prep, self.A32))
        out: dict[str, Any] = {
            "golden_rows": int(idx.size),
            "encode_vs_golden": bool(np.array_equal(codes[idx_t].cpu().numpy(), g.codes)),
            "decode_vs_golden": golden_eq(acc_d, y_d),
            "fused_vs_golden": golden_eq(acc_f, y_f),
            "fused_vs_split_all_rows": same_bits(acc_f, acc_d) and same_bits(y_f, y_d),
            "y_only_vs_with_acc_all_rows": same_bits(y_f_only, y_f) and same_bits(y_d_only, y_d),
            "triton_vs_torch_impl_all_rows": same_bits(acc_f, acc_t.to(acc_f.dtype))
            and same_bits(y_f, y_t),
        }
        del acc_t, y_t, acc_d, y_d, y_d_only
        # float16 activations (read as is by the kernels): golden on the first block of rows
        r = idx[: max(1, idx.size // 3)]
        r_t = torch.from_numpy(r).to(self.A32.device)
        g16 = golden.run(self.program, self.A16[r_t].cpu().numpy())
        acc16, y16 = self.fused(fcfg, self.A16, True)
        assert acc16 is not None
        out["fused_fp16_input_vs_golden"] = bool(
            np.array_equal(acc16[r_t].cpu().numpy().view(np.uint32), g16.acc.view(np.uint32))
            and np.array_equal(y16[r_t].cpu().numpy().view(np.uint32), g16.y.view(np.uint32)))
        codes16 = self.encode(enc, self.A16)
        out["encode_fp16_input_vs_golden"] = bool(np.array_equal(codes16[r_t].cpu().numpy(),
                                                                 g16.codes))
        out["bit_exact"] = all(v for k, v in out.items() if k != "golden_rows")
        return out

    # 2. tuning
    def tune(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        rep = self.plan.tune_rep_ms
        rows: list[dict[str, Any]] = []
        best: dict[str, Any] = {}
        for bn, nw in self.plan.encode_configs:
            t = self.ms(partial(self.encode, (bn, nw), self.A32), rep)
            rows.append({"kernel": "encode", "block_n": bn, "num_warps": nw, "ms": t})
        enc = min((r for r in rows if r["kernel"] == "encode"), key=lambda r: r["ms"])
        best["encode"] = (enc["block_n"], enc["num_warps"])
        codes = self.encode(best["encode"], self.A32)
        for cfg in self.lut_configs():
            t = self.ms(partial(self.fused, cfg, self.A32, False), rep)
            rows.append({"kernel": "fused", "block_n": cfg[0], "block_m": cfg[1],
                         "num_warps": cfg[2], "ms": t})
            t = self.ms(partial(self.decode, cfg, codes, False), rep)
            rows.append({"kernel": "decode", "block_n": cfg[0], "block_m": cfg[1],
                         "num_warps": cfg[2], "ms": t})
        for kern in ("fused", "decode"):
            r = min((r for r in rows if r["kernel"] == kern), key=lambda r: r["ms"])
            best[kern] = (r["block_n"], r["block_m"], r["num_warps"])
        return best, rows

    # 3. timings
    def entry(self, kernel: str, a: str | None, write_acc: bool, cfg: tuple[Any, ...],
              nbytes: int, t: float) -> dict[str, Any]:
        floor_ms = nbytes / self.bw * 1e3
        e: dict[str, Any] = {
            "kernel": kernel, "A": a, "write_acc": write_acc, "config": list(cfg), "ms": t,
            "bytes": nbytes, "achieved_GBps": nbytes / (t * 1e-3) / 1e9, "floor_ms": floor_ms,
            "floor_fraction": floor_ms / t,
            "op_floor_fraction": self.fused_floor_bytes / self.bw * 1e3 / t,
            "rows_per_s": self.N / (t * 1e-3)}
        if kernel in ("fused", "split"):
            e["speedup_vs_matmul_fp16"] = self.matmul["fp16_ms"] / t
            e["speedup_vs_matmul_fp32"] = self.matmul["fp32_ms"] / t
        return e

    def time_all(self, best: dict[str, Any]) -> list[dict[str, Any]]:
        rep = self.plan.rep_ms
        enc, dec, fus = best["encode"], best["decode"], best["fused"]
        codes = self.encode(enc, self.A32)
        acc = self.out_bytes
        out = []
        for a_name, A in (("fp32", self.A32), ("fp16", self.A16)):
            for wa in ((False, True) if a_name == "fp32" else (False,)):
                t = self.ms(partial(self.fused, fus, A, wa), rep)
                nb = self.a_bytes[a_name] + self.lut_bytes + self.out_bytes + wa * acc
                out.append(self.entry("fused", a_name, wa, fus, nb, t))
        for a_name, A in (("fp32", self.A32), ("fp16", self.A16)):
            t = self.ms(partial(self.encode, enc, A), rep)
            out.append(self.entry("encode", a_name, False, enc,
                                  self.a_bytes[a_name] + self.codes_bytes, t))
        for wa in (False, True):
            t = self.ms(partial(self.decode, dec, codes, wa), rep)
            out.append(self.entry("decode", None, wa, dec, self.codes_bytes + self.lut_bytes
                                  + self.out_bytes + wa * acc, t))
        t = self.ms(lambda: self.decode(dec, self.encode(enc, self.A32), False), rep)
        out.append(self.entry("split", "fp32", False, (*enc, *dec),
                              self.a_bytes["fp32"] + 2 * self.codes_bytes + self.lut_bytes
                              + self.out_bytes, t))
        return out


def dense_matmul(N: int, M: int, A32: torch.Tensor, A16: torch.Tensor, ms: Timer,
                 rep: int, bw: float) -> dict[str, float]:
    D = A32.shape[1]
    g = torch.Generator(device=A32.device)
    g.manual_seed(M)
    B32 = torch.randn((D, M), generator=g, device=A32.device, dtype=torch.float32)
    B16 = B32.to(torch.float16)
    out = {}
    for name, A, B, it in (("fp16", A16, B16, 2), ("fp32", A32, B32, 4)):
        t = ms(partial(torch.matmul, A, B), rep)
        nbytes = (N * D + D * M + N * M) * it
        out[f"{name}_ms"] = t
        out[f"{name}_TFLOPs"] = 2 * N * D * M / (t * 1e-3) / 1e12
        out[f"{name}_floor_fraction"] = nbytes / bw * 1e3 / t
    return out


# ---- the run -----------------------------------------------------------------------------------
def shapes(plan: Plan) -> Iterator[tuple[int, int, int, str]]:
    for N in plan.ns:
        for C in plan.cs:
            for lut in plan.luts:
                for M in plan.ms:
                    yield N, C, M, lut


def summary_line(r: dict[str, Any]) -> str:
    f = next(e for e in r["timings"] if e["kernel"] == "fused" and e["A"] == "fp32"
             and not e["write_acc"])
    s = next(e for e in r["timings"] if e["kernel"] == "split")
    return (f"N={r['N']:>7} C={r['C']:>2} M={r['M']:>4} lut={r['lut_format']:<4} "
            f"exact={r['check']['bit_exact']!s:<5} fused {f['ms']:8.3f} ms "
            f"{f['floor_fraction']:5.1%} of floor x{f['speedup_vs_matmul_fp16']:.2f} vs fp16 mm | "
            f"split {s['ms']:8.3f} ms {s['op_floor_fraction']:5.1%}")


def run(plan: Plan, device: torch.device, out_path: Path, max_seconds: float) -> dict[str, Any]:
    import triton

    from emulator import gpu_kernels
    t_start = time.perf_counter()
    ms = make_timer(device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    bw = copy_bandwidth(device, ms, plan.copy_bytes, plan.rep_ms)
    doc: dict[str, Any] = {
        "benchmark": "gpu", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "complete": False, "quick": plan.quick,
        "device": device_facts(device), "interpreted": gpu_kernels.INTERPRETED,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "triton": triton.__version__, "numpy": np.__version__},
        "plan": {"N": list(plan.ns), "D": plan.D, "M": list(plan.ms), "C": list(plan.cs),
                 "K": K, "threshold_format": "fp16", "lut_formats": list(plan.luts),
                 "lut_configs": [list(c) for c in plan.lut_configs],
                 "encode_configs": [list(c) for c in plan.encode_configs],
                 "golden_rows": plan.golden_rows, "timing": "median of triton.testing."
                 "do_bench (L2 flushed)" if device.type == "cuda" else "median wall time",
                 "matmul": "torch.matmul, TF32 off"},
        "copy_bandwidth": {"bytes": bw["bytes"], "ms": bw["ms"], "GBps": bw["Bps"] / 1e9},
        "results": [], "not_run": []}
    matmuls: dict[tuple[int, int], dict[str, float]] = {}
    current: tuple[int, int] | None = None
    A32 = A16 = None
    for N, C, M, lut in shapes(plan):
        if time.perf_counter() - t_start > max_seconds:
            doc["not_run"].append({"N": N, "C": C, "M": M, "lut_format": lut,
                                   "why": f"--max-seconds {max_seconds:.0f} reached"})
            continue
        t0 = time.perf_counter()
        if current != (N, C):
            A32 = A16 = None
            A32 = device_activations(make_program(C, plan.ms[0], plan.D, plan.luts[0]), N,
                                     device, seed=N + C)
            A16 = A32.to(torch.float16)
            current = (N, C)
        assert A32 is not None and A16 is not None
        if (N, M) not in matmuls:
            matmuls[(N, M)] = dense_matmul(N, M, A32, A16, ms, plan.rep_ms, bw["Bps"])
        shape = Shape(plan, N, C, M, lut, A32, A16, device, ms, bw["Bps"], matmuls[(N, M)])
        before = set(compiled_binaries())
        best, tuning = shape.tune()
        check = shape.check(best["encode"], best["decode"], best["fused"])
        timings = shape.time_all(best)
        new = sorted(set(compiled_binaries()) - before)
        r = {"N": N, "D": plan.D, "C": C, "K": K, "M": M, "threshold_format": "fp16",
             "lut_format": lut, "check": check, "best_config": {k: list(v) for k, v in
                                                                best.items()},
             "matmul": matmuls[(N, M)], "timings": timings, "tuning": tuning,
             "new_binaries": [k.split(":")[1][:16] for k in new],
             "seconds": time.perf_counter() - t0}
        doc["results"].append(r)
        print(summary_line(r), flush=True)
        write_json(out_path, finish(doc, complete=False))
    doc["binaries"] = [binary_facts(k, ck) for k, ck in sorted(compiled_binaries().items())]
    doc["seconds"] = time.perf_counter() - t_start
    doc = finish(doc, complete=not doc["not_run"])
    write_json(out_path, doc)
    return doc


def device_facts(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"name": "cpu (Triton interpreter)", "cpu": platform.processor(),
                "cores": os.cpu_count()}
    p = torch.cuda.get_device_properties(device)
    return {"name": p.name, "capability": f"{p.major}.{p.minor}",
            "multiprocessors": p.multi_processor_count,
            "memory_GiB": round(p.total_memory / 2**30, 1),
            "L2_MiB": round(getattr(p, "L2_cache_size", 0) / 2**20, 1),
            "cuda": torch.version.cuda}


def finish(doc: dict[str, Any], complete: bool) -> dict[str, Any]:
    """Summary fields: bit-exactness, SASS check, the target and the best figures."""
    res = doc["results"]
    doc["complete"] = complete
    doc["all_bit_exact"] = bool(res) and all(r["check"]["bit_exact"] for r in res)
    bins = doc.get("binaries", [])
    doc["sass_check"] = {
        "binaries": len(bins),
        "no_ffma": all(b.get("sass_ffma", 0) == 0 for b in bins),
        "no_ftz": all(b.get("sass_ftz", 0) == 0 for b in bins),
        "unchecked": sum("sass_error" in b for b in bins)} if bins else None
    target = []
    for r in res:
        if r["N"] == max(doc["plan"]["N"]) and r["M"] == (256 if 256 in doc["plan"]["M"]
                                                          else max(doc["plan"]["M"])):
            for e in r["timings"]:
                if e["kernel"] == "fused" and not e["write_acc"]:
                    target.append({"C": r["C"], "lut_format": r["lut_format"], "A": e["A"],
                                   "ms": e["ms"], "floor_fraction": e["floor_fraction"],
                                   "meets_0.5": e["floor_fraction"] >= 0.5})
    doc["target"] = {"what": "fused kernel (y only) >= 50 % of the traffic floor at the "
                             "largest N and M = 256", "rows": target}
    return doc


def write_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1, default=float) + "\n")


def main(argv: list[str] | None = None) -> int:
    doc0 = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc0.splitlines()[0])
    parser.add_argument("--quick", "--cpu-smoke", action="store_true",
                        help="tiny shapes: the Triton interpreter without CUDA, compiled on a GPU")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default bench/results/gpu-<device>.json; with --quick "
                             "a file in the temporary directory)")
    parser.add_argument("--max-seconds", type=float, default=480.0,
                        help="start no new shape after this many seconds (default 480)")
    parser.add_argument("--n", type=int, nargs="+", default=None, help="override the row counts")
    parser.add_argument("--m", type=int, nargs="+", default=None,
                        help="override the output widths")
    parser.add_argument("--c", type=int, nargs="+", default=None,
                        help="override the codebook counts")
    args = parser.parse_args(argv)
    has_cuda = torch.cuda.is_available()
    if not args.quick and not has_cuda:
        print("bench_gpu: no CUDA device (torch.cuda.is_available() is False): nothing measured; "
              "run `bash bench/gpu_device_check.sh` on an NVIDIA GPU, or `--quick` for the "
              "interpreter check", file=sys.stderr)
        return 0
    try:
        from emulator import gpu_kernels  # noqa: F401  (decides TRITON_INTERPRET first)
    except ImportError as exc:
        print(f"bench_gpu: Triton does not import ({exc}); pip install triton", file=sys.stderr)
        return 1
    plan = QUICK if args.quick else FULL
    plan = Plan(**{**plan.__dict__, **{k: tuple(v) for k, v in
                                       (("ns", args.n), ("ms", args.m), ("cs", args.c))
                                       if v}})
    device = torch.device("cuda" if has_cuda else "cpu")
    name = device_facts(device)["name"]
    out = args.out or (Path(tempfile.gettempdir()) / "halut-bench-gpu-quick.json" if args.quick
                       else RESULTS / f"gpu-{device_slug(name)}.json")
    print(f"bench_gpu: {name}, {len(list(shapes(plan)))} shapes -> {out}", flush=True)
    doc = run(plan, device, out, args.max_seconds)
    sc = doc["sass_check"]
    print(f"bench_gpu: copy {doc['copy_bandwidth']['GBps']:.0f} GB/s; all bit-exact: "
          f"{doc['all_bit_exact']}; SASS no FFMA/FTZ: "
          f"{None if sc is None else (sc['no_ffma'] and sc['no_ftz'])}; "
          f"complete: {doc['complete']}; {doc['seconds']:.0f} s; wrote {out}")
    for t in doc["target"]["rows"]:
        print(f"  target C={t['C']} lut={t['lut_format']} A={t['A']}: {t['ms']:.3f} ms, "
              f"{t['floor_fraction']:.1%} of floor")
    return 0 if doc["all_bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
