"""The end-to-end demo (``halut demo``, ``make demo``).

1. Train (or load from ``$HALUT_CACHE/demo``) a small CNN on scikit-learn's bundled digits
   (8x8 images, 10 classes, no download), on CPU, seeded.
2. Replace its second convolution and its classifier with Halut layers
   (``emulator.replace.replace_layers``, one layer after the other, inputs recorded
   on the training set; no retraining).
3. Test-set accuracy with the layers computed by ``float`` (the original network),
   ``maddness`` (learning's float MADDNESS), ``golden``, ``gpu`` and ``rtl`` (the Verilated
   accelerator; on a subset of the test set when asked), and a bit-for-bit check of the rtl
   and gpu logits against golden on the rows each ran.
4. Per layer: shapes, C, K, formats, NMSE on the test set and the RTL's cycle counts.
5. ``demo.json`` and ``demo.png`` (accuracy per backend, NMSE per layer) in the output dir.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from emulator.cache import cache_dir
from emulator.cycles import CycleReport
from emulator.modules import HALUT_MODULES
from emulator.replace import replace_layers
from learning.atomic import atomic_write_bytes, atomic_write_text, check_writable
from learning.datasets import nmse
from learning.errors import HalutError

DEMO_CACHE_VERSION = 1


class DigitsNet(nn.Module):
    """conv(1->16, 3x3) - ReLU - conv(16->16, 3x3) - ReLU - maxpool 2 - linear(256->10)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(width * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = self.pool(x)
        return self.fc(torch.flatten(x, 1))


@dataclass(frozen=True)
class DemoConfig:
    """Settings of one demo run (all validated)."""

    out: Path = Path("demo-out")
    fast: bool = False
    seed: int = 0
    epochs: int = 40
    width: int = 16
    K: int = 16
    threshold_format: str = "fp16"
    lut_format: str = "int8"
    max_rows: int = 20000
    #: test images run on the RTL (None: the whole test set)
    rtl_images: int | None = None
    #: test images in fast mode (every backend)
    fast_images: int = 48
    progress: bool = True
    use_cache: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        for name in ("epochs", "width", "max_rows", "fast_images"):
            if int(getattr(self, name)) < 1:
                raise HalutError(f"demo {name} must be >= 1, got {getattr(self, name)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise HalutError(f"demo seed must be an integer >= 0, got {self.seed!r}")
        if self.rtl_images is not None and int(self.rtl_images) < 1:
            raise HalutError(f"demo rtl_images must be >= 1, got {self.rtl_images}")


def _cache_dir() -> Path:
    return cache_dir("demo")


def load_digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as (N, 1, 8, 8) float32 in [0, 1], split 75/25 with a seeded permutation.

    Returns X_train, y_train, X_test, y_test (labels int64).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = len(y) // 4
    te, tr = perm[:n_test], perm[n_test:]
    return X[tr], y[tr], X[te], y[te]


def train_net(X: np.ndarray, y: np.ndarray, cfg: DemoConfig) -> tuple[DigitsNet, dict[str, Any]]:
    """Train DigitsNet (Adam, cross-entropy, seeded) or load it from the cache."""
    epochs = max(1, cfg.epochs // 4) if cfg.fast else cfg.epochs
    tag = hashlib.sha256(json.dumps([DEMO_CACHE_VERSION, cfg.seed, epochs, cfg.width,
                                     torch.__version__]).encode()).hexdigest()[:16]
    path = _cache_dir() / f"digits_cnn_{tag}.pt"
    torch.manual_seed(cfg.seed)
    net = DigitsNet(cfg.width)
    if cfg.use_cache and path.exists():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
            return net.eval(), {"cached": True, "path": str(path), "epochs": epochs,
                                "seconds": 0.0}
        except (RuntimeError, OSError, EOFError, KeyError, ValueError):
            pass  # a corrupt cache entry: train again and overwrite it
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(yt), generator=gen)
        for i in range(0, len(yt), 64):
            idx = order[i:i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    net.eval()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    if cfg.use_cache:
        atomic_write_bytes(path, buf.getvalue())
    return net, {"cached": False, "path": str(path), "epochs": epochs,
                 "seconds": round(time.perf_counter() - t0, 2)}


#: replaced layers in network order with their codebook counts C (K = cfg.K): the second
#: convolution gets two codebooks per input channel (D = 16*9 = 144, ~4.5 dims each), the
#: classifier 64 (D = 256, 4 dims each). Chosen by measurement (docs/demo.md).
LAYER_PLAN: tuple[tuple[str, int], ...] = (("conv2", 32), ("fc", 64))


def _logits(net: nn.Module, X: np.ndarray, backend: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Logits (N, 10) with every Halut layer on ``backend``; per-layer last results."""
    for m in net.modules():
        if isinstance(m, HALUT_MODULES):
            m.backend = backend
            m.last_result = None
    with torch.no_grad():
        out = net(torch.from_numpy(X)).numpy()
    results = {n: m.last_result for n, m in net.named_modules() if isinstance(m, HALUT_MODULES)}
    return out, results


def _layer_io(net: nn.Module, X: np.ndarray) -> dict[str, torch.Tensor]:
    """Inputs of every Halut layer when the network runs on its float layers."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for n, m in net.named_modules():
        if isinstance(m, HALUT_MODULES):
            m.backend = "float"

            def hook(mod: nn.Module, args: tuple[Any, ...], name: str = n) -> None:
                seen[name] = args[0].detach().clone()

            handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            net(torch.from_numpy(X))
    finally:
        for h in handles:
            h.remove()
    return seen


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    a32, b32 = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    return a32.shape == b32.shape and bool(np.array_equal(a32.view(np.uint32),
                                                          b32.view(np.uint32)))


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == y))


@dataclass
class DemoReport:
    config: dict[str, Any]
    training: dict[str, Any]
    test_images: int
    rtl_images: int
    accuracy: dict[str, float]
    accuracy_rtl_subset: dict[str, float]
    bit_identical: dict[str, bool]
    layers: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plot(report: DemoReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = list(report.accuracy)
    vals = [100 * report.accuracy[n] for n in names]
    bars = ax1.bar(names, vals, color=["#777777", "#4c72b0", "#55a868", "#c44e52", "#8172b2",
                                       "#ccb974"][:len(names)])
    for b, v in zip(bars, vals, strict=True):
        ax1.text(b.get_x() + b.get_width() / 2, v + 0.5, f"{v:.1f}", ha="center", fontsize=8)
    ax1.set_ylim(0, 105)
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title(f"digits CNN, {report.test_images} test images "
                  f"(rtl: {report.rtl_images})", fontsize=9)
    lnames = list(report.layers)
    ax2.bar(lnames, [report.layers[n]["nmse_test"] for n in lnames], color="#4c72b0")
    ax2.set_ylabel("NMSE vs float (test set)")
    ax2.set_title("per replaced layer (golden)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def check_out_dir(out: Path) -> None:
    """Create the output folder ``out`` and check that files can be written there, or raise
    one HalutError line (a path through a file, a read-only folder, ...)."""
    if out.exists() and not out.is_dir():
        raise HalutError(f"demo output folder {str(out)!r} is a file, not a folder")
    check_writable(out / "demo.json", "demo output")


def run_demo(cfg: DemoConfig) -> DemoReport:
    """The whole demo; writes ``demo.json`` and ``demo.png`` to ``cfg.out``."""
    t_all = time.perf_counter()
    check_out_dir(cfg.out)  # before minutes of training and runs, not after
    secs: dict[str, float] = {}
    # torch's optimizers import triton; with no GPU the Triton interpreter must be chosen
    # before that first import (emulator.gpu_kernels sets TRITON_INTERPRET when imported)
    from emulator.gpu import triton_kernels

    triton_kernels()
    Xtr, ytr, Xte, yte = load_digits_split(cfg.seed)
    if cfg.fast:
        Xte, yte = Xte[:cfg.fast_images], yte[:cfg.fast_images]
    net, training = train_net(Xtr, ytr, cfg)
    acc_float_net = _accuracy(net(torch.from_numpy(Xte)).detach().numpy(), yte)

    t0 = time.perf_counter()
    batches = [torch.from_numpy(Xtr[i:i + 256]) for i in range(0, len(Xtr), 256)]
    learn_report: dict[str, Any] = {}
    # one layer at a time, in network order: each later layer learns from the inputs the
    # already replaced layers (on golden) give it, so it compensates part of their error
    for name, C in LAYER_PLAN:
        replace_layers(net, batches, [name], C=C, K=cfg.K,
                       threshold_format=cfg.threshold_format, lut_format=cfg.lut_format,
                       max_rows=cfg.max_rows, seed=cfg.seed, backend="golden",
                       report=learn_report)
    secs["learn"] = round(time.perf_counter() - t0, 2)

    accuracy = {"float": acc_float_net}
    logits: dict[str, np.ndarray] = {}
    n_rtl = len(yte) if cfg.rtl_images is None else min(len(yte), int(cfg.rtl_images))
    rtl_results: dict[str, Any] = {}
    bar = tqdm(("maddness", "golden", "gpu", "rtl"), desc="demo backends", unit="backend",
               disable=not cfg.progress, leave=False)
    for backend in bar:
        bar.set_postfix_str(backend)
        X_b = Xte[:n_rtl] if backend == "rtl" else Xte
        t0 = time.perf_counter()
        logits[backend], results = _logits(net, X_b, backend)
        secs[backend] = round(time.perf_counter() - t0, 2)
        if backend == "rtl":
            rtl_results = results
    for backend in ("maddness", "golden", "gpu"):
        accuracy[backend] = _accuracy(logits[backend], yte)
    accuracy["rtl"] = _accuracy(logits["rtl"], yte[:n_rtl])
    float_logits, _ = _logits(net, Xte, "float")
    subset = {"float": _accuracy(float_logits[:n_rtl], yte[:n_rtl]),
              "golden": _accuracy(logits["golden"][:n_rtl], yte[:n_rtl]),
              "gpu": _accuracy(logits["gpu"][:n_rtl], yte[:n_rtl]),
              "rtl": accuracy["rtl"]}
    bit_identical = {"gpu_vs_golden": _bits_equal(logits["gpu"], logits["golden"]),
                     "rtl_vs_golden": _bits_equal(logits["rtl"], logits["golden"][:n_rtl])}

    inputs = _layer_io(net, Xte)
    layers: dict[str, dict[str, Any]] = {}
    for name, m in net.named_modules():
        if not isinstance(m, HALUT_MODULES):
            continue
        x = inputs[name]
        m.backend = "float"
        y_float = m(x).numpy()
        m.backend = "golden"
        y_golden = m(x).numpy()
        res = rtl_results[name]
        cyc: CycleReport | None = getattr(res, "cycles", None)
        entry: dict[str, Any] = {
            **learn_report[name], "input_shape": list(x.shape), "output_shape": list(y_float.shape),
            "nmse_test": nmse(y_golden.reshape(-1), y_float.reshape(-1)),
            "rtl_rows": int(getattr(res, "y", np.empty((0,))).shape[0]),
            "rtl_cycles": cyc.to_dict() if cyc else None,
            "rtl_column_tiles": len(getattr(res, "tiles", []) or []),
            "rtl_params": getattr(res, "info", {}).get("params"),
        }
        layers[name] = entry

    report = DemoReport(
        config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        training={**training, "train_images": int(len(ytr))},
        test_images=int(len(yte)), rtl_images=int(n_rtl), accuracy=accuracy,
        accuracy_rtl_subset=subset, bit_identical=bit_identical, layers=layers, seconds=secs)
    cfg.out.mkdir(parents=True, exist_ok=True)
    png, js = cfg.out / "demo.png", cfg.out / "demo.json"
    _plot(report, png)
    report.files = {"plot": str(png), "json": str(js)}
    report.seconds["total"] = round(time.perf_counter() - t_all, 2)
    atomic_write_text(js, json.dumps(report.to_dict(), indent=2, default=_json_default) + "\n")
    return report


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def format_report(r: DemoReport) -> str:
    """A human summary of the demo."""
    how = "loaded from cache" if r.training["cached"] else "trained"
    lines = [f"digits CNN: {r.training['train_images']} training images, {r.test_images} test "
             f"images (rtl on {r.rtl_images}); net {how}",
             "", "layer   kind    input -> output            D    M   C   K  formats      "
             "NMSE(test)  rtl cycles (config/stream/stall/drain = total)"]
    for name, e in r.layers.items():
        cyc = e["rtl_cycles"]
        cs = (f"{cyc['config']}/{cyc['stream']}/{cyc['stall']}/{cyc['drain']} = {cyc['total']}"
              if cyc else "-")
        shape = f"{tuple(e['input_shape'])}->{tuple(e['output_shape'])}"
        lines.append(f"{name:7s} {e['kind']:7s} {shape:26s} {e['D']:4d} {e['M']:4d} "
                     f"{e['C']:3d} {e['K']:3d}  {e['threshold_format']}/{e['lut_format']}"
                     f"   {e['nmse_test']:.4f}      {cs}")
    lines += ["", "backend    test accuracy"]
    for b, a in r.accuracy.items():
        note = f"  (first {r.rtl_images} images)" if b == "rtl" else ""
        lines.append(f"{b:10s} {100 * a:6.2f} %{note}")
    lines += ["", f"on the {r.rtl_images} rtl images: " + ", ".join(
        f"{b} {100 * a:.2f} %" for b, a in r.accuracy_rtl_subset.items()),
        "bit-identical logits: " + ", ".join(
        f"{k.replace('_vs_', ' vs ')}: {'yes' if v else 'NO'}" for k, v in r.bit_identical.items()),
        f"files: {r.files.get('plot')}, {r.files.get('json')}",
        f"time: {r.seconds.get('total', 0):.1f} s"]
    return "\n".join(lines)
