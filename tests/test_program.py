"""The hardware program's validation, address map and RTL parameter sets."""

from __future__ import annotations

import numpy as np
import pytest

from emulator.params import RtlParams, parse_assignments
from emulator.vectors import random_program
from learning.errors import HalutError
from learning.program import codebook_bounds, heap_node, log2_exact


def test_codebooks_cover_all_dims_when_d_is_not_a_multiple_of_c() -> None:
    b = codebook_bounds(10, 3)
    assert b.tolist() == [0, 4, 7, 10]
    with pytest.raises(HalutError, match="C <= D"):
        codebook_bounds(3, 4)


@pytest.mark.parametrize("K", [0, 1, 3, 6, 512, 2.0])
def test_k_must_be_a_power_of_two_in_range(K: object) -> None:
    with pytest.raises(HalutError, match="K must"):
        log2_exact(K)  # type: ignore[arg-type]


def test_heap_order_places_children_after_parents() -> None:
    assert [heap_node(0, 0), heap_node(1, 0), heap_node(1, 1), heap_node(2, 3)] == [0, 1, 2, 6]


def test_program_validation_names_the_bad_field() -> None:
    p = random_program(np.random.default_rng(0), C=2, K=4, M=3, D=5)
    with pytest.raises(HalutError, match="dims must lie"):
        p.replace(dims=np.full((2, 2), 7))
    with pytest.raises(HalutError, match="thresholds hold NaN"):
        p.replace(thresholds=np.full((2, 3), np.nan, dtype=np.float16))
    with pytest.raises(HalutError, match="lut dtype"):
        p.replace(lut=p.lut.astype(np.int16))
    with pytest.raises(HalutError, match="scale must be float32"):
        p.replace(scale=np.ones(2, np.float32))
    with pytest.raises(HalutError, match="input_scale"):
        p.replace(input_scale=float("nan"))


def test_program_arrays_are_read_only() -> None:
    p = random_program(np.random.default_rng(0), C=2, K=4, M=3, D=5)
    with pytest.raises(ValueError):
        p.lut[0, 0, 0] = 1


def test_rtl_params_reject_impossible_sets() -> None:
    with pytest.raises(HalutError, match="power of two"):
        RtlParams(K=12)
    with pytest.raises(HalutError, match="must divide"):
        RtlParams(M=16, out_lanes=3)
    with pytest.raises(HalutError, match="too few"):
        RtlParams(C=1, M=16, out_lanes=4)
    assert RtlParams(C=1, M=16).out_lanes == 16


def test_parameter_assignments_parse_like_the_cli() -> None:
    p = parse_assignments(["M=8", "k=4", "lut=fp16", "lanes=4"], RtlParams(C=3))
    assert (p.C, p.K, p.M, p.lut_format, p.out_lanes) == (3, 4, 8, "fp16", 4)
    assert p.verilog_parameters() == {"C": 3, "K": 4, "M": 8, "ThrFmt": 0, "LutFmt": 1,
                                      "OutLanes": 4, "CfgLanes": 4, "Banks": 2}
    # the default lanes follow K (min(16, K)); explicit ones stay
    assert parse_assignments(["K=16"], p).cfg_lanes == 16
    q = parse_assignments(["cfg_lanes=2", "banks=1"], p)
    assert (q.cfg_lanes, q.banks, parse_assignments(["K=16"], q).cfg_lanes) == (2, 1, 2)
    with pytest.raises(HalutError, match="unknown RTL parameter"):
        parse_assignments(["Q=1"])
    with pytest.raises(HalutError, match="integer"):
        parse_assignments(["M=x"])
    with pytest.raises(HalutError, match="NAME=VALUE"):
        parse_assignments(["M"])


def test_params_for_program_is_the_default_chip_with_the_programs_k_and_formats() -> None:
    rng = np.random.default_rng(0)
    narrow = random_program(rng, C=3, K=4, M=8, D=6, threshold_format="int8",
                            lut_format="fp16")
    p = RtlParams.for_program(narrow)  # the default C and M, whatever the program's
    d = RtlParams()
    assert (p.C, p.K, p.M, p.threshold_format, p.lut_format) == (d.C, 4, d.M, "int8", "fp16")
    assert (p.cfg_lanes, p.banks) == (4, 2)  # lanes: min(16, K)
    assert RtlParams.for_program(narrow, M=4, out_lanes=2).out_lanes == 2
    p.check_program(random_program(rng, C=70, K=4, M=40, D=80, threshold_format="int8",
                                   lut_format="fp16"))  # any C and M map onto the chip
    with pytest.raises(HalutError, match="K=2 prototypes.*built for K=4"):
        p.check_program(random_program(rng, C=3, K=2, M=8, D=6, threshold_format="int8",
                                       lut_format="fp16"))
    with pytest.raises(HalutError, match="fp16 thresholds and int8 LUTs.*built for int8 "
                                         "thresholds and fp16 LUTs"):
        p.check_program(random_program(rng, C=3, K=4, M=8, D=6))
