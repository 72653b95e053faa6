"""MADDNESS learning on the synthetic set (N=20000, D=512, M=64): wall time, peak memory and
held-out NMSE (float model, and quantized programs through the golden model) for
C in {8, 16, 32, 64}, K = 16. Each configuration runs in a fresh process so that
``ru_maxrss`` is its own peak (the data set is generated once and loaded from .npy, so the
peak is that of loading the data plus learning)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, write_result

CS = (8, 16, 32, 64)
K = 16
FORMATS = (("fp16", "int8"), ("fp16", "fp16"), ("int8", "int8"), ("int8", "fp16"))


def make_data(where: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from learning.datasets import synthetic

    for name, arr in zip(("A", "A_test", "B"), synthetic(), strict=True):
        np.save(where / f"{name}.npy", arr)


def worker(C: int, data: Path) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    from emulator import golden
    from learning import learn, quantize
    from learning.datasets import nmse

    A, A_test, B = (np.load(data / f"{n}.npy") for n in ("A", "A_test", "B"))
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    model = learn(A, B, C, K)
    seconds = time.perf_counter() - t0
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Y = A_test @ B
    row: dict[str, object] = {
        "C": C, "K": K, "seconds": seconds, "peak_rss_mb": rss_peak,
        "rss_after_data_mb": rss_data, "nmse_train_float": model.stats["nmse_train"],
        "nmse_test_float": nmse(model.predict(A_test), Y)}
    for thr, lut in FORMATS:
        program = quantize(model, thr, lut)
        row[f"nmse_test_{thr}_thr_{lut}_lut"] = nmse(golden.run(program, A_test).y, Y)
    return row


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # the data is made in its own process too: Linux keeps a parent's peak RSS in a
        # child's ru_maxrss across fork + exec, so this process must stay small
        subprocess.run([sys.executable, __file__, "--make-data", tmp], check=True, cwd=ROOT)
        for C in CS:
            out = subprocess.run([sys.executable, __file__, "--worker", str(C), tmp],
                                 check=True, capture_output=True, text=True, cwd=ROOT)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"C={C}: {rows[-1]['seconds']:.2f} s, peak {rows[-1]['peak_rss_mb']:.0f} MB, "
                  f"NMSE {rows[-1]['nmse_test_float']:.4f}", file=sys.stderr)
    write_result("learning", {
        "dataset": "learning.datasets.synthetic(n_train=20000, n_test=5000, D=512, M=64, "
                   "seed=0)",
        "nmse": "||Yhat - Y||^2 / ||Y - mean(Y)||^2 on the 5000 held-out rows, mean over all "
                "entries", "results": rows})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--make-data":
        make_data(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--worker":
        print(json.dumps(worker(int(sys.argv[2]), Path(sys.argv[3]))))
    else:
        main()
