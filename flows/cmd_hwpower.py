"""``halut hw power`` (energy from simulated activity) and ``halut hw compare`` (the
accelerator against the multiply-accumulate baseline on the same flow): docs/hardware.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flows.clibase import emit_json
from flows.cmd_hw import check_liberty, check_settings, common_options, rtl_option, setup_run
from flows.cmd_hw import hw as hw_group
from learning.errors import HalutError

if TYPE_CHECKING:
    from emulator.params import RtlParams


def power_rows(res: dict[str, Any]) -> list[tuple[str, Any]]:
    """The human table of a ``power.json``."""
    w, v = res["power_w"], res["vectorless_power_w"]
    e, ev = res["energy_pj"], res["vectorless_energy_pj"]
    wl = res["workload"]
    act = res["activity"]
    return [
        ("design", res["design"]),
        ("clock (MHz)", f"{res['clock_mhz']:g} ({res['clock_source']})"),
        ("workload", f"{wl['kind']} {wl['source']}: {wl['rows']} rows of D={wl['D']}, "
                     f"M={wl['M']}, {wl.get('cycles', '?')} cycles"),
        ("activity", f"{act['nets']} nets from the gate-level VCD, mean "
                     f"{act['mean_toggle_rate']:.3f} toggles/cycle, duty {act['mean_duty']:.2f}"),
        ("", "simulated activity | OpenSTA default activity"),
        ("internal (mW)", f"{w['internal'] * 1e3:.4g} | {v['internal'] * 1e3:.4g}"),
        ("switching (mW)", f"{w['switching'] * 1e3:.4g} | {v['switching'] * 1e3:.4g}"),
        ("leakage (mW)", f"{w['leakage'] * 1e3:.4g} | {v['leakage'] * 1e3:.4g}"),
        ("total (mW)", f"{w['total'] * 1e3:.4g} | {v['total'] * 1e3:.4g}"),
        ("energy / cycle (pJ)", f"{e['per_cycle']:.4g} | {ev['per_cycle']:.4g}"),
        ("energy / row (pJ)", f"{e['per_row']:.4g} | {ev['per_row']:.4g}"),
        ("energy / layer (nJ)", f"{e['per_layer'] / 1e3:.4g} | {ev['per_layer'] / 1e3:.4g} "
                                f"({wl['layer_rows']} rows)"),
        ("ops / row (2*D*M)", res["ops_per_row"]),
        ("throughput (GOp/s)", f"{res['throughput_tops'] * 1e3:.4g}"),
        ("efficiency (TOp/s/W)", f"{res['efficiency_tops_per_w']:.4g} | "
                                 f"{res['vectorless_efficiency_tops_per_w']:.4g}"),
    ]


def _check_power_settings(period: float, io_fraction: float, timeout: float | None,
                          liberty: Path | None, clock_mhz: float | None) -> None:
    """The settings of a power run (hw power, hw compare), checked before any work."""
    from flows.hw.power import check_clock

    check_settings(period, io_fraction, timeout)
    check_liberty(liberty)
    check_clock(clock_mhz)


def _start_power_run(kind: str, params: tuple[str, ...], run_dir: Path | None,
                     rtl: tuple[Path, ...]) -> tuple[list[Path] | None, RtlParams, Path]:
    """The RTL sources, the tools a power run needs (OpenSTA, Yosys, the osu018 cell
    models) and the run directory: ``(sources, params, run_dir)``."""
    from flows import tools

    sources = rtl_option(rtl)
    tools.find_sta()
    tools.find_yosys()
    tools.find_osu018("cells")
    p, d = setup_run(kind, params, run_dir)
    return sources, p, d


@hw_group.command("power")
@common_options
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A model file (halut learn): its program is the workload.")
@click.option("--bundle", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A network bundle (halut net learn): --layer's program is the workload.")
@click.option("--layer", default=None, help="The bundle's layer (see halut net info).")
@click.option("--group", type=click.IntRange(min=0), default=0, show_default=True,
              help="The layer's group (grouped convolutions).")
@click.option("--activations", "-a", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="(N, D) float32 .npy activations of the layer (default: "
                                 "random ones with ties on thresholds).")
@click.option("--rows", type=int, default=64, show_default=True,
              help="Rows simulated (the first of --activations).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the random program / activations.")
@click.option("--clock-mhz", type=float, default=None,
              help="Clock for the power figures (default: the fmax of hw sta).")
@click.option("--period", type=float, default=10.0, show_default=True,
              help="Synthesis target period in ns (as hw synth).")
@click.option("--io-fraction", type=float, default=0.2, show_default=True)
@click.option("--liberty", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Liberty library (default osu018).")
@click.option("--timeout", type=float, default=None, help="Seconds per tool run.")
def power_cmd(params: tuple[str, ...], run_dir: Path | None, rtl: tuple[Path, ...],
              as_json: bool, model: Path | None, bundle: Path | None, layer: str | None,
              group: int, activations: Path | None, rows: int, seed: int,
              clock_mhz: float | None, period: float, io_fraction: float,
              liberty: Path | None, timeout: float | None) -> None:
    """Power and energy from simulated activity (gate-level VCD annotated into OpenSTA).

    Runs a workload through the synthesized netlist, counts every net's toggles and time
    at 1, annotates OpenSTA with them and reports power (internal, switching, leakage),
    energy per cycle, row and layer, TOp/s and TOp/s/W, with OpenSTA's default-activity
    figures beside them."""
    from flows.cmd_model import load_npy
    from flows.hw.common import fmt_table
    from flows.hw.power import halut_workload, measure_power

    _check_power_settings(period, io_fraction, timeout, liberty, clock_mhz)
    for path, what in ((model, "model"), (bundle, "bundle"), (activations, "activations")):
        if path is not None and not path.is_file():
            raise HalutError(f"{what} file {path} not found")
    sources, p, d = _start_power_run("power", params, run_dir, rtl)
    A = load_npy(activations, "activations") if activations is not None else None
    workload = halut_workload(p, model=model, activations=A, bundle=bundle, layer=layer,
                              group=group, rows=rows, seed=seed)
    res = measure_power(p, d, workload, sources=sources, liberty=liberty, clock_mhz=clock_mhz,
                        synth_period_ns=period, io_fraction=io_fraction, timeout=timeout)
    out = res.to_dict()
    if as_json:
        emit_json(out)
        return
    click.echo(fmt_table([("params", p.tag()), *power_rows(out)]))
    click.echo(f"result: {d / 'power.json'}")


def compare_rows(res: dict[str, Any]) -> list[tuple[str, Any]]:
    """The human table of a ``compare.json``: halut, MAC and halut / MAC per figure."""
    h, m, r = res["designs"]["halut"], res["designs"]["mac"], res["ratios"]
    rows: list[tuple[str, Any]] = [("", f"{'halut':>12} {'MAC':>12} {'halut/MAC':>10}")]
    for label, key, scale, ratio in (
            ("area (mm^2)", "area_um2", 1e-6, "area"),
            ("cells", "cells", 1, None), ("flip-flops", "flip_flops", 1, None),
            ("fmax (MHz)", "fmax_mhz", 1, "fmax"),
            ("clock for power (MHz)", "clock_mhz", 1, None),
            ("power (mW)", "power_w", 1e3, None),
            ("energy / row (pJ)", "energy_per_row_pj", 1, "energy_per_row"),
            ("GOp/s/mm^2 at fmax", "gops_per_mm2", 1, "gops_per_mm2"),
            ("TOp/s/W", "tops_per_w", 1, "tops_per_w")):
        rat = "" if ratio is None else f"{r[ratio]:10.3g}"
        rows.append((label, f"{h[key] * scale:12.5g} {m[key] * scale:12.5g} {rat}"))
    return rows


@hw_group.command("compare")
@common_options
@click.option("--depth", type=int, required=True,
              help="D, the layer's inputs: the MAC takes ceil(D/C) int8 activations per "
                   "beat so that both designs stream a row in C cycles.")
@click.option("--rows", type=int, default=64, show_default=True,
              help="Rows simulated for the activity.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--clock-mhz", type=float, default=None,
              help="One clock for both designs' power (default: each design's own fmax).")
@click.option("--period", type=float, default=10.0, show_default=True,
              help="Synthesis target period in ns.")
@click.option("--io-fraction", type=float, default=0.2, show_default=True)
@click.option("--liberty", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--timeout", type=float, default=None, help="Seconds per tool run.")
def compare_cmd(params: tuple[str, ...], run_dir: Path | None, rtl: tuple[Path, ...],
                as_json: bool, depth: int, rows: int, seed: int, clock_mhz: float | None,
                period: float, io_fraction: float, liberty: Path | None,
                timeout: float | None) -> None:
    """The accelerator against a multiply-accumulate baseline of the same shape on the
    same flow: area, fmax, energy per row, GOp/s/mm^2, TOp/s/W and the halut/MAC ratios.

    Both designs are synthesized, timed and power-annotated from a gate-level simulation
    (as hw power) into <run-dir>/halut and <run-dir>/mac; the result is compare.json."""
    from flows.hw.common import fmt_table
    from flows.hw.compare import compare, mac_for

    _check_power_settings(period, io_fraction, timeout, liberty, clock_mhz)
    if rows < 1:
        raise HalutError(f"--rows must be >= 1, got {rows}")
    sources, p, d = _start_power_run("compare", params, run_dir, rtl)
    mac_for(p, depth)  # a bad depth fails before any tool runs
    res = compare(p, depth, d, rows=rows, seed=seed, clock_mhz=clock_mhz, period_ns=period,
                  io_fraction=io_fraction, liberty=liberty, sources=sources, timeout=timeout)
    if as_json:
        emit_json(res.to_dict())
        return
    click.echo(f"halut {p.tag()} against the MAC baseline, layers of D={depth}")
    click.echo(fmt_table(compare_rows(res.to_dict())))
    click.echo(f"result: {d / 'compare.json'}")


def register(group: click.Group) -> None:
    """The commands live on the ``hw`` group (registered by flows.cmd_hw)."""
    del group
