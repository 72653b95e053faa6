"""Golden-model throughput (rows/s) at N = 16384, C = 32, K = 16, M = 64, every format pair."""

from __future__ import annotations

import time

import numpy as np
from common import write_result

from emulator import golden
from emulator.vectors import random_activations, random_program


def main() -> None:
    N, C, K, M, D = 16384, 32, 16, 64, 512
    rows = []
    for thr_fmt, lut_fmt in [("fp16", "int8"), ("fp16", "fp16"), ("int8", "int8"),
                             ("int8", "fp16")]:
        rng = np.random.default_rng(0)
        program = random_program(rng, C, K, M, D, thr_fmt, lut_fmt)
        A = random_activations(rng, program, N)
        golden.run(program, A[:256])  # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            golden.run(program, A)
            times.append(time.perf_counter() - t0)
        best = min(times)
        rows.append({"threshold_format": thr_fmt, "lut_format": lut_fmt, "seconds": best,
                     "rows_per_s": N / best})
    write_result("golden", {"N": N, "C": C, "K": K, "M": M, "D": D, "results": rows})


if __name__ == "__main__":
    main()
