"""The RTL's protocol assertions (rtl/halut_accel.sv, docs/reliability.md).

Builds with ``emulator.verilator.assert_flags()`` (Verilator ``--assert
+define+HALUT_ASSERT`` and the hook that turns a failure into a HalutError) at small
parameters, cached like every build: a normal run under random bubbles, back-pressure and
overlapped configuration passes its assertions bit-exactly against golden, and driving a
protocol violation (or simulating a deliberately broken copy of the RTL) stops the run with
one HalutError line naming the assertion.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import emulator.rtl as rtl
from emulator import golden
from emulator.build import BuildResult, build_harness, build_pyverilator, resolve_sources
from emulator.driver import CycleSim
from emulator.harness import BatchSim, Handshake
from emulator.hwif import ctrl_write, job_writes, single_job_writes, swap_write
from emulator.params import RtlParams
from emulator.vectors import random_activations, random_program
from emulator.verilator import (
    ASSERT_DEFINE,
    assert_flags,
    assertion_check,
    build_env,
    find_verilator,
)
from learning.errors import HalutError
from learning.program import HardwareProgram

pytestmark = pytest.mark.xdist_group("rtl_assertions")  # the builds stay on one worker

RTL = Path(__file__).resolve().parent.parent / "rtl"
# two banks, multi-beat output (2 beats a row), fp16 LUT: the cycle-driver violations and runs
P2 = RtlParams(C=3, K=4, M=8, out_lanes=4, lut_format="fp16")
# one bank, int8 formats, 2 entries per write
P1 = RtlParams(C=3, K=4, M=8, out_lanes=4, threshold_format="int8", cfg_lanes=2, banks=1)


def assert_build(params: RtlParams, driver: str = "batch",
                 sources: list[str] | None = None) -> BuildResult:
    if driver == "batch":
        return build_harness(params, sources=sources, extra_flags=assert_flags())
    return build_pyverilator(params, sources=sources, extra_flags=assert_flags())


@pytest.fixture
def with_assertions(monkeypatch: pytest.MonkeyPatch) -> None:
    """RtlBackend / run_rtl use assertion builds (emulator.rtl.build_for with the flags)."""
    def build_for(params: RtlParams, driver: str, *, trace: bool | str = False,
                  sources: object = None, assertions: bool = False) -> BuildResult:
        assert trace is False
        return assert_build(params, driver, sources)  # type: ignore[arg-type]

    monkeypatch.setattr(rtl, "build_for", build_for)


def program_for(params: RtlParams, C: int, M: int, seed: int) -> HardwareProgram:
    rng = np.random.default_rng(seed)
    return random_program(rng, C, params.K, M, 2 * C + 3, params.threshold_format,
                          params.lut_format)


def assert_bit_exact(program: HardwareProgram, A: np.ndarray, acc: np.ndarray | None) -> None:
    assert acc is not None
    g = golden.run(program, A)
    bad = np.argwhere(acc.view(np.uint32) != g.acc.view(np.uint32))
    assert bad.size == 0, f"{len(bad)} mismatches, first at {bad[0].tolist()}"


# ---- the assertions stay out of synthesis and the default builds, and lint clean ------------

def test_assertions_are_only_compiled_for_simulation_with_the_define() -> None:
    text = (RTL / "halut_accel.sv").read_text()
    start = text.index("`ifndef SYNTHESIS")
    assert text[start:].startswith(f"`ifndef SYNTHESIS\n`ifdef {ASSERT_DEFINE}\n")
    block = text[start:text.index("endmodule")]
    outside = text[:start]
    # every assertion is inside the guarded block, none outside it
    assert re.search(r"\b(assert|assume)\s+property\b", outside) is None
    assert len(re.findall(r"\b(assert|assume)\s+property\b", block)) >= 10
    flags = assert_flags()
    assert "--assert" in flags and f"+define+{ASSERT_DEFINE}" in flags
    assert Path(flags[-1]).is_file() and flags[-1].endswith(".cpp")


@pytest.mark.parametrize("params", [RtlParams(), P2, P1, RtlParams(C=1, K=2, M=1, banks=1),
                                    RtlParams(C=16, K=2, M=16, out_lanes=4)],
                         ids=["default", "P2", "P1", "C1K2M1", "C16K2M16"])
def test_the_rtl_with_assertions_lints_clean_with_wall(params: RtlParams) -> None:
    import subprocess

    v = find_verilator()
    files = [str(f) for f in resolve_sources(None)]
    gparams = [f"-G{k}={x}" for k, x in params.verilog_parameters().items()]
    run = subprocess.run([str(v.executable), "--lint-only", "-Wall", "--top-module",
                          "halut_accel", "--assert", f"+define+{ASSERT_DEFINE}", *gparams,
                          *files], capture_output=True, text=True, env=build_env(v),
                         check=False)
    messages = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith("%")]
    assert run.returncode == 0 and messages == []


# ---- normal runs pass their assertions, bit-exactly ------------------------------------------

@pytest.mark.parametrize("driver", ["batch", "cycle"])
def test_jobs_overlapping_under_bubbles_and_backpressure_pass_the_assertions(
        with_assertions: None, driver: str) -> None:
    """8 codebooks on a chip of 3 (three passes, the later two from the preload port) x 20
    columns on a chip of 8 (three tiles): nine jobs, each loading into the shadow bank while
    the previous one streams, with random bubbles and back-pressure."""
    program = program_for(P2, 8, 20, seed=5)
    A = random_activations(np.random.default_rng(6), program, 24 if driver == "batch" else 5)
    r = rtl.run_rtl(program, A, params=P2, driver=driver, bubbles=0.3, backpressure=0.5,
                    seed=7)
    assert r.info["jobs"] == 9
    assert_bit_exact(program, A, r.acc)
    key = assert_build(P2, driver).key  # the run used the assertion build
    assert r.info["build"]["key"] == key


def test_one_bank_jobs_pass_the_assertions(with_assertions: None) -> None:
    program = program_for(P1, 7, 11, seed=8)
    A = random_activations(np.random.default_rng(9), program, 30)
    r = rtl.run_rtl(program, A, params=P1, bubbles=0.2, backpressure=0.3, seed=1)
    assert r.info["jobs"] == 6
    assert_bit_exact(program, A, r.acc)


def test_the_default_build_has_no_assertion_hook() -> None:
    plain = build_harness(P2)
    checked = assert_build(P2)
    assert plain.key != checked.key
    assert assertion_check(ctypes.CDLL(str(plain.path))) is None
    assert assertion_check(ctypes.CDLL(str(checked.path))) is not None


# ---- violations driven from the ports ----------------------------------------------------------

class Pins:
    """The cycle driver's ports one clock at a time: ``step(**inputs)`` drives the inputs
    (they keep their values until driven again), samples the ready/valid outputs, clocks."""

    def __init__(self, sim: CycleSim) -> None:
        self.sim = sim

    def step(self, **inputs: int) -> dict[str, int]:
        for name, value in inputs.items():
            self.sim._set(name, value)
        self.sim._settle()
        seen = {"in_ready_o": self.sim._get_in_ready(), "cfg_ready_o": self.sim._get_cfg_ready(),
                "pre_ready_o": self.sim._get_pre_ready(),
                "out_valid_o": self.sim._get_out_valid()}
        self.sim._edge()
        return seen


@pytest.fixture
def pins() -> Iterator[Pins]:
    sim = CycleSim(assert_build(P2, "cycle").path)
    try:
        sim.reset()
        yield Pins(sim)
    finally:
        sim.close(keep=False)


def stall_the_input(pins: Pins) -> list[int]:
    """Load a job, hold the output (out_ready_i low) and offer beats until the input stalls;
    returns the beats (as port values), the last one offered and not taken."""
    program = program_for(P2, 3, 8, seed=2)
    pins.sim.config(single_job_writes(program, P2.address_map))
    values = [int(i * 0x0123_4567) & 0xFFFF_FFFF for i in range(1, 40)]
    for k, value in enumerate(values):
        if not pins.step(out_ready_i=0, in_valid_i=1, in_data_i=value)["in_ready_o"]:
            return values[:k + 1]
    raise AssertionError("the input never stalled")


def test_changing_a_waiting_beat_fires_the_input_assertion(pins: Pins) -> None:
    beats = stall_the_input(pins)
    pins.step()  # holding the beat is fine
    with pytest.raises(HalutError, match=r"RTL assertion failed in cycle \d+: halut_accel: "
                       r"in_data_i changed while a beat waited for in_ready_o "
                       r"\[halut_accel\.sv:\d+\]$"):
        pins.step(in_data_i=beats[-1] ^ 1)


def test_withdrawing_a_waiting_beat_fires_the_input_assertion(pins: Pins) -> None:
    stall_the_input(pins)
    pins.step()  # holding the beat is fine
    with pytest.raises(HalutError, match="in_valid_i dropped while a beat waited for "
                                         "in_ready_o"):
        pins.step(in_valid_i=0)


def test_withdrawing_a_waiting_write_fires_the_configuration_assertion(pins: Pins) -> None:
    stall_the_input(pins)
    amap = P2.address_map
    # SWAP: the bank whose beats are stuck in the tree becomes the one written
    swap = swap_write(amap)
    assert pins.step(cfg_valid_i=1, cfg_addr_i=int(swap.addr[0]),  # the beat still waits
                     cfg_data_i=0)["cfg_ready_o"] == 1
    cnum = ctrl_write(amap, "cnum", 2)
    assert pins.step(cfg_addr_i=int(cnum.addr[0]), cfg_data_i=2)["cfg_ready_o"] == 0
    assert pins.step()["cfg_ready_o"] == 0  # waiting is fine
    with pytest.raises(HalutError, match="cfg_valid_i dropped while a write waited for "
                                         "cfg_ready_o"):
        pins.step(cfg_valid_i=0)


def test_changing_a_waiting_write_fires_the_configuration_assertion(pins: Pins) -> None:
    stall_the_input(pins)
    amap = P2.address_map
    swap, cnum = swap_write(amap), ctrl_write(amap, "cnum", 2)
    pins.step(cfg_valid_i=1, cfg_addr_i=int(swap.addr[0]), cfg_data_i=0)
    assert pins.step(cfg_addr_i=int(cnum.addr[0]), cfg_data_i=2)["cfg_ready_o"] == 0
    with pytest.raises(HalutError, match="cfg_addr_i/cfg_data_i changed while a write "
                                         "waited for cfg_ready_o"):
        pins.step(cfg_data_i=3)


def test_withdrawing_a_waiting_preload_beat_fires_the_preload_assertion(pins: Pins) -> None:
    # M/OutLanes = 2 preload beats fill the buffer; the third waits (no row takes them)
    assert pins.step(pre_valid_i=1, pre_data_i=1)["pre_ready_o"] == 1
    assert pins.step(pre_data_i=2)["pre_ready_o"] == 1
    assert pins.step(pre_data_i=3)["pre_ready_o"] == 0
    with pytest.raises(HalutError, match="pre_valid_i dropped while a preload beat waited"):
        pins.step(pre_valid_i=0)


def test_a_beat_between_writes_and_swap_on_one_bank_fires_in_the_batch_harness() -> None:
    """With Banks = 1 a beat must wait for its job's SWAP: here the host streams after the
    writes without one. The batch harness runs the part to its end, then raises."""
    program = program_for(P1, 3, 8, seed=3)
    amap = P1.address_map
    A = random_activations(np.random.default_rng(4), program, 6)
    beats = rtl.pack_beats(golden.gather(program, A), P1)
    with BatchSim(assert_build(P1).path) as sim:
        sim.reset()
        sim.config(job_writes(program, amap, (0, 3), (0, 8), preload=False) + swap_write(amap))
        sim.stream(beats[:3], P1.out_beats, P1.out_lanes)  # a row of the loaded job: fine
        sim.config(job_writes(program, amap, (0, 3), (0, 8), preload=False))  # no SWAP
        with pytest.raises(HalutError, match=r"^RTL assertion failed: halut_accel: Banks = 1: "
                           r"a beat was sent between a job's writes and its SWAP "
                           r"\[halut_accel\.sv:\d+(; \d+ more failure\(s\) after it)?\]$"):
            sim.stream(beats[3:], 5 * P1.out_beats, P1.out_lanes,
                       valid=Handshake.make(0.2, "bubbles"))


# ---- the chip's own assertions catch a broken RTL ----------------------------------------------

def broken_rtl(tmp_path: Path, old: str, new: str) -> list[str]:
    """A copy of rtl/ with one line of halut_accel.sv changed (the line count kept, so the
    failure's line still names the assertion in rtl/ once the copy is gone)."""
    for f in RTL.iterdir():
        if f.suffix in (".sv", ".f"):
            (tmp_path / f.name).write_text(f.read_text())
    top = tmp_path / "halut_accel.sv"
    text = top.read_text()
    assert text.count(old) == 1 and "\n" not in old + new
    top.write_text(text.replace(old, new))
    return [str(tmp_path / "halut.f")]


MUTANTS: dict[str, tuple[str, str, str]] = {
    # the output buffer never empties: its row repeats (the row count catches it first)
    "row_repeats": ("      obuf_busy_d = 1'b0;", "      obuf_busy_d = 1'b1;",
                    "rows in and output beats out disagree|an output beat without a finished row"),
    # an offered output beat changes while it waits (rows still counted right)
    "data_changes": ("obuf_q[MW'(32'(beat_q) * OutLanes + j)];",
                     "obuf_q[MW'(32'(beat_q) * OutLanes + j)] ^ AccW'(c_in_q);",
                     "out_data_o changed while out_valid_o waited for out_ready_i"),
    # an offered output beat is withdrawn while it waits (rows still counted right)
    "valid_drops": ("  assign out_valid_o = obuf_busy_q;",
                    "  assign out_valid_o = obuf_busy_q && !in_valid_i;",
                    "out_valid_o dropped before out_ready_i"),
}


@pytest.mark.slow  # a build per broken copy
@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_a_broken_output_stage_fires_the_chip_assertions(tmp_path: Path, mutant: str) -> None:
    old, new, message = MUTANTS[mutant]
    sources = broken_rtl(tmp_path, old, new)
    program = program_for(P2, 3, 8, seed=11)
    A = random_activations(np.random.default_rng(12), program, 8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rtl, "build_for",
                   lambda params, driver, *, trace=False, sources=None, assertions=False:
                   assert_build(params, driver, sources))
        with pytest.raises(HalutError, match=f"RTL assertion failed: halut_accel: ({message})"):
            rtl.run_rtl(program, A, params=P2, bubbles=0.3, backpressure=0.5, seed=2,
                        sources=sources)


def test_the_backend_option_builds_with_assertions() -> None:
    """``RtlBackend(assertions=True)``: the user's switch, a separate cached build."""
    program = program_for(P2, 3, 8, seed=5)
    A = random_activations(np.random.default_rng(6), program, 12)
    res = rtl.run_rtl(program, A, params=P2, bubbles=0.3, backpressure=0.5, seed=1,
                      assertions=True)
    assert np.array_equal(res.y.view(np.uint32), golden.run(program, A).y.view(np.uint32))
    plain = rtl.run_rtl(program, A, params=P2)
    assert res.info["build"]["key"] != plain.info["build"]["key"]  # its own build
    assert np.array_equal(plain.y, res.y)
