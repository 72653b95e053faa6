"""``halut convergence``: how held-out NMSE and accuracy converge with the number of training
rows per layer (docs/convergence.md; the work is :func:`flows.convergence.run_convergence`)."""

from __future__ import annotations

from pathlib import Path

import click

from flows.clibase import emit_json
from flows.cmd_sweep import model_data_options


def register(group: click.Group) -> None:
    """Add ``convergence`` to the ``halut`` group."""
    from learning.program import LUT_FORMATS, THRESHOLD_FORMATS

    @group.command("convergence")
    @model_data_options
    @click.option("--layers", multiple=True, metavar="GLOB",
                  help="Layers to study (fnmatch patterns; default every Linear/Conv).")
    @click.option("-C", "C", type=int, default=16, show_default=True,
                  help="Codebooks per layer (capped to a layer's D).")
    @click.option("-K", "K", type=int, default=16, show_default=True,
                  help="Prototypes per codebook (a power of two, 2..256).")
    @click.option("--threshold-format", type=click.Choice(THRESHOLD_FORMATS), default="fp16",
                  show_default=True)
    @click.option("--lut-format", type=click.Choice(LUT_FORMATS), default="int8",
                  show_default=True)
    @click.option("--rows", "rows_text", default="250,500,1000,2000,4000,8000,16000",
                  show_default=True, metavar="R1,R2,...",
                  help="Training rows kept per layer, comma-separated (capped to what the "
                       "calibration images give, and flagged).")
    @click.option("--holdout", type=float, default=0.25, show_default=True,
                  help="Fraction of the images held out for evaluation.")
    @click.option("--mode", type=click.Choice(["single", "cumulative"]), default="single",
                  show_default=True,
                  help="Replace the layer alone, or every selected layer up to it.")
    @click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                  help="Seeds the split, the row samples and MADDNESS.")
    @click.option("--no-fold-bn", is_flag=True, help="Keep BatchNorm (default: fold it).")
    @click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
                  help="Folder of the records (resume), convergence.csv, .json and .png.")
    @click.option("--json", "as_json", is_flag=True, help="Print convergence.json's content.")
    def convergence_cmd(spec: str, model_args: tuple[str, ...], state_dict: Path | None,
                        data: Path, labels: Path, layers: tuple[str, ...], C: int, K: int,
                        threshold_format: str, lut_format: str, rows_text: str,
                        holdout: float, mode: str, batch_size: int, seed: int,
                        no_fold_bn: bool, run_dir: Path, as_json: bool) -> None:
        """Learn each layer from R training rows for every R: held-out NMSE and accuracy."""
        from flows.cmd_sweep import load_labelled, load_model_spec
        from flows.convergence import (
            ConvergenceOptions,
            check_outputs,
            format_table,
            parse_rows,
            run_convergence,
        )

        options = ConvergenceOptions(row_counts=parse_rows(rows_text), C=C, K=K,
                                     threshold_format=threshold_format,
                                     lut_format=lut_format, mode=mode, holdout=holdout,
                                     batch_size=batch_size, seed=seed, layers=layers,
                                     fold_bn=not no_fold_bn)
        check_outputs(run_dir)  # before loading anything
        model = load_model_spec(spec, state_dict, model_args)
        X, y = load_labelled(model, data, labels)
        inputs = {"model": spec, "model_args": list(model_args),
                  "state_dict": None if state_dict is None else str(state_dict),
                  "data": str(data), "labels": str(labels), "run_dir": str(run_dir)}
        summary = run_convergence(model, X, y, options, run_dir, inputs=inputs,
                                  progress=not as_json)
        if as_json:
            emit_json(summary)
            return
        for line in format_table(summary):
            click.echo(line)
        click.echo(f"wrote {run_dir / 'convergence.csv'}, {run_dir / 'convergence.json'} and "
                   f"{run_dir / 'convergence.png'}")
