"""The multiply-accumulate baseline: ``rtl/mac_accel.sv`` (an int8 x int8 -> int32 datapath
with halut_accel's stream interface and output rate) Verilated with its own batch harness
(``emulator/mac_harness.cpp``), and the numpy reference it must match bit for bit.

A layer ``y = A W`` (A: (N, D) int8 activations, W: (D, M) int8 weights, y: int32 wrapping
around) runs on a chip of :class:`MacParams` (C beats of V activations per row, M columns):
the weights go in through the configuration port (:func:`weight_writes`, then a SWAP), each
row as C input beats (:func:`pack_rows`; D < C*V is zero-padded), each result row as
M/OutLanes output beats. Weight sets can follow each other in one stream
(:func:`run_mac_jobs`): with two banks the next set loads while the current one's rows
stream. Cycles are counted as for halut_accel (emulator/cycles.py) and
:func:`model_mac_cycles` predicts them for a free-flowing stream. See docs/mac-baseline.md.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emulator.build import (
    HARNESS_SIM_H,
    OPT_FLAGS,
    VCD_FILE_H,
    BuildResult,
    cache_key,
    cached_build,
    resolve_sources,
    rtl_dir,
    run_build_step,
    trace_kind,
    verilator_args,
)
from emulator.cycles import CycleReport, JobShape, model_cycles
from emulator.harness import (
    CtypesSim,
    Handshake,
    PartEnd,
    Queues,
    SimStream,
    rng_state,
)
from emulator.hwif import ACC_W, CFG_KIND, CTRL_REG, ConfigWrites, Port
from emulator.verilator import BASE_FLAGS, build_env, find_verilator
from learning.atomic import check_writable
from learning.errors import HalutError
from learning.program import clog2

#: the baseline's top module
MAC_TOP = "mac_accel"
#: its file list (a stand-alone top: no package)
MAC_FILE_LIST = rtl_dir() / "mac.f"
MAC_HARNESS_CPP = Path(__file__).resolve().parent / "mac_harness.cpp"
MAC_HARNESS_LIB = "libmac_harness.so"
#: pipeline stages between the input handshake and the weight read (the multiply stage): the
#: role of halut_accel's L tree levels in the cycle model (emulator.cycles.model_cycles)
MAC_READ_STAGES = 1
#: configuration address kinds (halut_accel's codes, emulator.hwif): kind ``weight`` (its LUT
#: kind) writes the V weights of one column and beat, kind ``ctrl`` a control command
MAC_CFG_KIND: dict[str, int] = {"weight": CFG_KIND["lut"], "ctrl": CFG_KIND["ctrl"]}
#: the one control command: SWAP (halut_accel's code) makes the shadow bank active
MAC_CTRL_SWAP = CTRL_REG["swap"]
MAX_C = 1024
MAX_V = 256
MAX_M = 1024


# ---- the parameter set -----------------------------------------------------------------------

@dataclass(frozen=True)
class MacParams:
    """Top-level parameters of ``mac_accel``, fixed at Verilation time (``-G``).

    A row's ``D = C * V`` int8 activations arrive as C beats of V, one beat per clock (a row
    in C cycles, as a row of C codebooks on halut_accel); M int32 accumulators; a row's M
    results leave in ``M / out_lanes`` beats, which must fit in its C cycles
    (``M <= out_lanes * C``); ``out_lanes`` 0 means M. ``banks`` 2 double-buffers the weight
    memory (the next weight set loads while rows stream), 1 loads it between weight sets.
    """

    C: int = 32
    V: int = 4
    M: int = 16
    out_lanes: int = 0
    banks: int = 2

    top: ClassVar[str] = MAC_TOP
    #: synchronous data ports (the SDC's input / output delay groups), as emulator.hwif's
    #: DATA_INPUTS / DATA_OUTPUTS for halut_accel
    data_inputs: ClassVar[tuple[str, ...]] = ("cfg_valid_i", "cfg_addr_i", "cfg_data_i",
                                              "in_valid_i", "in_data_i", "out_ready_i")
    data_outputs: ClassVar[tuple[str, ...]] = ("cfg_ready_o", "in_ready_o", "out_valid_o",
                                               "out_data_o")
    clock: ClassVar[str] = "clk_i"
    reset: ClassVar[str] = "rst_ni"

    def __post_init__(self) -> None:
        for name, value, top in (("C", self.C, MAX_C), ("V", self.V, MAX_V),
                                 ("M", self.M, MAX_M)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise HalutError(f"{name} must be an integer, got {value!r}")
            if not 1 <= value <= top:
                raise HalutError(f"{name} must be between 1 and {top}, got {value}")
        if self.banks not in (1, 2):
            raise HalutError(f"banks must be 1 or 2, got {self.banks!r}")
        lanes = self.M if self.out_lanes == 0 else self.out_lanes
        if not isinstance(lanes, (int, np.integer)) or lanes < 1 or self.M % lanes != 0:
            raise HalutError(f"out_lanes={self.out_lanes} must divide M={self.M}")
        if lanes * self.C < self.M:
            raise HalutError(f"out_lanes={lanes} is too few for M={self.M}, C={self.C}: a row's "
                             f"{self.M // lanes} output beats must fit in its C={self.C} cycles "
                             f"(need out_lanes >= {-(-self.M // self.C)})")
        object.__setattr__(self, "out_lanes", int(lanes))

    @property
    def D(self) -> int:
        """Activations per row: ``C * V``."""
        return self.C * self.V

    @property
    def out_beats(self) -> int:
        """Output beats per row: ``M / out_lanes``."""
        return self.M // self.out_lanes

    @property
    def c_bits(self) -> int:
        return clog2(self.C)

    @property
    def m_bits(self) -> int:
        return clog2(self.M)

    @property
    def addr_bits(self) -> int:
        """Configuration address width: ``{kind[2], m[m_bits], c[c_bits]}``."""
        return 2 + self.m_bits + self.c_bits

    @property
    def data_bits(self) -> int:
        """Configuration data width: V int8 weights."""
        return 8 * self.V

    @property
    def in_words(self) -> int:
        """uint32 words per input beat (V int8 activations)."""
        return -(-self.V // 4)

    @property
    def cfg_lanes(self) -> int:
        """16-bit lanes per configuration write (:class:`emulator.hwif.ConfigWrites`): two
        weights a lane."""
        return -(-self.V // 2)

    def verilog_parameters(self) -> dict[str, int]:
        """The ``-G`` values of the top module ``mac_accel``."""
        return {"C": self.C, "V": self.V, "M": self.M, "OutLanes": self.out_lanes,
                "Banks": self.banks}

    def tag(self) -> str:
        return f"mac_C{self.C}_V{self.V}_M{self.M}_L{self.out_lanes}_B{self.banks}"

    def ports(self) -> tuple[Port, ...]:
        """The top module's ports, in declaration order."""
        return (
            Port(self.clock, "input", 1, "clock"),
            Port(self.reset, "input", 1, "reset"),
            Port("cfg_valid_i", "input", 1),
            Port("cfg_ready_o", "output", 1),
            Port("cfg_addr_i", "input", self.addr_bits),
            Port("cfg_data_i", "input", self.data_bits),
            Port("in_valid_i", "input", 1),
            Port("in_ready_o", "output", 1),
            Port("in_data_i", "input", 8 * self.V),
            Port("out_valid_o", "output", 1),
            Port("out_ready_i", "input", 1),
            Port("out_data_o", "output", self.out_lanes * ACC_W),
        )

    @staticmethod
    def default_sources() -> list[Path]:
        """The RTL of ``mac_accel``: ``[rtl/mac.f]``."""
        return [MAC_FILE_LIST]


