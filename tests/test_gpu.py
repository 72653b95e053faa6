"""The GPU reference path (emulator/gpu.py) against the golden model, bit for bit.

The Triton kernels run in the Triton interpreter here (no GPU): TRITON_INTERPRET must be set
before anything imports triton, hence the first lines. The torch fallback is tested on the
same vectors. Tests marked ``cuda`` run only where torch sees a GPU.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import emulator  # noqa: E402
from emulator import golden  # noqa: E402
from emulator.backends import make_backend  # noqa: E402
from emulator.gpu import decode, encode, order_keys, run_gpu  # noqa: E402
from emulator.vectors import corner_cases, random_activations, random_program  # noqa: E402
from learning.errors import HalutError  # noqa: E402
from learning.program import HardwareProgram  # noqa: E402

FORMATS = [("fp16", "int8"), ("fp16", "fp16"), ("int8", "int8"), ("int8", "fp16")]
HAS_CUDA = torch.cuda.is_available()
REPO = Path(__file__).resolve().parents[1]


def assert_bit_exact(program: HardwareProgram, A: np.ndarray, **kwargs: object) -> dict:
    g = golden.run(program, A)
    r = run_gpu(program, A, **kwargs)  # type: ignore[arg-type]
    assert r.backend == "gpu" and r.acc is not None
    assert r.acc.dtype == g.acc.dtype and r.y.dtype == np.float32
    np.testing.assert_array_equal(r.acc.view(np.uint32), g.acc.view(np.uint32))
    np.testing.assert_array_equal(r.y.view(np.uint32), g.y.view(np.uint32))
    return r.info


# ---- bit-exactness ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fused", "split"])
@pytest.mark.parametrize("K", [2, 16, 256])
@pytest.mark.parametrize("thr_fmt,lut_fmt", FORMATS)
def test_triton_kernels_match_golden_bit_for_bit_on_ragged_shapes(thr_fmt: str, lut_fmt: str,
                                                                 K: int, mode: str) -> None:
    rng = np.random.default_rng(K * 31 + len(thr_fmt + lut_fmt) + len(mode))
    # N = 37 rows over blocks of 16 and M = 19 columns over blocks of 8: ragged edges,
    # several programs along both grid axes; D = 23 with C = 5 uneven codebooks
    program = random_program(rng, C=5, K=K, M=19, D=23, threshold_format=thr_fmt,
                             lut_format=lut_fmt)
    A = random_activations(rng, program, 37)
    info = assert_bit_exact(program, A, impl="triton", mode=mode, block_n=16, block_m=8)
    assert info["impl"] == "triton" and info["mode"] == mode
    assert info["interpreted"] is (not HAS_CUDA)


@pytest.mark.parametrize("K", [2, 16, 256])
@pytest.mark.parametrize("thr_fmt,lut_fmt", FORMATS)
def test_torch_fallback_matches_golden_bit_for_bit(thr_fmt: str, lut_fmt: str, K: int) -> None:
    rng = np.random.default_rng(K * 17 + len(thr_fmt + lut_fmt))
    program = random_program(rng, C=7, K=K, M=21, D=30, threshold_format=thr_fmt,
                             lut_format=lut_fmt)
    A = random_activations(rng, program, 53)
    info = assert_bit_exact(program, A, impl="torch")
    assert info["impl"] == "torch"


@pytest.mark.parametrize("impl", ["triton", "torch"])
@pytest.mark.parametrize("thr_fmt,lut_fmt", FORMATS)
def test_corner_case_table_is_bit_exact(thr_fmt: str, lut_fmt: str, impl: str) -> None:
    cases = corner_cases(thr_fmt, lut_fmt)
    assert cases
    for case in cases:
        try:
            assert_bit_exact(case.program, case.A, impl=impl)
        except AssertionError as exc:
            raise AssertionError(f"corner case {case.name!r}: {exc}") from None


@pytest.mark.parametrize("thr_fmt,lut_fmt", FORMATS)
def test_corner_case_programs_through_every_kernel_bit_for_bit(thr_fmt: str, lut_fmt: str) -> None:
    """The golden corner-case programs (tests/test_golden.py's table) through each Triton
    kernel on its own: fused and split with blocks of 4 x 4 (several programs on both grid
    axes, masked edges), y-only launches, encode against golden's codes and decode of
    golden's codes. Compiled on the GPU where torch sees one, else the interpreter."""
    from emulator.gpu import activations, prepare, resolve_device, triton_fused

    dev = resolve_device(None)
    for case in corner_cases(thr_fmt, lut_fmt):
        g = golden.run(case.program, case.A)
        where = f"corner case {case.name!r}"
        for mode in ("fused", "split"):
            info = assert_bit_exact(case.program, case.A, impl="triton", mode=mode,
                                    block_n=4, block_m=4)
            assert info["mode"] == mode, where
        codes = encode(case.program, case.A, impl="triton", block_n=4)
        np.testing.assert_array_equal(codes, g.codes, err_msg=where)
        acc, y = decode(case.program, g.codes, impl="triton", block_n=4, block_m=4)
        np.testing.assert_array_equal(acc.view(np.uint32), g.acc.view(np.uint32), err_msg=where)
        np.testing.assert_array_equal(y.view(np.uint32), g.y.view(np.uint32), err_msg=where)
        prep = prepare(case.program, dev)
        acc_none, y_only = triton_fused(prep, activations(case.program, case.A, dev), 4, 4,
                                        write_acc=False)
        assert acc_none is None
        np.testing.assert_array_equal(y_only.cpu().numpy().view(np.uint32),
                                      g.y.view(np.uint32), err_msg=where)


def test_dequantization_keeps_subnormals_and_does_not_fuse() -> None:
    """A tiny scale makes acc * scale subnormal; bias = -prod makes fma and mul+add differ."""
    rng = np.random.default_rng(5)
    base = random_program(rng, C=3, K=4, M=6, D=8, threshold_format="fp16", lut_format="fp16")
    A = random_activations(rng, base, 20)
    for scale, bias in ((1e-41, 0.0), (0.1, -0.3), (3.3e-39, 1e-44)):
        program = base.replace(scale=np.full(6, scale, np.float32),
                               bias=np.full(6, bias, np.float32))
        for impl in ("triton", "torch"):
            assert_bit_exact(program, A, impl=impl, block_n=8, block_m=4)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), C=st.integers(1, 6), L=st.integers(1, 8),
       M=st.integers(1, 24), N=st.integers(1, 40), fmt=st.sampled_from(FORMATS),
       impl=st.sampled_from(["triton", "torch"]))
