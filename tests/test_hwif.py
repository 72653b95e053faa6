"""The accelerator interface defined once (emulator/hwif.py): address map, configuration
writes, the generated SystemVerilog package and the port list."""

from __future__ import annotations

import numpy as np
import pytest

from emulator.build import build_pyverilator
from emulator.driver import CycleSim
from emulator.hwif import (
    ACC_W,
    CFG_DATA_W,
    CFG_KIND,
    CLOCK,
    CTRL_REG,
    DATA_INPUTS,
    DATA_OUTPUTS,
    FEATURE_BITS,
    LUT_FORMAT_CODE,
    PKG_PATH,
    RESET,
    THRESHOLD_FORMAT_CODE,
    AddressMap,
    job_writes,
    ports,
    render_package,
    swap_write,
)
from emulator.params import RtlParams
from emulator.vectors import random_program
from learning.errors import HalutError


def test_address_map_fields_do_not_overlap() -> None:
    amap = AddressMap(C=3, K=16, M=8, lanes=4)
    # kind 2 bits, sel max(MW 3, level bits 2), CW 2, QW log2(16/4) = 2
    assert (amap.sel_bits, amap.c_bits, amap.q_bits) == (3, 2, 2)
    assert amap.addr_bits == 2 + 3 + 2 + 2 and amap.data_bits == 4 * CFG_DATA_W
    thr = np.array([amap.threshold_addr(level, c, q) for level in range(4)
                    for c in range(3) for q in range(amap.level_words(level)[1])], np.uint64)
    m, c, q = np.meshgrid(np.arange(8), np.arange(3), np.arange(amap.words), indexing="ij")
    lut = amap.lut_addr(m.ravel(), c.ravel(), q.ravel())
    ctrl = np.array([amap.ctrl_addr(r) for r in CTRL_REG], dtype=np.uint64)
    everything = np.concatenate([thr, lut, ctrl])
    assert len(set(everything.tolist())) == everything.size
    assert everything.max() < 2**amap.addr_bits
    kind = np.uint64(amap.addr_bits - 2)
    assert set((thr >> kind).tolist()) == {CFG_KIND["thr"]}
    assert set((lut >> kind).tolist()) == {CFG_KIND["lut"]}
    assert set((ctrl >> kind).tolist()) == {CFG_KIND["ctrl"]}
    assert [int(a) & 3 for a in ctrl] == list(CTRL_REG.values())
    # level l has 2**l thresholds: words of min(2**l, lanes) entries
    assert [amap.level_words(level) for level in range(4)] == [(1, 1), (2, 1), (4, 1), (4, 2)]
    with pytest.raises(HalutError, match="cfg_lanes must be a power of two"):
        AddressMap(3, 4, 8, lanes=8)


def test_job_writes_slice_codebooks_and_columns_and_keep_the_bits() -> None:
    rng = np.random.default_rng(0)
    p = random_program(rng, C=5, K=4, M=3, D=5, threshold_format="int8", lut_format="fp16")
    amap = AddressMap(2, 4, 4, lanes=2)
    w = job_writes(p, amap, (2, 4), (1, 3), preload=True)
    # thresholds: levels 0, 1 (1 + 1 words) per codebook; LUT: 2 columns x 2 codebooks x
    # 2 words; CNUM and PRELOAD
    assert len(w) == 2 * 2 + 2 * 2 * 2 + 2 and w.data.shape == (len(w), 2)
    kinds = w.addr >> np.uint32(amap.addr_bits - 2)
    thr, lut = w.data[kinds == CFG_KIND["thr"]], w.data[kinds == CFG_KIND["lut"]]
    # level 0 is node 0 (one lane used), level 1 nodes 1, 2; int8 sign-extended to 16 bits
    want_thr = p.thresholds[2:4].astype(np.int16).view(np.uint16)
    assert thr[0:1, 0].tolist() == [want_thr[0, 0]] and thr[0, 1] == 0
    assert thr[2].tolist() == want_thr[0, 1:3].tolist()
    assert (lut.ravel() == p.lut[1:3, 2:4].ravel().view(np.uint16)).all()
    assert w.data[-2:, 0].tolist() == [2, 1]  # CNUM 2 codebooks, PRELOAD on
    words = w.words()
    assert words.dtype == np.uint32 and words.shape == (len(w), 1)
    assert int(words[-2, 0]) == 2
    with pytest.raises(HalutError, match="at most C=2"):
        job_writes(p, amap, (0, 3), (0, 3), preload=False)
    with pytest.raises(HalutError, match="at most M=1"):
        job_writes(p, AddressMap(2, 4, 1), (0, 2), (0, 3), preload=False)
    with pytest.raises(HalutError, match="built for K=8"):
        job_writes(p, AddressMap(2, 8, 4), (0, 2), (0, 3), preload=False)
    assert len(swap_write(amap)) == 1


def test_the_rtl_package_is_the_one_generated_from_hwif() -> None:
    assert PKG_PATH.read_text() == render_package(), (
        "rtl/halut_pkg.sv differs from emulator/hwif.py: run `python -m emulator.hwif`")


def test_generated_package_carries_the_interface_constants() -> None:
    text = render_package()
    assert f"CfgDataW = {CFG_DATA_W};" in text and f"AccW = {ACC_W};" in text
    for fmt, code in THRESHOLD_FORMAT_CODE.items():
        assert f"ThrFmt{fmt.capitalize()} = 32'd{code}" in text
    for fmt, code in LUT_FORMAT_CODE.items():
        assert f"LutFmt{fmt.capitalize()} = 32'd{code}" in text


@pytest.mark.parametrize("params", [RtlParams(C=2, K=4, M=4),
                                    RtlParams(C=3, K=8, M=4, threshold_format="int8",
                                              lut_format="fp16", out_lanes=2, cfg_lanes=2,
                                              banks=1)],
                         ids=["c2k4m4", "c3k8m4-int8-fp16-lanes2"])
def test_port_list_matches_the_verilated_model(params: RtlParams) -> None:
    """hwif.ports() against the ports Verilator elaborated (read back from the model)."""
    build = build_pyverilator(params)
    with CycleSim(build.path) as sim:
        got = {**{n: ("input", int(w)) for n, w in sim._pv.inputs},
               **{n: ("output", int(w)) for n, w in sim._pv.outputs}}
    want = {p.name: (p.direction, p.width)
            for p in ports(params.C, params.K, params.M, params.threshold_format,
                           params.out_lanes, params.cfg_lanes)}
    assert got == want
    assert (CLOCK, RESET) == ("clk_i", "rst_ni")
    assert set(DATA_INPUTS) | set(DATA_OUTPUTS) | {CLOCK, RESET} == set(want)


def test_format_codes_are_the_rtl_parameters() -> None:
    p = RtlParams(C=2, K=4, M=4, threshold_format="int8", lut_format="fp16")
    v = p.verilog_parameters()
    assert (v["ThrFmt"], v["LutFmt"]) == (THRESHOLD_FORMAT_CODE["int8"], LUT_FORMAT_CODE["fp16"])
    assert p.feature_bits == FEATURE_BITS["int8"] == 8
