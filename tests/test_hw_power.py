"""Power from simulated activity (flows/hw/power.py, ``halut hw power``): the VCD reader on
a hand-written dump, the activity annotation, and the whole flow with the real tools
(Yosys, Verilator on the gate-level netlist, OpenSTA) on a tiny configuration."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from emulator.params import RtlParams
from flows.cli import main
from flows.hw.common import read_record
from flows.hw.power import (
    activity_tcl,
    efficiency,
    energy_figures,
    halut_workload,
    measure_power,
    parse_power_report,
    read_activity,
)
from learning.errors import HalutError

TINY = RtlParams(C=2, K=2, M=1, threshold_format="int8", lut_format="int8")
TINY_ARGS = ["-p", "C=2", "-p", "K=2", "-p", "M=1", "-p", "thr=int8"]

VCD = b"""$timescale 1ns $end
$scope module TOP $end
$var wire 1 ! clk_i $end
$scope module top $end
$var wire 1 ! clk_i $end
$var wire 1 " a $end
$var wire 3 # bus [2:0] $end
$var wire 1 $ b [4] $end
$upscope $end
$upscope $end
$enddefinitions $end
#0
0!
0"
b0 #
1$
#5
1!
1"
#10
0!
b101 #
#15
1!
0"
#20
0!
b11 #
"""


def test_read_activity_counts_toggles_duty_and_cycles() -> None:
    act = read_activity(io.BytesIO(VCD), ("TOP", "top"))
    assert act.cycles == 2 and act.duration == 20  # rising clock edges at 5 and 15
    assert act.toggles["a"] == 2 and act.duty("a") == 0.5 and act.rate("a") == 1.0
    # b101 then b11 (leading zero dropped): bit 2 rises and falls, bit 1 rises at the end,
    # bit 0 rises and stays
    assert [act.toggles[f"bus[{i}]"] for i in (2, 1, 0)] == [2, 1, 1]
    assert [act.high[f"bus[{i}]"] for i in (2, 1, 0)] == [10, 0, 10]
    assert act.toggles["b[4]"] == 0 and act.duty("b[4]") == 1.0  # a one-bit slice, always 1
    assert act.toggles["clk_i"] == 4 and act.duty("clk_i") == 0.5


def test_read_activity_errors_name_the_file() -> None:
    with pytest.raises(HalutError, match="no variables in scope TOP.nosuch"):
        read_activity(io.BytesIO(VCD), ("TOP", "nosuch"), where="x.vcd")
    with pytest.raises(HalutError, match="x.vcd has no clock"):
        read_activity(io.BytesIO(VCD), ("TOP", "top"), clock="clk", where="x.vcd")
    with pytest.raises(HalutError, match="x.vcd is not a readable VCD"):
        read_activity(io.BytesIO(b"$scope module TOP $end\n#zz\n"), ("TOP",), where="x.vcd")


def test_activity_tcl_annotates_every_net_but_the_clock() -> None:
    act = read_activity(io.BytesIO(VCD), ("TOP", "top"))
    tcl, count = activity_tcl(act, input_ports=("b",))
    assert count == len(act.toggles) - 1  # all but clk_i
    assert "clk_i" not in tcl
    assert "halut_nets {a bus[2]} 1 0.5" in tcl  # equal figures: one command
    # an input port bit: the registered copy isolate_inputs makes of it too
    assert "halut_nets {b[4]} 0 1" in tcl and "halut_nets {hpiso_b[4]} 0 1" in tcl
    assert "halut_ports {hpiso_b[4]} 0 1" in tcl
    assert "sta::set_power_pin_activity" in tcl  # set_power_activity -pins is broken in 2.0.17


def test_power_report_and_energy_arithmetic() -> None:
    text = ("Group  Internal  Switching  Leakage  Total\n"
            "Total  1.0e-03  2.5e-04  1.0e-07  1.2501e-03  100.0%\n")
    assert parse_power_report(text) == {"internal": 1e-3, "switching": 2.5e-4,
                                        "leakage": 1e-7, "total": 1.2501e-3}
    assert parse_power_report("nothing") == {}
    e = energy_figures(0.01, 10.0, cycles=200, rows=50, layer_rows=500)
    assert e["per_cycle"] == pytest.approx(100.0)  # 10 mW x 10 ns = 100 pJ
    assert e["per_row"] == pytest.approx(400.0) and e["per_layer"] == pytest.approx(200000.0)
    tops, eff = efficiency(ops_per_row=1000, rows=50, cycles=200, period_ns=10.0, power_w=0.01)
    assert tops == pytest.approx(1000 * 50 / 2e-6 / 1e12)
    assert eff == pytest.approx(tops / 0.01)


@pytest.mark.xdist_group("hw_power")
def test_idle_stream_draws_less_switching_power_than_a_busy_one(tmp_path: Path) -> None:
    """The same netlist, the same program and rows: with the input valid low 80 % of the
    cycles the nets toggle less per cycle, so the annotated switching power drops; the
    vectorless figure (no activity) cannot tell the two apart."""
    busy = measure_power(TINY, tmp_path, halut_workload(TINY, rows=24, seed=1),
                         clock_mhz=100.0, name="busy")
    idle = measure_power(TINY, tmp_path, halut_workload(TINY, rows=24, seed=1, bubbles=0.8),
                         clock_mhz=100.0, name="idle")
    assert idle.workload["cycles"] > 2 * busy.workload["cycles"]
    assert idle.activity["mean_toggle_rate"] < busy.activity["mean_toggle_rate"]
    assert idle.power_w["switching"] < 0.8 * busy.power_w["switching"]
    assert idle.vectorless_power_w == busy.vectorless_power_w
    assert busy.power_w["switching"] != busy.vectorless_power_w["switching"]
    # the figures follow from each other and from the file written
    assert busy.energy_pj["per_cycle"] == pytest.approx(busy.power_w["total"] * 10.0 * 1e3)
    assert busy.ops_per_row == 2 * busy.workload["D"] * busy.workload["M"]
    assert busy.efficiency_tops_per_w == pytest.approx(busy.throughput_tops
                                                       / busy.power_w["total"])
    saved = read_record(tmp_path / "busy.json")
    assert saved["power_w"] == busy.power_w and saved["clock_source"] == "--clock-mhz"
    assert busy.activity["nets"] > 500 and busy.activity["cycles"] > 0


@pytest.mark.xdist_group("hw_power")
def test_power_cli_json_and_default_clock(tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["hw", "power", *TINY_ARGS, "--rows", "8",
                                    "--run-dir", str(run), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    sta = read_record(run / "sta.json")  # the clock is hw sta's fmax on the same netlist
    assert out["clock_source"] == "fmax of hw sta"
    assert out["clock_mhz"] == pytest.approx(sta["fmax_mhz"], rel=1e-3)
    assert out["workload"]["kind"] == "random" and out["workload"]["rows"] == 8


@pytest.mark.parametrize("args, message", [
    (["--clock-mhz", "0"], "--clock-mhz must be a finite number"),
    (["--clock-mhz", "nan"], "--clock-mhz must be a finite number"),
    (["--model", "nosuch.halut"], "model file nosuch.halut not found"),
    (["--layer", "fc"], "--layer needs --bundle"),
    (["--rows", "0"], "--rows must be >= 1"),
])
def test_power_cli_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str
                                         ) -> None:
    res = CliRunner().invoke(main, ["hw", "power", *TINY_ARGS, "--run-dir",
                                    str(tmp_path / "r"), *args])
    assert res.exit_code == 1
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "power.json").exists()


@pytest.mark.xdist_group("hw_power")
def test_mac_baseline_is_bit_exact_at_gate_level(tmp_path: Path) -> None:
    """The MAC baseline synthesized (Yosys, osu018) and simulated with the cell models:
    bit-exact with numpy's int8 x int8 -> int32 and cycle for cycle the RTL's, with a free
    stream and with bubbles and back-pressure."""
    import numpy as np

    from emulator.mac import MacParams, mac_reference, run_mac
    from flows import tools
    from flows.hw.synth import synthesize

    mac = MacParams(C=2, V=2, M=2, out_lanes=1)
    synth = synthesize(mac, tmp_path, breakdown=False)
    assert synth.params == {"C": 2, "V": 2, "M": 2, "out_lanes": 1, "banks": 2}
    gate = [Path(synth.netlist), tools.find_osu018("cells")]
    rng = np.random.default_rng(3)
    W = rng.integers(-128, 128, size=(3, 2)).astype(np.int8)  # D=3 < C*V: zero-padded
    W[0] = -128
    A = rng.integers(-128, 128, size=(7, 3)).astype(np.int8)
    A[0] = -128
    for stall in (None, 0.3):
        rtl = run_mac(W, A, mac, bubbles=stall, backpressure=stall, seed=5)
        net = run_mac(W, A, mac, sources=gate, bubbles=stall, backpressure=stall, seed=5)
        assert np.array_equal(net.y, mac_reference(W, A))
        assert net.cycles == rtl.cycles


@pytest.mark.xdist_group("hw_power")
def test_compare_halut_with_the_mac_baseline(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["hw", "compare", *TINY_ARGS, "--depth", "4",
                                    "--rows", "8", "--run-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    saved = read_record(tmp_path / "compare.json")
    assert saved["designs"] == out["designs"] and saved["ratios"] == out["ratios"]
    h, m = out["designs"]["halut"], out["designs"]["mac"]
    assert m["params"] == {"C": 2, "V": 2, "M": 1, "out_lanes": 1, "banks": 2}
    for key, field in (("area", "area_um2"), ("energy_per_row", "energy_per_row_pj"),
                       ("tops_per_w", "tops_per_w"), ("fmax", "fmax_mhz")):
        assert out["ratios"][key] == pytest.approx(h[field] / m[field])
    # both power runs simulated the netlist of the same layer shape (D=4, M=1) and each is
    # that design's own power.json
    for name, d in (("halut", h), ("mac", m)):
        power = read_record(tmp_path / name / "power.json")
        assert power["workload"]["D"] == 4 and power["workload"]["M"] == 1
        assert d["power_w"] == power["power_w"]["total"]
        assert d["ops_per_row"] == 2 * 4 * 1
        assert d["tops_per_w"] == pytest.approx(8 / (d["energy_per_row_pj"] * 1e-12) / 1e12)


def test_compare_bad_depth_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["hw", "compare", *TINY_ARGS, "--depth", "0",
                                    "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 1 and "--depth must be >= 1" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_concatenation_assigns_are_split_for_opensta() -> None:
    from flows.hw.power import split_concat_assigns

    text = ("  assign { pn1, pn2 } = { pn9, pn8 };\n  assign { pn3, pn4, pn5 } = 3'h5;\n"
            "  assign { pn6, pn7 } = { 1'h0, pn2 };\n  assign pn10 = pn11;\n"
            "  assign { pn8, pn9 } = in_data_i[3:2];\n")
    assert split_concat_assigns(text) == (
        "  assign pn1 = pn9;\n  assign pn2 = pn8;\n  assign pn3 = 1'b1;\n"
        "  assign pn4 = 1'b0;\n  assign pn5 = 1'b1;\n  assign pn6 = 1'b0;\n"
        "  assign pn7 = pn2;\n  assign pn10 = pn11;\n"
        "  assign pn8 = in_data_i[3];\n  assign pn9 = in_data_i[2];\n")
    with pytest.raises(HalutError, match="cannot split"):
        split_concat_assigns("  assign { a, b } = c;\n")  # widths unknown: refused


@pytest.mark.xdist_group("hw_power")
def test_power_of_a_learned_model_on_its_activations(tmp_path: Path) -> None:
    """`halut learn` then `halut hw power --model --activations`: the workload is that
    model's program on those rows (checked bit-exact against golden inside the flow), and
    the energy per layer covers all rows of the activations file."""
    import numpy as np

    rng = np.random.default_rng(0)
    A = rng.standard_normal((200, 6)).astype(np.float32)
    np.save(tmp_path / "A.npy", A)
    np.save(tmp_path / "W.npy", rng.standard_normal((6, 1)).astype(np.float32))
    model = tmp_path / "m.halut"
    res = CliRunner().invoke(main, ["learn", "-a", str(tmp_path / "A.npy"), "-w",
                                    str(tmp_path / "W.npy"), "-C", "2", "-K", "2",
                                    "--threshold-format", "int8", "--lut-format", "int8",
                                    "-o", str(model)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["hw", "power", *TINY_ARGS, "--model", str(model), "-a",
                                    str(tmp_path / "A.npy"), "--rows", "16", "--clock-mhz",
                                    "100", "--run-dir", str(tmp_path / "run"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    wl = out["workload"]
    assert (wl["kind"], wl["source"], wl["rows"], wl["layer_rows"]) == ("model", str(model),
                                                                          16, 200)
    assert (wl["D"], wl["M"]) == (6, 1)
    e = out["energy_pj"]
    assert e["per_layer"] == pytest.approx(e["per_row"] * 200)
    bad = CliRunner().invoke(main, ["hw", "power", *TINY_ARGS, "--model", str(model), "-a",
                                    str(tmp_path / "W.npy"), "--run-dir", str(tmp_path / "r2")])
    assert bad.exit_code == 1 and "activations must be (N, 6)" in bad.output