def test_random_shapes_are_bit_exact(seed: int, C: int, L: int, M: int, N: int,
                                     fmt: tuple[str, str], impl: str) -> None:
    rng = np.random.default_rng(seed)
    D = C + int(rng.integers(0, 20))
    program = random_program(rng, C=C, K=1 << L, M=M, D=D, threshold_format=fmt[0],
                             lut_format=fmt[1])
    assert_bit_exact(program, random_activations(rng, program, N), impl=impl)


@pytest.mark.parametrize("impl", ["triton", "torch"])
def test_encode_and_decode_match_golden_stages(impl: str) -> None:
    rng = np.random.default_rng(11)
    program = random_program(rng, C=4, K=16, M=10, D=12, threshold_format="int8",
                             lut_format="fp16")
    A = random_activations(rng, program, 29)
    g = golden.run(program, A)
    codes = encode(program, A, impl=impl, block_n=8)
    assert codes.dtype == np.int32
    np.testing.assert_array_equal(codes, g.codes)
    acc, y = decode(program, g.codes, impl=impl, block_n=8, block_m=4)
    np.testing.assert_array_equal(acc.view(np.uint32), g.acc.view(np.uint32))
    np.testing.assert_array_equal(y.view(np.uint32), g.y.view(np.uint32))


def test_order_keys_sort_like_ieee_fp16_with_equal_zeros() -> None:
    bits = np.arange(0, 1 << 16, dtype=np.uint32).astype(np.uint16)
    vals = bits.view(np.float16)
    keep = ~np.isnan(vals)
    vals = vals[keep]
    keys = order_keys(vals)
    a = vals[::97].astype(np.float64)
    ka = keys[::97].astype(np.int64)
    np.testing.assert_array_equal(a[:, None] > a[None, :], ka[:, None] > ka[None, :])
    assert order_keys(np.array([-0.0, 0.0], np.float16)).tolist() == [0, 0]


