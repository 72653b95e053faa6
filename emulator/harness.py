"""The batch harness: ``emulator/harness.cpp`` (compiled with the Verilated model into a
shared library by :func:`emulator.build.build_harness`) driven through ctypes with numpy
buffers, so a whole tile runs without one Python call per cycle.

ABI (all ``extern "C"``; see harness.cpp for the cycle protocol)::

    void*   hx_create(const char* trace_path_or_NULL)
    int     hx_destroy(void*)    /* 0, or -1 when writing the waveform failed */
    void    hx_reset(void*, int cycles)
    int64_t hx_config(void*, const uint32_t* addr, const uint32_t* data, int cfg_words,
                      int64_t n, int64_t max_idle)   /* cycles, or -1: refused */
    int     hx_stream(void*, const uint32_t* beats, int64_t n_beats, int in_words,
                      uint32_t* out, int64_t n_out, int out_words,
                      const uint8_t* valid_pat, int64_t valid_len,
                      const uint8_t* ready_pat, int64_t ready_len,
                      uint64_t* rng /*[2], updated*/, uint64_t valid_thr, uint64_t ready_thr,
                      int64_t max_idle, int64_t out_idx0, int64_t t0, int final,
                      const uint32_t* cfg_addr, const uint32_t* cfg_data, int cfg_words,
                      int64_t n_cfg, int64_t cfg_idx0, int64_t gate,
                      const int64_t* pre_map, int64_t n_pre, int64_t pre_idx0,
                      int64_t* counts /*[8]: stream, stall, drain, cycles, out_idx,
                                         cfg_idx, config, pre_idx*/)
    void    hx_pack(const float* A, int64_t n_rows, int64_t d, const int32_t* dims, int c,
                    int l, int fmt /*0 fp16, 1 int8*/, float input_scale, uint32_t* beats,
                    int in_words)   /* host-side beat packing, see BatchSim.pack */
    int64_t hx_cycle(void*)
    int     hx_trace_kind()   /* 0 none, 1 VCD, 2 FST */

The handshake patterns (:class:`Handshake`) and the random generator (:func:`splitmix64`) are
defined here once and used by both drivers, so that the batch harness and the cycle-level
driver see identical stimulus.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from emulator.hwif import FEATURE_BITS, ConfigWrites
from emulator.verilator import assertion_check
from learning.atomic import check_writable, copy_permissions, locked_temp_beside
from learning.errors import HalutError

M64 = (1 << 64) - 1
RESET_CYCLES = 2
_VALID_SEED_MIX = 0x5851F42D4C957F2D
_READY_SEED_MIX = 0xD1B54A32D192ED03


def splitmix64(state: np.ndarray, i: int) -> int:
    """Advance ``state[i]`` (uint64) and return the next splitmix64 output (the C loop's
    generator, bit for bit)."""
    s = (int(state[i]) + 0x9E3779B97F4A7C15) & M64
    state[i] = np.uint64(s)
    z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rng_state(seed: int | None) -> np.ndarray:
    """The two generator states (valid stream, ready stream) for ``seed`` (None -> 0)."""
    s = int(seed or 0) & M64
    return np.array([s ^ _VALID_SEED_MIX, s ^ _READY_SEED_MIX], dtype=np.uint64)


@dataclass(frozen=True)
class Handshake:
    """When the host offers a beat (``valid``) or accepts a result (``ready``) in the
    streaming cycles: a cyclic 0/1 pattern, or random with probability ``p`` of being low
    each cycle (threshold ``round(p * 2**53)`` on the top 53 bits of splitmix64, drawn
    only when p > 0)."""

    pattern: np.ndarray | None = None  # uint8 0/1, cyclic over streaming cycles
    threshold: int = 0

    @classmethod
    def make(cls, spec: object, name: str) -> Handshake:
        """``None`` (always high), a probability in [0, 1) of being low, or a 0/1 array."""
        if spec is None:
            return cls()
        if isinstance(spec, (float, int, np.floating, np.integer)) and not isinstance(spec, bool):
            p = float(spec)
            if not 0.0 <= p < 1.0:
                raise HalutError(f"{name} probability must lie in [0, 1), got {p}")
            return cls(threshold=int(round(p * 2.0**53)))
        arr = np.asarray(spec)
        if arr.ndim != 1 or arr.size == 0:
            raise HalutError(f"{name} pattern must be a non-empty 1-D 0/1 array, "
                             f"got shape {arr.shape}")
        if not np.all((arr == 0) | (arr == 1)):
            raise HalutError(f"{name} pattern must hold only 0 and 1")
        if not np.any(arr):
            raise HalutError(f"{name} pattern is all zeros: the run would never finish")
        return cls(pattern=np.ascontiguousarray(arr, dtype=np.uint8))

    def high(self, t: int, state: np.ndarray, i: int) -> bool:
        """The value in streaming cycle ``t`` (draws from ``state[i]`` in random mode)."""
        if self.pattern is not None:
            return bool(self.pattern[t % self.pattern.size])
        if self.threshold == 0:
            return True
        return not ((splitmix64(state, i) >> 11) < self.threshold)


@dataclass(frozen=True)
class StreamCounts:
    """Handshake counts of one streamed part (cycle accounting of emulator/cycles.py):
    ``stream`` cycles took a beat; ``config`` cycles took none because the beats waited for
    configuration writes (the job's SWAP); ``stall`` cycles up to the last accepted beat took
    none for any other reason; ``drain`` counts the cycles from the last accepted beat to the
    last result taken, so ``cycles == stream + config + stall + drain``. ``writes`` and
    ``preload`` count the configuration writes and preload beats taken in the part (traffic
    beside the beats, not cycles of their own)."""

    stream: int
    stall: int
    drain: int
    cycles: int
    config: int = 0
    writes: int = 0
    preload: int = 0


@dataclass
class Queues:
    """What a part offers besides its beats: configuration writes ``cfg`` from index
    ``cfg_start`` on (the beats wait until the writes before ``gate`` are taken), and preload
    beats from index ``pre_start`` on (preload beat ``i`` is the stream's result beat
    ``pre_map[i]``, offered once that result has been taken)."""

    cfg: ConfigWrites | None = None
    cfg_start: int = 0
    gate: int = 0
    pre_map: np.ndarray | None = None  # int64
    pre_start: int = 0


@dataclass(frozen=True)
class PartEnd:
    """Where a part left the stream: results taken so far (``out``), writes taken so far
    (``cfg``), preload beats taken so far (``pre``), and the part's counts."""

    out: int
    cfg: int
    pre: int
    counts: StreamCounts


class StreamDriver:
    """The interface of both drivers (:class:`BatchSim`, ``emulator.driver.CycleSim``), and
    what they share: :meth:`stream` (one whole stream) on top of their ``stream_part`` (one
    part of a stream, the only per-driver loop)."""

    def reset(self, cycles: int = RESET_CYCLES) -> None:
        raise NotImplementedError

    def config(self, writes: ConfigWrites, max_idle: int = 10_000) -> int:
        """Take the configuration ``writes`` alone (no beats), one per cycle when the
        accelerator is ready; returns the cycles."""
        raise NotImplementedError

    def close(self, *, keep: bool = True) -> None:
        raise NotImplementedError

    def stream_part(self, beats: np.ndarray, out: np.ndarray, *, out_start: int = 0,
                    t0: int = 0, final: bool = True, valid: Handshake = Handshake(),  # noqa: B008
                    ready: Handshake = Handshake(), rng: np.ndarray | None = None,  # noqa: B008
                    max_idle: int = 10_000, queues: Queues | None = None) -> PartEnd:
        raise NotImplementedError

    def stream(self, beats: np.ndarray, n_out: int, out_words: int, *,
               valid: Handshake = Handshake(), ready: Handshake = Handshake(),  # noqa: B008
               rng: np.ndarray | None = None, max_idle: int = 10_000
               ) -> tuple[np.ndarray, StreamCounts]:
        """Stream ``beats`` (n_beats, in_words) uint32 and collect ``n_out`` result beats.

        Returns
        -------
        out : (n_out, out_words) uint32, the raw output beats in arrival order
        counts : :class:`StreamCounts`
        """
        out = np.zeros((n_out, out_words), dtype=np.uint32)
        end = self.stream_part(beats, out, valid=valid, ready=ready, rng=rng,
                               max_idle=max_idle)
        return out, end.counts


class SimStream:
    """One stream of jobs cut into parts (row tiles): the results of all parts land in one
    buffer and the cycles add up to those of one whole stream (only the last part drains).

    Configuration writes are queued (:meth:`queue`) and taken beside the beats; a part whose
    beats start a job waits for the writes queued before it (``gate``). Preload beats name
    the earlier results they repeat (``pre``). ``taken`` is the number of result beats in
    ``out`` so far."""

    def __init__(self, sim: StreamDriver, n_out: int, out_words: int, *, valid: Handshake,
                 ready: Handshake, rng: np.ndarray, max_idle: int, lanes: int = 1) -> None:
        self.sim, self.valid, self.ready, self.rng = sim, valid, ready, rng
        self.max_idle = max_idle
        self._buf = np.zeros((n_out, out_words), dtype=np.uint32)
        self.n_out = n_out
        self.taken = 0
        self.t = 0
        self._cfg = ConfigWrites.empty(lanes)
        self._cfg_off = 0  # stream index of self._cfg's first write
        self.cfg_taken = 0
        self._pre = np.zeros(0, np.int64)
        self._pre_off = 0
        self.pre_taken = 0

    @property
    def out(self) -> np.ndarray:
        """(n_out, out_words) uint32: the result beats of the stream, in arrival order."""
        return self._buf[:self.n_out]

    @property
    def queued(self) -> int:
        """Configuration writes queued so far (taken or not)."""
        return self._cfg_off + len(self._cfg)

    def reserve(self, n_out: int) -> None:
        """Make room for ``n_out`` result beats in all (more rows will be streamed)."""
        if n_out > self._buf.shape[0]:
            grown = np.zeros((max(n_out, 2 * self._buf.shape[0]), self._buf.shape[1]),
                             dtype=np.uint32)
            grown[:self.taken] = self._buf[:self.taken]
            self._buf = grown
        self.n_out = max(self.n_out, n_out)

    def queue(self, writes: ConfigWrites) -> None:
        """Append configuration writes (the taken ones are dropped from the queue)."""
        drop = self.cfg_taken - self._cfg_off
        self._cfg = ConfigWrites(self._cfg.addr[drop:], self._cfg.data[drop:]) + writes
        self._cfg_off = self.cfg_taken

    def add(self, beats: np.ndarray, final: bool, *, gate: int = 0,
            pre: np.ndarray | None = None) -> StreamCounts:
        """Stream a part: ``beats`` wait until ``gate`` queued writes are taken; ``pre``
        (int64) lists the result beats to repeat on the preload port for this part's rows."""
        if pre is not None and pre.size:
            drop = self.pre_taken - self._pre_off
            self._pre = np.concatenate([self._pre[drop:], pre.astype(np.int64)])
            self._pre_off = self.pre_taken
        q = Queues(cfg=self._cfg, cfg_start=self.cfg_taken - self._cfg_off,
                   gate=max(0, gate - self._cfg_off), pre_map=self._pre,
                   pre_start=self.pre_taken - self._pre_off)
        end = self.sim.stream_part(
            beats, self.out, out_start=self.taken, t0=self.t, final=final, valid=self.valid,
            ready=self.ready, rng=self.rng, max_idle=self.max_idle, queues=q)
        self.taken = end.out
        self.cfg_taken = end.cfg + self._cfg_off
        self.pre_taken = end.pre + self._pre_off
        self.t += end.counts.cycles
        return end.counts


class TraceFile:
    """A waveform written to a temporary file beside ``path`` and renamed over ``path`` only
    when the simulator has closed it (:meth:`commit`), so that a failed or aborted run never
    truncates an existing waveform and leaves no partial one (:meth:`discard`).

    ``temp`` is the name to hand to the simulator (created empty, with the permissions the
    final file will get: the old file's, or the usual ones for the umask)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.target = check_writable(path, "waveform")
        try:  # held locked until commit/discard: once killed, the next write removes it
            self._fd, temp = locked_temp_beside(self.target)
            self.temp = Path(temp)
        except OSError as exc:
            raise HalutError(f"cannot write waveform {path}: {exc.strerror} "
                             f"({self.target.parent})") from None
        with contextlib.suppress(OSError):  # else mkstemp's 0600; the waveform is still written
            copy_permissions(self.temp, self.target)

    def commit(self) -> None:
        """Rename the closed temporary file over ``path``; a missing or empty one (the
        simulator could not write it) is removed and raises HalutError."""
        try:
            size = self.temp.stat().st_size
        except OSError:
            size = 0
        if size == 0:
            self.discard()
            raise HalutError(f"the simulator wrote no waveform to {self.path} (full disk or "
                             f"an unwritable folder?); no file was changed")
        try:
            fd = os.open(self.temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self.temp, self.target)
        except OSError as exc:
            self.discard()
            raise HalutError(f"cannot write waveform {self.path}: {exc.strerror}") from None
        self._release()

    def discard(self) -> None:
        """Remove the temporary file (the previous waveform, if any, stays)."""
        with contextlib.suppress(OSError):
            self.temp.unlink()
        self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def finish(self, *, keep: bool, written: bool = True) -> None:
        """After the simulator has closed the trace: :meth:`commit` it with ``keep``, else
        :meth:`discard` it; a trace the simulator failed to write (``written`` false) is
        discarded and reported as one HalutError line."""
        if not written:
            self.discard()
            raise HalutError(f"writing the waveform {self.target} failed (is the disk full?); "
                             f"no waveform was kept")
        if keep:
            self.commit()
        else:
            self.discard()




def _ptr(a: np.ndarray | None, ctype: type) -> object:
    if a is None:
        return None  # a NULL pointer
    return a.ctypes.data_as(ctypes.POINTER(ctype))


def config_arrays(writes: ConfigWrites | None) -> tuple[np.ndarray, np.ndarray]:
    """Configuration writes as contiguous uint32 addresses (n,) and uint32 data words
    (n, words) (:meth:`ConfigWrites.words`); an empty pair for None."""
    if writes is None:
        return np.zeros(0, np.uint32), np.zeros((0, 1), np.uint32)
    a = np.ascontiguousarray(writes.addr, dtype=np.uint32)
    if writes.data.ndim != 2 or writes.data.shape[0] != a.size:
        raise HalutError(f"config addr and data must have one write per row, got {a.shape} "
                         f"and {writes.data.shape}")
    return a, np.ascontiguousarray(writes.words())


def part_end(counts: np.ndarray | list[int], q: Queues) -> PartEnd:
    """A driver's eight counts (harness.cpp's ``counts``) as a :class:`PartEnd`."""
    c = [int(x) for x in counts]
    return PartEnd(out=c[4], cfg=c[5], pre=c[7],
                   counts=StreamCounts(stream=c[0], stall=c[1], drain=c[2], cycles=c[3],
                                       config=c[6], writes=c[5] - q.cfg_start,
                                       preload=c[7] - q.pre_start))


class CtypesSim(StreamDriver):
    """One Verilated model in a batch-harness library (emulator/harness_sim.h): its life
    cycle through the library's ``<prefix>_create``, ``_destroy``, ``_reset``, ``_cycle``
    and ``_trace_kind``. A subclass names its ``prefix``, declares its own functions in
    :meth:`_declare` and may check the model after each call in :meth:`_after_call`.

    ``trace``: path of a VCD/FST file to write the whole run to (the library must be built
    with that trace kind), or None. The simulator writes a temporary file beside it, renamed
    over it by ``close()`` (see :class:`TraceFile`).
    """

    prefix = ""
    #: the ctypes of the design's own ``<prefix>_stream`` arguments (``extra`` of
    #: :meth:`_stream`), between the configuration queue's and the counts
    stream_extra_argtypes: tuple[Any, ...] = ()

    def __init__(self, library: str | os.PathLike[str],
                 trace: str | os.PathLike[str] | None = None) -> None:
        self._sim: int | None = None
        self._trace: TraceFile | None = None
        self._lib = ctypes.CDLL(str(library))
        create, destroy, reset = self._fn("create"), self._fn("destroy"), self._fn("reset")
        create.restype, create.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        destroy.restype, destroy.argtypes = ctypes.c_int, [ctypes.c_void_p]
        reset.restype, reset.argtypes = None, [ctypes.c_void_p, ctypes.c_int]
        self._fn("cycle").restype = ctypes.c_int64
        self._fn("cycle").argtypes = [ctypes.c_void_p]
        self._fn("trace_kind").restype = ctypes.c_int
        p32, p8 = ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint8)
        stream = self._fn("stream")  # the arguments :meth:`_stream` passes, in its order
        stream.restype = ctypes.c_int
        stream.argtypes = [
            ctypes.c_void_p, p32, ctypes.c_int64, ctypes.c_int, p32, ctypes.c_int64,
            ctypes.c_int, p8, ctypes.c_int64, p8, ctypes.c_int64,
            ctypes.POINTER(ctypes.c_uint64), ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int64,
            ctypes.c_int64, ctypes.c_int64, ctypes.c_int,
            p32, p32, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
            *self.stream_extra_argtypes, ctypes.POINTER(ctypes.c_int64)]
        self._declare(self._lib)
        if trace is not None and self._fn("trace_kind")() == 0:
            raise HalutError("this harness build has no tracing; build it with trace=True")
        if trace is not None:
            self._trace = TraceFile(trace)
        path = None if self._trace is None else os.fsencode(self._trace.temp)
        self._sim = create(path)

    def _fn(self, name: str) -> Any:
        return getattr(self._lib, f"{self.prefix}_{name}")

    def _declare(self, lib: ctypes.CDLL) -> None:
        """Declare the library's own functions (argument and result types), check it."""

    def _after_call(self) -> None:
        """Called after each call into the model (assertion builds raise from here)."""

    #: the simulated design in error messages
    what = "accelerator"

    def _stream(self, beats: np.ndarray, out: np.ndarray, q: Queues, *, out_start: int,
                t0: int, final: bool, valid: Handshake, ready: Handshake,
                rng: np.ndarray | None, max_idle: int, extra: tuple[Any, ...] = ()
                ) -> PartEnd:
        """One call of the library's ``<prefix>_stream`` (the stream protocol of
        :class:`SimStream`; ``extra``: the design's own arguments after the configuration
        queue's, e.g. halut's preload map), its arguments checked, its failures raised."""
        b = np.ascontiguousarray(beats, dtype=np.uint32)
        if b.ndim != 2:
            raise HalutError(f"beats must be (n_beats, words), got shape {b.shape}")
        if out.dtype != np.uint32 or out.ndim != 2 or not out.flags.c_contiguous:
            raise HalutError("out must be a contiguous (n_out, out_words) uint32 array")
        ca, cw = config_arrays(q.cfg)
        counts = np.zeros(8, dtype=np.int64)
        state = rng if rng is not None else rng_state(0)
        if state.dtype != np.uint64 or state.shape != (2,) or not state.flags.c_contiguous:
            raise HalutError("rng must be a contiguous uint64 array of 2 states")
        vp, rp = valid.pattern, ready.pattern
        rc = self._fn("stream")(
            self._handle(), _ptr(b, ctypes.c_uint32), b.shape[0], b.shape[1],
            _ptr(out, ctypes.c_uint32), out.shape[0], out.shape[1],
            _ptr(vp, ctypes.c_uint8), 0 if vp is None else vp.size,
            _ptr(rp, ctypes.c_uint8), 0 if rp is None else rp.size,
            _ptr(state, ctypes.c_uint64), valid.threshold, ready.threshold, max_idle,
            out_start, t0, 1 if final else 0,
            _ptr(ca, ctypes.c_uint32), _ptr(cw, ctypes.c_uint32), cw.shape[1], ca.size,
            q.cfg_start, q.gate, *extra, _ptr(counts, ctypes.c_int64))
        end = part_end(counts, q)
        self._after_call()  # the cause of a hang or an extra result, if any
        if rc == -1:
            raise HalutError(f"the {self.what} hung: no handshake for {max_idle} cycles after "
                             f"{end.counts.stream} of {b.shape[0]} beats in")
        if rc == -2:
            raise HalutError(f"the {self.what} produced more results than rows streamed")
        return end

    def _handle(self) -> int:
        if self._sim is None:
            raise HalutError("the simulation is closed")
        return self._sim

    def reset(self, cycles: int = RESET_CYCLES) -> None:
        """Hold ``rst_ni`` low for ``cycles`` clock edges (not counted in cycle reports)."""
        self._fn("reset")(self._handle(), int(cycles))
        self._after_call()

    @property
    def cycle(self) -> int:
        """Clock cycles since construction (reset included)."""
        return int(self._fn("cycle")(self._handle()))

    def close(self, *, keep: bool = True) -> None:
        """Finish the run: close the trace and, with ``keep``, rename it over the waveform
        path (HalutError when the simulator wrote nothing); without, remove it."""
        written = True
        if self._sim is not None:
            written = self._fn("destroy")(self._sim) == 0
            self._sim = None
        trace, self._trace = self._trace, None
        if trace is not None:
            trace.finish(keep=keep, written=written)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(keep=exc_type is None)

    def __del__(self) -> None:
        with contextlib.suppress(HalutError, AttributeError):
            self.close(keep=False)  # never closed: not a finished run


