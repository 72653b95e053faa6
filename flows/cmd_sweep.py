"""``halut sweep``: accuracy studies over a grid of (C, K, formats, encoder) and the layers of
a network (docs/sweep.md; the work is :func:`flows.sweep.run_sweep`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from flows.clibase import emit_json
from learning.errors import HalutError


def load_model_spec(spec: str, state_dict: Path | None, args: tuple[str, ...]) -> Any:
    """The model of ``--model SPEC`` with its ``--model-arg NAME=VALUE`` keywords (values
    read as JSON, else kept as strings) and ``--state-dict`` weights, in eval mode."""
    from flows.distributed import ModelSource

    return ModelSource(spec, tuple(args), None if state_dict is None else str(state_dict)
                       ).load()


def load_labelled(model: Any, data: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels, checked: the model takes the images and returns (N, classes)
    scores, and every label is one of its classes (:func:`flows.sweep.load_labelled`)."""
    from flows.sweep import load_labelled as load

    return load(model, data, labels)


def model_data_options(fn: Any) -> Any:
    """``--model``, ``--model-arg``, ``--state-dict``, ``--data``, ``--labels``: the model and
    labelled images a study (``sweep``, ``convergence``) runs on."""
    for option in reversed([
        click.option("--model", "spec", required=True, metavar="SPEC",
                     help="zoo:NAME, package.module:factory or file.py:factory."),
        click.option("--model-arg", "model_args", multiple=True, metavar="NAME=VALUE",
                     help="A keyword for the model's factory, e.g. image_size=8 (repeatable)."),
        click.option("--state-dict", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="Float weights (.pt, weights_only)."),
        click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True,
                     help="Images X.npy (float, N first): calibration and held-out."),
        click.option("--labels", type=click.Path(dir_okay=False, path_type=Path),
                     required=True, help="Labels y.npy (int, N)."),
    ]):
        fn = option(fn)
    return fn


def register(group: click.Group) -> None:
    """Add ``sweep`` and ``sweep-report`` to the ``halut`` group."""

    @group.command("sweep")
    @model_data_options
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
    @click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Local worker processes computing records side by side (1: this "
                       "process).")
    @click.option("--scheduler", metavar="tcp://HOST:8786", default=None,
                  help="Send the records to the Dask cluster whose scheduler is there "
                       "(docs/distributed.md); every worker needs the same files at the "
                       "same paths.")
    @click.option("--json", "as_json", is_flag=True, help="Print sweep.json's content.")
    def sweep_cmd(spec: str, model_args: tuple[str, ...], state_dict: Path | None, data: Path,
                  labels: Path, layers: tuple[str, ...], grids: tuple[str, ...],
                  encoders: str, mode: str, holdout: float, rows: int, batch_size: int,
                  seed: int, no_fold_bn: bool, rtl_check: bool, rtl_images: int,
                  run_dir: Path, jobs: int, scheduler: str | None, as_json: bool) -> None:
        """Learn and measure every (grid point, layer): NMSE, accuracy, LUT bytes, cycles."""
        from flows.distributed import ModelSource, make_executor
        from flows.sweep import (
            SweepOptions,
            SweepSource,
            format_table,
            grid_points,
            parse_encoders,
            parse_grid,
            run_sweep,
        )
        from learning.atomic import check_writable

        if scheduler is not None and jobs != 1:
            raise HalutError("--jobs and --scheduler do not go together: the cluster's "
                             "workers decide how many records run at once")
        grid = parse_grid(grids)
        points = grid_points(grid, parse_encoders(encoders))
        options = SweepOptions(mode=mode, holdout=holdout, rows=rows, batch_size=batch_size,
                               seed=seed, layers=layers, fold_bn=not no_fold_bn,
                               rtl_check=rtl_check, rtl_images=rtl_images)
        check_writable(run_dir / "sweep.json", "run folder")  # before loading anything
        source = SweepSource(ModelSource(spec, tuple(model_args),
                                         None if state_dict is None else str(state_dict)),
                             str(data), str(labels))
        with make_executor(jobs, scheduler) as executor:
            model, X, y = source.load()
            inputs = {"model": spec, "model_args": list(model_args),
                      "state_dict": None if state_dict is None else str(state_dict),
                      "data": str(data), "labels": str(labels), "run_dir": str(run_dir)}
            summary = run_sweep(model, X, y, points, options, run_dir, grid=grid,
                                inputs=inputs, progress=not as_json, source=source,
                                executor=executor)
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
