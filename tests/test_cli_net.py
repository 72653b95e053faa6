"""``halut net learn|info|eval`` on a zoo model, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from emulator.zoo import load_model
from flows.cli import main

ARGS = ["--model", "zoo:lenet", "--model-arg", "image_size=8"]


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    x, y, w = tmp_path / "X.npy", tmp_path / "y.npy", tmp_path / "w.pt"
    np.save(x, rng.standard_normal((24, 1, 8, 8)).astype(np.float32))
    np.save(y, rng.integers(0, 10, 24))
    torch.manual_seed(0)
    torch.save(load_model("zoo:lenet", image_size=8).state_dict(), w)
    return x, y, w


def test_learn_info_eval_on_a_zoo_model(tmp_path: Path) -> None:
    x, y, w = _files(tmp_path)
    net = tmp_path / "net.halutnet"
    r = CliRunner().invoke(main, ["net", "learn", *ARGS, "--state-dict", str(w), "--data",
                                  str(x), "-C", "4", "-K", "16", "--set", "fc3:C=2",
                                  "--layers", "conv*", "--layers", "fc3", "-o", str(net),
                                  "--json"])
    assert r.exit_code == 0, r.output
    learned = json.loads(r.stdout)
    assert sorted(learned["layers"]) == ["conv1", "conv2", "fc3"]
    assert learned["layers"]["fc3"]["C"] == 2
    r = CliRunner().invoke(main, ["net", "info", str(net), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert [layer["layer"] for layer in info["layers"]] == ["conv1", "conv2", "fc3"]
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["net", "eval", str(net), *ARGS, "--state-dict", str(w),
                                  "--data", str(x), "--labels", str(y), "--backend",
                                  "float,golden,rtl", "--rtl-images", "3", "-o", str(out),
                                  "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert ev == json.loads((out / "trace.json").read_text())
    assert (out / "trace.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(row["rtl_bit_exact"] for row in ev["layers"])
    assert ev["totals"]["images"]["rtl"] == 3 and ev["totals"]["cycles_per_image"] > 0


def test_bad_inputs_are_one_line(tmp_path: Path) -> None:
    x, y, w = _files(tmp_path)
    net = str(tmp_path / "net.halutnet")
    cases = [
        (["net", "learn", "--model", "zoo:nope", "--data", str(x), "-o", net], "zoo"),
        (["net", "learn", "--model", str(tmp_path / "m.py") + ":f", "--data", str(x), "-o",
          net], "m.py"),
        (["net", "learn", "--model", "zoo:lenet", "--data", str(x), "-o", net],
         "does not take inputs of shape (1, 8, 8)"),
        (["net", "learn", *ARGS, "--data", str(x), "--set", "fc3=2", "-o", net],
         "LAYER:C=8"),
        (["net", "learn", *ARGS, "--data", str(x), "-o", str(x / "n.halutnet")],
         "is not a folder"),
        (["net", "info", str(x)], "not a halut network bundle"),
    ]
    (tmp_path / "m.py").write_text("raise SystemExit('broken')\n")
    for args, message in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code != 0, args
        assert message in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
    bad_y = tmp_path / "bad_y.npy"
    np.save(bad_y, np.full(24, 99))
    r = CliRunner().invoke(main, ["net", "learn", *ARGS, "--state-dict", str(w), "--data",
                                  str(x), "-C", "4", "-o", net])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["net", "eval", net, *ARGS, "--data", str(x), "--labels",
                                  str(bad_y)])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1


def _learned(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """X.npy, y.npy, w.pt and a bundle of conv1, conv2 and fc3 (fc1, fc2 stay float)."""
    x, y, w = _files(tmp_path)
    net = tmp_path / "net.halutnet"
    r = CliRunner().invoke(main, ["net", "learn", *ARGS, "--state-dict", str(w), "--data",
                                  str(x), "-C", "4", "-K", "16", "--layers", "conv*",
                                  "--layers", "fc3", "-o", str(net)])
    assert r.exit_code == 0, r.output
    return x, y, w, net


def test_retrain_writes_a_bundle_that_evaluates(tmp_path: Path) -> None:
    from learning.bundle import load_bundle

    x, y, w, net = _learned(tmp_path)
    xv, yv = tmp_path / "Xv.npy", tmp_path / "yv.npy"
    rng = np.random.default_rng(1)
    np.save(xv, rng.standard_normal((8, 1, 8, 8)).astype(np.float32))
    np.save(yv, rng.integers(0, 10, 8))
    out = tmp_path / "sub" / "net2.halutnet"
    r = CliRunner().invoke(main, ["net", "retrain", str(net), *ARGS, "--state-dict", str(w),
                                  "--data", str(x), "--labels", str(y), "--val-data", str(xv),
                                  "--val-labels", str(yv), "--epochs", "1", "--batch-size",
                                  "8", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["bundle"] == str(out) and rep["seconds"] > 0
    assert rep["config"]["epochs"] == 1 and rep["config"]["batch_size"] == 8
    assert rep["config"]["lr"] == 0.01  # RetrainConfig's default
    for when in ("before", "after"):
        assert rep[when]["data"] == "validation" and rep[when]["images"] == 8
        assert 0 <= rep[when]["golden"] <= 1 and 0 <= rep[when]["float"] <= 1
    assert [h["epoch"] for h in rep["history"]] == [0]
    assert "val_accuracy" in rep["history"][0] and "loss" in rep["history"][0]
    b = load_bundle(out)
    assert [layer.name for layer in b.layers] == ["conv1", "conv2", "fc3"]
    assert "fc1.weight" in b.floats  # the float layers were trained too
    assert all(u.model is not None and u.model.stats.get("retrained")
               for layer in b.layers for u in layer.units)
    r = CliRunner().invoke(main, ["net", "eval", str(out), *ARGS, "--state-dict", str(w),
                                  "--data", str(xv), "--labels", str(yv), "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert ev["totals"]["accuracy"]["golden"] == rep["after"]["golden"]


def test_retrain_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from learning.bundle import load_bundle

    x, y, w, net = _learned(tmp_path)
    ckpt = tmp_path / "ckpt"
    out1, out2 = tmp_path / "a.halutnet", tmp_path / "b.halutnet"
    args = ["net", "retrain", str(net), *ARGS, "--state-dict", str(w), "--data", str(x),
            "--labels", str(y), "--epochs", "1", "--batch-size", "12", "--no-train-float",
            "--resume", str(ckpt)]
    r = CliRunner().invoke(main, [*args, "-o", str(out1), "--json"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert (ckpt / "retrain.pt").is_file()
    assert first["config"]["train_float"] is False
    assert first["before"]["data"] == "training" and first["before"]["images"] == 24
    r = CliRunner().invoke(main, [*args, "-o", str(out2), "--json"])  # all epochs done
    assert r.exit_code == 0, r.output
    second = json.loads(r.stdout)
    assert second["history"] == first["history"]
    assert second["after"] == first["after"]
    a, b = load_bundle(out1), load_bundle(out2)  # the same arrays (not bytes: timestamps)
    assert sorted(a.floats) == sorted(b.floats)
    assert all(np.array_equal(a.floats[k], b.floats[k]) for k in a.floats)
    for la, lb in zip(a.layers, b.layers, strict=True):
        for ua, ub in zip(la.units, lb.units, strict=True):
            assert ua.program is not None and ub.program is not None
            for f in ("thresholds", "lut", "scale", "bias"):
                assert np.array_equal(getattr(ua.program, f), getattr(ub.program, f))
    r = CliRunner().invoke(main, [*args, "-o", str(out2)])  # the human summary
    assert r.exit_code == 0, r.output
    assert "epoch 1/1" in r.stdout and "before" in r.stdout and f"wrote {out2}" in r.stdout


def test_retrain_bad_inputs_are_one_line(tmp_path: Path) -> None:
    x, y, w, net = _learned(tmp_path)
    bad_y = tmp_path / "bad_y.npy"
    np.save(bad_y, np.full(24, 99))
    out = tmp_path / "out.halutnet"
    base = ["net", "retrain", str(net), *ARGS, "--data", str(x), "--epochs", "1"]
    good = [*base, "--state-dict", str(w), "--labels", str(y)]
    cases = [
        ([*good, "-o", str(x / "n.halutnet")], "is not a folder", None),
        ([*good, "--val-data", str(x), "-o", str(out)], "--val-labels", out),
        ([*good, "--val-labels", str(y), "-o", str(out)], "--val-data", out),
        ([*base, "--state-dict", str(w), "--labels", str(bad_y), "-o", str(out)],
         "outside [0, 10)", out),
        ([*good, "--val-data", str(x), "--val-labels", str(bad_y), "-o", str(out)],
         "outside [0, 10)", out),
        ([*good, "--lr", "0", "-o", str(out)], "lr must be", out),
        ([*good, "--resume", str(x / "ck"), "-o", str(out)], "is not a folder", out),
        ([*base, "--labels", str(y), "-o", str(out)], "learned from another model", out),
    ]
    for args, message, written in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1, (args, r.output)
        assert message in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
        assert written is None or not written.exists(), args


def test_eval_on_a_chosen_chip_with_energy_per_inference(tmp_path: Path) -> None:
    """``--chip`` maps every layer onto that accelerator (the cycles change with it) and
    ``--energy`` multiplies each layer's cycles per image by the energy per cycle of a
    power record of `halut hw power` for that chip (its format: flows/hw/power.py)."""
    import dataclasses

    from emulator.params import RtlParams
    from flows.hw.common import write_json

    x, y, w = _files(tmp_path)
    net = tmp_path / "net.halutnet"
    r = CliRunner().invoke(main, ["net", "learn", *ARGS, "--state-dict", str(w), "--data",
                                  str(x), "-C", "4", "-K", "16", "--layers", "fc3", "-o",
                                  str(net)])
    assert r.exit_code == 0, r.output
    chip = RtlParams(C=2, K=16, M=4, banks=1)
    power = tmp_path / "power.json"
    write_json(power, {"params": dataclasses.asdict(chip), "design": "halut_accel",
                       "energy_pj": {"per_cycle": 12.5, "per_row": 50.0}})
    base = ["net", "eval", str(net), *ARGS, "--state-dict", str(w), "--data", str(x),
            "--labels", str(y), "--backend", "golden,rtl", "--rtl-images", "2"]
    chip_args = ["--chip", "C=2", "--chip", "M=4", "--chip", "banks=1"]
    r = CliRunner().invoke(main, [*base, *chip_args, "--energy", str(power), "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    t = ev["totals"]
    assert t["chip"] == dataclasses.asdict(chip)
    (row,) = ev["layers"]
    assert row["rtl_bit_exact"]
    assert row["energy_per_image_nj"] == row["cycles_per_image"]["total"] * 12.5 / 1e3
    assert t["energy_per_image_nj"] == row["energy_per_image_nj"]
    assert t["energy_tops_per_w"] == t["mac_ops_per_image"] / (t["energy_per_image_nj"]
                                                               * 1e-9) / 1e12
    # the same bundle's layer as a `halut hw power --bundle` workload on that chip
    from flows.hw.power import halut_workload
    from learning.errors import HalutError

    wl = halut_workload(chip, bundle=net, layer="fc3", rows=4)
    assert (wl.kind, wl.source, wl.rows) == ("bundle", f"{net}:fc3", 4)
    fc3_inputs = row["D"]
    assert wl.M == 10
    assert fc3_inputs == wl.D
    with pytest.raises(HalutError, match="no layer 'nope'"):
        halut_workload(chip, bundle=net, layer="nope")
    r = CliRunner().invoke(main, [*base, *chip_args, "--energy", f"fc3={power}"])
    assert r.exit_code == 0, r.output  # a layer's own record; the human trace says it
    assert "nJ per image" in r.stdout and "fc3 " in r.stdout.split("energy:")[1]
    for args, message in [
        (["--energy", str(power)], "measured on another chip"),  # default chip
        ([*chip_args, "--energy", f"conv1={power}"], "does not have"),
        ([*chip_args, "--energy", str(tmp_path / "none.json")], "not found"),
        (["--backend", "golden", "--energy", str(power)], "need the rtl backend"),
    ]:
        r = CliRunner().invoke(main, [*base, *args])
        assert r.exit_code == 1, (args, r.output)
        assert message in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
