"""``halut hw report`` (flows/hw/report.py): the architect's page of a run directory.

One real synthesis and timing of a tiny configuration (one xdist group, one module fixture),
with a ``power.json`` and a ``compare.json`` written beside them in the shapes of ``halut hw
power`` / ``halut hw compare``:

* the summary comes first and each of its figures is the JSON value it names (file, key);
* a stage that did not run says ``not run``, a field an older file lacks ``not recorded``,
  and no cell holds ``None`` or a Python repr;
* a sweep's points are one table and its plots are drawn from sweep.json;
* a mistyped result is one error line naming the file;
* in headless Chromium (Debian's /usr/bin/chromium, through Playwright): the summary is the
  first section, its numbers are the JSON's, every plot has a size, no console error and no
  request but the page itself.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from emulator.params import RtlParams
from flows.cli import main
from flows.hw.common import params_dict, read_record, write_json
from flows.hw.report import NOT_RECORDED, NOT_RUN, Figure, build, render
from flows.hw.sta import run_sta
from flows.hw.sweep import GridAxis, SweepResult, SweepRow, SweepSettings
from flows.hw.synth import synthesize
from tests.browser import headless_page

pytestmark = pytest.mark.xdist_group("hw_report")

TINY = RtlParams(C=2, K=2, M=1, threshold_format="int8", lut_format="int8")
WORKLOAD = {"kind": "random", "source": "seed 0", "rows": 64, "D": 4, "M": 1, "cycles": 200}


def power_record(params: dict[str, Any], run: Path) -> dict[str, Any]:
    """A ``power.json`` in the shape ``halut hw power`` writes."""
    return {"params": params, "design": "halut_accel", "clock_mhz": 100.0, "period_ns": 10.0,
            "clock_source": "--clock-mhz", "workload": WORKLOAD,
            "activity": {"source": "gate-level VCD", "nets": 1000, "annotated_nets": 999,
                         "mean_toggle_rate": 0.125, "mean_duty": 0.4, "vcd": "gls.vcd"},
            "power_w": {"internal": 0.004, "switching": 0.0012, "leakage": 1.0e-7,
                        "total": 0.0052001},
            "vectorless_power_w": {"internal": 0.009, "switching": 0.0015, "leakage": 1.0e-7,
                                   "total": 0.0105001},
            "energy_pj": {"per_cycle": 52.001, "per_row": 104.0},
            "vectorless_energy_pj": {"per_cycle": 105.0, "per_row": 210.0},
            "ops_per_row": 16, "throughput_tops": 0.0008, "efficiency_tops_per_w": 0.1538,
            "vectorless_efficiency_tops_per_w": 0.0762, "seconds": 12.5, "run_dir": str(run),
            "log": str(run / "power.log")}


def compare_record(params: dict[str, Any], run: Path) -> dict[str, Any]:
    """A ``compare.json`` in the shape ``halut hw compare`` writes."""
    def design(p: dict[str, Any], area: float, fmax: float, power: float) -> dict[str, Any]:
        return {"params": p, "area_um2": area, "cells": 1176, "flip_flops": 223,
                "fmax_mhz": fmax, "power_w": power, "energy_per_row_pj": power * 2e4,
                "gops_per_mm2": 1e3 / area, "tops_per_w": 1e-3 / power}

    return {"depth": 2, "clock_mhz": 100.0, "workload": WORKLOAD,
            "designs": {"halut": design(params, 57643.0, 270.0, 0.0052),
                        "mac": design({"D": 4, "M": 1, "width": 8}, 91000.0, 180.0, 0.009)},
            "ratios": {"area": 0.6334, "energy_per_row": 0.5778, "gops_per_mm2": 1.579,
                       "tops_per_w": 1.731, "fmax": 1.5},
            "seconds": 30.0, "run_dir": str(run)}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """synth.json (with the per-module breakdown), sta.json, power.json, compare.json."""
    d = tmp_path_factory.mktemp("hw_report")
    s = synthesize(TINY, d, period_ns=10.0)
    run_sta(TINY, Path(s.netlist), d, period_ns=10.0, synthesis_period_ns=s.period_ns)
    write_json(d / "power.json", power_record(params_dict(TINY), d))
    write_json(d / "compare.json", compare_record(params_dict(TINY), d))
    return d


def _json_at(run: Path, f: Figure) -> Any:
    value: Any = read_record(run / f.file)
    for k in f.path.split("."):
        value = value[k]
    return value


_SI = {"": 1.0, "m": 1e-3, "\u00b5": 1e-6, "n": 1e-9, "p": 1e-12}


def _shown(text: str) -> float:
    """The leading number of a summary text, in the base unit (``21.70 mW`` -> 0.0217)."""
    m = re.match(r"([-0-9.,]+)(?:\u00d7)?\s*([m\u00b5np]?)(W|J)?", text)
    assert m, text
    value = float(m.group(1).replace(",", ""))
    return value * (_SI[m.group(2)] if m.group(3) else 1.0)


# the summary figure -> the file, key and the factor from the JSON value to the shown number
EXPECTED = {
    "area_mm2": ("synth.json", "area", 1e-6), "cells": ("synth.json", "cells", 1),
    "flip_flops": ("synth.json", "flip_flops", 1), "fmax_mhz": ("sta.json", "fmax_mhz", 1),
    "power_default_w": ("sta.json", "power_w.total", 1),
    "power_simulated_w": ("power.json", "power_w.total", 1),
    "power_vectorless_w": ("power.json", "vectorless_power_w.total", 1),
    "energy_per_row_pj": ("power.json", "energy_pj.per_row", 1e-12),
    "energy_per_cycle_pj": ("power.json", "energy_pj.per_cycle", 1e-12),
    "throughput_tops": ("power.json", "throughput_tops", 1),
    "efficiency_tops_per_w": ("power.json", "efficiency_tops_per_w", 1),
    "ratio_area": ("compare.json", "ratios.area", 1),
    "ratio_tops_per_w": ("compare.json", "ratios.tops_per_w", 1),
    "ratio_energy_per_row": ("compare.json", "ratios.energy_per_row", 1),
}


def test_summary_figures_are_the_json_they_come_from(run: Path) -> None:
    page = build(run)
    figs = {f.key: f for f in page.summary}
    for key, (file, jkey, factor) in EXPECTED.items():
        f = figs[key]
        assert (f.file, f.path) == (file, jkey), key
        assert f.value == _json_at(run, f), key
        assert _shown(f.text) == pytest.approx(f.value * factor, rel=2e-3), (key, f.text)
        assert f.source, key
    assert "OpenSTA report_power, default activity" in figs["power_default_w"].source
    assert "10 ns (100 MHz)" in figs["power_default_w"].source
    assert "simulated activity" in figs["power_simulated_w"].source
    assert figs["configuration"].text.startswith("C = 2 codebooks, K = 2 prototypes")
    assert "{" not in figs["configuration"].text
    assert figs["fmax_path"].text.count("\u2192") == 1 and "slack" in figs["fmax_path"].text
    # the page's order: summary, plots, detail
    html_ = page.html
    assert html_.index("id='summary'") < html_.index("id='plots'") < html_.index("id='detail'")
    for plot in ("modules", "power", "compare"):
        assert f"id='plot-{plot}'><svg" in html_
    assert "simulated activity, 100 MHz" in html_ and "OpenSTA default activity, 100 MHz" in html_
    # --json prints the same figures
    r = CliRunner().invoke(main, ["hw", "report", str(run), "-o", str(run / "r.html"),
                                  "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["summary"]["area_mm2"]["value"] == read_record(run / "synth.json")["area"]
    assert out["report"] == str(run / "r.html")


def _visible_text(html_: str) -> str:
    return re.sub(r"<[^>]+>", " ", re.sub(r"<(style|title)>.*?</\1>", "", html_, flags=re.S))


def test_stages_not_run_say_so_and_no_python_repr(run: Path, tmp_path: Path) -> None:
    only = tmp_path / "only_synth"
    only.mkdir()
    shutil.copy(run / "synth.json", only / "synth.json")
    page = build(only)
    figs = {f.key: f for f in page.summary}
    for key in ("fmax_mhz", "power_default_w", "power_simulated_w", "compare", "pnr", "gls",
                "lint"):
        assert figs[key].text == NOT_RUN, key
    assert figs["fmax_mhz"].source == "run `halut hw sta`"
    for part in ("sta", "pnr", "gls", "power", "compare", "lint"):
        section = page.html.split(f"id='detail-{part}'>", 1)[1].split("</div>", 1)[0]
        assert NOT_RUN in section, part
    for html_ in (page.html, render(run)):
        text = _visible_text(html_)
        assert "None" not in text and "{'" not in text and "[{" not in text


def test_fields_an_older_file_lacks_say_not_recorded(run: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    sta = read_record(run / "sta.json")
    for key in ("fmax_path", "synthesis_period_ns"):
        del sta[key]
    write_json(old / "sta.json", sta)
    power = power_record(params_dict(TINY), old)
    del power["energy_pj"], power["throughput_tops"]
    write_json(old / "power.json", power)
    figs = {f.key: f for f in build(old).summary}
    assert figs["fmax_path"].text == NOT_RECORDED
    assert figs["energy_per_row_pj"].text == NOT_RECORDED
    assert figs["throughput_tops"].text == NOT_RECORDED
    assert figs["fmax_mhz"].value == sta["fmax_mhz"]


@pytest.mark.parametrize(("name", "record", "message"), [
    ("power.json", {"power_w": "lots"}, "'power_w' must be an object of numbers, got str"),
    ("power.json", {"energy_pj": {"per_row": "x"}}, "'energy_pj' must be an object of numbers"),
    ("power.json", {"clock_mhz": [100]}, "'clock_mhz' must be a number, got list"),
    ("compare.json", {"designs": {"halut": {"area_um2": "big"}}}, "design 'halut' must be"),
    ("compare.json", {"ratios": []}, "'ratios' must be an object"),
    ("sta.json", {"fmax_path": "a -> b"}, "'fmax_path' must be an object, got str"),
    ("sweep.json", {"grid": [{"name": "C", "values": ["2"]}], "rows": [{"area": 1.0}]},
     "row 1 lacks the swept value 'C'"),
    ("sweep.json", {"rows": [{"area": "big"}]}, "row 1: 'area' must be a number or null"),
])
def test_a_mistyped_result_is_one_line_naming_it(tmp_path: Path, name: str,
                                                 record: dict[str, Any], message: str) -> None:
    write_json(tmp_path / name, record)
    out = tmp_path / "page.html"
    r = CliRunner().invoke(main, ["hw", "report", str(tmp_path), "-o", str(out)])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.stderr
    assert str(tmp_path / name) in r.stderr and message in r.stderr, r.stderr
    assert not out.exists()


def _sweep_folder(root: Path) -> Path:
    """A sweep.json of 2 C x 2 periods as ``halut hw sweep`` writes it (no tools run), and a
    point folder holding its own synth.json (not shown on its own)."""
    settings = SweepSettings(period_ns=10.0, io_fraction=0.2, pnr=False, rtl_digest="d" * 64)
    rows = []
    for c in (1, 2):
        for period in (5, 10):
            params = params_dict(RtlParams(C=c, K=2, M=1, threshold_format="int8",
                                           lut_format="int8"))
            rows.append(SweepRow(values={"C": str(c), "period": str(period)},
                                 area=40000.0 + 10000 * c, cells=900 + 250 * c,
                                 flip_flops=170 + 50 * c, fmax_mhz=270.0 + c, wns_ns=1.0,
                                 power_w=0.1 / period * c, die_area_um2=None,
                                 wirelength_um=None, vesta_fmax_mhz=None, seconds=1.5,
                                 reused=False, params=params))
    res = SweepResult(base=["K=2", "M=1"], grid=[GridAxis(name="C", values=["1", "2"]),
                                                 GridAxis(name="period", values=["5", "10"])],
                      settings=settings, rows=rows, run_dir=str(root), plots=[])
    write_json(root / "sweep.json", res.to_dict())
    point = root / "points" / "C1_x"
    point.mkdir(parents=True)
    write_json(point / "synth.json", {"area": 1.0, "modules": [], "cell_types": {"X": 1}})
    return root


def test_a_sweep_is_one_table_and_its_plots(tmp_path: Path) -> None:
    page = build(_sweep_folder(tmp_path)).html
    detail = page.split("id='detail'", 1)[1]
    assert detail.count("<h4>points</h4>") == 1
    points = detail.split("<h4>points</h4>", 1)[1].split("</table>", 1)[0]
    assert points.count("<tr>") == 1 + 4  # the header and one row per point
    assert "period (ns)" in points and "power, default activity (W)" in points
    assert "cells by type" not in page and "C1_x" not in page  # no per-point sections
    plots = page.split("id='plots'", 1)[1].split("id='detail'", 1)[0]
    assert plots.count("<svg") == 8  # area, fmax, power, energy x (C, period)
    assert "OpenSTA default activity at each point&#x27;s period" in plots
    figs = {f.key: f for f in build(tmp_path).summary}
    assert figs["sweep"].text == "4 points over C = 1, 2; period = 5, 10 ns"
    assert figs["area_mm2"].text == ("0.05000 mm\u00b2 (50,000 \u00b5m\u00b2) to 0.06000 mm\u00b2 "
                                     "(60,000 \u00b5m\u00b2)")
    assert "each point's period" in figs["power_default_w"].source
    # integer parameters get ticks at their values only
    svg = plots.split("id='plot-area-vs-C'>", 1)[1].split("</svg>", 1)[0]
    ticks = re.findall(r"font-size='10'[^>]*>([^<]+)</text>", svg)
    assert "1" in ticks and "2" in ticks and "1.5" not in ticks


def test_the_report_in_headless_chromium(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    r = CliRunner().invoke(main, ["hw", "report", str(run), "-o", str(out)])
    assert r.exit_code == 0, r.output
    with headless_page(out) as opened:
        page, errors, requests = opened.page, opened.errors, opened.requests
        # the summary is the first section, right under the title
        first = page.eval_on_selector("body > section", "s => s.id")
        assert first == "summary"
        assert page.eval_on_selector_all(
            "body > section", "ss => ss.map(s => s.id)") == ["summary", "plots", "detail"]
        cells = page.eval_on_selector_all(
            "#summary td[data-file]",
            "tds => tds.map(t => [t.closest('tr').dataset.figure, t.dataset.file, "
            "t.dataset.key, t.dataset.json, t.innerText])")
        shown = {c[0]: c for c in cells}
        for key, (file, jkey, factor) in EXPECTED.items():
            _, f, k, raw, text = shown[key]
            assert (f, k) == (file, jkey), key
            want = _json_at(run, Figure(key, "", "", "", f, k))
            assert json.loads(raw) == want, key
            assert _shown(text) == pytest.approx(want * factor, rel=2e-3), (key, text)
        # every plot is drawn with a size
        boxes = page.eval_on_selector_all(
            "#plots svg", "ss => ss.map(s => { const r = s.getBoundingClientRect(); "
            "return [r.width, r.height, s.querySelectorAll('rect,polyline').length]; })")
        assert len(boxes) >= 3
        assert all(w > 100 and h > 100 and n > 0 for w, h, n in boxes), boxes
        assert "not run" in page.inner_text("#detail-pnr")
    assert errors == [], errors
    assert requests and all(u.startswith(("file://", "data:")) for u in requests), requests


def test_a_compare_folder_summarises_the_halut_design(tmp_path: Path) -> None:
    """A `halut hw compare` run directory (compare.json at its top, each design's results
    in halut/ and mac/): the summary's area, fmax and power are the halut design's from
    compare.json, and the clock says how it was chosen."""
    rec = compare_record(params_dict(TINY), tmp_path)
    rec["clock_mhz"] = None  # each design at its own fmax
    write_json(tmp_path / "compare.json", rec)
    figs = {f.key: f for f in build(tmp_path).summary}
    halut = rec["designs"]["halut"]
    for key, jkey, factor in (("area_mm2", "area_um2", 1e-6), ("cells", "cells", 1),
                              ("fmax_mhz", "fmax_mhz", 1), ("power_simulated_w", "power_w", 1)):
        f = figs[key]
        assert (f.file, f.path) == ("compare.json", f"designs.halut.{jkey}"), key
        assert _shown(f.text) == pytest.approx(halut[jkey] * factor, rel=2e-3), key
    assert "each design at its own fmax" in figs["ratio_area"].source
