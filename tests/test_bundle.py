"""The network bundle (learning/bundle.py): round trip (with and without trained floats),
every kind of damage is one HalutError line naming the file (a seeded fuzz included), and the
floats travel through save_network/apply_network."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from emulator.network import NetConfig, apply_network, halutize, model_checksum, save_network
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


def _floats() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {"fc.weight": rng.standard_normal((4, 3)).astype(np.float32),
            "bn.running_mean": rng.standard_normal(8),
            "half": rng.standard_normal(5).astype(np.float16),
            "bn.num_batches_tracked": np.array(7, np.int64)}


def _bundle(floats: bool = False) -> NetworkBundle:
    rng = np.random.default_rng(0)
    layers = (
        BundleLayer("features.0", "conv2d", (_unit(rng, 3, 4, 9),),
                    {"in_channels": 1, "kernel_size": [3, 3], "groups": 1}),
        BundleLayer("features.3", "conv2d", (_unit(rng, 2, 2, 9), _unit(rng, 2, 2, 9)),
                    {"in_channels": 2, "kernel_size": [3, 3], "groups": 2}),
        BundleLayer("classifier", "linear", (_unit(rng, 4, 10, 16),)),
    )
    src = source_checksum({"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    return NetworkBundle(layers=layers, source=src, config={"C": 3, "K": 4},
                         floats=_floats() if floats else {})


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
    if list(a.floats) != list(b.floats) or any(
            a.floats[k].dtype != b.floats[k].dtype or a.floats[k].shape != b.floats[k].shape
            or a.floats[k].tobytes() != b.floats[k].tobytes() for k in a.floats):
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


def test_floats_round_trip_and_a_bundle_without_them_is_as_before(tmp_path: Path) -> None:
    b = _bundle(floats=True)
    got = load_bundle(save_bundle(tmp_path / "f.halutnet", b), source=b.source)
    assert _same(b, got) and list(got.floats) == list(_floats())
    assert [f["dtype"] for f in got.header["floats"]] == ["float32", "float64", "float16",
                                                          "int64"]
    assert got.floats["bn.num_batches_tracked"].shape == ()
    plain = load_bundle(save_bundle(tmp_path / "p.halutnet", _bundle()))
    assert plain.floats == {} and "floats" not in plain.header
    with np.load(tmp_path / "p.halutnet") as npz:
        assert sorted(npz.files) == ["header", *(f"unit_{i}" for i in range(4))]
    # big-endian input is stored in native order, as its dtype name says
    be = dataclasses.replace(b, floats={"x": np.arange(3, dtype=">f4")})
    x = load_bundle(save_bundle(tmp_path / "be.halutnet", be)).floats["x"]
    assert x.dtype == np.dtype(np.float32) and x.tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(("floats", "message"), [
    ({"w": np.array([1.0, np.nan], np.float32)}, "'w' holds NaN or infinite"),
    ({"w": np.array([np.inf])}, "'w' holds NaN or infinite"),
    ({"w": np.zeros(2, np.int32)}, "'w' has dtype int32, not one of"),
    ({"w": np.zeros(2, bool)}, "has dtype bool"),
    ({"": np.zeros(2)}, "needs a name"),
    ({3: np.zeros(2)}, "needs a name"),
    ({"w": [1.0, 2.0]}, "is a list, not a numpy array"),
])
def test_bad_floats_are_refused_at_save(tmp_path: Path, floats: dict, message: str) -> None:
    with pytest.raises(HalutError, match=message):
        save_bundle(tmp_path / "x.halutnet", dataclasses.replace(_bundle(), floats=floats))
    assert not (tmp_path / "x.halutnet").exists()


def _rewrite(path: Path, edit: object) -> None:
    """Rewrite the bundle's arrays through ``edit(arrays)`` (the checksum untouched)."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)  # type: ignore[operator]
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _rewrite_header(path: Path, edit: object) -> None:
    """Rewrite the bundle's header JSON through ``edit(header)`` (the checksum untouched)."""
    def put(arrays: dict[str, np.ndarray]) -> None:
        header = json.loads(arrays["header"].tobytes())
        edit(header)  # type: ignore[operator]
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    _rewrite(path, put)


def _set_float(arrays: dict[str, np.ndarray], name: str, value: np.ndarray) -> None:
    arrays[name] = value


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
    # the optional floats
    (lambda p: _rewrite(p, lambda a: a.pop("float_2")), r"missing \['float_2'\]"),
    (lambda p: _rewrite(p, lambda a: _set_float(a, "float_4", np.zeros(2))),
     r"unexpected \['float_4'\]"),
    (lambda p: _rewrite(p, lambda a: _set_float(a, "float_0", a["float_0"].astype(np.float64))),
     "'fc.weight' is float64 \\[4, 3\\] in the archive, float32"),
    (lambda p: _rewrite(p, lambda a: _set_float(a, "float_0", a["float_0"].reshape(3, 4))),
     r"'fc.weight' is float32 \[3, 4\] in the archive, float32 \[4, 3\] in its header"),
    (lambda p: _rewrite(p, lambda a: _set_float(a, "float_0", a["float_0"] + 1)),
     "checksum mismatch"),
    (lambda p: _rewrite(p, lambda a: _set_float(a, "float_2", np.full(5, np.nan, np.float16))),
     "checksum mismatch"),
    (lambda p: _rewrite_header(p, lambda h: h["floats"].pop()), r"unexpected \['float_3'\]"),
    (lambda p: _rewrite_header(p, lambda h: h["floats"][1].update(name="fc.weight")),
     "'fc.weight' is listed twice"),
    (lambda p: _rewrite_header(p, lambda h: h["floats"][0].update(shape=[4, True])),
     "float entry 0 of the header is malformed"),
    (lambda p: _rewrite_header(p, lambda h: h["floats"][3].update(dtype="int32")),
     "float entry 3 of the header is malformed"),
    (lambda p: _rewrite_header(p, lambda h: h.update(floats=[])), "'floats' is not a list"),
    (lambda p: _rewrite_header(p, lambda h: h.update(floats={})), "'floats' is not a list"),
])
def test_damage_is_one_line_naming_the_file(tmp_path: Path, damage: object,
                                            message: str) -> None:
    path = save_bundle(tmp_path / "net.halutnet", _bundle(floats=True))
    damage(path)  # type: ignore[operator]
    with pytest.raises(HalutError, match=message) as exc:
        load_bundle(path)
    text = str(exc.value)
    assert "\n" not in text and "net.halutnet" in text and len(text) < 400


