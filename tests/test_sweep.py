"""``halut sweep`` (flows/sweep.py, flows/cmd_sweep.py) on a tiny conv + linear network: the
CSV and JSON, the PQ baseline's modules, single vs cumulative, resume, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from emulator.network import NetConfig, evaluate_network, halutize
from emulator.zoo import load_model
from flows.clibase import HalutGroup
from flows.cmd_sweep import register
from flows.sweep import (
    CSV_COLUMNS,
    PQConv,
    PQLinear,
    SweepOptions,
    grid_points,
    parse_grid,
    run_sweep,
    split_indices,
)
from learning.errors import HalutError
from learning.pq import learn_pq

MODEL_PY = """
import torch
from torch import nn

def factory():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(1),
                         nn.Linear(64, 3))
"""
N_IMAGES = 40


@click.group(cls=HalutGroup)
def cli() -> None:
    """The halut group, here with only ``sweep`` (flows/cli.py adds it to the real one)."""


register(cli)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A model file, images and the float model's own predictions as labels."""
    spec = tmp_path / "tiny.py"
    spec.write_text(MODEL_PY)
    X = np.random.default_rng(0).standard_normal((N_IMAGES, 1, 4, 4)).astype(np.float32)
    model = load_model(f"{spec}:factory")
    with torch.no_grad():
        y = model(torch.from_numpy(X)).numpy().argmax(1)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y.astype(np.int64))
    return {"spec": spec, "X": tmp_path / "X.npy", "y": tmp_path / "y.npy"}


def _args(files: dict[str, Path], run_dir: Path, *extra: str) -> list[str]:
    return ["sweep", "--model", f"{files['spec']}:factory", "--data", str(files["X"]),
            "--labels", str(files["y"]), "--run-dir", str(run_dir), *extra]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0]) == list(CSV_COLUMNS)
    return rows


def test_sweep_writes_csv_and_json_and_checks_the_cycle_model(files: dict[str, Path],
                                                              tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, _args(files, run, "--grid", "C=4,16", "--grid", "K=16",
                                      "--encoder", "maddness,pq", "--json"))
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out == json.loads((run / "sweep.json").read_text())
    assert out["float_accuracy"] == 1.0  # the labels are the float model's predictions
    assert out["grid"] == {"C": [4, 16], "K": [16], "threshold_format": ["fp16"],
                           "lut_format": ["int8"]}
    assert out["options"]["mode"] == "single" and out["options"]["holdout"] == 0.25
    assert out["encoders"] == ["maddness", "pq"] and len(out["points"]) == 4
    assert out["data"] == {"images": 40, "calibration_images": 30, "holdout_images": 10}
    assert [la["name"] for la in out["layers"]] == ["0", "3"]
    assert [la["rows_per_image"] for la in out["layers"]] == [16, 1]
    rows = _csv(run / "sweep.csv")
    assert len(rows) == 2 * 2 * 2  # (2 maddness + 2 pq points) x 2 layers
    for row, rec in zip(rows, out["rows"], strict=True):
        assert row["layer"] == rec["layer"] and row["encoder"] == rec["encoder"]
        assert 0.0 <= float(row["nmse"]) < float("inf")
        assert 0.0 <= float(row["accuracy"]) <= 1.0
        assert float(row["accuracy_drop"]) == pytest.approx(1.0 - float(row["accuracy"]))
        if row["encoder"] == "maddness":
            assert int(row["cycles_per_image"]) > 0 and int(row["lut_bytes"]) > 0
            assert row["runs_on_accelerator"] == "true"
            assert row["threshold_format"] == "fp16" and row["lut_format"] == "int8"
        else:
            assert rec["cycles_per_image"] is None and rec["lut_bytes"] is None
            assert row["cycles_per_image"] == row["lut_bytes"] == ""
            assert row["runs_on_accelerator"] == "false" and row["lut_format"] == ""
    # C=16 is more than the conv's D=9: capped and recorded
    conv16 = [r for r in out["rows"] if r["layer"] == "0" and r["C_requested"] == 16]
    assert conv16 and all(r["C"] == 9 for r in conv16)
    lin16 = [r for r in out["rows"] if r["layer"] == "3" and r["C_requested"] == 16]
    assert all(r["C"] == 16 for r in lin16)
    # LUT bytes: int8 entries, C x K x M
    m4 = next(r for r in out["rows"] if r["encoder"] == "maddness" and r["C"] == 4
              and r["layer"] == "3")
    assert m4["lut_bytes"] == 4 * 16 * 3
    check = out["cycle_model_check"]
    assert out["cycle_model_checked"] is True and check["layer"] == "0"
    assert check["point"]["C"] == 4 and check["images"] == 2
    assert check["rtl_cycles_per_image"] == check["model_cycles_per_image"]
    assert check["rtl_bit_exact"] is True and out["cycle_model_agrees"] is True
    first = out["rows"][0]
    assert first["cycles_per_image"] == check["model_cycles_per_image"]


