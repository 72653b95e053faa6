"""The fp16-LUT column of the accelerator at its pipeline depth, against numpy, bit for bit.

``tests/units/halut_fp_acc_tb.sv`` puts the accelerator's own ``halut_fp16_acc`` (fp16 -> fp32
in the LUT-read stage, the packed value register, the fp32 add in the accumulation stage)
between the same two registers as ``halut_accel``; a clocked C++ testbench streams one fp16
entry per cycle. Each chain starts from +0 or from a start value (the accelerator's preload)
and every running sum must equal numpy's sequential float32 accumulation
``acc = float32(acc + float32(entry))`` bit for bit; a NaN sum must be the canonical quiet
NaN 0x7FC00000. The build is cached under ``$HALUT_CACHE/units/<hash>`` like
tests/test_rtl_units.py's.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.test_rtl_units import RTL, UNITS, _digest, _verilate_tb, verilator_bin

SOURCES = ["halut_pkg.sv", "halut_lzc.sv", "halut_pfx_add.sv", "halut_fp_classify.sv",
           "halut_fp16_to_fp32.sv", "halut_fp32_add.sv", "halut_fp16_acc.sv"]
TB_SV, TB_CPP = UNITS / "halut_fp_acc_tb.sv", UNITS / "halut_fp_acc_tb.cpp"
FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wall", "-Wno-UNUSEDPARAM"]
QNAN = 0x7FC00000
F32_MAX = 0x7F7FFFFF
F16_MAX, F16_MIN_SUB, F16_INF = 0x7BFF, 0x0001, 0x7C00

pytestmark = pytest.mark.xdist_group("rtl_units")

Chain = tuple[int, list[int]]  # (start value as binary32 bits, fp16 entries as bits)


@pytest.fixture(scope="module")
def acc_tb() -> Path:
    vbin = verilator_bin()
    sources = [RTL / s for s in SOURCES] + [TB_SV]
    key = _digest(sources + [TB_CPP, vbin], FLAGS)
    return _verilate_tb(sources, FLAGS, key, top="halut_fp_acc_tb", cpp=TB_CPP)


def numpy_sums(chains: list[Chain]) -> np.ndarray:
    """Every running sum of every chain (uint32 bits), numpy float32 one add at a time."""
    out = []
    with np.errstate(all="ignore"):
        for start, entries in chains:
            acc = np.array([start], dtype=np.uint32).view(np.float32)[0]
            vals = np.array(entries, dtype=np.uint16).view(np.float16).astype(np.float32)
            for v in vals:
                acc = np.float32(acc + v)
                out.append(np.float32(acc).view(np.uint32))
    return np.array(out, dtype=np.uint32)


def rtl_sums(tb: Path, chains: list[Chain]) -> np.ndarray:
    """Stream the chains back to back, one entry per cycle; the running sums (uint32 bits)."""
    rows = []
    for start, entries in chains:
        for i, e in enumerate(entries):
            rows.append((1, int(i == 0), start, e))
    rows += [(0, 0, 0, 0)] * 2  # the last entry reaches acc_o two edges after it is offered
    with tempfile.TemporaryDirectory() as tmp:
        vin, vout = Path(tmp) / "in.hex", Path(tmp) / "out.hex"
        vin.write_text("".join(f"{v:x} {s:x} {sv:08x} {e:04x}\n" for v, s, sv, e in rows))
        res = subprocess.run([str(tb), str(vin), str(vout)], capture_output=True, text=True,
                             check=False)
        assert res.returncode == 0, res.stderr
        acc = np.array([int(w, 16) for w in vout.read_text().split()], dtype=np.uint32)
    assert acc.size == len(rows)
    # the sum including the entry offered at cycle t is acc_o after edge t+1
    return acc[1:len(rows) - 1]


def check(tb: Path, chains: list[Chain]) -> np.ndarray:
    got, want = rtl_sums(tb, chains), numpy_sums(chains)
    assert got.shape == want.shape
    nan = np.isnan(want.view(np.float32))
    bad = np.where(nan, got != QNAN, got != want)
    if bad.any():
        i = np.flatnonzero(bad)[:8]
        pytest.fail(f"{bad.sum()} of {bad.size} running sums differ, e.g. " + ", ".join(
            f"#{j}: rtl {got[j]:08x} numpy {want[j]:08x}" for j in i))
    return got


def f16(x: float) -> int:
    return int(np.array(x, dtype=np.float16).view(np.uint16))


def f32(x: float) -> int:
    return int(np.array(x, dtype=np.float32).view(np.uint32))


def test_signed_zeros(acc_tb: Path) -> None:
    pz, nz = 0x0000, 0x8000  # fp16 +0, -0
    chains: list[Chain] = [(0, [nz]), (0, [pz, nz, nz]), (0x80000000, [nz, nz]),
                           (0x80000000, [pz]), (0x80000000, [nz, pz, nz])]
    got = check(acc_tb, chains)
    # +0 + -0 = +0 (a row starts from +0), -0 + -0 = -0 (a preload of -0), -0 + +0 = +0
    assert got.tolist() == [0, 0, 0, 0, 0x80000000, 0x80000000, 0, 0x80000000, 0, 0]


def test_subnormals(acc_tb: Path) -> None:
    rng = np.random.default_rng(20)
    sub16 = [F16_MIN_SUB, 0x03FF, 0x0200, 0x8001, 0x83FF, 0x0155, 0x0400, 0x8400]
    # fp32 subnormal start values (preloads): results in and out of the fp32 subnormal range
    starts = [0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00400000, 0x00800000]
    chains: list[Chain] = [(s, sub16) for s in starts]
    chains += [(0, rng.choice(sub16, size=64).tolist()) for _ in range(16)]
    tiny = rng.integers(0, 0x00800000, size=200).astype(np.uint32)
    tiny |= (rng.integers(0, 2, size=200).astype(np.uint32) << 31)
    chains += [(int(t), [0x0000, 0x8000, F16_MIN_SUB, 0x8001]) for t in tiny]
    got = check(acc_tb, chains)
    assert np.any((got & 0x7F800000) == 0) and np.any(got & 0x007FFFFF)


def test_cancellation_to_plus_zero(acc_tb: Path) -> None:
    rng = np.random.default_rng(21)
    h = rng.integers(0, 0x7C00, size=300).astype(int)  # finite fp16, incl. subnormals
    chains: list[Chain] = [(0, [int(x), int(x) | 0x8000]) for x in h]
    chains += [(0, [int(x) | 0x8000, int(x)]) for x in h[:50]]
    # longer chains that come back to exactly zero, and a preload cancelled by an entry
    chains += [(0, [f16(3.0), f16(-1.0), f16(-2.0)]), (f32(-0.5), [f16(0.25), f16(0.25)]),
               (f32(-65504.0), [F16_MAX]), (f32(2.0**-24), [0x8001])]
    got = check(acc_tb, chains)
    ends = np.cumsum([len(e) for _, e in chains]) - 1
    assert np.all(got[ends] == 0)  # +0, never -0


def test_no_spurious_overflow_and_infinities(acc_tb: Path) -> None:
    # fp16 entries cannot overflow a finite fp32 sum (FLT_MAX + 65504 rounds to FLT_MAX);
    # infinities come only from inf entries or an inf start value
    chains: list[Chain] = [(F32_MAX, [F16_MAX] * 4), (F32_MAX | 0x80000000, [F16_MAX | 0x8000]),
                           (0x7F7FFFF0, [F16_MAX, F16_MAX]), (0, [F16_INF, F16_MAX | 0x8000]),
                           (0, [F16_INF | 0x8000, 0x0001]), (0x7F800000, [F16_MAX | 0x8000]),
                           (F32_MAX, [F16_INF]), (0, [F16_INF, F16_INF])]
    got = check(acc_tb, chains)
    assert got[0] == F32_MAX and got[11] == 0x7F800000 and got[-1] == 0x7F800000


def test_nan_is_canonical(acc_tb: Path) -> None:
    nans16 = [0x7C01, 0x7E00, 0x7FFF, 0xFC01, 0xFE00, 0xFFFF, 0x7D55]
    chains: list[Chain] = [(0, [n, f16(1.0)]) for n in nans16]
    chains += [(0, [F16_INF, F16_INF | 0x8000, f16(2.0)]),
               (0x7F800000, [F16_INF | 0x8000]), (0xFF800001, [f16(1.0)]),
               (0x7FC12345, [0x0000]), (F32_MAX, [0x7C01])]
    got = check(acc_tb, chains)
    nan = np.isnan(got.view(np.float32))
    assert nan.sum() == 2 * len(nans16) + 2 + 1 + 1 + 1 + 1
    assert np.all(got[nan] == QNAN)


def test_rounding_ties_to_even(acc_tb: Path) -> None:
    one = f32(1.0)
    h24, h23 = f16(2.0**-24), f16(2.0**-23)  # the fp16 subnormals 2^-24, 2^-23
    chains: list[Chain] = [
        (one, [h24]),                   # 1 + 2^-24: a tie, stays 1 (even)
        (one + 1, [h24]),               # (1 + 2^-23) + 2^-24: a tie, up to 1 + 2^-22
        (one, [h24, h24]),              # twice a tie: stays 1, then 1 again
        (one, [h23, h24]),              # 1 + 2^-23 exact, then a tie up
        (f32(2048.0), [f16(2.0**-13)]),  # 2048 + half an ulp (2^-13): tie, stays
        (f32(2048.0) + 1, [f16(2.0**-13)]),  # odd: up
        (f32(2048.0), [f16(3 * 2.0**-14)]),  # above the tie: up
    ]
    rng = np.random.default_rng(22)
    # random ties: start s (fp32, exponent e), entry exactly half an ulp of s, as an fp16
    for _ in range(400):
        e = int(rng.integers(-1, 16))  # half an ulp 2^(e-24) is an fp16 value (>= 2^-24)
        frac = int(rng.integers(0, 1 << 23))
        s = ((127 + e) << 23) | frac | (int(rng.integers(0, 2)) << 31)
        chains.append((s, [f16(2.0 ** (e - 24)) | (int(rng.integers(0, 2)) << 15)]))
    got = check(acc_tb, chains)
    assert got[:6].tolist() == [one, one + 2, one, one, one + 1, one + 2]


def test_long_chains_match_sequential_float32(acc_tb: Path) -> None:
    rng = np.random.default_rng(23)
    chains: list[Chain] = []
    for n in (20_000, 5_000, 5_000, 1_000):
        # magnitudes over the whole fp16 range, both signs, some exact repeats and negations
        mag = rng.integers(0, 0x7C00, size=n).astype(np.uint32)
        sign = rng.integers(0, 2, size=n).astype(np.uint32) << 15
        e = (mag | sign).astype(int)
        e[1::7] = e[0:-1:7][: e[1::7].size] ^ 0x8000  # cancel the previous entry
        chains.append((0, e.tolist()))
    # a codebook-pass style chain: a long sum continued from its own partial result
    vals = rng.normal(0, 30, size=3000).astype(np.float16).view(np.uint16).astype(int)
    chains.append((0, vals[:1500].tolist()))
    part = numpy_sums([chains[-1]])[-1]
    chains.append((int(part), vals[1500:].tolist()))
    check(acc_tb, chains)
