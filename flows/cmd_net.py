"""``halut net learn|retrain|eval|info``: whole networks (docs/network.md, docs/retrain.md).

* ``learn``: a model (``--model SPEC``, optional ``--state-dict``) and calibration inputs ->
  a ``.halutnet`` bundle with every chosen Linear/Conv layer learned and quantized;
* ``retrain``: a bundle, its model and labelled data -> a new bundle whose Halut layers (and
  float parameters) were retrained (:func:`emulator.retrain.retrain`), with golden accuracy
  before and after;
* ``eval``: the bundle on the model, accuracy per backend and the per-layer trace (table,
  ``--json``, ``-o DIR`` for trace.json and trace.png);
* ``info``: what a bundle holds.
"""

from __future__ import annotations

import fnmatch
import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from flows.clibase import emit_json
from learning.atomic import atomic_write_text, check_writable
from learning.errors import HalutError
from learning.program import LUT_FORMATS, THRESHOLD_FORMATS


def _model(spec: str, state_dict: Path | None, args: tuple[str, ...]) -> Any:
    """The float model of ``--model SPEC --model-arg ... --state-dict``, in eval mode."""
    from flows.distributed import ModelSource

    return ModelSource(spec, tuple(args), None if state_dict is None else str(state_dict)
                       ).load()


