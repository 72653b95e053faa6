"""Layer commands: ``halut emulate``, ``halut compare``, ``halut demo``.

    halut emulate M.halut --layer linear|conv2d [--in-channels C --height H --width W
        --kernel-size K --stride S --padding P --dilation D] --activations X.npy
        --backend float|golden|rtl|gpu [--row-tile N] [--resume DIR] [--vcd F] [-p M=16 ...]
        [-o Y.npy] [--json]
    halut compare M.halut ...same inputs... [--backends float,golden,gpu,rtl] [--json]
    halut demo [--fast] [--out DIR] [--rtl-images N] [--json]

Linear activations are (N, D). Conv2d activations are (N, Cin, H, W), or (N, Cin*H*W) with
``--in-channels/--height/--width``. The model file's float weights serve the float backend.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from emulator.layers import LAYER_BACKENDS
from flows.clibase import check_finite_outputs, emit_json
from learning.errors import HalutError

_POSITIVE = click.IntRange(min=1)


def _layer_options(f: Any) -> Any:
    opts = [
        click.argument("model", type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--layer", type=click.Choice(["linear", "conv2d"]), default="linear",
                     show_default=True, help="Layer type the model stands for."),
        click.option("--activations", "-a", required=True,
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="Inputs .npy: linear (N, D); conv2d (N, Cin, H, W) or flat."),
        click.option("--in-channels", type=_POSITIVE, default=None,
                     help="conv2d: input channels."),
        click.option("--height", type=_POSITIVE, default=None, help="conv2d: input height."),
        click.option("--width", type=_POSITIVE, default=None, help="conv2d: input width."),
        click.option("--kernel-size", type=_POSITIVE, default=None,
                     help="conv2d: square kernel (default: from D and the channels)."),
        click.option("--stride", type=_POSITIVE, default=1, show_default=True),
        click.option("--padding", type=click.IntRange(min=0), default=0, show_default=True,
                     help="conv2d: zero padding, at most dilation*(kernel_size-1)."),
        click.option("--dilation", type=_POSITIVE, default=1, show_default=True),
        click.option("--row-tile", type=_POSITIVE, default=None,
                     help="Rows per tile (default 4096)."),
        click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
                     help="rtl: chip parameter over the default chip with the program's K and "
                          "formats, e.g. -p M=16 -p banks=1 (repeatable)."),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _load(model_path: Path) -> Any:
    from emulator.layers import LayerModel
    from learning import load_model, quantize

    saved = load_model(model_path)
    program = saved.program
    origin = "stored"
    if program is None:
        program = quantize(saved.model, threshold_format="fp16", lut_format="int8")
        origin = "quantized on load (fp16 thresholds, int8 LUT)"
    return LayerModel.from_model(saved.model, program), origin


def _inputs(layer: Any, kind: str, activations: Path, in_channels: int | None,
            height: int | None, width: int | None, kernel_size: int | None, stride: int,
            padding: int, dilation: int) -> tuple[np.ndarray, Any]:
    from flows.cmd_model import load_npy
    from learning.conv import Conv2dGeometry

    X = load_npy(activations, "activations")
    if kind == "linear":
        given = [n for n, v in (("--in-channels", in_channels), ("--height", height),
                                ("--width", width), ("--kernel-size", kernel_size)) if v]
        if given:
            raise HalutError(f"{', '.join(given)} apply to --layer conv2d only")
        return X, None
    if X.ndim == 4:
        for name, v, have in (("--in-channels", in_channels, X.shape[1]),
                              ("--height", height, X.shape[2]), ("--width", width, X.shape[3])):
            if v is not None and v != have:
                raise HalutError(f"{name} {v} does not match the activations' shape {X.shape}")
        in_channels = X.shape[1]
    elif X.ndim == 2:
        if None in (in_channels, height, width):
            raise HalutError("flat conv2d activations need --in-channels, --height and --width")
        assert in_channels is not None and height is not None and width is not None
        if X.shape[1] != in_channels * height * width:
            raise HalutError(f"activations have {X.shape[1]} values per image, "
                             f"--in-channels x --height x --width gives "
                             f"{in_channels * height * width}")
        X = X.reshape(X.shape[0], in_channels, height, width)
    else:
        raise HalutError(f"conv2d activations must be (N, Cin, H, W) or (N, Cin*H*W), got "
                         f"shape {X.shape}")
    assert in_channels is not None
    if kernel_size is None:
        per = layer.D // in_channels if layer.D % in_channels == 0 else 0
        k = int(round(per ** 0.5))
        if per == 0 or k * k != per:
            raise HalutError(f"cannot infer a square kernel from D={layer.D} and "
                             f"{in_channels} channels; give --kernel-size")
        kernel_size = k
    geom = Conv2dGeometry.make(in_channels, kernel_size, stride, padding, dilation)
    return X, geom


def _backend_options(backend: str, layer: Any, params: tuple[str, ...], vcd: Path | None
                     ) -> dict[str, Any]:
    if backend != "rtl":
        if params or vcd is not None:
            raise HalutError(f"-p and --vcd apply to the rtl backend only (got --backend "
                             f"{backend})")
        return {}
    from emulator.params import RtlParams, parse_assignments

    base = RtlParams.for_program(layer.program)
    return {"params": parse_assignments(list(params), base=base),
            **({"vcd": vcd} if vcd is not None else {})}


def _run(layer: Any, X: np.ndarray, geom: Any, backend: str, **kw: Any) -> Any:
    from emulator.layers import run_conv2d, run_linear

    if geom is None:
        return run_linear(layer, X, backend, **kw)
    return run_conv2d(layer, X, geom, backend, **kw)


def _check_outputs(output: Path | None, vcd: Path | None, resume: Path | None) -> None:
    """One-line errors for an output, waveform or resume folder that cannot be written,
    before any model is loaded or row computed."""
    from learning.atomic import check_writable

    out_file = None if output is None else check_writable(output, "output")
    vcd_file = None if vcd is None else check_writable(vcd, "waveform")
    if out_file is not None and out_file == vcd_file:
        raise HalutError(f"--output and --vcd name the same file {output}")
    if resume is not None:
        if resume.exists() and not resume.is_dir():
            raise HalutError(f"resume directory {resume} exists and is not a directory")
        check_writable(resume / "tile.npz", "tiles in resume directory")


def _cycles_line(c: Any) -> str:
    if c is None:
        return "-"
    return (f"config {c.config} + stream {c.stream} + stall {c.stall} "
            f"+ drain {c.drain} = {c.total} ({c.writes} writes, {c.preload} preload beats)")


def register(group: click.Group) -> None:
    """Add ``emulate``, ``compare`` and ``demo`` to the ``halut`` group."""

    @group.command("emulate")
    @_layer_options
    @click.option("--backend", "-b", type=click.Choice(LAYER_BACKENDS), default="golden",
                  show_default=True)
    @click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Keep finished tiles here; the same command again skips them.")
    @click.option("--vcd", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="rtl: waveform file of the whole run (one simulator serves every tile).")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                  default=None, help="Write the layer's outputs here (.npy).")
    def emulate_cmd(model: Path, layer: str, activations: Path, in_channels: int | None,
                    height: int | None, width: int | None, kernel_size: int | None,
                    stride: int, padding: int, dilation: int, row_tile: int | None,
                    params: tuple[str, ...], as_json: bool, backend: str,
                    resume: Path | None, vcd: Path | None, output: Path | None) -> None:
        """Run one Linear or Conv2d layer of MODEL on a backend (tiled, resumable)."""
        from learning.atomic import atomic_save_npy

        _check_outputs(output, vcd if backend == "rtl" else None, resume)  # before any work
        lm, origin = _load(model)
        X, geom = _inputs(lm, layer, activations, in_channels, height, width, kernel_size,
                          stride, padding, dilation)
        options = _backend_options(backend, lm, params, vcd)
        t0 = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            res = _run(lm, X, geom, backend, row_tile=row_tile, resume_dir=resume,
                       progress=(not as_json) and sys.stderr.isatty(), **options)
        secs = time.perf_counter() - t0
        check_finite_outputs(res.y, backend, output)
        if output is not None:
            atomic_save_npy(output, np.ascontiguousarray(res.y, dtype=np.float32))
        if as_json:
            emit_json({**res.summary(), "program": origin, "seconds": round(secs, 3),
                       "tiles": [t.to_dict() for t in res.tiles],
                       "output": None if output is None else str(output)})
            return
        click.echo(f"{layer} on {backend}: {tuple(X.shape)} -> {tuple(res.y.shape)} "
                   f"({len(res.tiles)} row tiles, {res.resumed} resumed; {secs:.2f} s; "
                   f"program {origin})")
        if res.cycles is not None:
            click.echo(f"cycles: {_cycles_line(res.cycles)}")
        for why in res.info.get("rejected_tile_files", []):
            click.echo(f"recomputed tile {why}", err=True)
        if output is not None:
            click.echo(f"wrote {output}")

    @group.command("compare")
    @_layer_options
    @click.option("--backends", default="float,golden,gpu,rtl", show_default=True,
                  help="Comma-separated backends to run.")
    def compare_cmd(model: Path, layer: str, activations: Path, in_channels: int | None,
                    height: int | None, width: int | None, kernel_size: int | None,
                    stride: int, padding: int, dilation: int, row_tile: int | None,
                    params: tuple[str, ...], as_json: bool, backends: str) -> None:
        """Run a layer on every backend: bit-exactness vs golden, NMSE vs float, cycles."""
        from learning.datasets import nmse

        chosen = [b.strip() for b in backends.split(",") if b.strip()]
        bad = [b for b in chosen if b not in LAYER_BACKENDS]
        if bad or not chosen:
            raise HalutError(f"unknown backend(s) {bad}; choose from {', '.join(LAYER_BACKENDS)}")
        if params and "rtl" not in chosen:
            raise HalutError(f"-p applies to the rtl backend only (got --backends "
                             f"{','.join(chosen)})")
        lm, origin = _load(model)
        if lm.weights is None and "float" in chosen:
            chosen.remove("float")
        X, geom = _inputs(lm, layer, activations, in_channels, height, width, kernel_size,
                          stride, padding, dilation)
        # every backend's options are checked before the first (possibly long) run
        options = {b: _backend_options(b, lm, params if b == "rtl" else (), None)
                   for b in chosen}
        runs: dict[str, Any] = {}
        secs: dict[str, float] = {}
        for b in chosen:
            t0 = time.perf_counter()
            runs[b] = _run(lm, X, geom, b, row_tile=row_tile,
                           progress=(not as_json) and sys.stderr.isatty(), **options[b])
            secs[b] = time.perf_counter() - t0
        ref = runs.get("float")
        gold = runs.get("golden")
        rows = []
        for b, r in runs.items():
            entry: dict[str, Any] = {"backend": b, "seconds": round(secs[b], 3),
                                     "cycles": r.cycles.to_dict() if r.cycles else None}
            if gold is not None and b not in ("golden", "float"):
                same_y = bool(np.array_equal(r.y.view(np.uint32), gold.y.view(np.uint32)))
                same_acc = (r.acc is not None and gold.acc is not None
                            and bool(np.array_equal(r.acc, gold.acc)))
                entry["bit_exact_vs_golden"] = same_y and same_acc
            if ref is not None and b != "float":
                entry["nmse_vs_float"] = nmse(r.y.reshape(-1), ref.y.reshape(-1))
                entry["max_abs_err_vs_float"] = float(np.max(np.abs(r.y - ref.y)))
            rows.append(entry)
        if as_json:
            emit_json({"layer": layer, "input_shape": list(X.shape),
                       "output_shape": list(next(iter(runs.values())).y.shape),
                       "program": origin, "backends": rows})
            return
        click.echo(f"{layer}: {tuple(X.shape)} -> {tuple(next(iter(runs.values())).y.shape)}; "
                   f"program {origin}")
        click.echo(f"{'backend':8s} {'bit-exact':>10s} {'NMSE':>10s} {'max|err|':>10s} "
                   f"{'seconds':>8s}  cycles")
        for e in rows:
            be = e.get("bit_exact_vs_golden")
            bes = "ref" if e["backend"] == "golden" else ("-" if be is None else
                                                          ("yes" if be else "NO"))
            nm = e.get("nmse_vs_float")
            mx = e.get("max_abs_err_vs_float")
            click.echo(f"{e['backend']:8s} {bes:>10s} "
                       f"{'-' if nm is None else f'{nm:.3e}':>10s} "
                       f"{'-' if mx is None else f'{mx:.3e}':>10s} {e['seconds']:8.2f}  "
                       f"{e['cycles']['total'] if e['cycles'] else '-'}")
        if any(e.get("bit_exact_vs_golden") is False for e in rows):
            raise HalutError("a backend is not bit-exact with golden (see the table)")

    @group.command("demo")
    @click.option("--fast", is_flag=True, help="Few epochs and test images (for tests).")
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                  default=Path("demo-out"), show_default=True, help="Output directory.")
    @click.option("--rtl-images", type=int, default=None,
                  help="Test images run on the RTL (default: all).")
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                  help="Random seed (>= 0).")
    @click.option("--retrain-epochs", type=click.IntRange(min=0), default=None,
                  help="Retraining epochs (default: docs/retrain.md's; 0: none).")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    def demo_cmd(fast: bool, out: Path, rtl_images: int | None, seed: int,
                 retrain_epochs: int | None, as_json: bool) -> None:
        """Train the zoo's ResNet-8 on scikit-learn's digits, replace every layer with Halut
        layers on one chip, retrain them, and compare accuracy, bit-exactness and cycles per
        backend."""
        from flows.demo import DemoConfig, format_report, run_demo

        cfg = DemoConfig(out=out, fast=fast, seed=seed, rtl_images=rtl_images,
                         retrain_epochs=retrain_epochs, progress=not as_json)
        report = run_demo(cfg)
        if as_json:
            emit_json(report.to_dict())
        else:
            click.echo(format_report(report))
