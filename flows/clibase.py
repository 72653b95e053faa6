"""The ``halut`` command group, its error handling and JSON output, shared by every command
module (``flows.cmd_*``). It imports no command module: :mod:`flows.cli` assembles the CLI
from them, so each command module imports alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from learning.errors import HalutError


class HalutGroup(click.Group):
    """A click group that turns HalutError into one clean line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HalutError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except OSError as exc:
            # a safety net: file-system errors the commands did not foresee (a full disk,
            # a read-only folder) are the user's environment, not a bug: one line too
            if ctx.obj and ctx.obj.get("debug"):
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(f"error: {exc.strerror or exc}{where}", err=True)
            sys.exit(1)
        except MemoryError:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo("error: out of memory (the inputs or the work asked for are larger "
                       "than this machine's memory)", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted (finished work is kept; run the same command to resume)",
                       err=True)
            sys.exit(130)


@click.group(cls=HalutGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="halut")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """halut: learn MADDNESS layers, run them on a Verilated accelerator, and take its RTL
    through lint, synthesis, timing and place-and-route."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (numpy scalars and arrays converted)."""

    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):
            return o.tolist()
        if hasattr(o, "to_dict"):
            return o.to_dict()
        raise TypeError(f"not JSON serialisable: {type(o)}")

    click.echo(json.dumps(obj, indent=2, default=default))


def check_finite_outputs(y: np.ndarray, backend: str, output: Path | None) -> None:
    """A one-line error (and no output file) when a layer's outputs overflowed float32."""
    bad = ~np.isfinite(y)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        kept = "" if output is None else f"; {output} was not written"
        raise HalutError(f"the {backend} outputs overflow float32 ({int(bad.sum())} values, "
                         f"the first at index {idx}; sums of this model's lookup-table "
                         f"entries beyond float32's range){kept}")
