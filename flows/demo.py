"""The end-to-end demo (``halut demo``, ``make demo``): a whole network on one chip.

1. Train (or load from ``$HALUT_CACHE/demo``) the zoo's ResNet-8 (``emulator.zoo``) on
   scikit-learn's bundled digits (8x8 images, 10 classes, no download), upsampled to 16x16,
   on CPU, seeded.
2. Replace **every** convolution and the classifier (10 layers) with Halut layers
   (``emulator.network.halutize``: BatchNorm folded first, every layer learned from the float
   network's activations on the training set).
3. Retrain them (``emulator.retrain.retrain``: the hardware's forward, straight-through
   gradients) on the training set, golden test accuracy before and after; save the bundle.
4. Test-set accuracy on ``float``, ``golden``, ``gpu`` and ``rtl`` (every layer on one chip,
   the default configuration; rtl on a subset when asked) and the per-layer trace
   (``emulator.network.evaluate_network``): NMSE against the float layer, gpu and rtl
   bit-exact with golden on every element, rtl cycles per image, network totals.
5. ``demo.json``, ``demo.png`` and ``net.halutnet`` in the output folder.
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

from emulator.cache import cache_dir
from learning.atomic import atomic_write_bytes, atomic_write_text, check_writable
from learning.errors import HalutError

DEMO_CACHE_VERSION = 2
#: the digits, upsampled from 8x8 (nearest): the ResNet's stages see 16, 8 and 4 pixels
IMAGE_SIZE = 16


@dataclass(frozen=True)
class DemoConfig:
    """Settings of one demo run (all validated)."""

    out: Path = Path("demo-out")
    fast: bool = False
    seed: int = 0
    epochs: int = 30
    width: int = 16
    K: int = 16
    threshold_format: str = "fp16"
    lut_format: str = "int8"
    max_rows: int = 20000
    schedule: str = "parallel"
    #: test images run on the RTL (None: the whole test set)
    rtl_images: int | None = None
    #: test images run on the gpu backend (the Triton interpreter on CPU: ~0.5 s per image
    #: for the ten layers); None: as many as the RTL runs
    gpu_images: int | None = 64
    #: test images in fast mode (every backend)
    fast_images: int = 48
    #: retraining epochs (None: RetrainConfig's default; 0: no retraining); fast mode: one
    #: epoch on the first ``fast_retrain_images`` training images
    retrain_epochs: int | None = None
    fast_retrain_images: int = 256
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
        for name in ("rtl_images", "gpu_images"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise HalutError(f"demo {name} must be >= 1, got {v}")
        if self.retrain_epochs is not None and int(self.retrain_epochs) < 0:
            raise HalutError(f"demo retrain_epochs must be >= 0, got {self.retrain_epochs}")


def load_digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as (N, 1, 16, 16) float32 in [0, 1] (8x8 upsampled by pixel repetition), split
    75/25 with a seeded permutation. Returns X_train, y_train, X_test, y_test (int64)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    X = np.ascontiguousarray(X.repeat(2, axis=2).repeat(2, axis=3))
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = len(y) // 4
    te, tr = perm[:n_test], perm[n_test:]
    return X[tr], y[tr], X[te], y[te]


def make_net(cfg: DemoConfig) -> nn.Module:
    from emulator.zoo import resnet8

    torch.manual_seed(cfg.seed)
    return resnet8(in_channels=1, num_classes=10, image_size=IMAGE_SIZE, width=cfg.width)


def train_net(X: np.ndarray, y: np.ndarray, cfg: DemoConfig) -> tuple[nn.Module, dict[str, Any]]:
    """Train the ResNet-8 (Adam, cross-entropy, seeded) or load it from the cache."""
    epochs = max(1, cfg.epochs // 4) if cfg.fast else cfg.epochs
    tag = hashlib.sha256(json.dumps([DEMO_CACHE_VERSION, cfg.seed, epochs, cfg.width,
                                     torch.__version__]).encode()).hexdigest()[:16]
    path = cache_dir("demo") / f"digits_resnet8_{tag}.pt"
    net = make_net(cfg)
    if cfg.use_cache and path.exists():
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
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


def codebook_plan(net: nn.Module) -> dict[str, int]:
    """C per layer: two codebooks per input channel of a 3x3 conv (D/C = 4.5), one per
    channel for the first conv (D = 9), one per two channels of a 1x1 shortcut and four
    features per codebook for the classifier."""
    plan: dict[str, int] = {}
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            cin = m.in_channels // m.groups
            plan[name] = cin * k if cin == 1 else (2 * cin if k > 1 else max(1, cin // 2))
        elif isinstance(m, nn.Linear):
            plan[name] = max(1, m.in_features // 4)
    return plan


@dataclass
class DemoReport:
    config: dict[str, Any]
    training: dict[str, Any]
    test_images: int
    rtl_images: int
    gpu_images: int
    accuracy: dict[str, float]
    retraining: dict[str, Any]
    bit_identical: dict[str, bool]
    layers: list[dict[str, Any]]
    totals: dict[str, Any]
    seconds: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_out_dir(out: Path) -> None:
    """Create the output folder ``out`` and check that files can be written there, or raise
    one HalutError line (a path through a file, a read-only folder, ...)."""
    if out.exists() and not out.is_dir():
        raise HalutError(f"demo output {out} is a file, not a folder")
    check_writable(out / "demo.json", "demo output")
    out.mkdir(parents=True, exist_ok=True)


def _retrain(hnet: nn.Module, Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray,
             yte: np.ndarray, cfg: DemoConfig, secs: dict[str, float]) -> dict[str, Any]:
    """Retrain the Halut layers in place (unless ``retrain_epochs`` is 0): golden test
    accuracy before and after, the epochs' history."""
    from emulator.network import evaluate_network
    from emulator.retrain import RetrainConfig, retrain

    def golden_accuracy() -> float:
        ev = evaluate_network(hnet, Xte, yte, backends=("golden",), batch_size=512)
        return float(ev["totals"]["accuracy"]["golden"])

    before = golden_accuracy()
    epochs = RetrainConfig().epochs if cfg.retrain_epochs is None else int(cfg.retrain_epochs)
    if cfg.fast:
        epochs = min(epochs, 1)
        Xtr, ytr = Xtr[:cfg.fast_retrain_images], ytr[:cfg.fast_retrain_images]
    if epochs == 0:
        return {"epochs": 0, "golden_before": before, "golden_after": before}
    t0 = time.perf_counter()
    hist: list[dict[str, Any]] = []
    retrain(hnet, (Xtr, ytr), RetrainConfig(epochs=epochs, seed=cfg.seed), history=hist,
            progress=cfg.progress)
    secs["retrain"] = round(time.perf_counter() - t0, 2)
    return {"epochs": epochs, "train_images": int(len(ytr)), "golden_before": before,
            "golden_after": golden_accuracy(), "history": hist}


