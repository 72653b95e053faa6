"""``halut sweep-report`` (flows/sweep_report.py): the explorer page of a real tiny sweep.

* without a browser: the page is self-contained (no http(s) reference, no external script,
  style or image) and embeds sweep.csv's rows; a missing or damaged sweep.csv / sweep.json
  is one error line naming the file, and nothing is written;
* in headless Chromium (Debian's /usr/bin/chromium driven by Playwright for Python): picking
  another layer and another C changes the table and the figures, the empty states show, and
  the page logs no console error and requests nothing but its own file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from emulator.zoo import load_model
from flows.cli import main
from flows.sweep import CSV_COLUMNS, SweepOptions, grid_points, parse_grid, run_sweep
from flows.sweep_report import read_table, render
from tests.browser import headless_page
from tests.test_sweep import MODEL_PY, N_IMAGES

GRID = ["C=2,4", "K=4,16", "lut=int8,fp16"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep of test_sweep's tiny conv + linear network: 2 C x 2 K x 2 LUT formats
    for maddness, 2 x 2 for pq, 2 layers (24 records, a few seconds)."""
    root = tmp_path_factory.mktemp("sweep_report")
    spec = root / "tiny.py"
    spec.write_text(MODEL_PY)
    model = load_model(f"{spec}:factory")
    X = np.random.default_rng(0).standard_normal((N_IMAGES, 1, 4, 4)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(X)).numpy().argmax(1).astype(np.int64)
    grid = parse_grid(GRID)
    run = root / "run"
    run_sweep(model, X, y, grid_points(grid, ["maddness", "pq"]),
              SweepOptions(rtl_check=False), run, grid=grid,
              inputs={"model": f"{spec}:factory"})
    return run


def _embedded(page: str) -> dict[str, Any]:
    m = re.search(r"<script id='sweep-data' type='application/json'>(.*?)</script>", page,
                  re.S)
    assert m, "the data is not embedded"
    data: dict[str, Any] = json.loads(m.group(1))
    return data


