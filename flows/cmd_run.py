"""``halut run``: a saved model's hardware program on activations, on any matrix backend.

    halut run model.halut --activations A.npy --backend rtl [--driver batch|cycle]
              [-p M=16 ...] [--vcd run.vcd] [-o Y.npy] [--json]

Writes the dequantized outputs (float32 .npy, atomically) and prints the cycle report of the
rtl backend (per column tile and in total).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from emulator.backends import PROGRAM_BACKENDS, make_backend
from emulator.cycles import CycleReport
from emulator.params import RtlParams, parse_assignments
from emulator.runner import RunResult
from flows.clibase import check_finite_outputs, emit_json
from flows.cmd_model import load_npy
from learning import load_model, quantize
from learning.atomic import atomic_save_npy, check_writable
from learning.errors import HalutError
from learning.program import HardwareProgram


def load_program(path: Path) -> tuple[HardwareProgram, str]:
    """The hardware program stored in a ``.halut`` file (quantized with the default
    formats, fp16 thresholds and int8 LUT, when the file holds only the float model)."""
    saved = load_model(path)
    if saved.program is not None:
        return saved.program, "stored"
    return (quantize(saved.model, threshold_format="fp16", lut_format="int8"),
            "quantized on load (fp16 thresholds, int8 LUT)")


def cycle_table(result: RunResult) -> str:
    """Human-readable cycle report: one line per column tile and the total (the cycles, then
    the configuration writes and preload beats beside them)."""
    head = (f"{'tile':>6} {'config':>10} {'stream':>10} {'stall':>10} {'drain':>8} "
            f"{'total':>10} {'writes':>8} {'preload':>8}")

    def line(name: str, t: CycleReport) -> str:
        return (f"{name:>6} {t.config:>10} {t.stream:>10} {t.stall:>10} {t.drain:>8} "
                f"{t.total:>10} {t.writes:>8} {t.preload:>8}")

    lines = [head, *(line(str(i), t) for i, t in enumerate(result.tiles))]
    if result.cycles is not None:
        lines.append(line("total", result.cycles))
    return "\n".join(lines)


def register(group: click.Group) -> None:
    """Add ``run`` to the ``halut`` group."""

    @group.command("run")
    @click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--activations", "-a", "activations", required=True,
                  type=click.Path(dir_okay=False, path_type=Path),
                  help="(N, D) float activations, a .npy file.")
    @click.option("--backend", "-b", type=click.Choice(PROGRAM_BACKENDS), default="rtl",
                  show_default=True, help="Which backend computes the outputs.")
    @click.option("--driver", type=click.Choice(["batch", "cycle"]), default=None,
                  help="rtl: batch harness (fast, default) or cycle-level pyverilator driver.")
    @click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
                  help="rtl: chip parameter over the default chip with the program's K and "
                       "formats (e.g. C=16, M=8, out_lanes=4, cfg_lanes=4, banks=1).")
    @click.option("--vcd", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="rtl: write a waveform of the whole run (.vcd, or .fst).")
    @click.option("--bubbles", type=float, default=None,
                  help="rtl: probability that the host offers no beat in a cycle.")
    @click.option("--backpressure", type=float, default=None,
                  help="rtl: probability that the host refuses a result in a cycle.")
    @click.option("--seed", type=click.IntRange(min=0), default=None,
                  help="rtl: seed of bubbles/back-pressure.")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                  default=None, help="Write the (N, M) float32 outputs here (.npy).")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    def run_cmd(model: Path, activations: Path, backend: str, driver: str | None,
                params: tuple[str, ...], vcd: Path | None, bubbles: float | None,
                backpressure: float | None, seed: int | None, output: Path | None,
                as_json: bool) -> None:
        """Run MODEL's hardware program on ACTIVATIONS and report outputs and cycles."""
        rtl_only = {"--driver": driver, "-p": params or None, "--vcd": vcd,
                    "--bubbles": bubbles, "--backpressure": backpressure, "--seed": seed}
        if backend != "rtl":
            given = [k for k, v in rtl_only.items() if v is not None]
            if given:
                raise HalutError(f"{', '.join(given)} apply to the rtl backend only "
                                 f"(got --backend {backend})")
        if not model.is_file():
            raise HalutError(f"model file {model} not found")
        if not activations.is_file():
            raise HalutError(f"activations file {activations} not found")
        # unwritable outputs fail now, not after the whole simulation
        out_file = None if output is None else check_writable(output, "output")
        vcd_file = None if vcd is None else check_writable(vcd, "waveform")
        if out_file is not None and out_file == vcd_file:
            raise HalutError(f"--output and --vcd name the same file {output}")
        program, origin = load_program(model)
        A = load_npy(activations, "activations")
        options: dict[str, Any] = {}
        if backend == "rtl":
            base = RtlParams.for_program(program)
            items = list(params)
            if not any(i.split("=", 1)[0].strip().lower() in ("out_lanes", "lanes")
                       for i in items):
                items.append("out_lanes=0")  # lanes follow M (a whole row per beat)
            options = {"params": parse_assignments(items, base=base),
                       "driver": driver or "batch", "vcd": vcd, "bubbles": bubbles,
                       "backpressure": backpressure, "seed": seed,
                       "progress": (not as_json) and sys.stderr.isatty()}
        result = make_backend(backend, **options).run(program, A)
        check_finite_outputs(result.y, backend, output)
        if output is not None:
            atomic_save_npy(output, np.ascontiguousarray(result.y, dtype=np.float32))
        build = result.info.get("build")
        if as_json:
            emit_json({"backend": result.backend, "shape": list(result.y.shape),
                       "program": origin,
                       "cycles": None if result.cycles is None else result.cycles.to_dict(),
                       "tiles": [t.to_dict() for t in result.tiles], "build": build,
                       "output": None if output is None else str(output),
                       "vcd": None if vcd is None else str(vcd)})
            return
        click.echo(f"backend {result.backend}: outputs {result.y.shape[0]} x "
                   f"{result.y.shape[1]} ({origin})")
        if result.cycles is not None:
            click.echo(cycle_table(result))
        if build:
            state = "cached" if build["cached"] else f"built in {build['seconds']:.1f} s"
            click.echo(f"Verilated model: {state} ({build['path']})")
        if output is not None:
            click.echo(f"wrote {output}")
        if vcd is not None:
            click.echo(f"wrote waveform {vcd}")