# ---- the reference ---------------------------------------------------------------------------

def _check_int8(name: str, a: object, ndim: int) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise HalutError(f"{name} must be a numpy int8 array, got {type(a).__name__}")
    if a.dtype != np.int8:
        raise HalutError(f"{name} must be int8, got {a.dtype}")
    if a.ndim != ndim:
        raise HalutError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a


def mac_reference(W: np.ndarray, A: np.ndarray) -> np.ndarray:
    """The layer the MAC computes: ``y[n, m] = sum_d A[n, d] * W[d, m]`` in int32 with
    two's-complement wrap-around (exact products and sums, reduced modulo 2**32).

    Parameters
    ----------
    W : (D, M) int8 weights
    A : (N, D) int8 activations

    Returns
    -------
    (N, M) int32
    """
    _check_int8("W", W, 2)
    _check_int8("A", A, 2)
    if A.shape[1] != W.shape[0]:
        raise HalutError(f"A has {A.shape[1]} columns but W has {W.shape[0]} rows")
    exact = A.astype(np.int64) @ W.astype(np.int64)  # |sum| < 2**63 for any D numpy holds
    return (exact & 0xFFFF_FFFF).astype(np.uint32).view(np.int32)


# ---- the host side: configuration writes and input beats ---------------------------------------