# ---- entry points and choices ----------------------------------------------------------
def test_gpu_backend_object_reaches_the_gpu_path() -> None:
    rng = np.random.default_rng(3)
    program = random_program(rng, C=3, K=4, M=5, D=7)
    A = random_activations(rng, program, 9)
    r = make_backend("gpu", impl="torch").run(program, A)
    g = golden.run(program, A)
    assert r.backend == "gpu" and r.info["impl"] == "torch"
    np.testing.assert_array_equal(r.y.view(np.uint32), g.y.view(np.uint32))


def test_auto_picks_triton_when_it_imports() -> None:
    rng = np.random.default_rng(4)
    program = random_program(rng, C=2, K=2, M=3, D=4)
    r = run_gpu(program, random_activations(rng, program, 5))
    assert r.info["impl"] == "triton"
    assert r.info["device"] == ("cuda" if HAS_CUDA else "cpu")


def test_without_triton_auto_falls_back_to_torch_and_triton_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # make `import triton` fail for real, and force emulator.gpu_kernels to be imported anew
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.delitem(sys.modules, "emulator.gpu_kernels", raising=False)
    monkeypatch.delattr(emulator, "gpu_kernels", raising=False)
    rng = np.random.default_rng(6)
    program = random_program(rng, C=3, K=8, M=4, D=6, threshold_format="int8")
    A = random_activations(rng, program, 10)
    info = assert_bit_exact(program, A)
    assert info["impl"] == "torch"
    with pytest.raises(HalutError, match="Triton is not installed"):
        run_gpu(program, A, impl="triton")


TRITON_FIRST = """
import torch.optim, triton  # triton (and its stdlib kernels) imported before emulator.gpu
import numpy as np
from emulator import golden
from emulator.gpu import run_gpu
from emulator.vectors import random_activations, random_program
for thr, lut in (("fp16", "int8"), ("int8", "fp16")):
    program = random_program(np.random.default_rng(0), C=3, K=4, M=8, D=6,
                             threshold_format=thr, lut_format=lut)
    A = random_activations(np.random.default_rng(1), program, 7)
    r = run_gpu(program, A, impl="triton")
    assert np.array_equal(r.y.view(np.uint32), golden.run(program, A).y.view(np.uint32))
print("interpreted" if r.info["interpreted"] else "compiled")
"""


