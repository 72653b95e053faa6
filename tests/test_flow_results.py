"""The flows' typed results: ``to_dict()`` is exactly the JSON each flow writes into its run
directory (and ``--json`` prints), with the keys and key order the report and older run
directories rely on; and the ports the SDC and the gate-level check name are
:mod:`emulator.hwif`'s. Real tools are replaced by small stand-ins (a fake ORFS Makefile, a
fake ``qflow`` script); only OpenSTA runs, on a five-cell netlist."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulator import hwif
from emulator.cycles import CycleReport
from emulator.params import RtlParams
from flows import tools
from flows.hw.common import (
    JsonRecord,
    json_field,
    params_dict,
    rtl_sources,
    sources_digest,
    write_json,
)
from flows.hw.gls import GlsCase, GlsResult, check_netlist_ports
from flows.hw.orfs import KEY_METRICS, orfs_sdc, run_orfs
from flows.hw.qflow import run_qflow
from flows.hw.sta import sdc_text, sta_script
from flows.hw.sweep import COLUMNS, PointPnr, SweepPoint, SweepSettings, grid_points, sweep
from learning.errors import HalutError

TINY = RtlParams(C=2, K=2, M=1, threshold_format="int8", lut_format="int8")
PORTS = hwif.ports(TINY.C, TINY.K, TINY.M, TINY.threshold_format, TINY.out_lanes)

# the JSON shapes of the results (key order included), as the flows have always written them
ORFS_DESIGN_KEYS = ["tool", "params", "platform", "period_ns", "config", "run_dir"]
ORFS_FIGURES = ["setup_ws", "setup_tns", "instance_area", "stdcells", "utilization",
                "die_area", "core_area", "drc_errors", "wirelength", "power_total",
                "power_internal", "power_switching", "power_leakage", "synth_area"]
ORFS_METRICS_KEYS = ["metrics_file", "design", *ORFS_FIGURES, "units", "clock_period",
                     "fmax_mhz"]
QFLOW_KEYS = ["tool", "params", "returncode", "seconds", "run_dir", "log", "def",
              "die_area_um2", "die_width_um", "die_height_um", "wirelength_um", "nets",
              "routed_nets", "components", "cells", "failed_routes", "vesta_fmax_mhz"]
POST_ROUTE_STA_KEYS = ["period_ns", "wns_ns", "tns_ns", "fmax_mhz", "min_period_ns",
                       "critical_path", "power_w"]
SWEEP_COLUMNS = ["area", "cells", "flip_flops", "fmax_mhz", "wns_ns", "power_w",
                 "die_area_um2", "wirelength_um", "vesta_fmax_mhz", "seconds"]
GLS_KEYS = ["params", "passed", "first_failure", "cases", "programs", "rows", "seed",
            "netlist", "cells", "cell_models", "seconds", "run_dir"]
GLS_CASE_KEYS = ["program", "mode", "rows", "C", "M", "ok", "gate_cycles", "rtl_cycles",
                 "first_bad_row", "rtl_matches_golden"]


def _written(path: Path) -> dict[str, Any]:
    """A result file as written, its checksum checked and left out."""
    from flows.hw.common import CHECKSUM_KEY, read_record

    return {k: v for k, v in read_record(path).items() if k != CHECKSUM_KEY}


# --- the base -------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class _Inner(JsonRecord):
    a: int
    b: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class _Outer(JsonRecord):
    kind: str = json_field(default="outer", init=False)
    path: str = json_field(name="def")
    inner: _Inner
    maybe: str | None = json_field(omit_none=True, default=None)
    merged: _Inner | None = json_field(flatten=True, omit_none=True, default=None)
    cycles: CycleReport | None = None


def test_json_record_renames_omits_flattens_and_nests() -> None:
    inner = _Inner(a=1, b=(2, 3))
    bare = _Outer(path="x", inner=inner)
    assert bare.to_dict() == {"kind": "outer", "def": "x", "inner": {"a": 1, "b": [2, 3]},
                              "cycles": None}
    full = _Outer(path="x", inner=inner, maybe="m", merged=_Inner(a=4, b=()),
                  cycles=CycleReport(config=1, stream=2))
    d = full.to_dict()
    assert list(d) == ["kind", "def", "inner", "maybe", "a", "b", "cycles"]
    assert d["a"] == 4 and d["b"] == [] and d["cycles"]["total"] == 3
    assert json.loads(json.dumps(d)) == d  # plain JSON values only


# --- ORFS -----------------------------------------------------------------------------------

def _fake_orfs(root: Path, metrics: dict[str, Any], stat: str | None) -> Path:
    """An ORFS checkout whose ``make`` drops ``metrics`` (and a synth_stat.txt) where ORFS
    writes them."""
    flow = root / "flow"
    (flow / "platforms").mkdir(parents=True)
    (flow / "metadata.json").write_text(json.dumps(metrics))
    report = "$(WORK_HOME)/reports/nangate45/halut_accel/base"
    recipe = [f"mkdir -p {report}", f"cp {flow}/metadata.json {report}/metadata.json"]
    if stat is not None:
        (flow / "synth_stat.txt").write_text(stat)
        recipe.append(f"cp {flow}/synth_stat.txt {report}/synth_stat.txt")
    (flow / "Makefile").write_text("all:\n" + "".join(f"\t{r}\n" for r in recipe)
                                   + "metadata:\n\t@true\n")
    return root


def test_orfs_results_are_the_json_they_write(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    generic = tmp_path / "generic.v"
    generic.write_text("module halut_accel(input clk_i); endmodule\n")
    files = run_orfs(TINY, generic, tmp_path / "norun", platform="asap7", period_ns=2.0,
                     run=False)
    assert files.to_dict() == _written(tmp_path / "norun" / "pnr.json")
    assert list(files.to_dict()) == [*ORFS_DESIGN_KEYS, "ran"]
    assert [name for name, _ in KEY_METRICS] == ORFS_FIGURES

    metrics = {"constraints__clocks__details": ["core_clock: 5.0000"],
               "finish__timing__setup__ws": -0.5, "finish__design__instance__area": 1234.5,
               "run__flow__design": "halut_accel", "run__flow__platform": "nangate45",
               "run__flow__platform__time_units": "1ns"}
    stat = "=== sub ===\n   Number of cells:  7\n   Chip area for module '\\sub': 12.5\n"
    for name, stat_text in (("with_stat", stat), ("without_stat", None)):
        root = _fake_orfs(tmp_path / f"orfs_{name}", metrics, stat_text)
        monkeypatch.setenv("ORFS_ROOT", str(root))
        res = run_orfs(TINY, generic, tmp_path / name, period_ns=5.0)
        assert res.ran and res.metrics is not None and res.seconds is not None
        assert res.metrics.instance_area == 1234.5 and res.metrics.fmax_mhz == 181.82
        d = res.to_dict()
        assert d == _written(tmp_path / name / "pnr.json")
        tail = ["synth_modules"] if stat_text else []
        assert list(d) == [*ORFS_DESIGN_KEYS, "seconds", "ran", "log", *ORFS_METRICS_KEYS,
                           *tail]
        assert (res.metrics.synth_modules is not None) == bool(stat_text)


# --- qflow ----------------------------------------------------------------------------------

def _netlist() -> str:
    """A five-cell osu018 netlist with the accelerator's ports (from hwif)."""
    def decl(p: hwif.Port) -> str:
        return f"  {p.direction} {f'[{p.width - 1}:0] ' if p.width > 1 else ''}{p.name};\n"

    def bit(p: hwif.Port) -> str:
        return f"{p.name}[0]" if p.width > 1 else p.name

    d_in = next(p for p in PORTS if p.name in hwif.DATA_INPUTS and p.width == 1)
    outs = [p for p in PORTS if p.direction == "output"]
    return (f"module {hwif.TOP}(" + ", ".join(p.name for p in PORTS) + ");\n"
            + "".join(decl(p) for p in PORTS) + "  wire n1;\n"
            + f"  DFFPOSX1 r0 (.CLK({hwif.CLOCK}), .D({d_in.name}), .Q(n1));\n"
            + "".join(f"  BUFX2 b{i} (.A(n1), .Y({bit(p)}));\n" for i, p in enumerate(outs))
            + "endmodule\n")