def _check_layer(W: np.ndarray, A: np.ndarray, params: MacParams) -> None:
    _check_int8("W", W, 2)
    _check_int8("A", A, 2)
    D, M = W.shape
    if A.shape[1] != D:
        raise HalutError(f"A has {A.shape[1]} columns but W has {D} rows")
    if D < 1 or M < 1:
        raise HalutError(f"W must have at least one row and one column, got shape {W.shape}")
    if D > params.D:
        raise HalutError(f"D={D} is larger than the chip's C*V = {params.C}*{params.V} = "
                         f"{params.D}")
    if M > params.M:
        raise HalutError(f"M={M} is larger than the chip's M={params.M}")
    if A.shape[0] < 1:
        raise HalutError("A has no rows")


def weight_addr(params: MacParams, m: np.ndarray | int, c: np.ndarray | int) -> np.ndarray:
    """Configuration address of the weights of column ``m``, beat ``c``."""
    u = np.uint64
    return ((u(MAC_CFG_KIND["weight"]) << u(params.addr_bits - 2))
            | (np.asarray(m, dtype=u) << u(params.c_bits)) | np.asarray(c, dtype=u))


def swap_addr(params: MacParams) -> int:
    """Configuration address of the SWAP command."""
    return (MAC_CFG_KIND["ctrl"] << (params.addr_bits - 2)) | MAC_CTRL_SWAP


def weight_writes(W: np.ndarray, params: MacParams) -> ConfigWrites:
    """The writes that load ``W`` into the shadow bank (the only one with one bank): one per
    (column m, beat c) of the chip, m outer, data byte i = ``W[c*V + i, m]`` (zero for
    ``d >= D`` and for the columns ``m >= W.shape[1]``), in 16-bit lanes of two weights.

    Parameters
    ----------
    W : (D, M) int8 with ``D <= C*V`` and ``M <= params.M``

    Returns
    -------
    ConfigWrites of ``params.M * params.C`` writes (no SWAP: :func:`swap_write`)
    """
    _check_int8("W", W, 2)
    full = np.zeros((params.D, params.M), np.int8)
    full[:W.shape[0], :W.shape[1]] = W
    words = full.T.reshape(params.M * params.C, params.V)  # (m, c) rows of V weights
    data = np.zeros((params.M * params.C, 2 * params.cfg_lanes), np.int8)
    data[:, :params.V] = words
    m, c = np.meshgrid(np.arange(params.M), np.arange(params.C), indexing="ij")
    addr = weight_addr(params, m.ravel(), c.ravel()).astype(np.uint32)
    return ConfigWrites(addr, np.ascontiguousarray(data).view("<u2"))


def swap_write(params: MacParams) -> ConfigWrites:
    """The SWAP command: the loaded (shadow) bank becomes active; the next beat is beat 0 of
    a row."""
    return ConfigWrites(np.array([swap_addr(params)], np.uint32),
                        np.zeros((1, params.cfg_lanes), np.uint16))