def test_page_is_self_contained_and_embeds_the_data(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "page" / "report.html"
    r = CliRunner().invoke(main, ["sweep-report", str(sweep_dir), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"report": str(out), "bytes": out.stat().st_size}
    page = out.read_text()
    assert page == render(sweep_dir)
    assert not re.search(r"https?:|//[a-z]", page, re.I)  # no URL of any server
    assert not re.search(r"<(script|img|iframe|link)[^>]*\s(src|href)=['\"](?!data:)", page)
    assert "<svg" not in page.split("<script")[0]  # the figures are drawn by the script
    data = _embedded(page)
    table = read_table(sweep_dir / "sweep.csv")
    assert data["rows"] == table and len(table) == 24
    assert list(data["rows"][0]) == list(CSV_COLUMNS)
    assert [la["name"] for la in data["layers"]] == ["0", "3"]
    assert data["float_accuracy"] == 1.0 and data["mode"] == "single"
    # the default output is RUN_DIR/report.html
    r = CliRunner().invoke(main, ["sweep-report", str(sweep_dir)])
    assert r.exit_code == 0 and (sweep_dir / "report.html").read_text() == page, r.output
    (sweep_dir / "report.html").unlink()


def _damage(run: Path, name: str, how: str) -> None:
    p = run / name
    text = p.read_text()
    if how == "missing":
        p.unlink()
    elif how == "truncated":
        p.write_text(text[: len(text) // 2])
    elif how == "edited":  # a number changed in the CSV: disagrees with sweep.json
        lines = text.splitlines(keepends=True)
        cells = lines[3].split(",")
        cells[CSV_COLUMNS.index("accuracy")] = "0.123"
        lines[3] = ",".join(cells)
        p.write_text("".join(lines))
    elif how == "bad cell":
        p.write_text(text.replace(",conv2d,9,", ",conv2d,nine,", 1))
    elif how == "header":
        p.write_text(text.replace("nmse,", "NMSE,", 1))
    elif how == "wrong format":  # e.g. halut hw sweep's sweep.json
        p.write_text(json.dumps({"format": "halut-hw-sweep", "rows": []}))
    elif how == "bad row":
        doc = json.loads(text)
        doc["rows"][1]["nmse"] = -1.0
        p.write_text(json.dumps(doc))
    elif how == "row field":
        doc = json.loads(text)
        del doc["rows"][0]["K"]
        p.write_text(json.dumps(doc))
    elif how == "other layer":
        doc = json.loads(text)
        doc["rows"][0]["layer"] = "fc"
        p.write_text(json.dumps(doc))
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(("name", "how", "message"), [
    ("sweep.json", "missing", "sweep.json does not exist: run `halut sweep"),
    ("sweep.csv", "missing", "sweep.csv does not exist"),
    ("sweep.json", "truncated", "sweep.json is not valid JSON"),
    ("sweep.json", "wrong format", "not a halut sweep summary"),
    ("sweep.json", "bad row", "row 2: nmse=-1.0 is not a valid value"),
    ("sweep.json", "row field", "row 1 lacks K"),
    ("sweep.json", "other layer", "row 1: layer \"fc\" does not match"),
    ("sweep.csv", "truncated", "sweep.csv: line"),
    ("sweep.csv", "edited", "sweep.csv: line 4, accuracy=0.123 disagrees with sweep.json"),
    ("sweep.csv", "bad cell", "sweep.csv: line 2, D=\"nine\": not an integer"),
    ("sweep.csv", "header", "sweep.csv: the header is"),
])
def test_a_missing_or_damaged_file_is_one_line_naming_it(
        sweep_dir: Path, tmp_path: Path, name: str, how: str, message: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(sweep_dir, run)
    _damage(run, name, how)
    out = tmp_path / "report.html"
    r = CliRunner().invoke(main, ["sweep-report", str(run), "-o", str(out)])
    assert r.exit_code == 1, r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert str(run / name) in r.stderr and message in r.stderr, r.stderr
    assert not out.exists()


def test_a_missing_run_dir_is_one_line(tmp_path: Path) -> None:
    for arg, message in ((tmp_path / "nope", "not found"), (tmp_path, "sweep.json does not")):
        r = CliRunner().invoke(main, ["sweep-report", str(arg)])
        assert r.exit_code == 1 and message in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1


def test_the_explorer_in_headless_chromium(sweep_dir: Path, tmp_path: Path) -> None:
    page_file = tmp_path / "report.html"
    r = CliRunner().invoke(main, ["sweep-report", str(sweep_dir), "-o", str(page_file)])
    assert r.exit_code == 0, r.output
    rows = read_table(sweep_dir / "sweep.csv")
    with headless_page(page_file) as opened:
        page, errors, requests = opened.page, opened.errors, opened.requests
        assert errors == [], errors  # the inline script ran before "load"
        assert page.query_selector("#fig-heat svg") is not None

        def figures() -> dict[str, str]:
            return {f: page.inner_html(f"#{f}") for f in ("fig-layers", "fig-heat",
                                                         "fig-lut")}

        def shown_rows() -> list[dict[str, Any]]:
            idx = page.eval_on_selector_all("#values tbody tr[data-row]",
                                            "trs => trs.map(t => +t.dataset.row)")
            return [rows[i] for i in idx]

        def cells() -> list[list[str]]:
            out: list[list[str]] = page.eval_on_selector_all(
                "#values tbody tr", "trs => trs.map(t => [...t.cells].map(c => c.innerText))")
            return out

        # the first choice of every control: layer 0, C=2, K=4, fp16 / int8, both encoders
        assert page.input_value("#layer") == "0" and page.input_value("#C") == "2"
        assert page.input_value("#lut") == "int8"  # the grid's order, not alphabetical
        first = shown_rows()
        assert [(r["encoder"], r["layer"], r["C_requested"], r["K"], r["lut_format"])
                for r in first] == [("maddness", "0", 2, 4, "int8"), ("pq", "0", 2, 4, None)]
        mad = cells()[0]
        assert mad[5] == f"{100 * first[0]['accuracy']:.2f}"
        assert mad[7] == str(first[0]["lut_bytes"]) and mad[8] == str(
            first[0]["cycles_per_image"])
        before = figures()
        assert before["fig-layers"].count("<polyline") == 4  # {maddness, pq} x C {2, 4}
        assert "accuracy on the held-out images (%)" in before["fig-layers"]
        assert "K (prototypes per codebook)" in before["fig-heat"]
        assert "LUT size (bytes" in before["fig-lut"]
        # the heat map's cells hold the layer's NMSE at the chosen formats
        heat = page.eval_on_selector_all("#fig-heat svg rect title",
                                         "ts => ts.map(t => t.textContent)")
        m4 = next(r for r in rows if r["encoder"] == "maddness" and r["layer"] == "0"
                  and r["C_requested"] == 4 and r["K"] == 16 and r["lut_format"] == "int8")
        assert f"maddness C=4 K=16: NMSE {m4['nmse']:#.4g}" in heat
        assert sum(1 for t in heat if t.startswith("maddness")) == 4

        # another layer: the table, the heat map and the scatter change
        page.select_option("#layer", "1")
        after_layer = figures()
        layer1 = shown_rows()
        assert {r["layer"] for r in layer1} == {"3"} and len(layer1) == 2
        assert layer1[0]["nmse"] != first[0]["nmse"]
        assert after_layer["fig-heat"] != before["fig-heat"]
        assert after_layer["fig-lut"] != before["fig-lut"]
        assert after_layer["fig-layers"] != before["fig-layers"]  # the band moves
        assert "layer 1: 3" in after_layer["fig-heat"]

        # another C: the table and the highlighted line change
        page.select_option("#C", "4")
        after_c = figures()
        sel = shown_rows()
        assert [(r["C_requested"], r["layer"]) for r in sel] == [(4, "3"), (4, "3")]
        assert cells()[0][1] == "4" and cells()[0] != cells()[1]
        assert after_c["fig-layers"] != after_layer["fig-layers"]
        assert "maddness C=4 (chosen C)" in after_c["fig-layers"]
        assert after_c["fig-heat"] != after_layer["fig-heat"]  # the outlined cell moves
        page.select_option("#lut", "fp16")
        assert shown_rows()[0]["lut_format"] == "fp16"
        assert shown_rows()[0]["lut_bytes"] == 2 * sel[0]["lut_bytes"]

        # empty states: pq alone has no LUT bytes; no encoder at all has no points
        page.uncheck("#enc-maddness")
        assert "no points for this selection" in page.inner_text("#fig-lut")
        assert "pq has no LUT" in page.inner_text("#fig-lut")
        assert [r["encoder"] for r in shown_rows()] == ["pq"]
        page.uncheck("#enc-pq")
        assert page.inner_text("#values tbody") == "no points for this selection"
        for f in ("fig-layers", "fig-heat", "fig-lut"):
            assert "no points for this selection" in page.inner_text(f"#{f}"), f
        page.check("#enc-maddness")
        assert page.query_selector("#fig-heat svg") is not None
    assert errors == []
    assert requests and all(u.startswith(("file://", "data:")) for u in requests), requests