_DEF = """VERSION 5.6 ;
UNITS DISTANCE MICRONS 100 ;
DIEAREA ( 0 0 ) ( 20000 10000 ) ;
COMPONENTS 2 ;
- a INVX1 + PLACED ( 0 0 ) N ;
- FILL_1 FILL + PLACED ( 200 0 ) N ;
END COMPONENTS
NETS 1 ;
- n1 ( a Y ) ( b A )
+ ROUTED metal1 ( 100 100 ) ( 500 * ) ;
END NETS
END DESIGN
"""
_SDF = ('(DELAYFILE\n (SDFVERSION "3.0")\n (DESIGN "halut_accel")\n (TIMESCALE 1ns)\n'
        ' (CELL (CELLTYPE "halut_accel") (INSTANCE)\n  (DELAY (ABSOLUTE\n'
        '   (INTERCONNECT r0/Q b0/A (0.1))\n   (INTERCONNECT r0/Q ERROR (0.1))\n  ))\n )\n)\n')


def _fake_qflow(bindir: Path, data: Path, variant: str) -> None:
    """A ``qflow`` that leaves a routed DEF, logs and (by ``variant``) a final netlist and
    SDF: ``nosdf`` (none), ``truncated`` SDF, ``full`` or ``badnet`` (a netlist OpenSTA
    rejects)."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "def").write_text(_DEF)
    (data / "net.v").write_text(_netlist())
    (data / "sdf").write_text(_SDF)
    (data / "truncated.sdf").write_text(_SDF[:-4])
    (data / "bad.v").write_text(f"module {hwif.TOP}(; garbage\n")
    top = hwif.TOP
    lines = ["#!/bin/sh", "mkdir -p layout log synthesis",
             f"cp {data}/def layout/{top}.def",
             "echo 'Final: No failed routes' > log/route.log",
             "echo 'Computed maximum clock frequency (zero margin) = 123.4 MHz' > log/sta.log"]
    if variant != "nosdf":
        sdf = "truncated.sdf" if variant == "truncated" else "sdf"
        net = "bad.v" if variant == "badnet" else "net.v"
        lines += [f"cp {data}/{sdf} layout/{top}.sdf",
                  f"cp {data}/{net} synthesis/{top}.rtlnopwr.v"]
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "qflow"
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)


@pytest.mark.parametrize("variant, post_keys", [
    ("nosdf", ["post_route_sta_skipped"]),
    ("truncated", ["post_route_sta_skipped"]),
    ("badnet", ["sdf_unnamed_sinks_dropped", "post_route_sta_skipped"]),
    ("full", ["sdf_unnamed_sinks_dropped", "post_route_sta"]),
])
def test_qflow_result_is_the_json_it_writes(variant: str, post_keys: list[str],
                                            tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        tools.find_osu018("lef")
        if variant in ("badnet", "full"):
            tools.find_sta()
    except HalutError as exc:
        pytest.skip(str(exc))
    _fake_qflow(tmp_path / "bin", tmp_path / "data", variant)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    generic = tmp_path / "generic.v"
    generic.write_text(f"module {hwif.TOP}; endmodule\n")
    res = run_qflow(TINY, generic, tmp_path / "run", period_ns=10.0)
    d = res.to_dict()
    assert d == _written(tmp_path / "run" / "pnr.json")
    assert list(d) == [*QFLOW_KEYS, *post_keys]
    assert res.die_area_um2 == 20000.0 and res.cells == 1 and res.failed_routes == 0
    assert res.vesta_fmax_mhz == 123.4 and d["def"] == res.def_path
    if variant == "full":
        assert res.post_route.sta is not None and res.post_route.sta.fmax_mhz > 0
        assert list(d["post_route_sta"]) == POST_ROUTE_STA_KEYS
        assert res.post_route.sdf_unnamed_sinks_dropped == 1
    else:
        assert res.post_route.sta is None and res.post_route.skipped


# --- sweep ----------------------------------------------------------------------------------

def test_sweep_result_is_the_json_it_writes(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rtl = tmp_path / "top.sv"
    rtl.write_text(f"module {hwif.TOP}; endmodule\n")
    grid: list[tuple[str, list[str]]] = [("M", ["1", "2"]), ("C", ["2"])]
    settings = SweepSettings(period_ns=10.0, io_fraction=0.2, pnr=False,
                             rtl_digest=sources_digest(rtl_sources([rtl])))
    for k, (_values, params) in enumerate(grid_points(["K=2"], grid)):
        point = tmp_path / "sw" / "points" / params.tag()
        point.mkdir(parents=True)
        row: dict[str, Any] = {"params": params_dict(params), "settings": settings.to_dict(),
                               "area": 1.0 + k, "cells": 2, "fmax_mhz": 3.0}
        if k:  # a point from a --pnr sweep, with every figure
            row.update(flip_flops=1, wns_ns=0.5, power_w=None, seconds=1.5,
                       die_area_um2=5.0, wirelength_um=2.0, vesta_fmax_mhz=None)
        write_json(point / "point.json", row)
    monkeypatch.setenv("PATH", str(tmp_path))  # no tools: every point must be reused
    res = sweep(["K=2"], grid, tmp_path / "sw", sources=[rtl])
    d = res.to_dict()
    assert d == _written(tmp_path / "sw" / "sweep.json")
    assert list(d) == ["base", "grid", "settings", "rows", "run_dir", "plots"]
    assert d["grid"] == [{"name": "M", "values": ["1", "2"]}, {"name": "C", "values": ["2"]}]
    assert list(d["settings"]) == ["period_ns", "io_fraction", "pnr", "rtl_digest"]
    assert list(COLUMNS) == SWEEP_COLUMNS
    for r in d["rows"]:
        assert list(r) == ["M", "C", *SWEEP_COLUMNS, "reused", "params"]
    assert [r.area for r in res.rows] == [1.0, 2.0] and all(r.reused for r in res.rows)
    assert res.rows[1].die_area_um2 == 5.0 and res.rows[0].die_area_um2 is None
    assert res.plots and all(Path(p).is_file() for p in res.plots)
    csv = (tmp_path / "sw" / "sweep.csv").read_text().splitlines()
    assert csv[0] == ",".join(["M", "C", *SWEEP_COLUMNS]) and len(csv) == 3


def test_a_sweep_point_writes_the_qflow_figures_only_with_pnr() -> None:
    settings = SweepSettings(period_ns=10.0, io_fraction=0.2, pnr=True, rtl_digest="x")
    base: dict[str, Any] = {"params": params_dict(TINY), "settings": settings, "area": 1.0,
                            "cells": 2, "flip_flops": 1, "fmax_mhz": 3.0, "wns_ns": 0.1,
                            "power_w": None, "seconds": 1.0}
    keys = ["params", "settings", "area", "cells", "flip_flops", "fmax_mhz", "wns_ns",
            "power_w", "seconds"]
    assert list(SweepPoint(**base).to_dict()) == keys
    with_pnr = SweepPoint(**base, pnr=PointPnr(die_area_um2=5.0, wirelength_um=2.0,
                                               vesta_fmax_mhz=None)).to_dict()
    assert list(with_pnr) == [*keys, "die_area_um2", "wirelength_um", "vesta_fmax_mhz"]
    assert with_pnr["vesta_fmax_mhz"] is None and with_pnr["settings"]["pnr"] is True


# --- gate-level check -----------------------------------------------------------------------

def test_gls_result_keeps_its_json_shape(tmp_path: Path) -> None:
    cycles = CycleReport(config=3, stream=4, stall=1, drain=2)
    case = GlsCase(program=0, mode="stalls", rows=5, C=5, M=3, ok=True, gate_cycles=cycles,
                   rtl_cycles=cycles, first_bad_row=None, rtl_matches_golden=True)
    res = GlsResult(params=params_dict(TINY), passed=True, first_failure="", cases=[case],
                    programs=1, rows=5, seed=0, netlist="netlist.v", cells=10,
                    cell_models="cells.v", seconds=1.0, run_dir=str(tmp_path))
    d = res.to_dict()
    assert list(d) == GLS_KEYS and list(d["cases"][0]) == GLS_CASE_KEYS
    assert d["cases"][0]["gate_cycles"] == cycles.to_dict() and cycles.to_dict()["total"] == 10
    write_json(tmp_path / "gls.json", res.to_dict())
    assert _written(tmp_path / "gls.json") == d


# --- the interface comes from hwif ----------------------------------------------------------

def _get_ports(text: str, command: str) -> list[tuple[str, ...]]:
    """The port groups ``[get_ports {a b}]`` / ``[get_ports a]`` on the lines that start
    with ``command``."""
    groups = []
    for line in text.splitlines():
        if line.strip().startswith(command):
            m = re.search(r"\[get_ports (?:\{([^}]*)\}|(\S+?))\]", line)
            assert m, line
            groups.append(tuple((m.group(1) or m.group(2)).split()))
    return groups


def test_sdc_port_groups_are_hwif_s() -> None:
    assert {hwif.CLOCK, hwif.RESET, *hwif.DATA_INPUTS, *hwif.DATA_OUTPUTS} == set(
        hwif.port_names())
    for text in (sdc_text(5.0), orfs_sdc(5.0, "nangate45")):
        assert _get_ports(text, "create_clock") == [(hwif.CLOCK,)]
        assert _get_ports(text, "set_input_delay") == [hwif.DATA_INPUTS]
        assert _get_ports(text, "set_output_delay") == [hwif.DATA_OUTPUTS]
        assert _get_ports(text, "set_false_path") == [(hwif.RESET,)]
    assert _get_ports(sdc_text(5.0), "set_driving_cell") == [(*hwif.DATA_INPUTS, hwif.RESET)]
    script = sta_script("n.v", "c.lib", "c.sdc", 5.0, 0.2)
    assert f"link_design {hwif.TOP}" in script
    assert _get_ports(script, "create_clock") == [(hwif.CLOCK,)]
    assert _get_ports(script, "set_input_delay") == [hwif.DATA_INPUTS]
    assert _get_ports(script, "set_output_delay") == [hwif.DATA_OUTPUTS]


def test_gls_harness_ports_are_hwif_s(tmp_path: Path) -> None:
    netlist = tmp_path / "netlist.v"
    netlist.write_text(_netlist())
    check_netlist_ports(netlist)  # every port of hwif: accepted
    for port in hwif.port_names():
        netlist.write_text("".join(line for line in _netlist().splitlines(keepends=True)
                                   if not re.match(rf"\s*(input|output)\s.*\b{port};", line)))
        with pytest.raises(HalutError, match=rf"lacks the harness ports {port}: "):
            check_netlist_ports(netlist)
