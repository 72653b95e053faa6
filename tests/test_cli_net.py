"""``halut net learn|info|eval`` on a zoo model, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
