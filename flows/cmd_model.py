"""Model commands: ``halut learn``, ``halut info``, ``halut eval``.

    halut learn --activations A.npy --weights B.npy -C 32 -K 16 -o model.halut
                [--threshold-format fp16|int8] [--lut-format int8|fp16] [--seed N]
                [--bias b.npy] [--json]
    halut info model.halut [--json]
    halut eval model.halut --activations A.npy --weights B.npy [--bias b.npy] [--json]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

from emulator import golden
from flows.clibase import emit_json
from learning import load_model, quantize, save_model
from learning.atomic import check_writable
from learning.datasets import nmse
from learning.errors import HalutError
from learning.maddness import exact_outputs, learn
from learning.program import LUT_FORMATS, THRESHOLD_FORMATS
from learning.validate import as_float_matrix, as_float_vector, check_npy_size

_F = TypeVar("_F", bound=Callable[..., Any])


def _npy_option(*decls: str, help: str, required: bool = False) -> Callable[[_F], _F]:
    """A click option naming a ``.npy`` (or other input) file, handed over as a Path."""
    return click.option(*decls, required=required,
                        type=click.Path(dir_okay=False, path_type=Path), help=help)


def load_npy(path: Path, what: str) -> np.ndarray:
    """One array from a ``.npy`` file (no pickle); a HalutError for missing/corrupt files."""
    if not path.is_file():
        raise HalutError(f"{what} file {str(path)!r} does not exist")
    where = f"{what} file {str(path)!r}"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise HalutError(f"cannot read {where}: {exc.strerror or exc}") from None
    if magic[:2] == b"PK":
        raise HalutError(f"{where} is an .npz archive (several arrays); give one .npy array")
    if magic != b"\x93NUMPY":
        raise HalutError(f"{where} is not a valid .npy array file (no NumPy header)")
    check_npy_size(path, where)  # a huge declared shape: one line, not a MemoryError
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise HalutError(f"{where} holds Python objects, not numbers; halut reads plain "
                             "numeric .npy arrays only") from None
        raise HalutError(f"cannot read {where}: {_first_line(exc)}") from None
    except (OSError, EOFError) as exc:
        raise HalutError(f"cannot read {where}: {_first_line(exc)}") from None
    if not isinstance(arr, np.ndarray):
        raise HalutError(f"{where} holds several arrays; give one .npy array")
    return arr


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _load_bias(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    b = load_npy(path, "bias")
    if b.ndim != 1:
        raise HalutError(f"bias must be a vector (M,), got shape {b.shape}")
    return b


def _fmt(x: float) -> str:
    return f"{x:.5f}"


def _report(obj: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    """Print ``obj`` as JSON with ``--json``, else the human-readable ``lines``."""
    if as_json:
        emit_json(obj)
        return
    for line in lines:
        click.echo(line)


def register(group: click.Group) -> None:
    """Add ``learn``, ``info`` and ``eval`` to the ``halut`` group."""

    @group.command("learn")
    @_npy_option("--activations", "-a", required=True,
                 help="(N, D) float training activations, a .npy file.")
    @_npy_option("--weights", "-w", required=True, help="(D, M) float weights, a .npy file.")
    @click.option("-C", "C", type=int, required=True, help="Number of codebooks (<= D).")
    @click.option("-K", "K", type=int, default=16, show_default=True,
                  help="Prototypes per codebook, a power of two in [2, 256].")
    @click.option("--threshold-format", type=click.Choice(THRESHOLD_FORMATS), default="fp16",
                  show_default=True, help="Feature/threshold format of the hardware program.")
    @click.option("--lut-format", type=click.Choice(LUT_FORMATS), default="int8",
                  show_default=True, help="LUT entry format of the hardware program.")
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                  help="Random seed (>= 0).")
    @_npy_option("--bias", help="(M,) float bias, a .npy file (default zeros).")
    @_npy_option("--output", "-o", required=True,
                 help="Model file to write (.halut), atomically.")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
    def learn_cmd(activations: Path, weights: Path, C: int, K: int, threshold_format: str,
                  lut_format: str, seed: int, bias: Path | None, output: Path,
                  as_json: bool) -> None:
        """Learn a MADDNESS model of A @ B (+ bias), quantize it and save both."""
        check_writable(output, "model")  # an unwritable output fails now, not after learning
        A = load_npy(activations, "activations")
        B = load_npy(weights, "weights")
        b = _load_bias(bias)
        if b is not None and B.ndim == 2:
            b = as_float_vector(b, "bias", B.shape[1])
        t0 = time.perf_counter()
        model = learn(A, B, C, K, seed=seed, bias=b)
        t_learn = time.perf_counter() - t0
        # extreme features saturate to int8 on purpose (np.clip after an overflow to inf)
        with np.errstate(over="ignore", invalid="ignore"):
            program = quantize(model, threshold_format=threshold_format,
                               lut_format=lut_format)
        A32 = as_float_matrix(A, "activations")
        assert model.weights is not None
        y = exact_outputs(A32, model.weights, model.bias)  # finite: learn checked it
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            y_q = golden.run(program, A32).y
        if not np.all(np.isfinite(y_q)):
            raise HalutError(f"the quantized program's outputs on the training rows overflow "
                             f"({threshold_format} thresholds, {lut_format} LUT): scale the "
                             "activations or weights down; no model was written")
        nmse_q = nmse(y_q, y)
        model.stats["nmse_train_quantized"] = nmse_q
        save_model(output, model, program)
        summary: dict[str, Any] = {
            "output": str(output), "N": int(A32.shape[0]), "D": model.D, "M": model.M,
            "C": model.C, "K": model.K, "threshold_format": threshold_format,
            "lut_format": lut_format, "input_scale": program.input_scale,
            "seconds": t_learn, "nmse_train_float": model.stats["nmse_train"],
            "nmse_train_quantized": nmse_q}
        _report(summary, as_json, [
            f"learned C={model.C} K={model.K} on A {A32.shape} x B {B.shape} "
            f"in {t_learn:.2f} s",
            f"train NMSE: float {_fmt(model.stats['nmse_train'])}, quantized "
            f"({threshold_format} thresholds, {lut_format} LUT) {_fmt(nmse_q)}",
            f"wrote {output}"])

    @group.command("info")
    @click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
    def info_cmd(model: Path, as_json: bool) -> None:
        """Describe a .halut model file (shapes, formats, training statistics)."""
        saved = load_model(model)
        h = saved.header
        info: dict[str, Any] = {
            "path": str(model), "format": h["format"], "format_version": h["format_version"],
            "created": h.get("created"), "C": saved.model.C, "K": saved.model.K,
            "D": saved.model.D, "M": saved.model.M,
            "has_weights": saved.model.weights is not None,
            "program": None if saved.program is None else saved.program.summary(),
            "stats": saved.model.stats, "checksum": h["checksum"]}
        p = saved.program
        _report(info, as_json, [
            f"{model}: {h['format']} v{h['format_version']}, created {h.get('created')}",
            f"  C={info['C']} K={info['K']} D={info['D']} M={info['M']} "
            f"(weights {'kept' if info['has_weights'] else 'not kept'})",
            "  program: " + ("none" if p is None else
                             f"{p.threshold_format} thresholds, {p.lut_format} LUT, "
                             f"input scale {p.input_scale:g}"),
            *(f"  {k}: {v}" for k, v in sorted(saved.model.stats.items()))])

    @group.command("eval")
    @click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
    @_npy_option("--activations", "-a", required=True,
                 help="(N, D) float activations, a .npy file.")
    @_npy_option("--weights", "-w", required=True,
                 help="(D, M) float weights of the exact layer, a .npy file.")
    @_npy_option("--bias", help="(M,) bias of the exact layer (default: the model's bias).")
    @click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
    def eval_cmd(model: Path, activations: Path, weights: Path, bias: Path | None,
                 as_json: bool) -> None:
        """NMSE and max |error| of the float model and of the quantized program (golden)
        against the exact product A @ B + bias."""
        saved = load_model(model)
        m = saved.model
        A = as_float_matrix(load_npy(activations, "activations"), "activations", cols=m.D)
        B = as_float_matrix(load_npy(weights, "weights"), "weights", cols=m.M)
        if B.shape[0] != m.D:
            raise HalutError(f"weights must have shape ({m.D}, {m.M}), got {B.shape}")
        b = _load_bias(bias)
        b32 = m.bias if b is None else as_float_vector(b, "bias", m.M)
        y = (A @ B + b32[None, :]).astype(np.float32)
        program = saved.program if saved.program is not None else quantize(m)
        y_float = m.predict(A)
        y_q = golden.run(program, A).y
        out: dict[str, Any] = {
            "N": int(A.shape[0]), "D": m.D, "M": m.M, "C": m.C, "K": m.K,
            "threshold_format": program.threshold_format, "lut_format": program.lut_format,
            "nmse_float": nmse(y_float, y), "nmse_quantized": nmse(y_q, y),
            "max_abs_error_float": float(np.max(np.abs(y_float - y))),
            "max_abs_error_quantized": float(np.max(np.abs(y_q - y)))}
        _report(out, as_json, [
            f"{'':>10} {'NMSE':>10} {'max |err|':>12}",
            f"{'float':>10} {out['nmse_float']:>10.5f} {out['max_abs_error_float']:>12.5g}",
            f"{'quantized':>10} {out['nmse_quantized']:>10.5f} "
            f"{out['max_abs_error_quantized']:>12.5g}"])
