"""The multiply-accumulate baseline (rtl/mac_accel.sv, emulator/mac.py) against its numpy
reference, bit for bit, and its cycles against the analytic model.

Four Verilator builds in all (three parameter sets and one traced), cached in $HALUT_CACHE and
kept on one xdist worker by their group.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from emulator.mac import (
    MacParams,
    mac_reference,
    model_mac_cycles,
    pack_rows,
    run_mac,
    run_mac_jobs,
    weight_writes,
)
from emulator.verilator import build_env, find_verilator
from learning.errors import HalutError
from tests.test_rtl_backend import _port_changes  # the top-level ports' changes in a VCD

pytestmark = pytest.mark.xdist_group("mac")

# two beats per output row (OutLanes < M), double-buffered
TWO_BANKS = MacParams(C=4, V=4, M=8, out_lanes=4, banks=2)
# V not a power of two, as many output beats as input beats per row, one bank
ONE_BANK = MacParams(C=3, V=3, M=6, out_lanes=2, banks=1)
# D = C*V = 2**18: the int32 accumulator wraps around within one row
WIDE = MacParams(C=1024, V=256, M=1, banks=1)
CHIPS = {"two_banks": TWO_BANKS, "one_bank": ONE_BANK}


def rand_int8(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(-128, 128, shape, dtype=np.int8)


def assert_bit_exact(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.int32 and got.shape == want.shape
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{len(bad)} mismatches, first at {bad[0].tolist()}: rtl "
                           f"{got[tuple(bad[0])]} reference {want[tuple(bad[0])]}")


# ---- the reference and the host side ----------------------------------------------------------

def test_reference_wraps_around_int32() -> None:
    D = 2**18
    W = np.full((D, 2), -128, np.int8)
    W[:, 1] = 127
    A = np.stack([np.full(D, -128, np.int8), np.full(D, 127, np.int8)])
    y = mac_reference(W, A)
    assert y.dtype == np.int32
    exact = A.astype(np.int64) @ W.astype(np.int64)
    assert np.array_equal(y.astype(np.int64) % 2**32, exact % 2**32)
    assert y[0, 0] == 0  # 2**32 wraps to 0


def test_reference_is_the_plain_matrix_product_when_nothing_overflows() -> None:
    rng = np.random.default_rng(0)
    W, A = rand_int8(rng, 20, 5), rand_int8(rng, 7, 20)
    assert np.array_equal(mac_reference(W, A), A.astype(np.int32) @ W.astype(np.int32))


def test_weights_and_beats_are_laid_out_as_the_address_map_says() -> None:
    p = ONE_BANK  # C=3, V=3, M=6: addr {kind, m[3], c[2]}
    W = np.arange(7 * 4, dtype=np.int8).reshape(7, 4)  # D=7 < 9, M=4 < 6
    w = weight_writes(W, p)
    assert len(w) == p.M * p.C and w.data.shape == (p.M * p.C, p.cfg_lanes)
    assert p.addr_bits == 2 + 3 + 2
    # column 1, beat 2: W[6, 1] then the two padded rows d = 7, 8
    i = 1 * p.C + 2
    assert int(w.addr[i]) == (1 << 5) | (1 << 2) | 2
    assert w.words()[i, 0] == int(W[6, 1])
    assert not np.any(w.data[4 * p.C:])  # columns 4, 5 are zero
    A = np.arange(1, 8, dtype=np.int8).reshape(1, 7)
    beats = pack_rows(A, p)
    assert beats.shape == (3, 1)
    assert [int(b) for b in beats[:, 0]] == [0x030201, 0x060504, 0x000007]


def test_parameters_and_ports() -> None:
    p = MacParams(C=8, V=4, M=16, out_lanes=2)
    assert p.D == 32 and p.out_beats == 8 and p.top == "mac_accel"
    assert p.verilog_parameters() == {"C": 8, "V": 4, "M": 16, "OutLanes": 2, "Banks": 2}
    assert MacParams(M=16).out_lanes == 16
    assert [f.name for f in MacParams.default_sources()] == ["mac.f"]
    names = {q.name for q in p.ports()}
    assert set(p.data_inputs) | set(p.data_outputs) | {"clk_i", "rst_ni"} == names
    assert {q.name for q in p.ports() if q.direction == "input" and q.role == "data"} == \
        set(p.data_inputs)
    widths = {q.name: q.width for q in p.ports()}
    assert widths["in_data_i"] == 32 and widths["out_data_o"] == 64
    assert widths["cfg_addr_i"] == 2 + 4 + 3


@pytest.mark.parametrize("kw, message", [
    ({"C": 0}, "C must be between 1 and 1024"),
    ({"V": 257}, "V must be between 1 and 256"),
    ({"M": 2000}, "M must be between 1 and 1024"),
    ({"M": 8, "out_lanes": 3}, "out_lanes=3 must divide M=8"),
    ({"C": 2, "M": 8, "out_lanes": 2}, "too few for M=8, C=2"),
    ({"banks": 3}, "banks must be 1 or 2"),
])
def test_bad_parameters_are_one_clear_error(kw: dict[str, int], message: str) -> None:
    with pytest.raises(HalutError, match=message) as err:
        MacParams(**kw)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("gparams, message", [
    ("-GM=8 -GOutLanes=3", "parameter OutLanes must divide M"),
    ("-GC=2 -GM=8 -GOutLanes=2", "M > OutLanes \\* C"),
    ("-GBanks=3", "parameter Banks must be 1 or 2"),
    ("-GV=0", "parameter V must be between 1 and 256"),
])
def test_the_rtl_refuses_bad_parameters_at_elaboration(gparams: str, message: str) -> None:
    v = find_verilator()
    rtl = Path(__file__).resolve().parents[1] / "rtl" / "mac_accel.sv"
    run = subprocess.run([str(v.executable), "--lint-only", "--top-module", "mac_accel",
                          *gparams.split(), str(rtl)], env=build_env(v), capture_output=True,
                         text=True, check=False)
    assert run.returncode != 0
    assert re.search(message, run.stdout + run.stderr)


@pytest.mark.parametrize("make, message", [
    (lambda r: (r.normal(size=(8, 4)), rand_int8(r, 2, 8)), "W must be int8"),
    (lambda r: (rand_int8(r, 8, 4), rand_int8(r, 2, 9)), "A has 9 columns but W has 8 rows"),
    (lambda r: (rand_int8(r, 17, 4), rand_int8(r, 2, 17)), "D=17 is larger than"),
    (lambda r: (rand_int8(r, 8, 9), rand_int8(r, 2, 8)), "M=9 is larger than the chip's M=8"),
    (lambda r: (rand_int8(r, 8, 4), rand_int8(r, 0, 8)), "A has no rows"),
    (lambda r: (rand_int8(r, 8), rand_int8(r, 2, 8)), "W must be 2-D"),
])
def test_bad_input_is_one_clear_error_before_any_verilation(make: object, message: str) -> None:
    W, A = make(np.random.default_rng(0))  # type: ignore[operator]
    with pytest.raises(HalutError, match=message):
        run_mac(W, A, TWO_BANKS)
    with pytest.raises(HalutError, match="params must be a MacParams"):
        run_mac(rand_int8(np.random.default_rng(0), 8, 4), rand_int8(np.random.default_rng(0),
                                                                     2, 8), object())  # type: ignore[arg-type]


def test_the_model_needs_rows() -> None:
    with pytest.raises(HalutError, match="rows must be positive"):
        model_mac_cycles(TWO_BANKS, 0)


# ---- the RTL ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CHIPS))
def test_rtl_matches_the_reference_bit_for_bit_with_padding_and_fewer_columns(name: str) -> None:
    p = CHIPS[name]
    rng = np.random.default_rng(1)
    for D, M in [(p.D, p.M), (p.D - 2, p.M - 1), (1, 1)]:
        W, A = rand_int8(rng, D, M), rand_int8(rng, 11, D)
        r = run_mac(W, A, p)
        assert_bit_exact(r.y, mac_reference(W, A))
        assert r.cycles == model_mac_cycles(p, 11)
        assert r.cycles.stream == 11 * p.C and r.cycles.stall == 0


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_extreme_values(name: str) -> None:
    p = CHIPS[name]
    rng = np.random.default_rng(2)
    ext = np.array([-128, 127], np.int8)
    W = rng.choice(ext, (p.D, p.M))
    W[:, 0] = -128
    A = rng.choice(ext, (9, p.D))
    A[0] = -128
    A[1] = 127
    assert_bit_exact(run_mac(W, A, p).y, mac_reference(W, A))


def test_the_int32_accumulator_wraps_around() -> None:
    p = WIDE  # a row of 2**18 products of up to 2**14
    W = np.full((p.D, 1), 127, np.int8)
    A = np.stack([np.full(p.D, -128, np.int8), np.full(p.D, 127, np.int8),
                  np.random.default_rng(3).choice(np.array([-128, 127], np.int8), p.D)])
    want = mac_reference(W, A)
    exact = A.astype(np.int64) @ W.astype(np.int64)
    assert np.any(want != exact)  # the test does wrap
    r = run_mac(W, A, p)
    assert_bit_exact(r.y, want)
    assert r.cycles == model_mac_cycles(p, 3)


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_weight_sets_back_to_back(name: str) -> None:
    p = CHIPS[name]
    rng = np.random.default_rng(4)
    jobs = [(rand_int8(rng, D, p.M - 1), rand_int8(rng, n, D))
            for D, n in [(p.D, 7), (p.D - 1, 2), (p.D, 1), (3, 5)]]
    r = run_mac_jobs(jobs, p)
    want = np.concatenate([mac_reference(W, A) for W, A in jobs])
    assert_bit_exact(r.y, want)
    assert r.cycles == model_mac_cycles(p, [A.shape[0] for _, A in jobs])
    if p.banks == 2:  # the next set loads while rows stream: less exposed configuration
        one = model_mac_cycles(MacParams(C=p.C, V=p.V, M=p.M, out_lanes=p.out_lanes, banks=1),
                               [A.shape[0] for _, A in jobs])
        assert r.cycles.config < one.config


@pytest.mark.parametrize("name", sorted(CHIPS))
@pytest.mark.parametrize("stimulus", [
    {"bubbles": 0.3, "backpressure": 0.4, "seed": 7},
    {"bubbles": 0.5, "seed": 1},
    {"backpressure": 0.7, "seed": 2},
    {"bubbles": np.array([1, 1, 0]), "backpressure": np.array([0, 1, 1, 0, 1])},
], ids=["both", "bubbles", "backpressure", "patterns"])
def test_bubbles_and_backpressure_never_change_a_result(name: str, stimulus: dict[str, object]
                                                        ) -> None:
    p = CHIPS[name]
    rng = np.random.default_rng(5)
    jobs = [(rand_int8(rng, p.D, p.M), rand_int8(rng, 13, p.D)),
            (rand_int8(rng, p.D - 1, p.M), rand_int8(rng, 6, p.D - 1))]
    r = run_mac_jobs(jobs, p, **stimulus)  # type: ignore[arg-type]
    assert_bit_exact(r.y, np.concatenate([mac_reference(W, A) for W, A in jobs]))
    free = model_mac_cycles(p, [13, 6])
    assert r.cycles.stream == free.stream and r.cycles.writes == free.writes
    assert r.cycles.total >= free.total
    again = run_mac_jobs(jobs, p, **stimulus)  # type: ignore[arg-type]
    assert again.cycles == r.cycles  # seeded: the same stalls


def test_vcd_of_the_whole_run_is_written(tmp_path: Path) -> None:
    p = TWO_BANKS
    rng = np.random.default_rng(6)
    W, A = rand_int8(rng, p.D, p.M), rand_int8(rng, 5, p.D)
    path = tmp_path / "mac.vcd"
    r = run_mac(W, A, p, vcd=path, bubbles=0.2, seed=3)
    assert_bit_exact(r.y, mac_reference(W, A))
    ports = _port_changes(path)
    assert {"clk_i", "rst_ni", "cfg_valid_i", "cfg_ready_o", "in_valid_i", "in_ready_o",
            "in_data_i", "out_valid_o", "out_ready_i", "out_data_o"} <= set(ports)
    rising = [t for t, v in ports["clk_i"] if v == "1"]
    assert len(rising) == r.cycles.total + 2  # + the reset cycles, not counted
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside it