def pack_rows(A: np.ndarray, params: MacParams) -> np.ndarray:
    """Input beats of the rows ``A``: beat ``c`` of row n holds ``A[n, c*V + i]`` in byte i
    (zero for ``d >= D``).

    Parameters
    ----------
    A : (N, D) int8 with ``D <= C*V``

    Returns
    -------
    (N*C, in_words) uint32, rows in stream order (row-major over n, then c)
    """
    _check_int8("A", A, 2)
    N, D = A.shape
    padded = np.zeros((N * params.C, 4 * params.in_words), np.int8)
    full = np.zeros((N, params.D), np.int8)
    full[:, :D] = A
    padded[:, :params.V] = full.reshape(N * params.C, params.V)
    return np.ascontiguousarray(padded).view("<u4")


def unpack_results(out: np.ndarray, N: int, params: MacParams, cols: int) -> np.ndarray:
    """(N * M/OutLanes, OutLanes) uint32 result beats -> (N, cols) int32 (lane j of a row's
    beat b is column ``b*OutLanes + j``)."""
    return np.ascontiguousarray(out.reshape(N, params.M)[:, :cols]).view(np.int32)


# ---- the cycle model ---------------------------------------------------------------------------

def model_mac_cycles(params: MacParams, rows: int | Sequence[int]) -> CycleReport:
    """The cycles the MAC takes for weight sets streamed back to back by :func:`run_mac_jobs`
    (``rows``: the rows of each set; an int is one set), every beat offered and every result
    taken at once (no bubbles, no back-pressure).

    The schedule is halut_accel's (:func:`emulator.cycles.model_cycles`) with one job per
    weight set of ``M * C`` writes and C beats per row, and one pipeline stage
    (:data:`MAC_READ_STAGES`) between the input and the weight read in place of halut's L tree
    levels: a set's writes, its SWAP, its beats; the next set's writes beside them (two banks)
    or after its last beat has left the multiply stage (one bank); the last row drains in
    ``2 + M/OutLanes`` cycles.
    """
    counts = [rows] if isinstance(rows, (int, np.integer)) else list(rows)
    if not counts or any(int(n) < 1 for n in counts):
        raise HalutError(f"rows must be positive row counts, got {rows!r}")
    jobs = [JobShape(writes=params.M * params.C, rows=int(n), codebooks=params.C)
            for n in counts]
    return model_cycles(jobs, L=MAC_READ_STAGES, out_beats=params.out_beats, banks=params.banks)


# ---- the build ---------------------------------------------------------------------------------

def build_mac_harness(params: MacParams, *, sources: Sequence[str | os.PathLike[str]] | None
                      = None, trace: bool | str = False, jobs: int = 2) -> BuildResult:
    """Verilate ``mac_accel`` for ``params`` with ``emulator/mac_harness.cpp`` into a shared
    library, cached like halut's builds (emulator/build.py).

    Parameters
    ----------
    params : the parameter set (ignored for a parameterless netlist top)
    sources : RTL files (or ``.f`` lists) replacing ``rtl/mac.f``: e.g. a synthesized netlist
        whose top is ``module mac_accel`` plus the cell library's Verilog models
    trace : False, True / "vcd" or "fst"
    """
    if not isinstance(params, MacParams):
        raise HalutError(f"params must be a MacParams, got {type(params).__name__}")
    files = resolve_sources(MacParams.default_sources() if sources is None else sources)
    kind = trace_kind(trace)
    v = find_verilator()
    flags = [*BASE_FLAGS, *OPT_FLAGS, "-CFLAGS", "-fPIC", "-CFLAGS", "-fvisibility=hidden",
             "-LDFLAGS", "-shared", *verilator_args(params, files, MAC_TOP)]
    if kind == "vcd":
        flags.append("--trace")
    elif kind == "fst":
        flags += ["--trace-fst", "-LDFLAGS", "-lz -llz4"]
    key = cache_key("mac_harness", params, files, flags,
                    [MAC_HARNESS_CPP.read_bytes(), VCD_FILE_H.read_bytes(),
                     HARNESS_SIM_H.read_bytes()], top=MAC_TOP)

    def builder(tmp: Path) -> None:
        (tmp / MAC_HARNESS_CPP.name).write_bytes(MAC_HARNESS_CPP.read_bytes())
        (tmp / VCD_FILE_H.name).write_bytes(VCD_FILE_H.read_bytes())
        (tmp / HARNESS_SIM_H.name).write_bytes(HARNESS_SIM_H.read_bytes())
        cmd = [str(v.executable), "--cc", "--exe", "--build", "--build-jobs", str(jobs),
               "-Mdir", str(tmp / "obj"), "-o", str(tmp / MAC_HARNESS_LIB), *flags,
               *[str(f) for f in files], str(tmp / MAC_HARNESS_CPP.name)]
        run_build_step(cmd, tmp, tmp / "build.log", build_env(v))

    info = {"kind": "mac_harness", "top": MAC_TOP, "params": params.verilog_parameters(),
            "trace": kind, "sources": [str(f) for f in files], "flags": flags}
    return cached_build(key, MAC_HARNESS_LIB, builder, info)