@pytest.mark.parametrize("floats", [False, True])
def test_seeded_fuzz_never_crashes_and_never_accepts_changed_bytes(tmp_path: Path,
                                                                   floats: bool) -> None:
    """300 mutations (bit flips, byte overwrites, truncations, insertions, deletions): each is
    refused with one HalutError line, or loads to exactly the bundle that was written."""
    good = save_bundle(tmp_path / "good.halutnet", _bundle(floats)).read_bytes()
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


def test_a_nan_written_with_a_matching_checksum_is_refused_on_load(tmp_path: Path) -> None:
    path = save_bundle(tmp_path / "net.halutnet", _bundle(floats=True))
    from learning import bundle as mod

    def forge(arrays: dict[str, np.ndarray]) -> None:
        arrays["float_1"] = np.full(8, np.nan)
        header = json.loads(arrays["header"].tobytes())
        units = [arrays[f"unit_{i}"].tobytes() for i in range(4)]
        header["checksum"] = mod._digest(header, units, [arrays[f"float_{i}"] for i in range(4)])
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    _rewrite(path, forge)
    with pytest.raises(HalutError, match="net.halutnet.*'bn.running_mean' holds NaN"):
        load_bundle(path)


# ---- the floats through emulator.network ---------------------------------------------------


def _last(net: nn.Module) -> nn.Linear:
    lin = net.get_submodule("2")
    assert isinstance(lin, nn.Linear)
    return lin


def _mlp_and_batches() -> tuple[nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    return model, [torch.randn(64, 8, generator=g) for _ in range(3)]


def test_trained_floats_travel_through_save_and_apply_network(tmp_path: Path) -> None:
    model, batches = _mlp_and_batches()
    fresh, src = copy.deepcopy(model), model_checksum(model)
    cfg = NetConfig(C=2, K=4)
    net = halutize(model, batches, cfg, filter_fn=lambda m, n: n == "0")
    with torch.no_grad():  # what retraining does to a layer that stays in float
        _last(net).weight.mul_(1.5).add_(0.25)
        _last(net).bias.sub_(1.0)
    path = save_network(tmp_path / "net.halutnet", net, source=src, config=cfg,
                        floats={"2.weight": _last(net).weight, "2.bias": _last(net).bias})
    assert list(load_bundle(path).floats) == ["2.weight", "2.bias"]
    again = apply_network(copy.deepcopy(fresh), path, backend="golden")
    x = batches[0]
    with torch.no_grad():
        np.testing.assert_array_equal(again(x).numpy(), net(x).numpy())
        assert not torch.equal(_last(fresh).weight, _last(again).weight)
    # without floats the float layer is the source's own
    plain = save_network(tmp_path / "plain.halutnet", net, source=src, config=cfg)
    assert "floats" not in load_bundle(plain).header
    with torch.no_grad():
        assert torch.equal(_last(apply_network(copy.deepcopy(fresh), plain)).weight,
                           _last(fresh).weight)


def test_floats_that_do_not_fit_the_model_are_one_line(tmp_path: Path) -> None:
    model, batches = _mlp_and_batches()
    fresh, src = copy.deepcopy(model), model_checksum(model)
    net = halutize(model, batches, NetConfig(C=2, K=4), filter_fn=lambda m, n: n == "0")
    with pytest.raises(HalutError, match="float '3.weight' is not a parameter or buffer"):
        save_network(tmp_path / "x.halutnet", net, source=src, floats={"3.weight": torch.ones(1)})
    with pytest.raises(HalutError, match=r"float '2.bias' has shape \(3,\), the model's \(4,\)"):
        save_network(tmp_path / "x.halutnet", net, source=src, floats={"2.bias": np.zeros(3)})
    with pytest.raises(HalutError, match="float '2.bias': "):
        save_network(tmp_path / "x.halutnet", net, source=src,
                     floats={"2.bias": torch.zeros(4, dtype=torch.bfloat16)})
    path = save_network(tmp_path / "net.halutnet", net, source=src,
                        floats={"2.bias": _last(net).bias})
    b = load_bundle(path)
    for floats, message in [({"3.weight": np.zeros(4, np.float32)},
                             "the bundle's float '3.weight' is not a parameter or buffer"),
                            ({"2.bias": np.zeros(5, np.float32)},
                             r"'2.bias' has shape \(5,\), the model's \(4,\)")]:
        with pytest.raises(HalutError, match=message) as exc:
            apply_network(copy.deepcopy(fresh), dataclasses.replace(b, floats=floats))
        assert "\n" not in str(exc.value)
