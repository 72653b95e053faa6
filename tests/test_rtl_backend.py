"""The Verilated accelerator (emulator/rtl.py, harness, cycle driver) against golden, bit for bit.

Covering set of RTL parameter sets (every value of K in {2, 4, 16, 256}, C in {1, 3, 16, 32},
M in {1, 8, 16}, both threshold and both LUT formats, one multi-beat output): one Verilator
build each, cached in $HALUT_CACHE and kept on one xdist worker by its group.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emulator import golden
from emulator.build import build_harness
from emulator.harness import BatchSim, Handshake, rng_state
from emulator.hwif import ctrl_write, job_writes, single_job_writes, swap_write
from emulator.layers import LayerModel, run_rows
from emulator.params import RtlParams
from emulator.rtl import in_words, job_shapes, model_layer_cycles, pack_beats, run_rtl
from emulator.vectors import corner_cases, random_activations, random_program
from learning.errors import HalutError
from learning.program import HardwareProgram

FORMATS = [("fp16", "int8"), ("fp16", "fp16"), ("int8", "int8"), ("int8", "fp16")]

# name -> (params, columns of the test program: more than params.M means column tiles)
CONFIGS: dict[str, tuple[RtlParams, int]] = {
    **{f"C3K4M8_{t}_{lf}": (RtlParams(C=3, K=4, M=8, threshold_format=t, lut_format=lf), 20)
       for t, lf in FORMATS},
    "C1K256M1_int8_fp16": (RtlParams(C=1, K=256, M=1, threshold_format="int8",
                                     lut_format="fp16"), 3),
    "C16K2M16_fp16_int8_lanes4": (RtlParams(C=16, K=2, M=16, out_lanes=4), 16),
    "C32K16M16_fp16_int8": (RtlParams(C=32, K=16, M=16), 40),
}


def group(name: str) -> pytest.MarkDecorator:
    return pytest.mark.xdist_group(f"rtl_{name}")


def config_param(name: str) -> object:
    return pytest.param(name, id=name, marks=group(name))


def assert_bit_exact(program: HardwareProgram, A: np.ndarray, r: object) -> None:
    g = golden.run(program, A)
    acc = r.acc  # type: ignore[attr-defined]
    assert acc.dtype == g.acc.dtype and acc.shape == g.acc.shape
    bad = np.argwhere(acc.view(np.uint32) != g.acc.view(np.uint32))
    assert bad.size == 0, (f"{len(bad)} mismatches, first at {bad[0].tolist()}: rtl "
                           f"{acc[tuple(bad[0])]!r} golden {g.acc[tuple(bad[0])]!r}")
    assert np.array_equal(r.y.view(np.uint32), g.y.view(np.uint32))  # type: ignore[attr-defined]


def program_for(name: str, seed: int = 0) -> tuple[HardwareProgram, RtlParams]:
    params, M = CONFIGS[name]
    rng = np.random.default_rng(seed)
    D = 2 * params.C + 5
    program = random_program(rng, params.C, params.K, M, D, params.threshold_format,
                             params.lut_format)
    return program, params


@pytest.mark.parametrize("name", [config_param(n) for n in CONFIGS])
def test_random_programs_match_golden_with_column_tiles_counted(name: str) -> None:
    program, params = program_for(name)
    A = random_activations(np.random.default_rng(1), program, 37)
    r = run_rtl(program, A, params=params)
    assert_bit_exact(program, A, r)
    n_tiles = -(-program.M // params.M)
    assert len(r.tiles) == n_tiles
    C, N = params.C, A.shape[0]
    # the tiles stream back to back: only the last drains, after a fixed pipeline latency
    # (docs/rtl.md: L + 1 + M/OutLanes)
    assert [t.drain for t in r.tiles] == [0] * (n_tiles - 1) + [params.L + 1 + params.out_beats]
    for t in r.tiles:
        assert t.stream == N * C and t.stall == 0
    assert r.cycles is not None and r.cycles == sum(r.tiles[1:], r.tiles[0])
    assert r.cycles.total == sum(t.total for t in r.tiles)
    assert r.cycles == model_layer_cycles(program, params, N)  # the analytic model, exactly


@pytest.mark.parametrize("fmt", [pytest.param(f, id="_".join(f), marks=group(
    f"C3K4M8_{f[0]}_{f[1]}")) for f in FORMATS])
@pytest.mark.parametrize("driver", ["batch", "cycle"])
def test_a_layer_of_two_and_a_half_chips_runs_in_three_passes_bit_exactly(
        fmt: tuple[str, str], driver: str) -> None:
    """C = 2.5 x the chip's C: three codebook passes (3, 3, 2 codebooks), each after the
    first starting every row from the previous pass's results (the preload port), over three
    column tiles; bit-exact with golden (fp32 sequential from +0.0, int32 wrap-around),
    cycles equal to the analytic model, then again under bubbles and back-pressure."""
    params = CONFIGS[f"C3K4M8_{fmt[0]}_{fmt[1]}"][0]
    rng = np.random.default_rng(21)
    program = random_program(rng, 8, params.K, 20, 19, *fmt)  # C = 8 = 2.67 x 3
    if fmt[1] == "int8":  # LUT values at the extremes: the int32 sums wrap
        program = program.replace(lut=np.where(program.lut >= 0, 127, -128).astype(np.int8))
    A = random_activations(rng, program, 13 if driver == "batch" else 4)
    r = run_rtl(program, A, params=params, driver=driver)
    assert_bit_exact(program, A, r)
    assert r.info["codebook_passes"] == 3 and r.info["jobs"] == 9
    assert r.cycles == model_layer_cycles(program, params, A.shape[0])
    assert r.cycles.preload == 2 * 3 * A.shape[0] * params.out_beats  # passes 2, 3 x 3 tiles
    s = run_rtl(program, A, params=params, driver=driver, bubbles=0.3, backpressure=0.5,
                seed=4)
    assert_bit_exact(program, A, s)
    assert s.cycles is not None and s.cycles.stream == r.cycles.stream


@pytest.mark.parametrize("banks", [1, 2])
@pytest.mark.parametrize("lanes", [1, 4])
def test_fewer_codebooks_than_the_chip_stream_without_padding(banks: int, lanes: int) -> None:
    """A layer with C below the chip's runs at its own C (the CNUM register): N * C_layer
    beats, and with two banks each job's configuration loads while the previous streams.
    One bank or one lane per write only costs cycles (the model says how many)."""
    params = RtlParams(C=8, K=4, M=4, cfg_lanes=lanes, banks=banks)
    rng = np.random.default_rng(3)
    program = random_program(rng, 5, 4, 11, 13)  # 5 of 8 codebooks, 3 column tiles
    A = random_activations(rng, program, 17)
    r = run_rtl(program, A, params=params)
    assert_bit_exact(program, A, r)
    assert r.cycles is not None and r.cycles.stream == 17 * 5 * 3
    model = model_layer_cycles(program, params, 17)
    assert r.cycles == model
    if banks == 2 and lanes == 4:  # only the first job's writes and one SWAP per later job show
        first = job_shapes(program, params, 17)[0].writes
        assert r.cycles.config == first + 1 + 2


@pytest.mark.parametrize("fmt", [pytest.param(f, id="_".join(f), marks=group(
    f"C3K4M8_{f[0]}_{f[1]}")) for f in FORMATS])
def test_golden_corner_case_table_through_rtl(fmt: tuple[str, str]) -> None:
    params = CONFIGS[f"C3K4M8_{fmt[0]}_{fmt[1]}"][0]
    cases = corner_cases(*fmt)
    assert cases
    for case in cases:
        r = run_rtl(case.program, case.A, params=params)
        assert_bit_exact(case.program, case.A, r)


def _stream_raw(params: RtlParams, program: HardwareProgram, A: np.ndarray,
                valid: Handshake, ready: Handshake, seed: int = 0) -> tuple[np.ndarray, object,
                                                                        int]:
    """Program one tile and stream A through a BatchSim; returns raw out beats, counts and
    the clock cycles the stream took."""
    build = build_harness(params)
    with BatchSim(build.path) as sim:
        sim.reset()
        sim.config(single_job_writes(program, params.address_map))
        beats = pack_beats(golden.gather_features(program, A), params)
        assert beats.shape[1] == in_words(params)
        before = sim.cycle
        n_out = A.shape[0] * params.M // params.out_lanes
        out, counts = sim.stream(beats, n_out, params.out_lanes, valid=valid, ready=ready,
                                 rng=rng_state(seed))
        return out, counts, sim.cycle - before


@pytest.mark.parametrize("name", [config_param("C16K2M16_fp16_int8_lanes4"),
                                  config_param("C3K4M8_fp16_int8")])
def test_backpressure_and_bubbles_never_drop_duplicate_or_reorder(name: str) -> None:
    program, params = program_for(name, seed=3)
    A = random_activations(np.random.default_rng(4), program, 29)
    base = run_rtl(program, A, params=params)
    latency = base.tiles[-1].drain
    for seed, (bub, bp) in enumerate([(0.3, 0.0), (0.0, 0.6), (0.5, 0.5), (0.1, 0.9)]):
        r = run_rtl(program, A, params=params, bubbles=bub, backpressure=bp, seed=seed)
        assert_bit_exact(program, A, r)  # every row, once, in order
        for t in r.tiles:
            assert t.stream == A.shape[0] * params.C
        assert r.tiles[-1].drain >= latency
        if bp == 0.0:
            assert r.tiles[-1].drain == latency  # bubbles alone never lengthen the drain
    # the stream phase takes exactly stream + stall + drain clock cycles
    valid, ready = Handshake.make(0.4, "bubbles"), Handshake.make(0.5, "backpressure")
    _, counts, cycles = _stream_raw(params, program, A, valid, ready, seed=11)
    assert counts.cycles == cycles == counts.stream + counts.stall + counts.drain
    assert counts.stall > 0


@pytest.mark.parametrize("name", [config_param("C3K4M8_fp16_int8")])
def test_codebook_counts_outside_one_to_c_are_ignored(name: str) -> None:
    """CNUM takes 1..C only: 0, C+1 and a value whose low bits alone would be valid leave the
    count as it was, so the rows still stream as C codebooks (bit-exact, one result each)."""
    program, params = program_for(name, seed=11)
    amap = params.address_map
    A = random_activations(np.random.default_rng(12), program, 7)
    writes = job_writes(program, amap, (0, params.C), (0, params.M), preload=False)
    for bad in (0, params.C + 1, 0x8000 | 1):
        writes += ctrl_write(amap, "cnum", bad)
    with BatchSim(build_harness(params).path) as sim:
        sim.reset()
        sim.config(writes + swap_write(amap))
        beats = pack_beats(golden.gather_features(program, A), params)
        out, counts = sim.stream(beats, A.shape[0] * params.out_beats, params.out_lanes)
    acc = out.reshape(A.shape[0], params.M)[:, :params.M].view(np.int32)
    np.testing.assert_array_equal(acc, golden.run(program, A).acc[:, :params.M])
    assert counts.stream == A.shape[0] * params.C


@pytest.mark.parametrize("name", [config_param("C16K2M16_fp16_int8_lanes4")])
def test_alternating_valid_costs_one_stall_per_beat_and_no_extra_drain(name: str) -> None:
    program, params = program_for(name, seed=5)
    A = random_activations(np.random.default_rng(6), program, 9)
    _, free, _ = _stream_raw(params, program, A, Handshake(), Handshake())
    assert free.stall == 0  # one codebook per clock when the output is ready
    _, alt, _ = _stream_raw(params, program, A, Handshake.make(np.array([1, 0]), "bubbles"),
                            Handshake())
    n_beats = A.shape[0] * params.C
    assert alt.stream == n_beats and alt.stall == n_beats - 1 and alt.drain == free.drain


@pytest.mark.parametrize("name", [config_param("C16K2M16_fp16_int8_lanes4"),
                                  config_param("C3K4M8_int8_fp16")])
def test_cycle_driver_and_batch_harness_agree_on_outputs_and_cycles(name: str) -> None:
    program, params = program_for(name, seed=8)
    A = random_activations(np.random.default_rng(9), program, 5)
    stimuli: list[dict[str, object]] = [
        {},
        {"bubbles": 0.3, "backpressure": 0.4, "seed": 7},
        {"bubbles": np.array([1, 1, 0]), "backpressure": np.array([0, 1, 1, 0, 1])},
    ]
    for kw in stimuli:
        b = run_rtl(program, A, params=params, driver="batch", **kw)  # type: ignore[arg-type]
        c = run_rtl(program, A, params=params, driver="cycle", **kw)  # type: ignore[arg-type]
        assert_bit_exact(program, A, b)
        assert np.array_equal(b.acc.view(np.uint32), c.acc.view(np.uint32))
        assert b.tiles == c.tiles and b.cycles == c.cycles


def _port_changes(path: Path) -> dict[str, list[tuple[int, str]]]:
    from vcdvcd import VCDVCD

    vcd = VCDVCD(str(path), signals=None, store_tvs=True)
    out: dict[str, list[tuple[int, str]]] = {}
    for ref in vcd.references_to_ids:
        short = ref.split(".")[-1].split("[")[0]
        if ref.count(".") == 1 and short.endswith(("_i", "_o", "_ni")):  # top-level ports
            out[short] = [(int(t), v.lstrip("0") or "0") for t, v in vcd[ref].tv]
    return out


@pytest.mark.parametrize("name", [config_param("C3K4M8_fp16_int8")])
def test_vcd_of_both_drivers_is_readable_and_identical_at_the_ports(name: str,
                                                                     tmp_path: Path) -> None:
    program, params = program_for(name, seed=2)
    A = random_activations(np.random.default_rng(2), program, 4)
    kw = {"bubbles": 0.25, "backpressure": 0.25, "seed": 1}
    rb = run_rtl(program, A, params=params, driver="batch", vcd=tmp_path / "b.vcd", **kw)
    rc = run_rtl(program, A, params=params, driver="cycle", vcd=tmp_path / "c.vcd", **kw)
    assert_bit_exact(program, A, rb)
    assert rb.tiles == rc.tiles
    pb, pc = _port_changes(tmp_path / "b.vcd"), _port_changes(tmp_path / "c.vcd")
    assert {"clk_i", "rst_ni", "in_valid_i", "in_ready_o", "out_valid_o",
            "out_data_o"} <= set(pb)
    assert rb.cycles is not None
    rising = [t for t, v in pb["clk_i"] if v == "1"]
    assert len(rising) == rb.cycles.total + 2  # + the reset cycles, not counted
    for port in ("in_valid_i", "in_ready_o", "out_valid_o", "out_ready_i", "out_data_o",
                 "in_data_i", "cfg_valid_i"):
        assert pb[port] == pc[port], port


def test_bad_input_fails_before_any_verilation(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALUT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    program = random_program(rng, 3, 4, 8, 11)
    A = random_activations(rng, program, 4)
    with pytest.raises(HalutError, match="power of two"):
        RtlParams(C=3, K=6, M=8)
    with pytest.raises(HalutError, match="out_lanes"):
        RtlParams(C=2, K=4, M=16, out_lanes=4)
    bad_calls: list[tuple[dict[str, object], str]] = [
        ({"params": RtlParams(C=4, K=8, M=8)}, "K=4 prototypes"),
        ({"params": RtlParams(C=3, K=4, M=8, lut_format="fp16")}, "int8 LUTs"),
        ({"params": {"C": 3}}, "RtlParams"),
        ({"driver": "fast"}, "driver"),
        ({"bubbles": 1.5}, "bubbles"),
        ({"backpressure": np.zeros(4)}, "all zeros"),
        ({"sources": [tmp_path / "missing.sv"]}, "not found"),
    ]
    for kw, msg in bad_calls:
        with pytest.raises(HalutError, match=msg):
            run_rtl(program, A, **kw)  # type: ignore[arg-type]
    A_nan = A.copy()
    A_nan[2, program.dims[1, 0]] = np.nan
    for bad_A, msg in [(A_nan, "NaN"), (A[:, :-1], "columns"), (A[0], "2-D"),
                       (A.astype(np.int32), "float")]:
        with pytest.raises(HalutError, match=msg):
            run_rtl(program, bad_A)
    with pytest.raises(HalutError, match="HardwareProgram"):
        run_rtl("model.halut", A)  # type: ignore[arg-type]
    assert not (tmp_path / "cache" / "verilator").exists()


def test_pack_beats_places_feature_l_at_bits_l_times_width() -> None:
    params = RtlParams(C=2, K=16, M=1)  # L = 4 fp16 features: 64 bits, 2 words
    f = np.arange(2 * 2 * 4, dtype=np.uint16).reshape(2, 2, 4).view(np.float16)
    beats = pack_beats(f, params)
    assert beats.shape == (4, 2)
    assert beats[1].tolist() == [4 | 5 << 16, 6 | 7 << 16]
    p8 = RtlParams(C=1, K=8, M=1, threshold_format="int8")  # 3 int8 features in one word
    f8 = np.array([[[-1, 2, -128]]], dtype=np.int8)
    assert pack_beats(f8, p8).tolist() == [[0xFF | 2 << 8 | 0x80 << 16]]


@pytest.mark.xdist_group("rtl_C3K4M8_fp16_int8")
def test_halut_run_cli_writes_golden_exact_outputs_and_reports_cycles(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from flows.cli import main
    from learning import learn, quantize, save_model

    rng = np.random.default_rng(0)
    A = rng.standard_normal((300, 12)).astype(np.float32)
    B = rng.standard_normal((12, 20)).astype(np.float32)
    model = learn(A, B, 3, 4, seed=0)
    program = quantize(model, threshold_format="fp16", lut_format="int8")
    save_model(tmp_path / "m.halut", model, program)
    np.save(tmp_path / "A.npy", A[:25])
    runner = CliRunner()
    args = ["run", str(tmp_path / "m.halut"), "-a", str(tmp_path / "A.npy"), "-p", "M=8",
            "-o", str(tmp_path / "Y.npy"), "--json"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    y = np.load(tmp_path / "Y.npy")
    g = golden.run(program, A[:25])
    assert y.dtype == np.float32 and np.array_equal(y.view(np.uint32), g.y.view(np.uint32))
    assert report["backend"] == "rtl" and report["shape"] == [25, 20]
    assert len(report["tiles"]) == 3  # 20 columns on an M=8 accelerator
    assert report["cycles"]["stream"] == 3 * 25 * 3
    assert report["cycles"]["total"] == sum(t["total"] for t in report["tiles"])
    assert set(report["build"]) >= {"path", "seconds", "cached"}
    # human output: the table
    res = runner.invoke(main, args[:-1])
    assert res.exit_code == 0 and "total" in res.output and "config" in res.output
    # golden through the same command; rtl-only options refused on other backends
    res = runner.invoke(main, ["run", str(tmp_path / "m.halut"), "-a", str(tmp_path / "A.npy"),
                               "--backend", "golden", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["cycles"] is None
    for extra, msg in [(["--backend", "golden", "--driver", "cycle"], "rtl backend only"),
                       (["-p", "K=3"], "power of two")]:
        res = runner.invoke(main, ["run", str(tmp_path / "m.halut"), "-a",
                                   str(tmp_path / "A.npy"), *extra])
        assert res.exit_code == 1 and msg in res.output
        assert res.output.count("\n") == 1 and "Traceback" not in res.output
    np.save(tmp_path / "bad.npy", np.full((2, 12), np.nan, np.float32))
    before = (tmp_path / "Y.npy").read_bytes()
    res = runner.invoke(main, ["run", str(tmp_path / "m.halut"), "-a", str(tmp_path / "bad.npy"),
                               "-o", str(tmp_path / "Y.npy")])
    assert res.exit_code == 1 and "NaN" in res.output
    assert (tmp_path / "Y.npy").read_bytes() == before  # nothing half written


@pytest.mark.slow
@pytest.mark.parametrize("name", [config_param("C3K4M8_fp16_int8")])
def test_fst_waveform_from_both_drivers(name: str, tmp_path: Path) -> None:
    program, params = program_for(name, seed=4)
    A = random_activations(np.random.default_rng(4), program, 3)
    sizes = []
    for driver in ("batch", "cycle"):
        path = tmp_path / f"{driver}.fst"
        r = run_rtl(program, A, params=params, driver=driver, vcd=path)
        assert_bit_exact(program, A, r)
        data = path.read_bytes()
        assert data[0] == 0  # FST header block (FST_BL_HDR)
        sizes.append(len(data))
    assert min(sizes) > 1000


@pytest.mark.parametrize("name", [config_param("C3K4M8_fp16_int8")])
def test_cycle_driver_traces_several_models_in_one_process(name: str, tmp_path: Path) -> None:
    """Each pyverilator model has its own VerilatedContext: with the shared default context a
    second traced model in one process crashed inside trace() (a segfault in CI)."""
    program, params = program_for(name, seed=5)
    A = random_activations(np.random.default_rng(5), program, 3)
    results = [run_rtl(program, A, params=params, driver="cycle", vcd=tmp_path / f"{i}.vcd")
               for i in range(3)]
    for r in results:
        assert_bit_exact(program, A, r)
        assert r.tiles == results[0].tiles
    sizes = {(tmp_path / f"{i}.vcd").stat().st_size for i in range(3)}
    assert len(sizes) == 1 and sizes.pop() > 0  # three complete, identical waveforms


def _saved_model(tmp_path: Path) -> tuple[Path, Path]:
    from learning import learn, quantize, save_model

    rng = np.random.default_rng(0)
    A = rng.standard_normal((300, 12)).astype(np.float32)
    B = rng.standard_normal((12, 20)).astype(np.float32)
    model = learn(A, B, 3, 4, seed=0)
    save_model(tmp_path / "m.halut", model,
               quantize(model, threshold_format="fp16", lut_format="int8"))
    np.save(tmp_path / "A.npy", A[:5])
    return tmp_path / "m.halut", tmp_path / "A.npy"


def _stored_program(path: Path) -> HardwareProgram:
    from learning import load_model

    program = load_model(path).program
    assert program is not None
    return program


def test_unwritable_waveform_or_output_fails_before_any_simulation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from click.testing import CliRunner

    from flows.cli import main

    monkeypatch.setenv("HALUT_CACHE", str(tmp_path / "cache"))
    model, A_path = _saved_model(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("keep")
    ro = tmp_path / "ro"
    ro.mkdir()
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: object, **kw: object) -> tuple[int, str]:
        if Path(str(kw.get("dir"))) == ro:  # a read-only folder, even for root
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, **kw)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    runner = CliRunner()
    for opt, path, msg in [("--vcd", blocker / "w.vcd", "is not a folder"),
                           ("--vcd", blocker / "sub" / "w.vcd", "is not a folder"),
                           ("--vcd", ro / "w.vcd", "Permission denied"),
                           ("-o", blocker / "Y.npy", "is not a folder"),
                           ("-o", ro / "Y.npy", "Permission denied")]:
        res = runner.invoke(main, ["run", str(model), "-a", str(A_path), opt, str(path)])
        assert res.exit_code == 1, res.output
        assert res.output.startswith("error: cannot write ") and msg in res.output
        assert res.output.count("\n") == 1 and "Traceback" not in res.output
    res = runner.invoke(main, ["run", str(model), "-a", str(A_path), "-o",
                               str(tmp_path / "x.vcd"), "--vcd", str(tmp_path / "x.vcd")])
    assert res.exit_code == 1 and "same file" in res.output
    # the library entry point checks too, before the build
    program = _stored_program(model)
    A = np.load(A_path)
    for driver in ("batch", "cycle"):
        with pytest.raises(HalutError, match="cannot write waveform"):
            run_rtl(program, A, driver=driver, vcd=ro / "w.vcd")
    assert not (tmp_path / "cache" / "verilator").exists()  # nothing was built or run
    assert blocker.read_text() == "keep" and list(ro.iterdir()) == []


def test_a_waveform_the_simulator_left_empty_is_an_error_and_changes_nothing(
        tmp_path: Path) -> None:
    from emulator.harness import TraceFile

    target = tmp_path / "w.vcd"
    target.write_text("old")
    trace = TraceFile(target)
    assert trace.temp.parent == tmp_path and trace.temp.exists()
    with pytest.raises(HalutError, match="wrote no waveform"):
        trace.commit()  # the simulator could not write: nothing in the temporary file
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("name", [config_param("C3K4M8_fp16_int8")])
def test_existing_waveform_survives_a_failed_run_and_a_finished_one_replaces_it(
        name: str, tmp_path: Path) -> None:
    program, params = program_for(name, seed=6)
    A = random_activations(np.random.default_rng(6), program, 3)
    for driver in ("batch", "cycle"):
        folder = tmp_path / driver
        folder.mkdir()
        target = folder / "w.vcd"
        target.write_text("old waveform")
        target.chmod(0o640)
        # results are (almost) never taken: the run fails as hung after a long trace
        with pytest.raises(HalutError, match="hung"):
            run_rtl(program, A, params=params, driver=driver, vcd=target,
                    backpressure=1 - 1e-12)
        assert target.read_text() == "old waveform"
        assert sorted(folder.iterdir()) == [target]  # no partial waveform left behind
        r = run_rtl(program, A, params=params, driver=driver, vcd=target)
        assert_bit_exact(program, A, r)
        assert target.read_bytes().startswith(b"$version")  # the new, whole waveform
        assert target.stat().st_mode & 0o777 == 0o640  # the old file's permissions
        assert sorted(folder.iterdir()) == [target]


FULL_DISK = """
import resource, signal, sys
import numpy as np
from emulator.params import RtlParams
from emulator.rtl import run_rtl
from emulator.vectors import random_activations, random_program
from learning.errors import HalutError
prog = random_program(np.random.default_rng(1), C=3, K=4, M=8, D=6)
A = random_activations(np.random.default_rng(2), prog, 2000)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (32768, 32768))
try:
    run_rtl(prog, A, params=RtlParams.for_program(prog, M=8), vcd=sys.argv[1],
            driver=sys.argv[2])
