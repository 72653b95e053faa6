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
    CLOCK,
    DATA_INPUTS,
    DATA_OUTPUTS,
    FEATURE_BITS,
    LUT_FORMAT_CODE,
    PKG_PATH,
    RESET,
    THRESHOLD_FORMAT_CODE,
    AddressMap,
    lut_writes,
    ports,
    render_package,
    threshold_writes,
)
from emulator.params import RtlParams
from emulator.vectors import random_program
from learning.errors import HalutError


def test_address_map_fields_do_not_overlap() -> None:
    amap = AddressMap(C=3, K=16, M=8)
    assert amap.addr_bits == 1 + 3 + 2 + 4
    thr = amap.threshold_addr(np.arange(3)[:, None], np.arange(15)[None, :]).ravel()
    m, c, k = np.meshgrid(np.arange(8), np.arange(3), np.arange(16), indexing="ij")
    lut = amap.lut_addr(m.ravel(), c.ravel(), k.ravel())
    everything = np.concatenate([thr, lut])
    assert len(set(everything.tolist())) == everything.size
    assert everything.max() < 2**amap.addr_bits
    assert (lut >> np.uint64(amap.addr_bits - 1)).min() == 1
    assert (thr >> np.uint64(amap.addr_bits - 1)).max() == 0


def test_configuration_writes_sign_extend_int8_and_keep_fp16_bits() -> None:
    rng = np.random.default_rng(0)
    p = random_program(rng, C=2, K=4, M=3, D=5, threshold_format="int8", lut_format="fp16")
    amap = AddressMap(2, 4, 4)
    addr, data = threshold_writes(p, amap)
    assert addr.size == 2 * 3 and data.dtype == np.uint16
    assert data.view(np.int16).tolist() == p.thresholds.astype(np.int16).ravel().tolist()
    addr, data = lut_writes(p, amap, 1, 3)
    assert addr.size == 2 * 2 * 4
    assert (data == p.lut[1:3].ravel().view(np.uint16)).all()
    with pytest.raises(HalutError, match="exceeds"):
        lut_writes(p, AddressMap(2, 4, 1), 0, 3)


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
                                              lut_format="fp16", out_lanes=2)],
                         ids=["c2k4m4", "c3k8m4-int8-fp16-lanes2"])
def test_port_list_matches_the_verilated_model(params: RtlParams) -> None:
    """hwif.ports() against the ports Verilator elaborated (read back from the model)."""
    build = build_pyverilator(params)
    with CycleSim(build.path) as sim:
        got = {**{n: ("input", int(w)) for n, w in sim._pv.inputs},
               **{n: ("output", int(w)) for n, w in sim._pv.outputs}}
    want = {p.name: (p.direction, p.width)
            for p in ports(params.C, params.K, params.M, params.threshold_format,
                           params.out_lanes)}
    assert got == want
    assert (CLOCK, RESET) == ("clk_i", "rst_ni")
    assert set(DATA_INPUTS) | set(DATA_OUTPUTS) | {CLOCK, RESET} == set(want)


def test_format_codes_are_the_rtl_parameters() -> None:
    p = RtlParams(C=2, K=4, M=4, threshold_format="int8", lut_format="fp16")
    v = p.verilog_parameters()
    assert (v["ThrFmt"], v["LutFmt"]) == (THRESHOLD_FORMAT_CODE["int8"], LUT_FORMAT_CODE["fp16"])
    assert p.feature_bits == FEATURE_BITS["int8"] == 8
