"""The cycle-level driver: the batch harness's protocol one clock cycle at a time from Python,
on pyverilator-mm's wrapper of the Verilated model (built by
:func:`emulator.build.build_pyverilator`).

Per cycle, exactly as ``emulator/harness.cpp`` (so both give identical outputs and cycle
reports on the same stimulus): with ``clk_i`` low drive the inputs and ``eval()``; sample
the handshakes; raise ``clk_i`` and ``eval()``; lower ``clk_i``. The waveform (VCD, or FST
when the build has it) is dumped through pyverilator's ``start_vcd_trace`` at the same time
stamps as the harness: ``2*cycle`` with this cycle's inputs, ``2*cycle+1`` after the edge.

Speed: every port access is one ctypes call into pyverilator's generated ``set_*``/``get_*``
functions (bound once here; pyverilator's ``sim.io`` attribute interface would look each up
by name and ``eval()`` after every write), so a cycle costs tens of Python calls: use it for
small runs, debugging and waveforms; the batch harness for everything else.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from emulator.harness import (
    RESET_CYCLES,
    Handshake,
    PartEnd,
    Queues,
    StreamDriver,
    TraceFile,
    config_arrays,
    part_end,
    rng_state,
)
from emulator.hwif import TOP, ConfigWrites, port_names
from emulator.verilator import assertion_check
from learning.errors import HalutError


class CycleSim(StreamDriver):
    """pyverilator-driven accelerator with the same methods as :class:`BatchSim`.

    Parameters
    ----------
    library : pyverilator's shared library (``BuildResult.path`` of build_pyverilator)
    trace : path of a VCD file for the whole run, or None (written to a temporary file
        beside it and renamed over it by ``close()``, see :class:`emulator.harness.TraceFile`)
    """

    def __init__(self, library: str | os.PathLike[str],
                 trace: str | os.PathLike[str] | None = None) -> None:
        self._trace: int | None = None
        self._trace_file: TraceFile | None = None
        self._dump: Callable[[int], Any] | None = None
        if trace is not None:  # an unwritable path fails before the model is loaded
            self._trace_file = TraceFile(trace)
        try:
            self._open(library)
        except BaseException:
            self.close(keep=False)
            raise

    def _open(self, library: str | os.PathLike[str]) -> None:
        from pyverilator import PyVerilator

        # each model has its own VerilatedContext (build_pyverilator patches pyverilator's
        # wrapper): models sharing the default one crashed when a second one was traced
        self._pv = PyVerilator(str(library))
        self._pv.auto_eval = False
        lib, model = self._pv.lib, self._pv.model
        self._model = model
        self._eval = lib.eval
        self._eval.argtypes = [ctypes.c_void_p]
        widths = dict(self._pv.inputs + self._pv.outputs)
        for port in port_names():
            if port not in widths:
                raise HalutError(f"the Verilated top has no port {port}: is it {TOP}?")
        self.in_bits = int(widths["in_data_i"])
        self.out_bits = int(widths["out_data_o"])
        self._setters: dict[str, Callable[[int], Any]] = {}
        for name, width in self._pv.inputs:
            self._setters[name] = self._bind_setter(lib, name, int(width))
        self._get_in_ready = self._bind_getter32(lib, "in_ready_o")
        self._get_out_valid = self._bind_getter32(lib, "out_valid_o")
        self._get_cfg_ready = self._bind_getter32(lib, "cfg_ready_o")
        self._get_pre_ready = self._bind_getter32(lib, "pre_ready_o")
        self._out_words = (self.out_bits + 31) // 32
        fn = lib.get_out_data_o
        if self.out_bits > 64:
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int]
            fn.restype = ctypes.c_uint32
            self._get_out_word = lambda i: int(fn(model, i))
        else:
            fn.argtypes = [ctypes.c_void_p]
            fn.restype = ctypes.c_uint64 if self.out_bits > 32 else ctypes.c_uint32
            self._get_out_word = lambda i: (int(fn(model)) >> (32 * i)) & 0xFFFFFFFF
        self._last: dict[str, int] = {}
        self.cycle_count = 0
        # a build with the RTL's assertions (emulator.verilator.assert_flags): checked after
        # every clock edge, so the run stops with a HalutError at the failing cycle
        self._assert_check = assertion_check(lib)
        if self._trace_file is not None:
            # pyverilator's own start_vcd_trace() dumps at t=5 and 10 at once; call its
            # generated C function instead so that the time stamps match the harness
            start = lib.start_vcd_trace
            start.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            start.restype = ctypes.c_void_p
            self._trace = start(model, os.fsencode(self._trace_file.temp))
            dump = lib.add_to_vcd_trace
            dump.argtypes = [ctypes.c_void_p, ctypes.c_int]
            handle = self._trace
            self._dump = lambda t: dump(handle, t)
        self._idle()
        self._set("rst_ni", 1)
        self._settle()

    # ---- port access ----------------------------------------------------------------------
    def _bind_setter(self, lib: Any, name: str, width: int) -> Callable[[int], Any]:
        fn = getattr(lib, f"set_{name}")
        model = self._model
        if width > 64:
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64]
            words = (width + 31) // 32

            def set_wide(v: int) -> None:
                for i in range(words):
                    fn(model, i, (v >> (32 * i)) & 0xFFFFFFFF)
            return set_wide
        fn.argtypes = [ctypes.c_void_p, ctypes.c_uint64 if width > 32 else ctypes.c_uint32]
        return lambda v: fn(model, v)

    def _bind_getter32(self, lib: Any, name: str) -> Callable[[], int]:
        fn = getattr(lib, f"get_{name}")
        fn.argtypes = [ctypes.c_void_p]
        fn.restype = ctypes.c_uint32
        model = self._model
        return lambda: int(fn(model))

    def _set(self, name: str, value: int) -> None:
        if self._last.get(name) != value:
            self._setters[name](value)
            self._last[name] = value

    def _settle(self) -> None:
        self._set("clk_i", 0)
        self._eval(self._model)

    def _edge(self) -> None:
        if self._dump is not None:
            self._dump(2 * self.cycle_count)
        self._set("clk_i", 1)
        self._eval(self._model)
        if self._dump is not None:
            self._dump(2 * self.cycle_count + 1)
        self._set("clk_i", 0)
        self.cycle_count += 1
        if self._assert_check is not None:
            self._assert_check(self.cycle_count - 1)

    def _idle(self) -> None:
        for name in ("cfg_valid_i", "cfg_addr_i", "cfg_data_i", "in_valid_i", "in_data_i",
                     "pre_valid_i", "pre_data_i"):
            self._set(name, 0)
        self._set("out_ready_i", 1)

    # ---- the protocol (same as BatchSim) ---------------------------------------------------
    def reset(self, cycles: int = RESET_CYCLES) -> None:
        self._idle()
        self._set("rst_ni", 0)
        for _ in range(cycles):
            self._settle()
            self._edge()
        self._set("rst_ni", 1)
        self._settle()

    @staticmethod
    def _words(rows: np.ndarray) -> list[int]:
        """(n, words) uint32 -> one Python int per row (word ``i`` at bit ``32*i``)."""
        shifts = [32 * i for i in range(rows.shape[1])]
        return [sum(int(w) << s for w, s in zip(row, shifts, strict=True)) for row in rows]

    def config(self, writes: ConfigWrites, max_idle: int = 10_000) -> int:
        a, w = config_arrays(writes)
        data = self._words(w)
        t = i = idle = 0
        while i < a.size:
            self._set("cfg_valid_i", 1)
            self._set("cfg_addr_i", int(a[i]))
            self._set("cfg_data_i", data[i])
            self._set("in_valid_i", 0)
            self._set("pre_valid_i", 0)
            self._set("out_ready_i", 1)
            self._settle()
            fire = self._get_cfg_ready() != 0
            self._edge()
            t += 1
            if fire:
                i, idle = i + 1, 0
            else:
                idle += 1
                if idle > max_idle:
                    raise HalutError(f"the accelerator refused configuration writes for "
                                     f"{max_idle} cycles")
        self._idle()
        self._settle()
        return t

    def stream_part(self, beats: np.ndarray, out: np.ndarray, *, out_start: int = 0,
                    t0: int = 0, final: bool = True, valid: Handshake = Handshake(),  # noqa: B008
                    ready: Handshake = Handshake(), rng: np.ndarray | None = None,  # noqa: B008
                    max_idle: int = 10_000, queues: Queues | None = None) -> PartEnd:
        """Same contract as :meth:`emulator.harness.BatchSim.stream_part`."""
        b = np.asarray(beats, dtype=np.uint32)
        if b.ndim != 2:
            raise HalutError(f"beats must be (n_beats, words), got shape {b.shape}")
        q = queues or Queues()
        ca, cw = config_arrays(q.cfg)
        cfg_data = self._words(cw)
        pre_map = [] if q.pre_map is None else [int(x) for x in q.pre_map]
        n_beats, n_out, out_words = b.shape[0], out.shape[0], out.shape[1]
        n_cfg, n_pre = ca.size, len(pre_map)
        values = self._words(b)
        state = rng if rng is not None else rng_state(0)
        t = in_idx = waited = 0
        out_idx, cfg_idx, pre_idx = out_start, q.cfg_start, q.pre_start
        last_in = -1
        last_fire = 0
        held = False  # a beat offered and not yet taken stays offered (valid/ready rule)
        while in_idx < n_beats or (final and (out_idx < n_out or cfg_idx < n_cfg)):
            want_valid = valid.high(t0 + t, state, 0)
            want_ready = ready.high(t0 + t, state, 1)
            gated = cfg_idx < q.gate
            is_valid = (want_valid or held) and in_idx < n_beats and not gated
            self._set("in_valid_i", 1 if is_valid else 0)
            self._set("in_data_i", values[in_idx] if is_valid else 0)
            cfg_valid = cfg_idx < n_cfg
            self._set("cfg_valid_i", 1 if cfg_valid else 0)
            if cfg_valid:
                self._set("cfg_addr_i", int(ca[cfg_idx]))
                self._set("cfg_data_i", cfg_data[cfg_idx])
            pre_valid = pre_idx < n_pre and pre_map[pre_idx] < out_idx
            self._set("pre_valid_i", 1 if pre_valid else 0)
            if pre_valid:
                src = pre_map[pre_idx]
                self._set("pre_data_i", sum(int(w) << (32 * i) for i, w in enumerate(out[src])))
            self._set("out_ready_i", 1 if want_ready else 0)
            self._settle()
            in_fire = is_valid and self._get_in_ready() != 0
            held = is_valid and not in_fire
            out_fire = want_ready and self._get_out_valid() != 0
            cfg_fire = cfg_valid and self._get_cfg_ready() != 0
            pre_fire = pre_valid and self._get_pre_ready() != 0
            if out_fire:
                if out_idx >= n_out:
                    raise HalutError("the accelerator produced more results than rows streamed")
                for i in range(out_words):
                    out[out_idx, i] = self._get_out_word(i)
                out_idx += 1
            if in_fire:
                in_idx += 1
                last_in = t
            elif in_idx < n_beats and gated:
                waited += 1
            cfg_idx += cfg_fire
            pre_idx += pre_fire
            if in_fire or out_fire or cfg_fire or pre_fire:
                last_fire = t
            self._edge()
            t += 1
            if t - last_fire > max_idle:
                raise HalutError(f"the accelerator hung: no handshake for {max_idle} cycles "
                                 f"after {in_idx} of {n_beats} beats in")
        self._idle()
        self._set("out_ready_i", 0)
        self._settle()
        if final and self._get_out_valid() != 0:
            raise HalutError("the accelerator produced more results than rows streamed")
        self._idle()
        self._settle()
        busy = last_in + 1 if final else t
        return part_end([in_idx, busy - in_idx - waited, t - busy, t, out_idx, cfg_idx, waited,
                         pre_idx], q)

    @property
    def cycle(self) -> int:
        return self.cycle_count

    def close(self, *, keep: bool = True) -> None:
        """Finish the run: close the waveform and, with ``keep``, rename it over the trace
        path (HalutError when nothing was written); without, remove it."""
        trace_file, self._trace_file = self._trace_file, None
        written = True
        if self._trace is not None:
            handle, dump = self._trace, self._dump
            self._trace = self._dump = None
            try:
                if dump is not None:
                    dump(2 * self.cycle_count)
                stop = self._pv.lib.stop_vcd_trace
                stop.argtypes = [ctypes.c_void_p]
                stop(handle)
                failed = self._pv.lib.halut_trace_failed  # build_pyverilator's patch
                failed.argtypes = [ctypes.c_void_p]
                failed.restype = ctypes.c_int
                written = failed(handle) == 0
            except BaseException:
                if trace_file is not None:
                    trace_file.discard()
                raise
        if trace_file is not None:
            trace_file.finish(keep=keep, written=written)

    def __enter__(self) -> CycleSim:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(keep=exc_type is None)

    def __del__(self) -> None:
        # never closed: not a finished run (at interpreter exit the library may be gone)
        with contextlib.suppress(Exception):
            self.close(keep=False)
