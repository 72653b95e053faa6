"""``halut convergence`` (flows/convergence.py, flows/cmd_convergence.py) on tests/test_sweep.py's
tiny conv + linear network: the CSV, JSON and PNG, NMSE falling with the training rows,
capped row counts, single vs cumulative, resume, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from emulator.zoo import load_model
from flows.clibase import HalutGroup
from flows.cmd_convergence import register
from flows.convergence import CSV_COLUMNS, ConvergenceOptions, parse_rows, run_convergence
from learning.errors import HalutError
from tests.test_sweep import MODEL_PY

#: 60 calibration images: the conv (16 rows per image) gets 960 rows, the linear layer 60
N_IMAGES = 80
ROWS = "16,64,1000"


@click.group(cls=HalutGroup)
def cli() -> None:
    """The halut group, here with only ``convergence`` (flows/cli.py adds it to the real one)."""


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
    return ["convergence", "--model", f"{files['spec']}:factory", "--data", str(files["X"]),
            "--labels", str(files["y"]), "--run-dir", str(run_dir), *extra]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == list(CSV_COLUMNS)
        return list(reader)


def test_convergence_writes_csv_json_and_png(files: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, _args(files, run, "--rows", ROWS, "--json"))
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out == json.loads((run / "convergence.json").read_text())
    assert out["format"] == "halut-convergence" and out["row_counts"] == [16, 64, 1000]
    assert out["float_accuracy"] == 1.0  # the labels are the float model's predictions
    assert out["data"] == {"images": 80, "calibration_images": 60, "holdout_images": 20}
    assert [la["name"] for la in out["layers"]] == ["0", "3"]
    assert out["records"] == {"computed": 6, "reused": 0}
    assert (run / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = _csv(run / "convergence.csv")
    assert [(r["layer"], r["rows_requested"]) for r in rows] == [
        (la, R) for la in ("0", "3") for R in ("16", "64", "1000")]
    # rows beyond what the 60 calibration images give are capped and flagged
    assert [(r["rows"], r["rows_available"], r["rows_capped"]) for r in rows] == [
        ("16", "960", "false"), ("64", "960", "false"), ("960", "960", "true"),
        ("16", "60", "false"), ("60", "60", "true"), ("60", "60", "true")]
    for row, rec in zip(rows, out["results"], strict=True):
        assert row["mode"] == "single" and row["layers_replaced"] == "1"
        assert row["K"] == "16" and row["C_requested"] == "16"
        assert row["C"] == ("9" if row["layer"] == "0" else "16")  # capped to the conv's D
        assert row["threshold_format"] == "fp16" and row["lut_format"] == "int8"
        assert float(row["nmse"]) == rec["nmse"] and 0.0 < rec["nmse"] < float("inf")
        assert 0.0 <= float(row["nmse_calibration"]) < float("inf")
        assert float(row["accuracy"]) == rec["accuracy"]
        assert float(row["float_accuracy"]) == 1.0
        assert float(row["accuracy_drop"]) == pytest.approx(1.0 - rec["accuracy"])
        assert rec["learn_seconds"] >= 0 and rec["eval_seconds"] >= 0
    conv = [r for r in out["results"] if r["layer"] == "0"]
    # the clear case: 16 rows for K=16 prototypes fit the calibration rows almost exactly
    # and generalise badly; 960 rows cut the held-out NMSE by far more than half
    assert conv[0]["nmse_calibration"] < 0.01 < conv[0]["nmse"]
    assert conv[0]["nmse"] > conv[1]["nmse"] > conv[2]["nmse"]
    assert conv[2]["nmse"] < 0.5 * conv[0]["nmse"]
    # a capped count learns from the same rows as the count that reaches them
    lin = [r for r in out["results"] if r["layer"] == "3"]
    assert (lin[1]["nmse"], lin[1]["accuracy"]) == (lin[2]["nmse"], lin[2]["accuracy"])


def test_single_and_cumulative(files: dict[str, Path], tmp_path: Path) -> None:
    model = load_model(f"{files['spec']}:factory")
    X, y = np.load(files["X"]), np.load(files["y"])
    res = {mode: run_convergence(model, X, y, ConvergenceOptions(row_counts=(32, 16),
                                                                 mode=mode),
                                 tmp_path / mode)["results"]
           for mode in ("single", "cumulative")}
    assert [r["rows_requested"] for r in res["single"]] == [16, 32, 16, 32]
    assert [r["layers_replaced"] for r in res["single"]] == [1, 1, 1, 1]
    assert [r["layers_replaced"] for r in res["cumulative"]] == [1, 1, 2, 2]
    for a, b in zip(res["single"], res["cumulative"], strict=True):  # first layer: same net
        if a["layer_index"] == 0:
            assert (a["nmse"], a["accuracy"]) == (b["nmse"], b["accuracy"])


def test_a_killed_study_resumes_and_damaged_records_are_recomputed(
        files: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = _args(files, run, "--rows", "16,64", "--json")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    records = sorted(run.glob("record_*.json"))
    assert len(records) == 4
    csv_before = (run / "convergence.csv").read_bytes()
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in records}
    records[1].unlink()  # as if the study had been killed before it
    r = CliRunner().invoke(cli, args[:-1])  # the table this time
    assert r.exit_code == 0, r.output
    assert "1 computed, 3 reused" in r.stdout and "float accuracy 100.00 %" in r.stdout
    for p in records:
        now = (p.stat().st_mtime_ns, p.stat().st_ino)
        assert (now == stamps[p]) is (p != records[1]), p
    assert (run / "convergence.csv").read_bytes() == csv_before
    # a truncated record, one edited without its checksum, one of another run: recomputed
    raw = records[0].read_bytes()
    records[0].write_bytes(raw[:len(raw) // 2])
    doc = json.loads(records[2].read_text())
    doc["record"]["nmse"] = 0.0
    records[2].write_text(json.dumps(doc))
    doc = json.loads(records[3].read_text())
    doc["fingerprint"] = "0" * 64
    records[3].write_text(json.dumps(doc))
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["records"] == {"computed": 3, "reused": 1}
    assert (run / "convergence.csv").read_bytes() == csv_before
    # one more row count: only its records are computed
    r = CliRunner().invoke(cli, _args(files, run, "--rows", "16,32,64", "--json"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["records"] == {"computed": 2, "reused": 4}
    # another option: another fingerprint, nothing reused
    r = CliRunner().invoke(cli, [*args, "-C", "4"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["records"] == {"computed": 4, "reused": 0}


def test_bad_input_is_one_line_before_any_work(files: dict[str, Path],
                                               tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    cases = [
        (["--rows", "0,64"], "0 is not a positive row count"),
        (["--rows", "-5"], "-5 is not a positive row count"),
        (["--rows", "250,abc"], "'abc' is not an integer"),
        (["--rows", "1.5"], "'1.5' is not an integer"),
        (["--rows", "16,,64"], "comma-separated and non-empty"),
        (["--rows", ""], "comma-separated and non-empty"),
        (["--layers", "fc*"], "no Linear/Conv layer matches --layers fc*"),
        (["--rows", "8,64"], "fewer than K=16"),
        (["-K", "12"], "K must be a power of two"),
        (["-C", "0"], "C must be an integer >= 1"),
        (["--holdout", "1.5"], "holdout"),
    ]
    for extra, message in cases:
        run = tmp_path / "never"
        r = CliRunner().invoke(cli, _args(files, run, *extra))
        assert r.exit_code == 1, (extra, r.output)
        assert message in r.stderr and r.stderr.count("\n") == 1, (extra, r.stderr)
        assert not list(run.glob("record_*")), extra  # nothing learned
    r = CliRunner().invoke(cli, _args(files, tmp_path / "afile" / "run", "--model",
                                      "zoo:no-such-model"))
    assert r.exit_code == 1 and "is not a folder" in r.stderr, r.stderr  # before the model
    assert r.stderr.count("\n") == 1
    assert parse_rows(" 500, 250,500 ") == (250, 500)
    with pytest.raises(HalutError, match="mode must be one of"):
        ConvergenceOptions(mode="all")
    with pytest.raises(HalutError, match="row counts must be positive"):
        ConvergenceOptions(row_counts=(0,))