def run_demo(cfg: DemoConfig) -> DemoReport:
    """The whole demo; writes ``demo.json``, ``demo.png`` and ``net.halutnet`` to
    ``cfg.out``."""
    from emulator.network import (
        NetConfig,
        evaluate_network,
        halutize,
        model_checksum,
        plot_trace,
        save_network,
    )
    from emulator.retrain import float_state

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
    source = model_checksum(net)

    t0 = time.perf_counter()
    batches = [torch.from_numpy(Xtr[i:i + 256]) for i in range(0, len(Xtr), 256)]
    ncfg = NetConfig(K=cfg.K, threshold_format=cfg.threshold_format, lut_format=cfg.lut_format,
                     overrides=codebook_plan(net), rows=cfg.max_rows,
                     schedule=cfg.schedule, seed=cfg.seed)  # type: ignore[arg-type]
    learned: dict[str, Any] = {}
    hnet = halutize(net, batches, ncfg, report=learned)
    secs["learn"] = round(time.perf_counter() - t0, 2)
    retraining = _retrain(hnet, Xtr, ytr, Xte, yte, cfg, secs)
    bundle = save_network(cfg.out / "net.halutnet", hnet, source=source, config=ncfg,
                          floats=float_state(hnet) or None)

    n_rtl = len(yte) if cfg.rtl_images is None else min(len(yte), int(cfg.rtl_images))
    n_gpu = n_rtl if cfg.gpu_images is None else min(len(yte), int(cfg.gpu_images), n_rtl)
    t0 = time.perf_counter()
    ev = evaluate_network(hnet, Xte, yte, backends=("float", "golden", "gpu", "rtl"),
                          rtl_images=n_rtl, gpu_images=n_gpu, progress=cfg.progress)
    secs["evaluate"] = round(time.perf_counter() - t0, 2)
    for row in ev["layers"]:
        row["nmse_train"] = learned[row["layer"]].get("nmse_train")
    report = DemoReport(
        config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        training={**training, "train_images": int(len(ytr)), "folded": learned.get("_fold")},
        test_images=int(len(yte)), rtl_images=int(n_rtl), gpu_images=int(n_gpu),
        accuracy=ev["totals"]["accuracy"], retraining=retraining,
        bit_identical={"gpu_vs_golden": all(r["gpu_bit_exact"] for r in ev["layers"]),
                       "rtl_vs_golden": all(r["rtl_bit_exact"] for r in ev["layers"])},
        layers=ev["layers"], totals=ev["totals"], seconds=secs)
    png, js = cfg.out / "demo.png", cfg.out / "demo.json"
    plot_trace(ev, png)
    report.files = {"plot": str(png), "json": str(js), "bundle": str(bundle)}
    report.seconds["total"] = round(time.perf_counter() - t_all, 2)
    atomic_write_text(js, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def format_report(r: DemoReport) -> str:
    """A human summary of the demo: the trace table and the totals."""
    from emulator.network import format_trace

    how = "loaded from cache" if r.training["cached"] else "trained"
    lines = [f"ResNet-8 on digits (16x16): {r.training['train_images']} training images, "
             f"{r.test_images} test images (rtl on {r.rtl_images}, gpu on {r.gpu_images}); "
             f"net {how}; "
             f"{len(r.layers)} layers replaced on one chip", ""]
    lines += format_trace({"layers": r.layers, "totals": r.totals})
    rt = r.retraining
    if rt.get("epochs"):
        lines.append(f"retraining ({rt['epochs']} epochs, {r.seconds.get('retrain', 0):.1f} s): "
                     f"golden {100 * rt['golden_before']:.2f} % -> "
                     f"{100 * rt['golden_after']:.2f} % (float "
                     f"{100 * r.accuracy.get('float', 0.0):.2f} %)")
    lines += ["bit-identical with golden on every layer: " + ", ".join(
        f"{k.split('_')[0]}: {'yes' if v else 'NO'}" for k, v in r.bit_identical.items()),
        f"files: {r.files.get('plot')}, {r.files.get('json')}, {r.files.get('bundle')}",
        f"time: {r.seconds.get('total', 0):.1f} s"]
    return "\n".join(lines)
