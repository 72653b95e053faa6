"""``halut sweep``: accuracy studies over a grid of (C, K, formats, encoder) and the layers of
a network (docs/sweep.md; the work is :func:`flows.sweep.run_sweep`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from flows.clibase import emit_json
from learning.errors import HalutError


def load_model_spec(spec: str, state_dict: Path | None, args: tuple[str, ...]) -> Any:
    """The model of ``--model SPEC`` with its ``--model-arg NAME=VALUE`` keywords (values
    read as JSON, else kept as strings) and ``--state-dict`` weights, in eval mode."""
    from emulator.zoo import load_model, load_state

    kwargs: dict[str, Any] = {}
    for item in args:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise HalutError(f"--model-arg {item!r} must look like NAME=VALUE")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    model = load_model(spec, **kwargs)
    if state_dict is not None:
        load_state(model, state_dict)
    return model.eval()


def load_labelled(model: Any, data: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels, checked: the model takes the images and returns (N, classes)
    scores, and every label is one of its classes."""
    import torch

    from emulator.datasets import check_labels, load_npy
    from emulator.network import check_model_input

    X, y = load_npy(data, labels)
    assert y is not None
    check_model_input(model, X)
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(np.ascontiguousarray(X[:1])))
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise HalutError(f"a sweep measures accuracy: it needs a classifier with (N, classes) "
                         f"outputs; the model returns {shape}")
    return X, check_labels(y, str(labels), n=X.shape[0], num_classes=int(out.shape[1]))


def register(group: click.Group) -> None:
    """Add ``sweep`` and ``sweep-report`` to the ``halut`` group."""

    @group.command("sweep")
    @click.option("--model", "spec", required=True, metavar="SPEC",
                  help="zoo:NAME, package.module:factory or file.py:factory.")
    @click.option("--model-arg", "model_args", multiple=True, metavar="NAME=VALUE",
                  help="A keyword for the model's factory, e.g. image_size=8 (repeatable).")
    @click.option("--state-dict", type=click.Path(dir_okay=False, path_type=Path),
                  default=None, help="Float weights (.pt, weights_only).")
    @click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True,
                  help="Images X.npy (float, N first): calibration and held-out.")
    @click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), required=True,
                  help="Labels y.npy (int, N).")
    @click.option("--layers", multiple=True, metavar="GLOB",
                  help="Layers to sweep (fnmatch patterns; default every Linear/Conv).")
    @click.option("--grid", "grids", multiple=True, metavar="KEY=V1,V2",
                  help="Grid values: C=8,16  K=4,16  lut=int8,fp16  threshold=fp16,int8 "
                       "(repeatable; defaults C=16 K=16 lut=int8 threshold=fp16).")
    @click.option("--encoder", "encoders", default="maddness", show_default=True,
                  help="Comma-separated: maddness, pq (product quantization, float only).")
    @click.option("--mode", type=click.Choice(["single", "cumulative"]), default="single",
                  show_default=True,
                  help="Replace the layer alone, or every selected layer up to it.")
    @click.option("--holdout", type=float, default=0.25, show_default=True,
                  help="Fraction of the images held out for evaluation.")
    @click.option("--rows", type=click.IntRange(min=1), default=20000, show_default=True,
                  help="Calibration rows kept per layer.")
    @click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                  help="Seeds the split, the row samples, MADDNESS and k-means.")
    @click.option("--no-fold-bn", is_flag=True, help="Keep BatchNorm (default: fold it).")
    @click.option("--rtl-check/--no-rtl-check", default=True, show_default=True,
                  help="Check the cycle model against the RTL on the first maddness point.")
    @click.option("--rtl-images", type=click.IntRange(min=1), default=2, show_default=True,
                  help="Held-out images of that check (one rtl run each).")
    @click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
                  help="Folder of the records (resume), sweep.csv and sweep.json.")
    @click.option("--json", "as_json", is_flag=True, help="Print sweep.json's content.")
    def sweep_cmd(spec: str, model_args: tuple[str, ...], state_dict: Path | None, data: Path,
                  labels: Path, layers: tuple[str, ...], grids: tuple[str, ...],
                  encoders: str, mode: str, holdout: float, rows: int, batch_size: int,
                  seed: int, no_fold_bn: bool, rtl_check: bool, rtl_images: int,
                  run_dir: Path, as_json: bool) -> None:
        """Learn and measure every (grid point, layer): NMSE, accuracy, LUT bytes, cycles."""
        from flows.sweep import (
            SweepOptions,
            format_table,
            grid_points,
            parse_encoders,
            parse_grid,
            run_sweep,
        )
        from learning.atomic import check_writable

        grid = parse_grid(grids)
        points = grid_points(grid, parse_encoders(encoders))
        options = SweepOptions(mode=mode, holdout=holdout, rows=rows, batch_size=batch_size,
                               seed=seed, layers=layers, fold_bn=not no_fold_bn,
                               rtl_check=rtl_check, rtl_images=rtl_images)
        check_writable(run_dir / "sweep.json", "run folder")  # before loading anything
        model = load_model_spec(spec, state_dict, model_args)
        X, y = load_labelled(model, data, labels)
        inputs = {"model": spec, "model_args": list(model_args),
                  "state_dict": None if state_dict is None else str(state_dict),
                  "data": str(data), "labels": str(labels), "run_dir": str(run_dir)}
        summary = run_sweep(model, X, y, points, options, run_dir, grid=grid, inputs=inputs,
                            progress=not as_json)
        if as_json:
            emit_json(summary)
            return
        for line in format_table(summary):
            click.echo(line)
        click.echo(f"wrote {run_dir / 'sweep.csv'} and {run_dir / 'sweep.json'}")

    @group.command("sweep-report")
    @click.argument("run_dir", type=click.Path(path_type=Path))
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                  default=None, help="HTML file (default RUN_DIR/report.html).")
    @click.option("--json", "as_json", is_flag=True, help="Print {report, bytes} as JSON.")
    def sweep_report_cmd(run_dir: Path, output: Path | None, as_json: bool) -> None:
        """Explore a sweep's RUN_DIR in one self-contained HTML page (docs/sweep.md)."""
        from flows.sweep_report import write_report

        path = write_report(run_dir, output)
        if as_json:
            emit_json({"report": str(path), "bytes": path.stat().st_size})
        else:
            click.echo(f"wrote {path}")
