"""``halut learn``, ``halut info`` and ``halut eval``: happy paths and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from flows.cli import main
from learning import load_model
from learning.datasets import synthetic


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    A, A_test, B = synthetic(n_train=1500, n_test=300, D=32, M=6, seed=4)
    paths = {"A": d / "A.npy", "At": d / "At.npy", "B": d / "B.npy", "bias": d / "b.npy",
             "model": d / "m.halut"}
    np.save(paths["A"], A)
    np.save(paths["At"], A_test)
    np.save(paths["B"], B)
    np.save(paths["bias"], np.linspace(-1, 1, 6).astype(np.float32))
    return paths


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(res: Result, match: str) -> None:
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], res.stderr
    assert "Traceback" not in res.output


def test_learn_info_eval_round_trip(files: dict[str, Path]) -> None:
    res = run("learn", "-a", files["A"], "-w", files["B"], "-C", 8, "-K", 16, "--bias",
              files["bias"], "--threshold-format", "int8", "--lut-format", "fp16",
              "-o", files["model"], "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["C"], out["K"], out["D"], out["M"], out["N"]) == (8, 16, 32, 6, 1500)
    assert out["nmse_train_quantized"] <= 1.05 * out["nmse_train_float"]
    saved = load_model(files["model"])
    assert saved.program is not None and saved.program.threshold_format == "int8"
    np.testing.assert_allclose(saved.model.bias, np.linspace(-1, 1, 6), atol=1e-7)

    res = run("info", files["model"], "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["program"]["lut_format"] == "fp16" and info["stats"]["n_rows"] == 1500
    res = run("info", files["model"])
    assert res.exit_code == 0 and "C=8 K=16 D=32 M=6" in res.stdout

    res = run("eval", files["model"], "-a", files["At"], "-w", files["B"], "--json")
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)
    assert 0 < ev["nmse_float"] < 0.6 and ev["nmse_quantized"] <= 1.05 * ev["nmse_float"]
    assert ev["max_abs_error_quantized"] > 0
    res = run("eval", files["model"], "-a", files["At"], "-w", files["B"])
    assert res.exit_code == 0 and "quantized" in res.stdout


def test_learn_prints_a_human_summary(files: dict[str, Path], tmp_path: Path) -> None:
    res = run("learn", "-a", files["A"], "-w", files["B"], "-C", 4, "-K", 4,
              "-o", tmp_path / "s.halut")
    assert res.exit_code == 0, res.output
    assert "train NMSE: float" in res.stdout and (tmp_path / "s.halut").exists()


def test_bad_inputs_give_one_line_and_exit_1(files: dict[str, Path], tmp_path: Path) -> None:
    A = np.load(files["A"])
    nan = A.copy()
    nan[2, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "int.npy", A.astype(np.int64))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    out = tmp_path / "o.halut"
    B = files["B"]
    cases = [
        (["-a", tmp_path / "nan.npy", "-w", B, "-C", 4], "NaN"),
        (["-a", tmp_path / "int.npy", "-w", B, "-C", 4], "float array"),
        (["-a", tmp_path / "missing.npy", "-w", B, "-C", 4], "does not exist"),
        (["-a", tmp_path / "junk.npy", "-w", B, "-C", 4], "is not a valid .npy array file"),
        (["-a", tmp_path / "obj.npy", "-w", B, "-C", 4], "holds Python objects"),
        (["-a", files["A"], "-w", files["A"], "-C", 4], "D=32 rows"),
        (["-a", files["A"], "-w", B, "-C", 4, "-K", 12], "power of two"),
        (["-a", files["A"], "-w", B, "-C", 64], "C <= D"),
        (["-a", files["A"], "-w", B, "-C", 4, "--bias", files["A"]], "bias"),
    ]
    for args, match in cases:
        assert_one_line_error(run("learn", *args, "-o", out), match)
    assert not out.exists()


def test_info_and_eval_reject_bad_model_files(files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "bad.halut").write_bytes(b"garbage")
    assert_one_line_error(run("info", tmp_path / "bad.halut"), "not an npz/zip archive")
    assert_one_line_error(run("eval", tmp_path / "none.halut", "-a", files["At"], "-w",
                              files["B"]), "does not exist")
    if not files["model"].exists():
        run("learn", "-a", files["A"], "-w", files["B"], "-C", 8, "-o", files["model"])
    assert_one_line_error(run("eval", files["model"], "-a", files["B"], "-w", files["B"]),
                          "columns")


def test_messages_for_text_files_big_values_and_bias_vectors(files: dict[str, Path],
                                                             tmp_path: Path) -> None:
    if not files["model"].exists():
        run("learn", "-a", files["A"], "-w", files["B"], "-C", 8, "-o", files["model"])
    (tmp_path / "text.npy").write_text("hello\n")
    res = run("eval", files["model"], "-a", tmp_path / "text.npy", "-w", files["B"])
    assert_one_line_error(res, "is not a valid .npy array file")
    assert "pickle" not in res.stderr
    np.savez(tmp_path / "two.npz", a=np.zeros(3), b=np.zeros(3))
    (tmp_path / "two.npy").write_bytes((tmp_path / "two.npz").read_bytes())
    assert_one_line_error(run("eval", files["model"], "-a", tmp_path / "two.npy", "-w",
                              files["B"]), "is an .npz archive")
    # float64 beyond float32's range: one line, no numpy RuntimeWarning on stderr
    big = np.load(files["At"]).astype(np.float64)
    big[1, 2] = 1e300
    np.save(tmp_path / "big.npy", big)
    res = run("eval", files["model"], "-a", tmp_path / "big.npy", "-w", files["B"])
    assert_one_line_error(res, "activations hold values outside the float32 range")
    assert "at row 1, column 2" in res.stderr and "RuntimeWarning" not in res.stderr
    # a bias of the wrong length is reported with its own shape, NaN by its index
    np.save(tmp_path / "b5.npy", np.zeros(5, np.float32))
    bnan = np.zeros(6, np.float32)
    bnan[3] = np.nan
    np.save(tmp_path / "bnan.npy", bnan)
    for cmd in (["eval", files["model"], "-a", files["At"], "-w", files["B"]],
                ["learn", "-a", files["A"], "-w", files["B"], "-C", 4,
                 "-o", tmp_path / "o.halut"]):
        assert_one_line_error(run(*cmd, "--bias", tmp_path / "b5.npy"),
                              "bias must be a vector of 6 values, got shape (5,)")
        assert_one_line_error(run(*cmd, "--bias", tmp_path / "bnan.npy"),
                              "bias holds NaN at index 3")
    assert not (tmp_path / "o.halut").exists()


def test_learn_rejects_a_negative_seed(files: dict[str, Path], tmp_path: Path) -> None:
    res = run("learn", "-a", files["A"], "-w", files["B"], "-C", 4, "--seed", -1,
              "-o", tmp_path / "o.halut")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "'--seed': -1 is not in the range x>=0" in res.stderr
    assert not (tmp_path / "o.halut").exists()


def test_info_and_eval_reject_a_bad_header_with_a_valid_checksum(files: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    if not files["model"].exists():
        run("learn", "-a", files["A"], "-w", files["B"], "-C", 8, "-o", files["model"])
    with np.load(files["model"], allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "header"}
        header = json.loads(npz["header"].tobytes().decode())
    header["stats"] = [1, 2]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    bad = tmp_path / "bad.halut"
    with open(bad, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    for args in (["info", bad], ["info", bad, "--json"],
                 ["eval", bad, "-a", files["At"], "-w", files["B"]]):
        assert_one_line_error(run(*args), "header field 'stats' must be an object")
