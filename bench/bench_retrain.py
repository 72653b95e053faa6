"""Retraining the demo network (docs/retrain.md): the zoo ResNet-8 trained on scikit-learn's
digits with every conv and linear layer replaced; golden test accuracy before and after
retraining with the default :class:`~emulator.retrain.RetrainConfig` (target: within 0.5
points of the float network, in at most 5 minutes on 2 cores), the layerwise schedule with one
epoch per layer beside it, and the retrained network's layers bit-exact on the rtl."""

from __future__ import annotations

import copy
import time

import torch
from common import write_result

from emulator.network import NetConfig, evaluate_network, halutize
from emulator.retrain import RetrainConfig, retrain
from flows.demo import DemoConfig, codebook_plan, load_digits_split, train_net


def main() -> None:
    cfg = DemoConfig(progress=False)
    Xtr, ytr, Xte, yte = load_digits_split(cfg.seed)
    net, _ = train_net(Xtr, ytr, cfg)
    batches = [torch.from_numpy(Xtr[i:i + 256]) for i in range(0, len(Xtr), 256)]
    hnet = halutize(net, batches, NetConfig(overrides=codebook_plan(net), seed=cfg.seed))
    before = evaluate_network(hnet, Xte, yte, backends=("float", "golden"), batch_size=512)
    acc_float = before["totals"]["accuracy"]["float"]
    acc_before = before["totals"]["accuracy"]["golden"]
    runs = {}
    for schedule, epochs in (("all", RetrainConfig().epochs), ("layerwise", 1)):
        rc = RetrainConfig(schedule=schedule, epochs=epochs)  # type: ignore[arg-type]
        model = copy.deepcopy(hnet)
        hist: list[dict] = []
        t0 = time.perf_counter()
        retrain(model, (Xtr, ytr), rc, history=hist, progress=False)
        sec = time.perf_counter() - t0
        ev = evaluate_network(model, Xte, yte, backends=("golden", "rtl"), rtl_images=32,
                              batch_size=512)
        after = ev["totals"]["accuracy"]["golden"]
        runs[schedule] = {
            "config": rc.to_dict(), "seconds": sec, "golden_accuracy_after": after,
            "points_below_float": 100 * (acc_float - after),
            "rtl_bit_exact_every_layer": all(r["rtl_bit_exact"] for r in ev["layers"]),
            "history": hist}
    main_run = runs["all"]
    write_result("retrain", {
        "network": "ResNet-8 (demo), all 10 layers replaced, digits 16x16",
        "train_images": int(len(ytr)), "test_images": int(len(yte)),
        "float_accuracy": acc_float, "golden_accuracy_before": acc_before,
        "golden_accuracy_after": main_run["golden_accuracy_after"],
        "retrain_seconds": main_run["seconds"],
        "target_points": 0.5, "target_seconds": 300,
        "target_met": main_run["points_below_float"] <= 0.5 and main_run["seconds"] <= 300,
        "schedules": runs})


if __name__ == "__main__":
    main()
