"""Static timing with OpenSTA 2.0.17 on a synthesized netlist.

Constraints (written to ``constraint.sdc``, the same for every tool):

* ``create_clock clk`` on the clock port (:data:`emulator.hwif.CLOCK`) with the requested
  period (ideal clock: no clock tree before place-and-route);
* every data input and output (:data:`emulator.hwif.DATA_INPUTS`, ``DATA_OUTPUTS``) has an
  external delay of ``io_fraction`` of the period (default 20 %): the accelerator sits
  between registers of the surrounding system that take that share of the cycle;
* the reset port (:data:`emulator.hwif.RESET`) is a false path: the asynchronous reset is
  assumed to be synchronised and distributed by a reset tree outside this block (it is not
  buffered here);
* inputs are driven by ``BUFX4``, outputs load 0.01 pF (as ``abc -constr`` at synthesis).

Because the I/O delays scale with the period, ``period - WNS`` is not the minimum period
(TOOLCHAIN.md): **fmax is found by bisection on the period** inside one OpenSTA session (the
netlist is read once), to 0.1 % of the period. Power is ``report_power`` at the requested
period with OpenSTA's default switching activity (no simulation activity is annotated): a
relative figure for comparing configurations, not a sign-off number.

Two paths are reported: ``critical_path``, the worst path at the requested period (at a
relaxed period often an I/O path, whose budget scales with the period), and ``fmax_path``,
the path that limits fmax: the design is constrained again at the minimum period found and
its worst path reported (its slack is then about 0). A flip-flop at either end is traced
back to the register it implements: the net its ``Q`` pin drives in the netlist, which
Yosys names after the RTL register (``p_code_q[0]``, ``g_lvl[0].thr_mem[0][3]``); a net
Yosys made up (``_0123_``, ``$abc$...``) is reported as ``(internal net)``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.hwif import CLOCK, DATA_INPUTS, DATA_OUTPUTS, RESET, TOP
from flows import tools
from flows.hw.common import (
    DRIVING_CELL,
    LOAD_PF,
    HwDesign,
    JsonRecord,
    check_io_fraction,
    check_period,
    json_field,
    params_dict,
    write_json,
)
from learning.atomic import atomic_write_text
from learning.errors import HalutError

DEFAULT_IO_FRACTION = 0.2


@dataclass(frozen=True)
class StaResult(JsonRecord):
    """Timing and power of one netlist at one clock period (times in ns, power in W)."""

    params: dict[str, Any]
    period_ns: float
    wns_ns: float
    tns_ns: float
    hold_wns_ns: float
    fmax_mhz: float
    min_period_ns: float
    critical_path: dict[str, Any]
    power_w: dict[str, float]
    netlist: str
    sdc: str
    io_fraction: float
    seconds: float
    run_dir: str
    log: str
    extra: dict[str, Any] = field(default_factory=dict)
    # the path that limits fmax: the worst path with the clock at ``min_period_ns``
    fmax_path: dict[str, Any] = field(default_factory=dict)
    # the clock period the timed netlist was synthesized for (None: not known, --netlist)
    synthesis_period_ns: float | None = json_field(omit_none=True, default=None)
    # what ``halut hw sta`` did with the run directory's synthesis (reused at another
    # period, or replaced), when it was not an exact match
    synthesis_note: str | None = json_field(omit_none=True, default=None)

    @property
    def met(self) -> bool:
        return self.wns_ns >= 0

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "met": self.met}


def _ports(names: tuple[str, ...]) -> str:
    return "[get_ports {" + " ".join(names) + "}]"


def sdc_text(period_ns: float, io_fraction: float = DEFAULT_IO_FRACTION,
             clock: str = "clk", driving_cell: str | None = DRIVING_CELL,
             load_pf: float = LOAD_PF, design: HwDesign | None = None) -> str:
    """The project's SDC for a design's top (default the accelerator's) at ``period_ns``
    (see the module docstring); the clock and reset ports are :mod:`emulator.hwif`'s, the
    data ports the design's."""
    check_period(period_ns)
    check_io_fraction(io_fraction)
    io = period_ns * io_fraction
    top, ins, outs = ((design.top, design.data_inputs, design.data_outputs) if design
                      else (TOP, DATA_INPUTS, DATA_OUTPUTS))
    lines = [
        f"# {top} constraints: clock period {period_ns:g}, I/O delays "
        f"{io_fraction:g} x period",
        f"create_clock -name {clock} -period {period_ns:.4f} [get_ports {CLOCK}]",
        f"set_input_delay {io:.4f} -clock {clock} {_ports(ins)}",
        f"set_output_delay {io:.4f} -clock {clock} {_ports(outs)}",
        f"set_false_path -from [get_ports {RESET}]",
    ]
    if driving_cell:
        lines.append(f"set_driving_cell -lib_cell {driving_cell} "
                     f"{_ports((*ins, RESET))}")
    lines.append(f"set_load {load_pf} [all_outputs]")
    return "\n".join(lines) + "\n"


def sta_script(netlist: str, liberty: str, sdc: str, period_ns: float, io_fraction: float,
               sdf: str | None = None, design: HwDesign | None = None) -> str:
    """OpenSTA Tcl: report at ``period_ns``, then bisect the period for fmax."""
    top, ins, outs = ((design.top, design.data_inputs, design.data_outputs) if design
                      else (TOP, DATA_INPUTS, DATA_OUTPUTS))
    io_in, io_out = _ports(ins), _ports(outs)
    sdf_cmd = f"read_sdf {sdf}\n" if sdf else ""
    return f"""# generated by `halut hw sta`
read_liberty {liberty}
read_verilog {netlist}
link_design {top}
{sdf_cmd}read_sdc {sdc}
puts "HALUT_WNS [sta::worst_slack -max]"
puts "HALUT_TNS [sta::total_negative_slack -max]"
puts "HALUT_HOLD_WNS [sta::worst_slack -min]"
puts "HALUT_PATH_BEGIN"
report_checks -path_delay max -digits 4
puts "HALUT_PATH_END"
puts "HALUT_POWER_BEGIN"
report_power
puts "HALUT_POWER_END"
proc halut_constrain {{p}} {{
  create_clock -name clk -period $p [get_ports {CLOCK}]
  set_input_delay [expr {{{io_fraction} * $p}}] -clock clk {io_in}
  set_output_delay [expr {{{io_fraction} * $p}}] -clock clk {io_out}
}}
set lo 0.0
set hi {period_ns}
halut_constrain $hi
set n 0
while {{[sta::worst_slack -max] < 0 && $n < 12}} {{
  set lo $hi
  set hi [expr {{$hi * 2.0}}]
  halut_constrain $hi
  incr n
}}
while {{($hi - $lo) > 0.001 * $hi}} {{
  set mid [expr {{($lo + $hi) / 2.0}}]
  halut_constrain $mid
  if {{[sta::worst_slack -max] >= 0}} {{ set hi $mid }} else {{ set lo $mid }}
}}
puts "HALUT_MIN_PERIOD $hi"
halut_constrain $hi
puts "HALUT_FMAX_PATH_BEGIN"
report_checks -path_delay max -digits 4
puts "HALUT_FMAX_PATH_END"
"""


_NUM = r"(-?[0-9.]+(?:[eE][-+]?[0-9]+)?|-?inf|nan)"


def _between(text: str, tag: str) -> str:
    """The part of ``text`` between the lines ``<tag>_BEGIN`` and ``<tag>_END``."""
    return text.split(f"{tag}_BEGIN", 1)[-1].split(f"{tag}_END", 1)[0]


def parse_path(path: str) -> dict[str, Any]:
    """One path of ``report_checks -path_delay max``: start and end point (as OpenSTA names
    them, with what they are), data arrival time, slack, the logic delay (arrival minus the
    input delay) and the number of cells on the path."""
    crit: dict[str, Any] = {}
    for key, pat in (("start", r"Startpoint: (.+)"), ("end", r"Endpoint: (.+)")):
        m = re.search(pat, path)
        if m:
            crit[key] = m.group(1).strip()
    m = re.search(rf"{_NUM}\s+data arrival time", path)
    if m:
        crit["arrival_ns"] = float(m.group(1))
    m = re.search(rf"{_NUM}\s+slack", path)
    if m:
        crit["slack_ns"] = float(m.group(1))
    m = re.search(r"([0-9.]+)\s+[0-9.]+\s+\S\s+input external delay", path)
    ext = float(m.group(1)) if m else 0.0
    if "arrival_ns" in crit:
        crit["logic_delay_ns"] = round(crit["arrival_ns"] - ext, 4)
    crit["stages"] = len(re.findall(r"^\s*-?[0-9.]+\s+-?[0-9.]+ [\^v] \S+/\S+ \(", path,
                                    re.MULTILINE))
    return crit


_FLOP = re.compile(r"\((?:rising|falling) edge-triggered flip-flop|\(.*latch", re.I)
_MADE_UP = re.compile(r"(?:_\d+_|\$.*|\d+'[bhdo][0-9a-fA-FxzXZ_]+)(?:\[\d+\])?")


def register_name(net: str) -> str:
    """The RTL register name a netlist net carries (``\\g_lvl[0].thr_mem[0] [3]`` ->
    ``g_lvl[0].thr_mem[0][3]``), or ``(internal net)`` for a name Yosys made up."""
    name = re.sub(r"\s+", "", net.strip().lstrip("\\"))
    return "(internal net)" if not name or _MADE_UP.fullmatch(name) else name


def trace_registers(path: dict[str, Any], netlist: str) -> None:
    """Add ``start_register`` / ``end_register`` to a :func:`parse_path` dict: for a
    flip-flop (or latch) end point, the register it implements, from the net its ``Q`` pin
    drives in ``netlist`` (the Verilog text; see the module docstring)."""
    for end in ("start", "end"):
        point = path.get(end)
        if not isinstance(point, str) or not _FLOP.search(point):
            continue
        inst = point.split(" (", 1)[0].strip()
        plain = re.sub(r"\\(.)", r"\1", inst)  # OpenSTA escapes [ ] / in instance names
        m = re.search(rf"^\s*[\w$]+\s+\\?{re.escape(plain)}\s*\((.*?)\);", netlist,
                      re.MULTILINE | re.DOTALL)
        q = re.search(r"\.Q\((.*)\)\s*,?\s*$", m.group(1), re.MULTILINE) if m else None
        reg = register_name(q.group(1)) if q else "(internal net)"
        if reg == "(internal net)" and register_name(plain) != reg:
            # a made-up Q net, but a named instance (``\\a_q_reg[3]``): the register's name
            reg = re.sub(r"_reg(?=\[|$)", "", register_name(plain))
        path[f"{end}_register"] = reg


def parse_sta_log(text: str) -> dict[str, Any]:
    """Numbers from the log of :func:`sta_script`."""

    def grab(tag: str) -> float:
        m = re.search(rf"^{tag} {_NUM}\s*$", text, re.MULTILINE)
        if not m:
            raise HalutError(f"OpenSTA printed no {tag.removeprefix('HALUT_')} (see its log)")
        return float(m.group(1))

    out: dict[str, Any] = {"wns_ns": grab("HALUT_WNS"), "tns_ns": grab("HALUT_TNS"),
                           "hold_wns_ns": grab("HALUT_HOLD_WNS"),
                           "min_period_ns": grab("HALUT_MIN_PERIOD")}
    out["critical_path"] = parse_path(_between(text, "HALUT_PATH"))
    if "HALUT_FMAX_PATH_BEGIN" in text:
        out["fmax_path"] = parse_path(_between(text, "HALUT_FMAX_PATH"))
    power = _between(text, "HALUT_POWER")
    m = re.search(rf"^Total\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+{_NUM}", power, re.MULTILINE)
    out["power_w"] = ({"internal": float(m.group(1)), "switching": float(m.group(2)),
                       "leakage": float(m.group(3)), "total": float(m.group(4))}
                      if m else {})
    return out


def run_sta(params: HwDesign, netlist: Path, run_dir: Path, *, period_ns: float,
            liberty: Path | None = None, io_fraction: float = DEFAULT_IO_FRACTION,
            sdf: Path | None = None, timeout: float | None = None,
            name: str = "sta", synthesis_period_ns: float | None = None,
            synthesis_note: str | None = None) -> StaResult:
    """Time ``netlist`` (Yosys ``write_verilog -noattr -noexpr``) at ``period_ns``.

    Writes ``constraint.sdc``, ``<name>.tcl``, ``<name>.log`` and ``<name>.json`` into
    ``run_dir``. ``sdf`` back-annotates wire and cell delays (post-route timing).
    ``synthesis_period_ns``: the period the netlist was synthesized for, recorded in the
    result (it may differ from ``period_ns``: ``halut hw sta`` reuses a synthesis), with
    ``synthesis_note`` (what was reused or replaced, one line).
    """
    check_period(period_ns)
    check_io_fraction(io_fraction)
    sta = tools.find_sta()
    lib = Path(liberty) if liberty is not None else tools.find_osu018("liberty")
    if not lib.is_file():
        raise HalutError(f"Liberty file {lib} not found")
    if not netlist.is_file():
        raise HalutError(f"netlist {netlist} not found (run `halut hw synth` first)")
    run_dir.mkdir(parents=True, exist_ok=True)
    sdc = run_dir / "constraint.sdc"
    atomic_write_text(sdc, sdc_text(period_ns, io_fraction, design=params))
    script = run_dir / f"{name}.tcl"
    atomic_write_text(script, sta_script(str(netlist.resolve()), str(lib.resolve()),
                                         str(sdc.resolve()), period_ns, io_fraction,
                                         str(sdf.resolve()) if sdf else None, params))
    log = run_dir / f"{name}.log"
    t0 = time.monotonic()
    # absolute: sta runs in run_dir, and OpenSTA 2.0.17 silently ignores a script it cannot
    # open (exit 0, no output)
    tools.run_tool([sta, "-no_splash", "-exit", script.resolve()], cwd=run_dir, log=log,
                   timeout=timeout, what="OpenSTA")
    text = log.read_text(errors="replace")
    if re.search(r"^Error", text, re.MULTILINE):
        raise HalutError(f"OpenSTA: {tools.last_error_line(log)} (log: {log})")
    skipped = re.findall(r"^Warning: .*(?:not supported|skipp).*$", text, re.MULTILINE)
    nums = parse_sta_log(text)
    if any(_FLOP.search(str(p.get(k, ""))) for p in (nums["critical_path"],
                                                     nums.get("fmax_path", {}))
           for k in ("start", "end")):
        netlist_text = netlist.read_text(errors="replace")
        trace_registers(nums["critical_path"], netlist_text)
        trace_registers(nums.get("fmax_path", {}), netlist_text)
    min_period = nums.pop("min_period_ns")
    res = StaResult(params=params_dict(params), period_ns=period_ns,
                    min_period_ns=round(min_period, 4),
                    fmax_mhz=round(1000.0 / min_period, 2) if min_period > 0 else float("inf"),
                    netlist=str(netlist), sdc=str(sdc), io_fraction=io_fraction,
                    seconds=round(time.monotonic() - t0, 2), run_dir=str(run_dir),
                    log=str(log), extra={"warnings": skipped[:20]} if skipped else {},
                    synthesis_period_ns=synthesis_period_ns, synthesis_note=synthesis_note,
                    **nums)
    write_json(run_dir / f"{name}.json", res.to_dict())
    return res
