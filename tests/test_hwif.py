"""The accelerator interface defined once (emulator/hwif.py): address map, configuration
writes, the generated SystemVerilog package and the port list."""

from __future__ import annotations

import numpy as np
import pytest

from emulator.hwif import AddressMap, lut_writes, threshold_writes
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
