"""Inputs and outputs are checked before any work (docs/reliability.md): .npy files
that declare more data than they hold or than memory allows, unwritable outputs, and
extreme but finite training values -- one line each, never a traceback, a numpy warning or
a model whose outputs overflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from flows.cli import main
from learning import load_model, quantize, save_model
from learning.errors import HalutError
from learning.maddness import learn
from learning.model import HalutModel

# every test here: a numpy RuntimeWarning (overflow, invalid value) is a failure
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res: Result, match: str) -> str:
    assert res.exit_code == 1, (res.output, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], res.stderr
    assert "Traceback" not in res.output and "Warning" not in res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(3)
    A = rng.standard_normal((64, 8)).astype(np.float32)
    B = rng.standard_normal((8, 4)).astype(np.float32)
    paths = {"A": d / "A.npy", "B": d / "B.npy", "model": d / "m.halut",
             "huge": d / "huge.npy", "blocker": d / "a-file"}
    np.save(paths["A"], A)
    np.save(paths["B"], B)
    model = learn(A, B, 2, 4)
    save_model(paths["model"], model, quantize(model))
    with open(paths["huge"], "wb") as fh:  # a header declaring 32 TB, then 64 bytes
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 8)})
        fh.write(bytes(64))
    paths["blocker"].write_text("not a folder")
    return paths


# ---- .npy files: declared sizes ------------------------------------------------------------

def test_a_huge_declared_shape_is_one_line_in_every_command(files: dict[str, Path]) -> None:
    m, A, B, huge = files["model"], files["A"], files["B"], files["huge"]
    for args in (["learn", "-a", huge, "-w", B, "-C", 2, "-o", files["A"].parent / "x.halut"],
                 ["learn", "-a", A, "-w", huge, "-C", 2, "-o", files["A"].parent / "x.halut"],
                 ["run", m, "-a", huge, "-b", "golden"],
                 ["emulate", m, "-a", huge],
                 ["compare", m, "-a", huge, "--backends", "golden"],
                 ["eval", m, "-a", huge, "-w", B]):
        line = one_line_error(run(*args), "is truncated or corrupt")
        assert "(1000000000000, 8) float32" in line and "64 bytes of data" in line


def test_the_data_set_loader_checks_declared_sizes_too(files: dict[str, Path]) -> None:
    from emulator.datasets import load_npy

    with pytest.raises(HalutError, match="declares shape .* but the file holds 64 bytes"):
        load_npy(files["huge"])


def test_a_truncated_file_is_named_before_numpy_reads_it(files: dict[str, Path],
                                                         tmp_path: Path) -> None:
    cut = tmp_path / "cut.npy"
    cut.write_bytes(files["A"].read_bytes()[:-5])
    one_line_error(run("emulate", files["model"], "-a", cut),
                   f"declares shape (64, 8) float32, 2048 bytes, but the file holds "
                   f"{64 * 8 * 4 - 5} bytes")


def test_more_than_the_available_memory_is_one_line(files: dict[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import learning.validate as validate

    assert (validate.available_memory() or 0) > 0  # /proc/meminfo or sysconf
    monkeypatch.setattr(validate, "available_memory", lambda: 1000)
    line = one_line_error(run("run", files["model"], "-a", files["A"], "-b", "golden"),
                          "more than the 1000 bytes of memory available")
    assert "shape (64, 8) float32, 2.0 KB" in line


# ---- outputs are checked before the work ---------------------------------------------------

def _no_work(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the work started before the output was checked")


def test_learn_checks_its_output_before_learning(files: dict[str, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.cmd_model as cmd_model

    monkeypatch.setattr(cmd_model, "learn", _no_work)
    monkeypatch.setattr(cmd_model, "load_npy", _no_work)
    one_line_error(run("learn", "-a", files["A"], "-w", files["B"], "-C", 2, "-o",
                       files["blocker"] / "m.halut"),
                   f"cannot write model {files['blocker'] / 'm.halut'}: "
                   f"{files['blocker']} is not a folder")


def test_emulate_checks_output_waveform_and_resume_before_running(
        files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import flows.cmd_layer as cmd_layer

    monkeypatch.setattr(cmd_layer, "_run", _no_work)
    monkeypatch.setattr(cmd_layer, "_load", _no_work)
    bad = files["blocker"] / "y.npy"
    base = ["emulate", files["model"], "-a", files["A"]]
    one_line_error(run(*base, "-o", bad), f"cannot write output {bad}")
    one_line_error(run(*base, "-b", "rtl", "--vcd", bad), f"cannot write waveform {bad}")
    one_line_error(run(*base, "--resume", files["blocker"] / "tiles"), "is not a folder")
    same = tmp_path / "y.vcd"
    one_line_error(run(*base, "-b", "rtl", "--vcd", same, "-o", same), "name the same file")
    assert not same.exists()


def test_emulate_writes_no_output_when_the_outputs_overflow(tmp_path: Path) -> None:
    """A model whose lookup-table sums pass float32's largest value: one line, no file."""
    lut = np.zeros((1, 2, 2), np.float32)
    lut[:, :, 1] = 3e38  # code 1 in both codebooks: 6e38
    model = HalutModel(dims=np.array([[0], [1]]), thresholds=np.zeros((2, 1), np.float32),
                       lut=lut, bias=np.zeros(1, np.float32), D=2)
    path = tmp_path / "big.halut"
    save_model(path, model, quantize(model, lut_format="fp16"))
    np.save(tmp_path / "A.npy", np.array([[1.0, 1.0], [-1.0, -1.0]], np.float32))
    out = tmp_path / "y.npy"
    line = one_line_error(run("emulate", path, "-a", tmp_path / "A.npy", "-o", out),
                          "the golden outputs overflow float32 (1 values, the first at "
                          "index (0, 0)")
    assert f"{out} was not written" in line and not out.exists()


