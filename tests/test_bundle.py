"""The network bundle (learning/bundle.py): round trip, and every kind of damage is one
HalutError line naming the file (a seeded fuzz included)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emulator.vectors import random_program
from learning.bundle import (
    BundleLayer,
    NetworkBundle,
    load_bundle,
    save_bundle,
    source_checksum,
)
from learning.errors import HalutError
from learning.model import HalutModel
from learning.modelfile import SavedModel


def _unit(rng: np.random.Generator, C: int, M: int, D: int) -> SavedModel:
    program = random_program(rng, C, 4, M, D)
    model = HalutModel(dims=program.dims, thresholds=program.thresholds.astype(np.float32),
                       lut=program.lut.astype(np.float32), bias=program.bias, D=D)
    return SavedModel(model=model, program=program)


def _bundle() -> NetworkBundle:
    rng = np.random.default_rng(0)
    layers = (
        BundleLayer("features.0", "conv2d", (_unit(rng, 3, 4, 9),),
                    {"in_channels": 1, "kernel_size": [3, 3], "groups": 1}),
        BundleLayer("features.3", "conv2d", (_unit(rng, 2, 2, 9), _unit(rng, 2, 2, 9)),
                    {"in_channels": 2, "kernel_size": [3, 3], "groups": 2}),
        BundleLayer("classifier", "linear", (_unit(rng, 4, 10, 16),)),
    )
    src = source_checksum({"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    return NetworkBundle(layers=layers, source=src, config={"C": 3, "K": 4})


def _same(a: NetworkBundle, b: NetworkBundle) -> bool:
    if [(x.name, x.kind, x.geometry, len(x.units)) for x in a.layers] != [
            (x.name, x.kind, x.geometry, len(x.units)) for x in b.layers]:
        return False
    for x, y in zip(a.layers, b.layers, strict=True):
        for u, v in zip(x.units, y.units, strict=True):
            for name in ("dims", "thresholds", "lut", "scale", "bias"):
                p, q = getattr(u.program, name), getattr(v.program, name)
                if p.dtype != q.dtype or p.tobytes() != q.tobytes():
                    return False
            if u.program.input_scale != v.program.input_scale:  # type: ignore[union-attr]
                return False
    return a.source == b.source and a.config == b.config


def test_round_trip_and_the_source_check(tmp_path: Path) -> None:
    b = _bundle()
    path = save_bundle(tmp_path / "net.halutnet", b)
    got = load_bundle(path, source=b.source)
    assert _same(b, got)
    assert got.layer("features.3").geometry["groups"] == 2
    assert len(got.layer("features.3").units) == 2
    with pytest.raises(HalutError, match="no layer 'nope'"):
        got.layer("nope")
    with pytest.raises(HalutError, match="learned from another model"):
        load_bundle(path, source=source_checksum({"w": np.zeros(2, np.float32)}))


def _rewrite_header(path: Path, edit: object) -> None:
    """Rewrite the bundle's header JSON through ``edit(header)`` (the checksum untouched)."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["header"].tobytes())
    edit(header)  # type: ignore[operator]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda p: p.write_bytes(b"not a zip"), "not a zip archive"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\0" * 7), "bytes after"),
    (lambda p: p.write_bytes(b"junk" + p.read_bytes()), "bytes before"),
    (lambda p: p.write_bytes(p.read_bytes() * 2), "second archive"),
    (lambda p: _rewrite_header(p, lambda h: h["config"].update(C=4)), "checksum mismatch"),
    (lambda p: _rewrite_header(p, lambda h: h.update(format_version=True)), "version True"),
    (lambda p: _rewrite_header(p, lambda h: h.update(format_version=1.0)), "version 1.0"),
    (lambda p: _rewrite_header(p, lambda h: h["layers"].pop()), "do not match its header"),
    (lambda p: _rewrite_header(p, lambda h: h.update(config=[[[[1]]]] * 1)), "'config'"),
    (lambda p: _rewrite_header(p, lambda h: h.update(source=json.loads("[" * 60 + "]" * 60))),
     "nested too deeply"),
    (lambda p: _rewrite_header(p, lambda h: h.update(format="halut-model")), "not a halut net"),
])
def test_damage_is_one_line_naming_the_file(tmp_path: Path, damage: object,
                                            message: str) -> None:
    path = save_bundle(tmp_path / "net.halutnet", _bundle())
    damage(path)  # type: ignore[operator]
    with pytest.raises(HalutError, match=message) as exc:
        load_bundle(path)
    text = str(exc.value)
    assert "\n" not in text and "net.halutnet" in text and len(text) < 400


def test_seeded_fuzz_never_crashes_and_never_accepts_changed_bytes(tmp_path: Path) -> None:
    """300 mutations (bit flips, byte overwrites, truncations, insertions, deletions): each is
    refused with one HalutError line, or loads to exactly the bundle that was written."""
    good = save_bundle(tmp_path / "good.halutnet", _bundle()).read_bytes()
    want = load_bundle(tmp_path / "good.halutnet")
    rng = np.random.default_rng(1234)
    bad = tmp_path / "bad.halutnet"
    refused = accepted = 0
    for _ in range(300):
        data = bytearray(good)
        op = rng.integers(0, 5)
        i = int(rng.integers(0, len(data)))
        if op == 0:
            data[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:
            data[i:i + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        elif op == 2:
            data = data[:i]
        elif op == 3:
            data[i:i] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        else:
            del data[i:i + int(rng.integers(1, 9))]
        bad.write_bytes(bytes(data))
        try:
            got = load_bundle(bad)
        except HalutError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 400
            refused += 1
            continue
        assert _same(want, got), f"mutation {op} at {i} was accepted with different contents"
        accepted += 1
    assert refused > 250
