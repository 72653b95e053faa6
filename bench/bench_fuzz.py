"""Loader fuzzing by the thousand: every format halut reads back, mutated (bit flips, byte
overwrites, truncations, inserted, appended and prepended bytes, zeroed, deleted and
repeated blocks, zip/npy signatures, a second file appended, edits of the JSON header, of
the ``.npy`` headers and of the zip members: ``tests/test_fuzz_formats.py``), each mutation
loaded once.

Per format: ``tried``, ``clean`` (refused in one short line naming the file), ``crashes``
(any other exception, or a message of several lines, too long or not naming the file),
``accepted_same`` (loaded equal to the original) and ``accepted_different`` (loaded, but not
equal: fooled). Targets: 0 crashes, 0 accepted_different.

Formats: ``model_file`` (``.halut`` as written now, version 2), ``network_bundle``
(``.halutnet`` via :mod:`learning.bundle`), ``resume_tile`` (a ``--resume`` tile via
``TileStore.load``; refused = recomputed with one line of reason), ``run_record`` (the JSON
records the flows read back: ``sweep.json`` through ``halut hw report``, ``point.json``
through a resumed sweep, ``synth.json`` through a reused synthesis; these carry no checksum,
so well-typed value edits are read as written: reported, not a target). Beside them, for
information: ``model_file_v1`` (a version 1 file, whose header the checksum does not cover)
and ``forged_*`` (crafted files with a recomputed checksum: only ``crashes`` is a target).

``python bench/bench_fuzz.py [N]`` (default N = 5000 per format).
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import write_result

import tests.test_fuzz_formats as fz

SEEDS = {"model_file": 1, "network_bundle": 2, "resume_tile": 3, "run_record": 4,
         "model_file_v1": 5, "forged_model_file": 6, "forged_resume_tile": 7,
         "sweep_record": 8, "eval_batch_record": 9}


def _family(what: str) -> str:
    """The mutation's family (its name up to the first detail)."""
    for sep in (" (", ": ", " of "):
        what = what.split(sep)[0]
    return what


def _spread(items: list[str], k: int = 12) -> list[str]:
    """At most ``k`` of ``items``, spread evenly."""
    return items[::max(1, len(items) // k)][:k]


def measure(fmt: fz.Format, n: int, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = fz.fuzz(fmt, n, seed)
    seconds = time.perf_counter() - t0
    families: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for kind, outcomes in res.items():
        for o in outcomes:
            families[_family(o.what)][kind] += 1
    return {
        "tried": n, "clean": len(res["clean"]), "crashes": len(res["crash"]),
        "accepted_same": len(res["same"]), "accepted_different": len(res["different"]),
        "seconds": round(seconds, 2), "ms_per_mutation": round(1000 * seconds / n, 3),
        "by_mutation": {k: dict(v) for k, v in sorted(families.items())},
        "crash_examples": [f"{o.what}: {o.message}" for o in res["crash"][:5]],
        "different_examples": [o.what for o in res["different"][:10]],
        "clean_examples": _spread(sorted({o.message.replace(str(fmt.path), "FILE")[:160]
                                          for o in res["clean"]})),
    }


def _sum(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    keys = ("tried", "clean", "crashes", "accepted_same", "accepted_different", "seconds")
    out: dict[str, Any] = {k: sum(p[k] for p in parts.values()) for k in keys}
    out["seconds"] = round(out["seconds"], 2)
    out["by_record"] = parts
    return out


def main(n: int) -> None:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)

        def sub(name: str) -> Path:
            p = tmp / name
            p.mkdir()
            return p

        results["model_file"] = measure(fz.model_format(sub("m")), n, SEEDS["model_file"])
        results["network_bundle"] = measure(fz.bundle_format(sub("b")), n,
                                            SEEDS["network_bundle"])
        results["resume_tile"] = measure(fz.tile_format(sub("t")), n, SEEDS["resume_tile"])
        results["run_record"] = _sum({
            which: measure(fz.record_format(sub(f"r{i}"), which), n, SEEDS["run_record"] + i)
            for i, which in enumerate(("sweep.json", "point.json", "synth.json"))})
        results["sweep_record"] = measure(fz.sweep_record_format(sub("sr")), n,
                                          SEEDS["sweep_record"])
        results["eval_batch_record"] = measure(fz.batch_record_format(sub("br")), n,
                                               SEEDS["eval_batch_record"])
        results["model_file_v1"] = measure(fz.model_format(sub("v1"), legacy=True), n,
                                           SEEDS["model_file_v1"])
        forged = fz.model_format(sub("fm"))
        forged.mutate = fz.forge_model
        results["forged_model_file"] = measure(forged, n, SEEDS["forged_model_file"])
        forged_tile = fz.tile_format(sub("ft"))
        forged_tile.mutate = fz.forge_tile
        results["forged_resume_tile"] = measure(forged_tile, n, SEEDS["forged_resume_tile"])
    targets = ("model_file", "network_bundle", "resume_tile", "run_record", "sweep_record",
               "eval_batch_record")
    met = (all(results[f]["crashes"] == 0 and results[f]["accepted_different"] == 0
               for f in targets)
           and all(results[f]["crashes"] == 0 for f in ("model_file_v1", "forged_model_file",
                                                         "forged_resume_tile")))
    write_result("fuzz", {
        "mutations_per_format": n,
        "targets": "0 crashes everywhere; 0 accepted_different for model_file, "
                   "network_bundle, resume_tile, run_record, sweep_record and "
                   "eval_batch_record (version 1 model files carry no checksum over their "
                   "header; forged files are made to differ)",
        "targets_met": met, **results})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
