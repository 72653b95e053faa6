"""The .halut model file: round trip, each kind of corruption, interrupted writes."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from learning import HalutError, HalutModel, learn, load_model, modelfile, quantize, save_model
from learning.datasets import synthetic


@pytest.fixture(scope="module")
def model() -> HalutModel:
    A, _, B = synthetic(n_train=1000, n_test=10, D=32, M=4, seed=2)
    return learn(A, B, 4, 16, bias=np.arange(4, dtype=np.float32))


def arrays_and_header(path: Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "header"}
        header = json.loads(npz["header"].tobytes().decode())
    return arrays, header


def write_raw(path: Path, arrays: dict[str, np.ndarray], header: dict[str, object],
              reseal: bool = True) -> None:
    """Write ``arrays`` and ``header`` as they are (not canonical JSON); ``reseal``: with the
    checksum recomputed over them (a forged but consistent file), else the old one kept."""
    header = dict(header)
    if reseal and isinstance(header.get("checksum"), str):  # (a bad checksum field stays)
        legacy = header.get("format_version") == 1
        header["checksum"] = modelfile.checksum(arrays, None if legacy else header)
    payload = dict(arrays)
    payload["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:  # a path would get ".npz" appended
        np.savez(fh, **payload)  # type: ignore[arg-type]


@pytest.mark.parametrize("formats", [("fp16", "int8"), ("int8", "fp16"), None])
def test_round_trip_keeps_every_array_and_fact(tmp_path: Path, model: HalutModel,
                                               formats: tuple[str, str] | None) -> None:
    program = None if formats is None else quantize(model, *formats)
    path = save_model(tmp_path / "m.halut", model, program)
    saved = load_model(path)
    for name in ("dims", "thresholds", "lut", "bias", "weights", "counts", "calibration"):
        np.testing.assert_array_equal(getattr(saved.model, name), getattr(model, name))
    assert saved.model.stats["nmse_train"] == model.stats["nmse_train"]
    assert saved.header["format"] == "halut-model" and saved.header["format_version"] == 2
    if program is None:
        assert saved.program is None
    else:
        assert saved.program is not None
        for name in ("dims", "thresholds", "lut", "scale", "bias"):
            a, b = getattr(saved.program, name), getattr(program, name)
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        assert saved.program.summary() == program.summary()
    with zipfile.ZipFile(path) as zf:  # no pickled objects anywhere
        assert all(n.endswith(".npy") for n in zf.namelist())


def test_truncated_file_is_a_clear_error(tmp_path: Path, model: HalutModel) -> None:
    path = save_model(tmp_path / "m.halut", model, quantize(model))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HalutError, match="truncated"):
        load_model(path)


def test_bit_flip_in_an_array_is_a_clear_error(tmp_path: Path, model: HalutModel) -> None:
    path = save_model(tmp_path / "m.halut", model, quantize(model))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("model_lut.npy")
    pos = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[pos] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(HalutError, match="corrupt"):
        load_model(path)


def test_changed_array_with_stale_checksum_is_a_clear_error(tmp_path: Path,
                                                            model: HalutModel) -> None:
    path = save_model(tmp_path / "m.halut", model)
    arrays, header = arrays_and_header(path)
    arrays["model_lut"] = arrays["model_lut"].copy()
    arrays["model_lut"][0, 0, 0] += 1
    write_raw(path, arrays, header, reseal=False)
    with pytest.raises(HalutError, match="checksum mismatch"):
        load_model(path)


@pytest.mark.parametrize("version", [0, 3, True, 2.0, "2"])
def test_other_format_version_names_the_versions(tmp_path: Path, model: HalutModel,
                                                 version: object) -> None:
    path = save_model(tmp_path / "m.halut", model)
    arrays, header = arrays_and_header(path)
    header["format_version"] = version
    write_raw(path, arrays, header)
    shown = json.dumps(version)
    with pytest.raises(HalutError, match=f"version {re.escape(shown)}, but this halut reads "
                                         "versions 1 and 2"):
        load_model(path)


def test_wrong_shape_is_a_clear_error(tmp_path: Path, model: HalutModel) -> None:
    arrays = modelfile._arrays_of(model, None)
    arrays["model_bias"] = np.zeros(5, np.float32)
    header = {"format": "halut-model", "format_version": 1, "C": 4, "K": 16, "D": 32, "M": 4,
              "has_program": False}
    modelfile.write_archive(tmp_path / "m.halut", arrays, header)
    with pytest.raises(HalutError, match=r"'model_bias' has shape \(5,\), expected \(4,\)"):
        load_model(tmp_path / "m.halut")


def test_wrong_dtype_and_non_finite_values_are_clear_errors(tmp_path: Path,
                                                            model: HalutModel) -> None:
    header = {"format": "halut-model", "format_version": 1, "C": 4, "K": 16, "D": 32, "M": 4,
              "has_program": False}
    arrays = modelfile._arrays_of(model, None)
    arrays["model_lut"] = arrays["model_lut"].astype(np.float64)
    modelfile.write_archive(tmp_path / "a.halut", arrays, header)
    with pytest.raises(HalutError, match="'model_lut' has dtype float64"):
        load_model(tmp_path / "a.halut")
    arrays = modelfile._arrays_of(model, None)
    arrays["model_thresholds"] = arrays["model_thresholds"].copy()
    arrays["model_thresholds"][0, 0] = np.nan
    modelfile.write_archive(tmp_path / "b.halut", arrays, header)
    with pytest.raises(HalutError, match="NaN or inf"):
        load_model(tmp_path / "b.halut")


def test_not_a_zip_and_missing_and_foreign_npz_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "x.halut").write_text("hello, not a model\n")
    with pytest.raises(HalutError, match="not an npz/zip archive"):
        load_model(tmp_path / "x.halut")
    with pytest.raises(HalutError, match="does not exist"):
        load_model(tmp_path / "none.halut")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(HalutError, match="no header"):
        load_model(tmp_path / "other.npz")


def test_interrupted_write_keeps_the_previous_file(tmp_path: Path, model: HalutModel,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_model(tmp_path / "m.halut", model)
    before = path.read_bytes()
    calls = {"n": 0}
    real = np.lib.format.write_array

    def failing(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # midway: some arrays are already in the temporary file
            raise OSError("disk full")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, model, quantize(model))
    monkeypatch.undo()
    assert calls["n"] == 3
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.halut"]  # no temporary left
    assert load_model(path).program is None


def test_save_rejects_a_program_of_another_shape(tmp_path: Path, model: HalutModel) -> None:
    A, _, B = synthetic(n_train=500, n_test=10, D=32, M=3, seed=2)
    other = quantize(learn(A, B, 4, 16))
    with pytest.raises(HalutError, match="does not match"):
        save_model(tmp_path / "m.halut", model, other)
    assert not (tmp_path / "m.halut").exists()


def _program_file(tmp_path: Path, model: HalutModel) -> Path:
    return save_model(tmp_path / "m.halut", model, quantize(model))


@pytest.mark.parametrize(("change", "match"), [
    (lambda h: h.update(stats=[1, 2]), "header field 'stats' must be an object, got [1, 2]"),
    (lambda h: h.update(stats="x"), "header field 'stats' must be an object"),
    (lambda h: h.update(program=[1, 2]), "header field 'program' must be an object"),
    (lambda h: h["program"].update(input_scale=None),
     "header field 'program.input_scale' must be a finite number > 0, got null"),
    (lambda h: h["program"].update(input_scale="abc"), "'program.input_scale'"),
    (lambda h: h["program"].update(threshold_format="int4"),
     "'program.threshold_format' must be one of fp16, int8"),
    (lambda h: h["program"].update(lut_format=7), "'program.lut_format'"),
    (lambda h: h.update(arrays={k: "x" for k in h["arrays"]}), "header field 'arrays."),
    (lambda h: h.update(arrays=None), "header field 'arrays' must be an object"),
    (lambda h: h.update(K=4.0), "header field 'K' must be a positive integer"),
    (lambda h: h.update(D=None), "header field 'D'"),
    (lambda h: h.update(checksum=5), "header field 'checksum' must be a string"),
    (lambda h: h.update(has_program="yes"), "header field 'has_program'"),
])
def test_bad_header_fields_with_a_valid_checksum_name_the_file_and_field(
        tmp_path: Path, model: HalutModel, change: object, match: str) -> None:
    path = _program_file(tmp_path, model)
    arrays, header = arrays_and_header(path)
    change(header)  # type: ignore[operator]
    write_raw(path, arrays, header)  # resealed: the checksum matches the changed header
    with pytest.raises(HalutError) as err:
        load_model(path)
    msg = str(err.value)
    assert msg.startswith(f"model file {str(path)!r}") and match in msg, msg
    assert "\n" not in msg


def _rewrite_arrays(path: Path, change: object) -> None:
    """Change the arrays and write them back with a recomputed (valid) checksum."""
    arrays, header = arrays_and_header(path)
    arrays = {k: v.copy() for k, v in arrays.items()}
    change(arrays)  # type: ignore[operator]
    del header["arrays"], header["checksum"]
    modelfile.write_archive(path, arrays, header)


def test_inconsistent_program_arrays_with_a_valid_checksum_are_rejected(
        tmp_path: Path, model: HalutModel) -> None:
    path = _program_file(tmp_path, model)

    def zero_scale(a: dict[str, np.ndarray]) -> None:
        a["program_scale"][:] = 0

    _rewrite_arrays(path, zero_scale)
    with pytest.raises(HalutError, match=r"inconsistent: the program's output scale is 0 for "
                                         r"4 of 4 columns"):
        load_model(path)

    path = _program_file(tmp_path, model)

    def other_dims(a: dict[str, np.ndarray]) -> None:
        a["program_dims"][0, 0] = (a["program_dims"][0, 0] + 1) % 32

    _rewrite_arrays(path, other_dims)
    with pytest.raises(HalutError, match="inconsistent: the program's dims differ from the "
                                         "model's"):
        load_model(path)

    path = _program_file(tmp_path, model)

    def negative_scale(a: dict[str, np.ndarray]) -> None:
        a["program_scale"][:] = -a["program_scale"]

    _rewrite_arrays(path, negative_scale)  # a negative scale is fine: y = acc * s + b
    saved = load_model(path)
    assert saved.program is not None and np.all(saved.program.scale < 0)


def test_program_errors_name_the_file(tmp_path: Path, model: HalutModel) -> None:
    path = _program_file(tmp_path, model)
    arrays, header = arrays_and_header(path)
    header["program"]["lut_format"] = "fp16"  # type: ignore[index]  # arrays hold int8
    write_raw(path, arrays, header)
    with pytest.raises(HalutError, match=re.escape(f"model file {str(path)!r}: lut dtype "
                                                   "must be float16")):
        load_model(path)


def test_program_arrays_without_has_program_are_rejected(tmp_path: Path,
                                                         model: HalutModel) -> None:
    path = _program_file(tmp_path, model)
    arrays, header = arrays_and_header(path)
    header["has_program"], header["program"] = False, None
    write_raw(path, arrays, header)
    with pytest.raises(HalutError, match="no program, but the file holds program_bias"):
        load_model(path)


def test_model_stats_must_be_a_dict(model: HalutModel) -> None:
    with pytest.raises(HalutError, match="stats must be a dict, got str"):
        HalutModel(dims=model.dims, thresholds=model.thresholds, lut=model.lut,
                   bias=model.bias, D=model.D, stats="x")  # type: ignore[arg-type]