except HalutError as exc:
    print(exc)
"""


@pytest.mark.parametrize("driver", ["batch", "cycle"])
def test_a_waveform_that_cannot_be_written_is_an_error_not_a_hang(driver: str,
                                                                   tmp_path: Path) -> None:
    """A failed VCD write (a full disk; here a file-size limit) used to deadlock inside
    Verilator's fatal-error handler; both drivers' VCD writer (emulator/halut_vcd_file.h) now
    let the run finish and report it."""
    import subprocess
    import sys

    program = random_program(np.random.default_rng(1), C=3, K=4, M=8, D=6)
    A = random_activations(np.random.default_rng(2), program, 2)
    run_rtl(program, A, params=RtlParams.for_program(program, M=8), vcd=tmp_path / "warm.vcd",
            driver=driver)  # the build, outside the file-size limit
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path / "big.vcd"), driver],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "writing the waveform" in out.stdout and "failed" in out.stdout
    assert not (tmp_path / "big.vcd").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["warm.vcd"]  # no temporary left


@pytest.mark.parametrize("driver", ["batch", "cycle"])
@group("C3K4M8_fp16_int8")
def test_row_tiles_stream_as_one_stream_and_each_lut_tile_loads_once(driver: str) -> None:
    """The layer runner cuts a job's rows into row tiles without draining between them:
    outputs, every cycle count and the handshake patterns are those of one whole stream,
    and each job's configuration (thresholds, LUT tile) is written once per run."""
    program, params = program_for("C3K4M8_fp16_int8", seed=3)  # 20 columns: 3 column tiles
    A = random_activations(np.random.default_rng(4), program, 23)
    layer = LayerModel(program)
    opts = {"params": params, "driver": driver, "bubbles": 0.3, "backpressure": 0.4, "seed": 9}
    whole = run_rows(layer, A, "rtl", row_tile=23, **opts)
    tiled = run_rows(layer, A, "rtl", row_tile=4, **opts)  # 6 row tiles, last one of 3 rows
    assert_bit_exact(program, A, whole)
    np.testing.assert_array_equal(tiled.acc, whole.acc)
    assert tiled.column_tiles == whole.column_tiles  # per column tile, identical cycles
    n_cols = -(-program.M // params.M)
    writes = sum(s.writes + 1 for s in job_shapes(program, params, A.shape[0]))
    assert tiled.cycles is not None and tiled.cycles.writes == writes  # no reloads
    assert [len(t.column_tiles) for t in tiled.tiles] == [n_cols] * 6
    assert sum(c.drain for c in tiled.column_tiles) == sum(
        t.cycles.drain for t in tiled.tiles if t.cycles is not None)
    assert all(t.column_tiles[k].drain == 0 for t in tiled.tiles[:-1] for k in range(n_cols))


def _pack_stress_values(rng: np.random.Generator) -> np.ndarray:
    """float32 values at every fp16/int8 rounding edge: ties to even, subnormal steps, the
    overflow to inf, +-0, int8 saturation, and random magnitudes over the whole range."""
    f16 = np.arange(0, 0x7C00, 7, dtype=np.uint16).view(np.float16).astype(np.float32)
    nxt = np.nextafter(f16, np.float32(np.inf))
    mids = (f16[:-1].astype(np.float64) + f16[1:].astype(np.float64)) / 2  # exact ties
    edges = np.array([0.0, -0.0, 65504.0, 65519.99, 65520.0, 65536.0, 3.0e38, 2.0**-24,
                      2.0**-25, 1.5 * 2.0**-25, 2.0**-14, 127.5, 128.5, -128.5, -129.0,
                      0.5, 1.5, 2.5, -0.5, -2.5], dtype=np.float64)
    rand = rng.standard_normal(4000) * np.exp(rng.uniform(-30, 30, 4000))
    vals = np.concatenate([f16, nxt, mids, edges, rand]).astype(np.float32)
    vals = vals[np.isfinite(vals)]
    return np.concatenate([vals, -vals])


@pytest.mark.parametrize("name", [config_param("C3K4M8_fp16_int8"),
                                  config_param("C3K4M8_int8_int8"),
                                  config_param("C32K16M16_fp16_int8")])
def test_host_packing_in_cpp_equals_golden_gather_and_pack_beats(name: str) -> None:
    """BatchSim.pack (hx_pack: gather, fp16/int8 conversion, packing in C++) gives exactly
    the beats of golden.gather + pack_beats, on every rounding edge of both formats."""
    program, params = program_for(name, seed=5)
    if program.threshold_format == "int8":
        program = program.replace(input_scale=3.7)
    vals = _pack_stress_values(np.random.default_rng(6))
    A = np.resize(vals, (vals.size // program.D + 1) * program.D).reshape(-1, program.D)
    want = pack_beats(golden.gather_features(program, A), params)
    with BatchSim(build_harness(params).path) as sim:
        got = sim.pack(A, program.dims, program.threshold_format, program.input_scale,
                       in_words(params))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", [config_param("C3K4M8_fp16_int8")])
@pytest.mark.parametrize("fmt", ["fp16", "int8"])
def test_packing_of_any_feature_count_equals_numpy(name: str, fmt: str) -> None:
    """hx_pack converts four features of a beat at a time and the rest one by one: for every
    feature count L from 1 to 9 (full vectors, a remainder, both) and spare words in the
    beat, the beats are numpy's float16 halves (fp16) or ``golden.to_int8`` bytes (int8) in
    order, zero padded. The packing is host code, so any build's library packs any (C, L)."""
    params, _ = CONFIGS[name]
    rng = np.random.default_rng(7)
    vals = _pack_stress_values(rng)
    scale, width = (1.0, 2) if fmt == "fp16" else (3.7, 1)
    kind = np.uint16 if fmt == "fp16" else np.uint8
    with BatchSim(build_harness(params).path) as sim:
        for L in range(1, 10):
            C, D = 3, 11
            A = np.resize(vals, (vals.size // D + 1) * D).reshape(-1, D)
            dims = rng.integers(0, D, (C, L)).astype(np.int32)
            words = -(-L * width // 4) + L % 3  # sometimes spare words after the features
            feats = np.zeros((A.shape[0] * C, 4 * words // width), kind)
            f = A[:, dims.ravel()]
            with np.errstate(over="ignore"):  # to inf, as the hardware's format does
                conv = f.astype(np.float16) if fmt == "fp16" else golden.to_int8(f, scale)
            feats[:, :L] = conv.view(kind).reshape(-1, L)
            got = sim.pack(A, dims, fmt, scale, words)
            np.testing.assert_array_equal(got, feats.view(np.uint32), err_msg=f"L={L}")
        with pytest.raises(HalutError, match="words"):
            sim.pack(A, np.zeros((2, 9), np.int32), fmt, scale, (9 * width - 1) // 4)
