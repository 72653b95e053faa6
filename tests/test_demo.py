"""``halut demo --fast``: the README's first command, end to end (rtl included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flows.cli import main


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_demo_fast_reports_accuracy_bit_identity_cycles_and_writes_files(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--fast", "--out", str(out), "--rtl-images", "8",
                                    "--json"])  # gpu: as many images as rtl
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output[res.output.index("{"):])
    assert rep == json.loads((out / "demo.json").read_text())
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "net.halutnet").is_file()
    assert set(rep["accuracy"]) == {"float", "golden", "gpu", "rtl"}
    assert rep["bit_identical"] == {"gpu_vs_golden": True, "rtl_vs_golden": True}
    assert rep["rtl_images"] == 8 and rep["gpu_images"] == 8
    assert rep["accuracy"]["golden"] >= rep["accuracy"]["float"] - 0.10
    rt = rep["retraining"]  # one epoch on 256 training images; the bundle is the retrained net
    assert rt["epochs"] == 1 and rt["train_images"] == 256 and len(rt["history"]) == 1
    assert rt["golden_after"] == rep["accuracy"]["golden"]
    # every conv and the classifier of the ResNet-8, on one chip (C=32: passes above it)
    assert len(rep["layers"]) == 10 and rep["layers"][-1]["layer"] == "fc"
    for layer in rep["layers"]:
        cyc = layer["cycles_per_image"]
        side = {"conv1": 16, "layer1": 16, "layer2": 8, "layer3": 4}[layer["layer"][:6]
                                                                     .rstrip(".")] \
            if layer["kind"] == "conv2d" else 1
        assert cyc["stream"] == side * side * layer["C"] * -(-layer["M"] // 16), layer
        assert cyc["total"] == pytest.approx(
            cyc["config"] + cyc["stream"] + cyc["stall"] + cyc["drain"])
        assert 0 <= layer["nmse"] < 0.5
    assert rep["totals"]["cycles_per_image"] > 0 and "add" in rep["totals"]["host"]


def test_demo_rejects_bad_settings(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["demo", "--fast", "--out", str(tmp_path), "--rtl-images",
                                    "0"])
    assert res.exit_code == 1
    assert "rtl_images must be >= 1" in res.output


def test_demo_rejects_a_negative_seed_and_an_unwritable_out_before_any_work(
        tmp_path: Path) -> None:
    import time

    from flows.demo import DemoConfig, check_out_dir
    from learning.errors import HalutError

    res = CliRunner().invoke(main, ["demo", "--fast", "--seed", "-1", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "'--seed': -1 is not in the range x>=0" in res.output
    with pytest.raises(HalutError, match="seed must be an integer >= 0"):
        DemoConfig(seed=-1)
    (tmp_path / "file").write_text("x")
    t0 = time.perf_counter()
    res = CliRunner().invoke(main, ["demo", "--fast", "--rtl-images", "1", "--out",
                                    str(tmp_path / "file" / "d")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: cannot write demo output {tmp_path / 'file' / 'd' / 'demo.json'}: "
        f"{tmp_path / 'file'} is not a folder"), lines
    assert time.perf_counter() - t0 < 30  # refused up front, not after training and runs
    with pytest.raises(HalutError, match="is a file, not a folder"):
        check_out_dir(tmp_path / "file")
    check_out_dir(tmp_path / "new" / "deep")
    assert (tmp_path / "new" / "deep").is_dir()