def test_single_and_cumulative(files: dict[str, Path], tmp_path: Path) -> None:
    model = load_model(f"{files['spec']}:factory")
    X, y = np.load(files["X"]), np.load(files["y"])
    points = grid_points(parse_grid(["C=4", "K=16"]), ["maddness", "pq"])
    out = {}
    for mode in ("single", "cumulative"):
        opts = SweepOptions(mode=mode, rtl_check=False)
        out[mode] = run_sweep(model, X, y, points, opts, tmp_path / mode)
        assert out[mode]["cycle_model_checked"] is False
        assert out[mode]["grid"] == {"C": [4], "K": [16], "threshold_format": ["fp16"],
                                     "lut_format": ["int8"]}
    single, cum = out["single"]["rows"], out["cumulative"]["rows"]
    assert [r["layers_replaced"] for r in single] == [1, 1, 1, 1]
    assert [r["layers_replaced"] for r in cum] == [1, 2, 1, 2]
    for a, b in zip(single, cum, strict=True):  # the first layer: the same network
        if a["layer_index"] == 0:
            assert (a["nmse"], a["accuracy"]) == (b["nmse"], b["accuracy"])
    # cumulative, last layer: every layer halutized, golden accuracy on the held-out images
    cal, hold = split_indices(N_IMAGES, 0.25, 0)
    net = halutize(load_model(f"{files['spec']}:factory"), [torch.from_numpy(X[cal])],
                   NetConfig(C=4, K=16))
    ev = evaluate_network(net, X[hold], y[hold], backends=("golden",))
    last = next(r for r in cum if r["encoder"] == "maddness" and r["layer"] == "3")
    assert last["accuracy"] == ev["totals"]["accuracy"]["golden"]
    assert last["nmse"] == pytest.approx(ev["layers"][1]["nmse"], rel=1e-12)


def test_a_killed_sweep_resumes_and_damaged_records_are_recomputed(
        files: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = _args(files, run, "--grid", "C=2,4", "--grid", "K=16", "--no-rtl-check", "--json")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["records"] == {"computed": 4, "reused": 0}
    records = sorted(run.glob("record_*.json"))
    assert len(records) == 4
    csv_before = (run / "sweep.csv").read_bytes()
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in records}
    records[1].unlink()  # as if the sweep had been killed before it
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["records"] == {"computed": 1, "reused": 3}
    for p in records:
        now = (p.stat().st_mtime_ns, p.stat().st_ino)
        assert (now == stamps[p]) is (p != records[1]), p
    assert (run / "sweep.csv").read_bytes() == csv_before
    # a damaged record, one edited without its checksum, one of another run: recomputed
    raw = records[0].read_bytes()
    records[0].write_bytes(raw[:len(raw) // 2])
    doc = json.loads(records[2].read_text())
    doc["record"]["accuracy"] = 0.0
    records[2].write_text(json.dumps(doc))
    doc = json.loads(records[3].read_text())
    doc["fingerprint"] = "0" * 64
    records[3].write_text(json.dumps(doc))
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["records"] == {"computed": 3, "reused": 1}
    assert (run / "sweep.csv").read_bytes() == csv_before
    # other options: another fingerprint, nothing reused
    r = CliRunner().invoke(cli, [*args, "--holdout", "0.5"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["records"] == {"computed": 4, "reused": 0}


def test_pq_modules_equal_the_float_layers_where_pq_is_exact() -> None:
    # binary inputs and one dimension per subspace (C = D), K=2: every value is a centroid
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    x = (torch.rand(3, 4, 5, 5) > 0.5).float()
    cols = nn.functional.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 36).numpy()
    W = conv.weight.detach().numpy().reshape(6, -1).T
    b = conv.bias.detach().numpy()
    # im2col columns of group g are channels [2g, 2g+2): unfold's order, as im2col's
    models = [learn_pq(np.ascontiguousarray(cols[:, 18 * g:18 * (g + 1)]),
                       np.ascontiguousarray(W[:, 3 * g:3 * (g + 1)]), 18, 2,
                       bias=b[3 * g:3 * (g + 1)]) for g in range(2)]
    from learning.conv import Conv2dGeometry

    pq = PQConv(conv, models, Conv2dGeometry.from_conv(conv))
    torch.testing.assert_close(pq(x), conv(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pq.float_forward(x), conv(x))
    lin = nn.Linear(5, 2)
    z = (torch.rand(2, 7, 5) > 0.5).float()  # rank 3: rows are the tokens
    pl = PQLinear(lin, [learn_pq(z.reshape(-1, 5).numpy(), lin.weight.detach().numpy().T, 5,
                                 2, bias=lin.bias.detach().numpy())])
    torch.testing.assert_close(pl(z), lin(z), rtol=1e-5, atol=1e-5)


def test_bad_input_is_one_line_before_any_work(files: dict[str, Path],
                                               tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    cases = [
        (["--grid", "D=4"], "unknown grid key 'D'"),
        (["--grid", "K=12"], "K must be a power of two"),
        (["--grid", "C=0"], "C must be >= 1"),
        (["--grid", "C=4", "--grid", "C=8"], "given twice"),
        (["--grid", "lut=int4"], "must be one of"),
        (["--encoder", "opq"], "unknown encoder"),
        (["--holdout", "1.5"], "holdout"),
        (["--layers", "fc*"], "no Linear/Conv layer matches --layers fc*"),
        (["--grid", "K=64"], "fewer than K=64"),
    ]
    for extra, message in cases:
        run = tmp_path / "never"
        r = CliRunner().invoke(cli, _args(files, run, *extra))
        assert r.exit_code == 1, (extra, r.output)
        assert message in r.stderr and r.stderr.count("\n") == 1, (extra, r.stderr)
        assert not list(run.glob("record_*")), extra  # nothing learned
    r = CliRunner().invoke(cli, _args(files, tmp_path / "afile" / "run"))
    assert r.exit_code == 1 and "is not a folder" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    with pytest.raises(HalutError, match="mode must be one of"):
        SweepOptions(mode="all")