# ---- extreme but finite training values ----------------------------------------------------

def _learn_cli(tmp_path: Path, A: np.ndarray, B: np.ndarray, *opts: object) -> Result:
    np.save(tmp_path / "A.npy", A)
    np.save(tmp_path / "B.npy", B)
    return run("learn", "-a", tmp_path / "A.npy", "-w", tmp_path / "B.npy", *opts,
               "-o", tmp_path / "m.halut", "--json")


def test_an_extreme_value_whose_outputs_overflow_is_one_line_and_no_model(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((64, 8)).astype(np.float32)
    A[3, 2] = 3.4e38
    B = rng.standard_normal((8, 4)).astype(np.float32)
    B[2, 0] = 2.0  # A[3] @ B[:, 0] is about 6.8e38
    line = one_line_error(_learn_cli(tmp_path, A, B, "-C", 2, "-K", 4),
                          "the exact outputs A @ B + bias overflow float32 (row 3, column 0")
    assert "scale the activations or weights down" in line
    assert not (tmp_path / "m.halut").exists()


@pytest.mark.parametrize("fmt", [("fp16", "int8"), ("int8", "fp16")])
def test_an_extreme_value_with_finite_outputs_learns_a_finite_model(
        tmp_path: Path, fmt: tuple[str, str]) -> None:
    import json

    from emulator import golden

    rng = np.random.default_rng(0)
    A = rng.standard_normal((64, 8)).astype(np.float32)
    A[3, 2] = 3.4e38
    B = rng.standard_normal((8, 4)).astype(np.float32)
    B[2, :] = [0.5, -0.25, 0.125, 0.0]  # the exact outputs stay within float32
    res = _learn_cli(tmp_path, A, B, "-C", 4, "-K", 16, "--threshold-format", fmt[0],
                     "--lut-format", fmt[1])
    assert res.exit_code == 0, res.output
    assert "Warning" not in res.stderr
    out = json.loads(res.stdout)
    assert np.isfinite(out["nmse_train_float"]) and np.isfinite(out["nmse_train_quantized"])
    saved = load_model(tmp_path / "m.halut")
    assert saved.program is not None
    assert np.all(np.isfinite(saved.model.predict(A)))
    assert np.all(np.isfinite(golden.run(saved.program, A).y))


def test_partial_sums_that_overflow_float32_are_redone_in_float64() -> None:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((64, 2)).astype(np.float32)
    A[3, :] = 3e38
    B = np.array([[1.2], [-1.2]], np.float32)  # row 3: 3.6e38 - 3.6e38 = 0, exactly
    model = learn(A, B, 1, 2)  # one codebook: its partial product is that sum too
    assert np.isfinite(model.stats["nmse_train"]) and np.all(np.isfinite(model.lut))


def test_a_lookup_table_beyond_float32_is_refused() -> None:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((64, 2)).astype(np.float32)
    A[3, :] = 3e38
    B = np.array([[1.2], [-1.2]], np.float32)
    with pytest.raises(HalutError, match="lookup-table entries overflow float32"):
        learn(A, B, 2, 2, ridge=None)  # leaf means: 3e38 * 1.2 in one codebook's table