@pytest.mark.skipif(HAS_CUDA, reason="the interpreter is only chosen without a GPU")
def test_triton_imported_first_still_runs_in_the_interpreter() -> None:
    """A user script that imports triton (e.g. through torch.optim) before emulator.gpu: the
    kernels must not call Triton library functions decorated before the interpreter was on."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", TRITON_FIRST], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "interpreted"


def test_torch_fallback_refuses_flushed_subnormals() -> None:
    rng = np.random.default_rng(7)
    program = random_program(rng, C=2, K=4, M=3, D=5, lut_format="fp16")
    A = random_activations(rng, program, 4)
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        with pytest.raises(HalutError, match="subnormals"):
            run_gpu(program, A, impl="torch")
    finally:
        torch.set_flush_denormal(False)


# ---- bad input ---------------------------------------------------------------------------
@pytest.fixture
def small() -> tuple[HardwareProgram, np.ndarray]:
    rng = np.random.default_rng(8)
    program = random_program(rng, C=2, K=4, M=3, D=5)
    return program, random_activations(rng, program, 4)


@pytest.mark.parametrize("impl", ["triton", "torch"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_activations_give_the_golden_message(small: tuple, impl: str,
                                                        bad: float) -> None:
    program, A = small
    A = A.copy()
    A[2, 3] = bad
    with pytest.raises(HalutError) as want:
        golden.run(program, A)
    with pytest.raises(HalutError) as got:
        run_gpu(program, A, impl=impl)
    assert str(got.value) == str(want.value)
    assert "row 2, column 3" in str(got.value)


@pytest.mark.parametrize("A,match", [
    (np.zeros((4, 6), np.float32), "5 columns"),
    (np.zeros(5, np.float32), "2-D"),
    (np.zeros((4, 5), np.int32), "float array"),
    (np.zeros((0, 5), np.float32), "empty"),
])
def test_bad_activation_shapes_and_dtypes_are_one_clear_error(small: tuple, A: np.ndarray,
                                                              match: str) -> None:
    program, _ = small
    with pytest.raises(HalutError, match=match):
        run_gpu(program, A)


@pytest.mark.parametrize("kwargs,match", [
    ({"impl": "cuda"}, "unknown GPU implementation"),
    ({"mode": "fastest"}, "unknown mode"),
    ({"block_n": 12}, "block_n must be a power of two"),
    ({"block_m": 0}, "block_m must be a power of two"),
    ({"device": "nonsense"}, "unknown device"),
])
def test_bad_options_are_one_clear_error(small: tuple, kwargs: dict, match: str) -> None:
    program, A = small
    with pytest.raises(HalutError, match=match):
        run_gpu(program, A, **kwargs)


def test_a_non_program_is_rejected(small: tuple) -> None:
    _, A = small
    with pytest.raises(HalutError, match="HardwareProgram"):
        run_gpu(object(), A)  # type: ignore[arg-type]


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without a CUDA GPU")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(small: tuple) -> None:
    program, A = small
    with pytest.raises(HalutError, match="no CUDA GPU"):
        run_gpu(program, A, device="cuda")


@pytest.mark.parametrize("codes,match", [
    (np.full((3, 2), 4, np.int32), r"\[0, K=4\)"),
    (np.zeros((3, 3), np.int32), "shape"),
    (np.zeros((3, 2), np.float32), "integer"),
])
def test_bad_codes_are_one_clear_error(small: tuple, codes: np.ndarray, match: str) -> None:
    program, _ = small
    with pytest.raises(HalutError, match=match):
        decode(program, codes, impl="torch")


# ---- the compiled GPU code, checked without a GPU ----------------------------------------
PTX_CHECK = """
import os, sys
os.environ["TRITON_INTERPRET"] = "0"
from emulator import gpu_kernels as k
# (kernel, feature format fp16?, LUT format fp16?, activations dtype, options): every kernel
# and format pair the launches use, float16 activations, y-only launches and the larger
# blocks / 8 warps that bench/bench_gpu.py tunes over
VARIANTS = [(name, f16, l16, "fp32", {}) for name in ("encode_kernel", "decode_kernel",
            "fused_kernel") for f16, l16 in ((True, True), (False, False))]
VARIANTS += [("fused_kernel", True, False, "fp32", {}), ("fused_kernel", False, True, "fp32", {}),
             ("fused_kernel", True, True, "fp16", {}), ("fused_kernel", False, False, "fp16", {}),
             ("encode_kernel", False, True, "fp16", {}),
             ("fused_kernel", True, True, "fp32", dict(block_n=128, block_m=128, num_warps=8,
                                                      write_acc=False)),
             ("decode_kernel", False, True, "fp32", dict(block_n=64, block_m=256, num_warps=8,
                                                        write_acc=False))]
