"""The network path on the RTL: the demo's ResNet-8 (every layer on the default chip) over the
digits test set in one batch, images/s and simulated cycles/s of the rtl pass end to end
(torch forward, im2col, host packing, the Verilated accelerator, unpacking), against the
single-layer batch harness's cycles/s on the same chip (target: at least 0.8 of it), with
``jobs=1`` and ``jobs=2`` (image shards in two processes, target: at least 1.7x); and the two
learning schedules (parallel, sequential) on the demo: golden test accuracy and seconds."""

from __future__ import annotations

import time

import numpy as np
import torch
from common import write_result

from emulator import golden
from emulator.build import build_harness
from emulator.harness import BatchSim, Handshake
from emulator.hwif import single_job_writes
from emulator.network import NetConfig, evaluate_network, halutize
from emulator.params import RtlParams
from emulator.rtl import pack_beats
from emulator.vectors import random_activations, random_program
from flows.demo import DemoConfig, codebook_plan, load_digits_split, train_net

REPEATS = 3


def harness_cycles_per_s(params: RtlParams) -> float:
    """The batch harness streaming one layer (20,000 rows) on ``params``: best of 3."""
    rng = np.random.default_rng(0)
    program = random_program(rng, params.C, params.K, params.M, 512)
    A = random_activations(rng, program, 20_000)
    beats = pack_beats(golden.gather_features(program, A), params)
    best = 0.0
    with BatchSim(build_harness(params).path) as sim:
        for _ in range(REPEATS):
            sim.reset()
            sim.config(single_job_writes(program, params.address_map))
            t0 = time.perf_counter()
            _, counts = sim.stream(beats, A.shape[0] * params.out_beats, params.out_lanes,
                                   valid=Handshake(), ready=Handshake())
            best = max(best, counts.cycles / (time.perf_counter() - t0))
    return best


def rtl_pass(hnet: torch.nn.Module, X: np.ndarray, y: np.ndarray, jobs: int
             ) -> dict[str, float]:
    """The rtl pass alone (golden runs first), all images, one batch per process."""
    per = -(-len(y) // jobs)
    ev = evaluate_network(hnet, X, y, backends=("rtl",), batch_size=per, jobs=jobs)
    sec = ev["totals"]["seconds"]["rtl"]
    cycles = ev["totals"]["cycles_per_image"] * len(y)
    return {"jobs": jobs, "images": len(y), "seconds": sec, "images_per_s": len(y) / sec,
            "cycles": cycles, "cycles_per_s": cycles / sec}


def schedules(net: torch.nn.Module, batches: list[torch.Tensor], plan: dict[str, int],
              X: np.ndarray, y: np.ndarray, seed: int) -> dict[str, dict[str, float]]:
    """Both learning schedules on the demo: golden test accuracy and learning seconds."""
    out = {}
    for schedule in ("parallel", "sequential"):
        t0 = time.perf_counter()
        hnet = halutize(net, batches, NetConfig(overrides=plan, seed=seed,
                                                schedule=schedule))  # type: ignore[arg-type]
        sec = time.perf_counter() - t0
        ev = evaluate_network(hnet, X, y, backends=("float", "golden"), batch_size=len(y))
        acc = ev["totals"]["accuracy"]
        out[schedule] = {"learn_seconds": sec, "golden_accuracy": acc["golden"],
                         "float_accuracy": acc["float"]}
    return out


def main() -> None:
    cfg = DemoConfig(progress=False)
    Xtr, ytr, Xte, yte = load_digits_split(cfg.seed)
    net, _ = train_net(Xtr, ytr, cfg)
    batches = [torch.from_numpy(Xtr[i:i + 256]) for i in range(0, len(Xtr), 256)]
    plan = codebook_plan(net)
    hnet = halutize(net, batches, NetConfig(overrides=plan, seed=cfg.seed))
    evaluate_network(hnet, Xte[:8], yte[:8], backends=("rtl",))  # builds, warm-up
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for _ in range(REPEATS):  # interleaved, so that load on the machine hits both alike
        for jobs in runs:
            runs[jobs].append(rtl_pass(hnet, Xte, yte, jobs))
    best = {j: max(r, key=lambda r: r["cycles_per_s"]) for j, r in runs.items()}
    harness = harness_cycles_per_s(RtlParams())
    ratio = best[1]["cycles_per_s"] / harness
    speedup = best[2]["images_per_s"] / best[1]["images_per_s"]
    write_result("network", {
        "network": "ResNet-8 (demo), 10 layers on the default chip",
        "rtl_jobs_1": best[1], "rtl_jobs_2": best[2], "runs": runs,
        "batch_harness_cycles_per_s": harness,
        "ratio_network_vs_harness": ratio, "ratio_target": 0.8, "ratio_met": ratio >= 0.8,
        "speedup_jobs_2": speedup, "speedup_target": 1.7, "speedup_met": speedup >= 1.7,
        "schedules": schedules(net, batches, plan, Xte, yte, cfg.seed)})


if __name__ == "__main__":
    main()