class BatchSim(CtypesSim):
    """One instance of the Verilated accelerator in a harness library
    (:func:`emulator.build.build_harness`); ``trace`` as :class:`CtypesSim`."""

    prefix = "hx"
    #: the preload map, its length and the first preload of this part
    stream_extra_argtypes = (ctypes.POINTER(ctypes.c_int64), ctypes.c_int64, ctypes.c_int64)

    def _declare(self, lib: ctypes.CDLL) -> None:
        lib.hx_config.restype = ctypes.c_int64
        p32 = ctypes.POINTER(ctypes.c_uint32)
        lib.hx_config.argtypes = [ctypes.c_void_p, p32, p32, ctypes.c_int, ctypes.c_int64,
                                  ctypes.c_int64]
        lib.hx_pack.restype = None
        lib.hx_pack.argtypes = [
            ctypes.POINTER(ctypes.c_float), ctypes.c_int64, ctypes.c_int64,
            ctypes.POINTER(ctypes.c_int32), ctypes.c_int, ctypes.c_int, ctypes.c_int,
            ctypes.c_float, p32, ctypes.c_int]
        # a build with the RTL's assertions (emulator.verilator.assert_flags): a failure is
        # recorded and raised as a HalutError when the call into the model returns
        self._assert_check = assertion_check(lib)

    def config(self, writes: ConfigWrites, max_idle: int = 10_000) -> int:
        """Take the configuration ``writes`` alone, one per cycle when ``cfg_ready_o``;
        returns the cycles."""
        a, w = config_arrays(writes)
        cycles = int(self._lib.hx_config(self._handle(), _ptr(a, ctypes.c_uint32),
                                         _ptr(w, ctypes.c_uint32), w.shape[1], a.size,
                                         max_idle))
        self._after_call()
        if cycles < 0:
            raise HalutError(f"the accelerator refused configuration writes for {max_idle} "
                             "cycles")
        return cycles

    def pack(self, A: np.ndarray, dims: np.ndarray, threshold_format: str, input_scale: float,
             in_words: int) -> np.ndarray:
        """Input beats of rows ``A`` (N, D) finite float32: what ``emulator.rtl.pack_beats(
        golden.gather(program, A), params)`` gives, in C++ (``hx_pack``), without the GIL.

        Parameters
        ----------
        A : (N, D) float32, C-contiguous, finite (the layer runner has checked it)
        dims : (C, L) int, the program's split dimensions
        threshold_format : "fp16" or "int8" (with ``input_scale``)
        in_words : uint32 words per beat

        Returns
        -------
        (N*C, in_words) uint32
        """
        a = np.ascontiguousarray(A, dtype=np.float32)
        d = np.ascontiguousarray(dims, dtype=np.int32)
        C, L = d.shape
        bits = L * FEATURE_BITS[threshold_format]
        if in_words * 32 < bits:
            raise HalutError(f"a beat of {L} {threshold_format} features needs "
                             f"{-(-bits // 32)} words, got {in_words}")
        beats = np.empty((a.shape[0] * C, in_words), dtype=np.uint32)
        self._lib.hx_pack(_ptr(a, ctypes.c_float), a.shape[0], a.shape[1],
                          _ptr(d, ctypes.c_int32), C, L,
                          0 if threshold_format == "fp16" else 1, float(input_scale),
                          _ptr(beats, ctypes.c_uint32), in_words)
        return beats

    def stream_part(self, beats: np.ndarray, out: np.ndarray, *, out_start: int = 0,
                    t0: int = 0, final: bool = True, valid: Handshake = Handshake(),  # noqa: B008
                    ready: Handshake = Handshake(), rng: np.ndarray | None = None,  # noqa: B008
                    max_idle: int = 10_000, queues: Queues | None = None) -> PartEnd:
        """Stream one part of a stream (see :class:`SimStream`): offer ``beats`` and take
        results into ``out[out_start:]``, with the configuration writes and preload beats of
        ``queues``; a part that is not ``final`` returns once its last beat is taken (rows
        stay in flight), the final one drains. ``t0``: cycles of the stream before this part
        (the handshake patterns' phase)."""
        q = queues or Queues()
        pre = np.ascontiguousarray(q.pre_map if q.pre_map is not None else np.zeros(0),
                                   dtype=np.int64)
        return self._stream(beats, out, q, out_start=out_start, t0=t0, final=final,
                            valid=valid, ready=ready, rng=rng, max_idle=max_idle,
                            extra=(_ptr(pre, ctypes.c_int64), pre.size, q.pre_start))

    def _after_call(self) -> None:
        """Raise the first RTL assertion that failed in the last call (assertion builds)."""
        if self._assert_check is not None:
            self._assert_check(None)