def _load_data(model: Any, data: Path, labels: Path | None = None, *,
               classes: bool = False, sample_shape: tuple[int, ...] | None = None
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs (and labels) from .npy files, checked against ``model``: it must take their
    samples; with ``classes``, it must be a classifier with an (N, classes) output and every
    label must be one of its classes."""
    from emulator.datasets import check_labels, load_npy
    from emulator.network import check_model_input

    X, y = load_npy(data, labels, sample_shape=sample_shape)
    check_model_input(model, X)
    if classes and y is not None:
        import torch

        with torch.no_grad():
            out = model.eval()(torch.from_numpy(np.ascontiguousarray(X[:1])))
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise HalutError(f"retraining needs a classifier with (N, classes) outputs; the "
                             f"model returns {shape}")
        y = check_labels(y, str(labels), n=X.shape[0], num_classes=int(out.shape[1]))
    return X, y


def _accuracy(net: Any, X: np.ndarray, y: np.ndarray, batch_size: int, what: str,
              progress: bool) -> dict[str, Any]:
    """Accuracy of the float and golden backends on ``X``, ``y`` (the Halut modules'
    backends restored afterwards)."""
    from emulator.modules import HALUT_MODULES
    from emulator.network import evaluate_network

    halut = [m for m in net.modules() if isinstance(m, HALUT_MODULES)]
    was = [m.backend for m in halut]
    try:
        ev = evaluate_network(net, X, y, backends=("float", "golden"), batch_size=batch_size,
                              progress=progress)
    finally:
        for m, b in zip(halut, was, strict=True):
            m.backend = b
    return {"data": what, "images": int(X.shape[0]), **ev["totals"]["accuracy"]}


class _RetrainOption(click.Option):
    """An option whose default is :class:`emulator.retrain.RetrainConfig`'s field of the same
    name: the value is None when not given, and ``--help`` shows the dataclass's default
    (imported only then: torch is slow to import)."""

    def get_help_extra(self, ctx: click.Context) -> Any:
        from emulator.retrain import RetrainConfig

        extra = super().get_help_extra(ctx)
        value = getattr(RetrainConfig(), str(self.name))
        if isinstance(value, bool):
            extra["default"] = (self.opts if value else self.secondary_opts)[0]
        else:
            extra["default"] = str(value)
        return extra


def _overrides(items: tuple[str, ...]) -> dict[str, int]:
    """``LAYER:C=8`` items -> {LAYER: 8}."""
    out: dict[str, int] = {}
    for item in items:
        layer, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or key.strip() != "C" or not layer:
            raise HalutError(f"--set {item!r} must look like LAYER:C=8")
        try:
            out[layer] = int(value)
        except ValueError:
            raise HalutError(f"--set {item!r}: C must be an integer") from None
    return out


def _energy_records(items: tuple[str, ...]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """``--energy [LAYER=]POWER.json`` values -> {layer or "*": (path, power record)}, each
    file read and checked now (before the network runs)."""
    from flows.hw.power import load_power_record

    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for item in items:
        layer, sep, path = item.rpartition("=")
        key = layer if sep and layer else "*"
        if key in out:
            raise HalutError(f"--energy gives {'every layer' if key == '*' else key} twice")
        out[key] = (Path(path), load_power_record(Path(path)))
    return out


def _chip(net_model: Any, items: tuple[str, ...]) -> Any:
    """The ``--chip`` accelerator: the default chip for the network's programs (K, formats)
    with ``items`` (``NAME=VALUE``) applied."""
    from emulator.network import first_program
    from emulator.params import RtlParams, parse_assignments

    first = first_program(net_model)
    if first is None:
        raise HalutError("the network has no Halut layer with a program")
    return parse_assignments(items, RtlParams.for_program(first))


def register(group: click.Group) -> None:
    """Add the ``net`` group to the ``halut`` group."""

    @group.group("net")
    def net() -> None:
        """Whole networks: learn every layer into a bundle, retrain it, evaluate it per
        backend."""

    def model_opt(fn: Any) -> Any:
        fn = click.option("--model-arg", "model_args", multiple=True, metavar="NAME=VALUE",
                          help="A keyword for the model's factory, e.g. image_size=8 "
                               "(repeatable).")(fn)
        return click.option("--model", "spec", required=True, metavar="SPEC",
                            help="zoo:NAME, package.module:factory or file.py:factory.")(fn)
    state_opt = click.option("--state-dict", type=click.Path(dir_okay=False, path_type=Path),
                             default=None, help="Float weights (.pt, weights_only).")
    data_opt = click.option("--data", type=click.Path(dir_okay=False, path_type=Path),
                            required=True, help="Inputs X.npy (float32, N first).")
    labels_opt = click.option("--labels", type=click.Path(dir_okay=False, path_type=Path),
                              required=True, help="Labels y.npy (int, N).")
    bundle_arg = click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
    output_opt = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                              required=True, help="The bundle to write (.halutnet), atomically.")

    def json_opt(what: str) -> Any:
        return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON.")

    @net.command("learn")
    @model_opt
    @state_opt
    @data_opt
    @click.option("--layers", multiple=True, metavar="GLOB",
                  help="Layer names to replace (fnmatch patterns; default every "
                       "Linear/Conv).")
    @click.option("-C", "C", type=int, default=16, show_default=True, help="Codebooks.")
    @click.option("-K", "K", type=int, default=16, show_default=True, help="Prototypes.")
    @click.option("--set", "sets", multiple=True, metavar="LAYER:C=N",
                  help="A layer's own C (repeatable).")
    @click.option("--schedule", type=click.Choice(["parallel", "sequential"]),
                  default="parallel", show_default=True,
                  help="Learn from the float network's activations, or layer after layer.")
    @click.option("--rows", type=click.IntRange(min=1), default=20000, show_default=True,
                  help="Calibration rows kept per layer.")
    @click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
    @click.option("--no-fold-bn", is_flag=True, help="Keep BatchNorm (default: fold it).")
    @click.option("--threshold-format", type=click.Choice(THRESHOLD_FORMATS), default="fp16",
                  show_default=True)
    @click.option("--lut-format", type=click.Choice(LUT_FORMATS), default="int8",
                  show_default=True)
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
    @output_opt
    @json_opt("the report")
    def learn_cmd(spec: str, model_args: tuple[str, ...], state_dict: Path | None, data: Path,
                  layers: tuple[str, ...],
                  C: int, K: int, sets: tuple[str, ...], schedule: str, rows: int,
                  batch_size: int, no_fold_bn: bool, threshold_format: str, lut_format: str,
                  seed: int, output: Path, as_json: bool) -> None:
        """Learn and quantize every chosen layer of a network into a .halutnet bundle."""
        import torch

        from emulator.network import NetConfig, halutize, model_checksum, save_network

        check_writable(output, "bundle")  # before any work
        cfg = NetConfig(C=C, K=K, threshold_format=threshold_format, lut_format=lut_format,
                        overrides=_overrides(sets), rows=rows, schedule=schedule,  # type: ignore[arg-type]
                        fold_bn=not no_fold_bn, seed=seed)
        model = _model(spec, state_dict, model_args)
        X, _ = _load_data(model, data)
        src = model_checksum(model)
        batches = [torch.from_numpy(np.ascontiguousarray(X[i:i + batch_size]))
                   for i in range(0, X.shape[0], batch_size)]

        def chosen(module: Any, fqn: str) -> bool:
            return not layers or any(fnmatch.fnmatchcase(fqn, g) for g in layers)

        report: dict[str, Any] = {}
        net_model = halutize(model, batches, cfg, chosen, report=report)
        save_network(output, net_model, source=src, config=cfg)
        per_layer = {k: v for k, v in report.items() if k != "_fold"}
        if as_json:
            emit_json({"output": str(output), "config": cfg.to_dict(), "layers": per_layer,
                       "fold": report.get("_fold")})
            return
        for name, r in per_layer.items():
            click.echo(f"{name:<28} {r.get('kind', ''):<7} C={r.get('C')} "
                       f"NMSE(train) {r.get('nmse_train', float('nan')):.4f}")
        click.echo(f"wrote {output} ({len(per_layer)} layers)")

    @net.command("info")
    @bundle_arg
    @json_opt("it")
    def info_cmd(bundle: Path, as_json: bool) -> None:
        """Describe a .halutnet bundle: its layers, their shapes and formats, the config."""
        from learning.bundle import load_bundle

        b = load_bundle(bundle)
        layers = []
        for layer in b.layers:
            p = layer.units[0].program
            assert p is not None
            layers.append({"layer": layer.name, "kind": layer.kind, "groups": len(layer.units),
                           "D": p.D, "M": sum(u.program.M for u in layer.units if u.program),
                           "C": p.C, "K": p.K, "threshold_format": p.threshold_format,
                           "lut_format": p.lut_format, "geometry": layer.geometry})
        info = {"bundle": str(bundle), "source": b.source, "config": b.config,
                "layers": layers}
        if as_json:
            emit_json(info)
            return
        for r in layers:
            click.echo(f"{r['layer']:<28} {r['kind']:<7} groups={r['groups']} D={r['D']} "
                       f"M={r['M']} C={r['C']} K={r['K']} {r['threshold_format']}/"
                       f"{r['lut_format']}")
        click.echo(f"config: {json.dumps(b.config, sort_keys=True)}")

    @net.command("eval")
    @bundle_arg
    @model_opt
    @state_opt
    @data_opt
    @labels_opt
    @click.option("--backend", "backends", default="float,golden", show_default=True,
                  help="Comma-separated: float, golden, gpu, rtl.")
    @click.option("--rtl-images", type=click.IntRange(min=1), default=None,
                  help="Images for rtl (default all).")
    @click.option("--gpu-images", type=click.IntRange(min=1), default=None,
                  help="Images for gpu (default all; the Triton interpreter on CPU is slow).")
    @click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
    @click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Image shards of the gpu and rtl passes, one accelerator each: "
                       "forked processes here, or tasks on the --scheduler's cluster.")
    @click.option("--scheduler", metavar="tcp://HOST:8786", default=None,
                  help="Run the gpu and rtl shards on the Dask cluster whose scheduler is "
                       "there (docs/distributed.md); every worker needs the same files at "
                       "the same paths.")
    @click.option("--clock-mhz", type=float, default=None,
                  help="Clock for times and ops/s (default: the default chip's fmax, "
                       "docs/hardware.md).")
    @click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
                  default=None, help="Folder for trace.json and trace.png.")
    @click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Folder recording every finished batch; a run killed midway goes on "
                       "from there.")
    @click.option("--chip", "chip_params", multiple=True, metavar="NAME=VALUE",
                  help="The accelerator the rtl pass maps every layer onto, as `halut hw "
                       "-p` (C, M, banks, ...; K and formats are the bundle's). Default: the "
                       "default chip.")
    @click.option("--energy", "energy", multiple=True, metavar="[LAYER=]POWER.json",
                  help="Energy per inference: a power.json of `halut hw power` measured on "
                       "the chip (for every layer, or LAYER=... for one); repeatable. "
                       "Needs the rtl backend.")
    @json_opt("the trace")
    def eval_cmd(bundle: Path, spec: str, model_args: tuple[str, ...], state_dict: Path | None,
                 data: Path, labels: Path,
                 backends: str, rtl_images: int | None, gpu_images: int | None,
                 batch_size: int, jobs: int, scheduler: str | None,
                 clock_mhz: float | None, out: Path | None, resume: Path | None,
                 chip_params: tuple[str, ...], energy: tuple[str, ...],
                 as_json: bool) -> None:
        """Run a bundle on its model: accuracy per backend and the per-layer trace."""
        from emulator.network import (
            DEFAULT_CLOCK_MHZ,
            apply_network,
            evaluate_network,
            format_trace,
            plot_trace,
        )

        names = tuple(b.strip() for b in backends.split(",") if b.strip())
        clock = DEFAULT_CLOCK_MHZ if clock_mhz is None else clock_mhz
        if not clock > 0:
            raise HalutError(f"--clock-mhz must be positive, got {clock_mhz}")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            check_writable(out / "trace.json", "trace")
            check_writable(out / "trace.png", "trace plot")
        if resume is not None:
            check_writable(resume / "probe.json", "resume folder")
        records = _energy_records(energy)
        if (records or chip_params) and "rtl" not in names:
            raise HalutError("--energy and --chip need the rtl backend (--backend ...,rtl)")
        if chip_params and scheduler is not None:
            raise HalutError("--chip cannot be sent to a Dask cluster's workers yet: run "
                             "without --scheduler")
        model = _model(spec, state_dict, model_args)
        X, y = _load_data(model, data, labels)
        assert y is not None
        net_model = apply_network(model, bundle)
        chip = _chip(net_model, chip_params) if chip_params else None
        if records:
            import dataclasses

            from emulator.network import halut_layer_names
            from flows.hw.power import check_power_records

            used = chip if chip is not None else _chip(net_model, ())
            check_power_records(records, dataclasses.asdict(used),
                                halut_layer_names(net_model))
        if scheduler is None:
            ev = evaluate_network(net_model, X, y, backends=names, rtl_images=rtl_images,
                                  gpu_images=gpu_images, batch_size=batch_size,
                                  clock_mhz=clock, jobs=jobs, resume=resume,
                                  progress=not as_json, chip=chip)
        else:
            from flows.distributed import DaskExecutor, ModelSource, NetSource, shard_runner

            source = NetSource(ModelSource(spec, tuple(model_args), None if state_dict is None
                                           else str(state_dict)), str(bundle), str(data))
            with DaskExecutor(scheduler) as executor:
                ev = evaluate_network(
                    net_model, X, y, backends=names, rtl_images=rtl_images,
                    gpu_images=gpu_images, batch_size=batch_size, clock_mhz=clock, jobs=jobs,
                    resume=resume, progress=not as_json,
                    shard_runner=shard_runner(executor, source.absolute(), net_model, X))
        if records:
            from flows.hw.power import add_network_energy

            add_network_energy(ev, records)
        if out is not None:
            atomic_write_text(out / "trace.json", json.dumps(ev, indent=2) + "\n")
            plot_trace(ev, out / "trace.png")
        if as_json:
            emit_json(ev)
            return
        for line in format_trace(ev):
            click.echo(line)

    @net.command("retrain")
    @bundle_arg
    @model_opt
    @state_opt
    @data_opt
    @labels_opt
    @click.option("--val-data", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Validation inputs Xv.npy (with --val-labels).")
    @click.option("--val-labels", type=click.Path(dir_okay=False, path_type=Path),
                  default=None, help="Validation labels yv.npy (with --val-data).")
    @click.option("--epochs", cls=_RetrainOption, type=click.IntRange(min=1), default=None,
                  help="Passes over the data (layerwise: per layer).")
    @click.option("--schedule", cls=_RetrainOption, type=click.Choice(["all", "layerwise"]),
                  default=None, help="Every layer at once, or layer after layer.")
    @click.option("--lr", cls=_RetrainOption, type=float, default=None,
                  help="Adam's step, relative to each Halut layer's spreads.")
    @click.option("--batch-size", cls=_RetrainOption, type=click.IntRange(min=1),
                  default=None, help="Training and evaluation batch.")
    @click.option("--temperature", cls=_RetrainOption, type=float, default=None,
                  help="The encoder relaxation's first temperature.")
    @click.option("--temperature-end", cls=_RetrainOption, type=float, default=None,
                  help="Its last temperature (annealed geometrically).")
    @click.option("--train-float/--no-train-float", "train_float", cls=_RetrainOption,
                  default=None, help="Also train the parameters that stay in float.")
    @click.option("--seed", cls=_RetrainOption, type=click.IntRange(min=0), default=None,
                  help="Seeds the batches' order.")
    @click.option("--resume", "resume", type=click.Path(file_okay=False, path_type=Path),
                  default=None, help="Checkpoint folder: retrain.pt is written there every "
                                     "epoch, and resumed from when it is there.")
    @output_opt
    @json_opt("the report")
    def retrain_cmd(bundle: Path, spec: str, model_args: tuple[str, ...],
                    state_dict: Path | None, data: Path, labels: Path, val_data: Path | None,
                    val_labels: Path | None, resume: Path | None, output: Path,
                    as_json: bool, **options: Any) -> None:
        """Retrain a bundle's Halut layers on labelled data into a new .halutnet bundle."""
        from emulator.network import NetConfig, apply_network, model_checksum, save_network
        from emulator.retrain import CHECKPOINT_NAME, RetrainConfig, float_state, retrain
        from learning.bundle import load_bundle

        t0 = time.perf_counter()
        if (val_data is None) != (val_labels is None):
            raise HalutError("--val-data and --val-labels go together: give both or neither")
        cfg = RetrainConfig(**{k: v for k, v in options.items() if v is not None})
        check_writable(output, "bundle")  # before any work
        if resume is not None:
            check_writable(resume / CHECKPOINT_NAME, "checkpoint")
        model = _model(spec, state_dict, model_args)
        X, y = _load_data(model, data, labels, classes=True)
        assert y is not None
        val = None
        if val_data is not None:
            Xv, yv = _load_data(model, val_data, val_labels, classes=True,
                                sample_shape=X.shape[1:])
            assert yv is not None
            val = (Xv, yv)
        src = model_checksum(model)  # of the float source, before the layers are swapped
        b = load_bundle(bundle, source=src)
        net_model = apply_network(model, b)
        what, Xe, ye = ("validation", *val) if val is not None else ("training", X, y)
        before = _accuracy(net_model, Xe, ye, cfg.batch_size, what, not as_json)
        hist: list[dict[str, Any]] = []
        retrain(net_model, (X, y), cfg, val=val, checkpoint_dir=resume, history=hist,
                progress=not as_json)
        after = _accuracy(net_model, Xe, ye, cfg.batch_size, what, not as_json)
        save_network(output, net_model, source=src, config=NetConfig.from_dict(b.config),
                     floats=float_state(net_model) or None)
        seconds = time.perf_counter() - t0
        if as_json:
            emit_json({"bundle": str(output), "before": before, "after": after,
                       "history": hist, "config": cfg.to_dict(), "seconds": seconds})
            return
        for r in hist:
            val_acc = r.get("val_accuracy")
            click.echo(f"{r.get('layer') or 'all':<20} epoch {r['epoch'] + 1}/{cfg.epochs} "
                       f"loss {r['loss']:.4f} train {r['train_accuracy']:.4f} "
                       + ("" if val_acc is None else f"val {val_acc:.4f} ")
                       + f"{r['seconds']:.1f} s")
        for label, acc in (("before", before), ("after", after)):
            click.echo(f"{label:<6} golden {acc['golden']:.4f}  float {acc['float']:.4f}  "
                       f"({acc['data']}, {acc['images']} images)")
        click.echo(f"wrote {output} ({seconds:.1f} s)")