# ---- the simulator -----------------------------------------------------------------------------

def _ptr(a: np.ndarray | None, ctype: type) -> object:
    if a is None:
        return None  # a NULL pointer
    return a.ctypes.data_as(ctypes.POINTER(ctype))


class MacSim(CtypesSim):
    """One instance of the Verilated ``mac_accel`` in a :func:`build_mac_harness` library,
    driven like halut's :class:`emulator.harness.BatchSim` (same handshake stimulus, same
    counts; no preload port).

    Parameters
    ----------
    library : path of the shared library
    params : the parameter set it was built for (its port widths are checked)
    trace : path of a VCD/FST file to write the whole run to (the library must be built with
        that trace kind), or None; written beside it and renamed over it by ``close()``
    """

    prefix = "mx"
    what = "MAC"

    def __init__(self, library: str | os.PathLike[str], params: MacParams,
                 trace: str | os.PathLike[str] | None = None) -> None:
        self.params = params
        super().__init__(library, trace)

    def _declare(self, lib: ctypes.CDLL) -> None:
        for name in ("mx_in_bits", "mx_out_bits"):
            getattr(lib, name).restype = ctypes.c_int
        in_words = -(-int(lib.mx_in_bits()) // 32)
        out_words = -(-int(lib.mx_out_bits()) // 32)
        params = self.params
        if (in_words, out_words) != (params.in_words, params.out_lanes):
            raise HalutError(f"the model's ports ({in_words} input, {out_words} output words) "
                             f"do not fit {params.tag()} ({params.in_words}, "
                             f"{params.out_lanes}): built for other parameters?")

    def stream_part(self, beats: np.ndarray, out: np.ndarray, *, out_start: int = 0,
                    t0: int = 0, final: bool = True, valid: Handshake = Handshake(),  # noqa: B008
                    ready: Handshake = Handshake(), rng: np.ndarray | None = None,  # noqa: B008
                    max_idle: int = 10_000, queues: Queues | None = None) -> PartEnd:
        """Stream one part of a stream (:class:`emulator.harness.SimStream`): offer ``beats``
        (n_beats, in_words) uint32 and the configuration writes of ``queues``, take results
        into ``out[out_start:]`` (uint32, (n_out, out_lanes)); a part that is not ``final``
        returns once its last beat is taken."""
        q = queues or Queues()
        if q.pre_map is not None and q.pre_map.size > q.pre_start:
            raise HalutError("mac_accel has no preload port")
        return self._stream(beats, out, q, out_start=out_start, t0=t0, final=final,
                            valid=valid, ready=ready, rng=rng, max_idle=max_idle)


# ---- running a layer ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MacRun:
    """A run on the MAC: ``y`` (N, M) int32, the rows of every weight set in stream order;
    ``cycles`` counted as for halut_accel (emulator/cycles.py); ``info`` the build."""

    y: np.ndarray
    cycles: CycleReport
    info: dict[str, Any] = field(default_factory=dict)


def run_mac_jobs(jobs: Sequence[tuple[np.ndarray, np.ndarray]], params: MacParams, *,
                 sources: Sequence[str | os.PathLike[str]] | None = None,
                 vcd: str | os.PathLike[str] | None = None, bubbles: object = None,
                 backpressure: object = None, seed: int = 0) -> MacRun:
    """Stream weight sets back to back through one simulator: for each ``(W, A)`` in turn,
    load ``W`` (with two banks: into the shadow bank while the previous set's rows stream),
    SWAP, stream the rows of ``A``. Options as :func:`run_mac`.

    Parameters
    ----------
    jobs : (W, A) pairs, W (D_j, M_w) int8 and A (N_j, D_j) int8; every W has the same
        number of columns M_w <= params.M, and D_j <= C*V

    Returns
    -------
    MacRun with ``y`` (sum N_j, M_w) int32
    """
    if not isinstance(params, MacParams):
        raise HalutError(f"params must be a MacParams, got {type(params).__name__}")
    if not jobs:
        raise HalutError("no weight sets to run")
    for W, A in jobs:
        _check_layer(W, A, params)
    cols = jobs[0][0].shape[1]
    if any(W.shape[1] != cols for W, _ in jobs):
        raise HalutError(f"every weight set must have the same columns, got "
                         f"{[W.shape[1] for W, _ in jobs]}")
    valid = Handshake.make(bubbles, "bubbles")
    ready = Handshake.make(backpressure, "backpressure")
    resolve_sources(MacParams.default_sources() if sources is None else sources)
    trace: bool | str = False
    if vcd is not None:
        check_writable(vcd, "waveform")  # before any Verilation or simulation
        trace = "fst" if Path(vcd).suffix == ".fst" else "vcd"
    build = build_mac_harness(params, sources=sources, trace=trace)
    sim = MacSim(build.path, params, trace=vcd)
    ok = False
    try:
        sim.reset()
        stream = SimStream(sim, 0, params.out_lanes, valid=valid, ready=ready,
                           rng=rng_state(seed), max_idle=10_000, lanes=params.cfg_lanes)
        report = CycleReport()
        rows = 0
        queued = False  # the current set's writes are already queued (loading beside)
        for j, (W, A) in enumerate(jobs):
            if not queued:
                stream.queue(weight_writes(W, params))
            stream.queue(swap_write(params))
            gate = stream.queued
            queued = j + 1 < len(jobs) and params.banks == 2
            if queued:
                stream.queue(weight_writes(jobs[j + 1][0], params))
            rows += A.shape[0]
            stream.reserve(rows * params.out_beats)
            c = stream.add(pack_rows(A, params), j + 1 == len(jobs), gate=gate)
            report += CycleReport(config=c.config, stream=c.stream, stall=c.stall,
                                  drain=c.drain, writes=c.writes)
        y = unpack_results(stream.out, rows, params, cols)
        ok = True
    finally:
        sim.close(keep=ok)
    return MacRun(y=y, cycles=report, info={"build": build.to_dict(),
                                            "params": params.verilog_parameters(),
                                            "jobs": len(jobs)})


def run_mac(W: np.ndarray, A: np.ndarray, params: MacParams, *,
            sources: Sequence[str | os.PathLike[str]] | None = None,
            vcd: str | os.PathLike[str] | None = None, bubbles: object = None,
            backpressure: object = None, seed: int = 0) -> MacRun:
    """Run the layer ``y = A W`` on the Verilated MAC: load ``W`` through the configuration
    port, SWAP, stream the rows of ``A``, collect the results (batch C++ harness).

    Parameters
    ----------
    W : (D, M) int8 weights, ``D <= params.C * params.V`` (zero-padded), ``M <= params.M``
    A : (N, D) int8 activations, N >= 1
    params : the chip
    sources : RTL files replacing ``rtl/mac.f`` (a gate-level netlist whose top is a
        parameterless ``module mac_accel`` plus the cell models)
    vcd : write a waveform of the whole run here (``.fst`` suffix: FST, else VCD)
    bubbles : input valid low: None, a probability per cycle, or a cyclic 0/1 pattern
    backpressure : output ready low: None, a probability per cycle, or a cyclic 0/1 pattern
    seed : seed of the random bubbles / back-pressure

    Returns
    -------
    MacRun with ``y`` (N, M) int32 (equal to :func:`mac_reference`) and ``cycles``
    """
    return run_mac_jobs([(W, A)], params, sources=sources, vcd=vcd, bubbles=bubbles,
                        backpressure=backpressure, seed=seed)