for name, feat16, lut16, a_dtype, opts in VARIANTS:
    what = (name, feat16, lut16, a_dtype, opts)
    asm = k.compile_asm(name, fp16_features=feat16, fp16_lut=lut16, a_dtype=a_dtype, sass=True,
                        **opts)
    body = [l.split("//")[0] for l in asm["ptx"].splitlines()]
    assert not any("fma" in l for l in body), (what, "fma")
    assert not any(".ftz" in l for l in body), (what, "ftz")
    if name != "decode_kernel" and not feat16:
        assert any("add.rn.f32" in l and "0f4B400000" in l for l in body), what
        assert any("add.rn.f32" in l and "0fCB400000" in l for l in body), what
    if name != "encode_kernel":
        assert any("mul.rn.f32" in l for l in body), what
    # what ptxas made of it: no fused multiply-add, no flush-to-zero in the machine code
    ops = k.sass_opcodes(asm["sass"])
    assert ops, (what, "no SASS parsed")
    assert not [op for op in ops if op.startswith(("FFMA", "DFMA"))], (what, ops)
    assert not [op for op in ops if ".FTZ" in op], (what, ops)
    if name != "encode_kernel":
        assert ops["FMUL"] and ops["FADD"], (what, ops)
print("ok", len(VARIANTS))
"""


@pytest.mark.slow
def test_compiled_ptx_has_no_fma_and_no_flush_to_zero(tmp_path: Path) -> None:
    """Compile every kernel for sm_90 ahead of time (no GPU needed) and read the PTX and the
    SASS: separately rounded mul/add, the RNE magic-number add and subtract kept, no .ftz,
    no FFMA; for every format pair, float16 activations, y-only launches, large blocks."""
    env = dict(os.environ, TRITON_INTERPRET="0",
               TRITON_CACHE_DIR=str(tmp_path / "triton-cache"))
    out = subprocess.run([sys.executable, "-c", PTX_CHECK], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().startswith("ok")


@pytest.mark.slow
def test_gpu_benchmark_quick_mode_runs_and_is_bit_exact(tmp_path: Path) -> None:
    """bench/bench_gpu.py --quick: the benchmark's own code on tiny shapes (interpreter on CPU,
    compiled on a GPU), its JSON and its bit-exactness checks."""
    out_json = tmp_path / "gpu-quick.json"
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--quick",
                          "--out", str(out_json)], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out_json.read_text())
    assert doc["complete"] and doc["quick"] and doc["all_bit_exact"]
    kinds = {e["kernel"] for r in doc["results"] for e in r["timings"]}
    assert kinds == {"fused", "encode", "decode", "split"}
    assert {r["lut_format"] for r in doc["results"]} == {"int8", "fp16"}
    assert all("floor_fraction" in e for r in doc["results"] for e in r["timings"])


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without a CUDA GPU")
def test_gpu_benchmark_without_cuda_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out_json = tmp_path / "gpu.json"
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--out",
                          str(out_json)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0
    assert out.stdout == "" and len(out.stderr.strip().splitlines()) == 1
    assert "no CUDA device" in out.stderr
    assert not out_json.exists()


# ---- on a real GPU -------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("thr_fmt,lut_fmt", FORMATS)
def test_cuda_kernels_match_golden_including_fp16_device_input(thr_fmt: str,
                                                               lut_fmt: str) -> None:
    rng = np.random.default_rng(21)
    program = random_program(rng, C=32, K=16, M=70, D=200, threshold_format=thr_fmt,
                             lut_format=lut_fmt)
    A = random_activations(rng, program, 1000)
    for mode in ("fused", "split"):
        assert_bit_exact(program, A, impl="triton", mode=mode, device="cuda")
    assert_bit_exact(program, A, impl="torch", device="cuda")
    A16 = A.astype(np.float16)
    g = golden.run(program, A16)
    r = run_gpu(program, torch.from_numpy(A16).cuda(), impl="triton")
    np.testing.assert_array_equal(r.y.view(np.uint32), g.y.view(np.uint32))
    for case in corner_cases(thr_fmt, lut_fmt):
        assert_bit_exact(case.program, case.A, impl="triton", device="cuda")
