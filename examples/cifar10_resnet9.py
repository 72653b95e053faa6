#!/usr/bin/env python
"""ResNet-9 on CIFAR-10 with every layer replaced by MADDNESS, retrained: halutmatmul's recipe.

halutmatmul (github.com/joennlae/halutmatmul) reports 92.5-92.6 % on CIFAR-10's test set
for the DAWNBench ResNet-9 with all of its layers replaced and retrained (the float net is
around 93-94 %). This script runs that recipe end to end, on CPU unless ``--device cuda``
(which only the float training uses):

1. load CIFAR-10 from its python batches (``--data cifar-10-batches-py``, read with
   :func:`emulator.datasets.load_cifar10`), or write a small learnable stand-in in exactly
   that format to a temporary folder and read it back the same way (``--synthetic N``);
   optionally downscale (``--image-size``, area average) and normalize per channel;
2. train the float ResNet-9 (``zoo:resnet9``: SGD with Nesterov momentum, a one-cycle
   learning rate, label smoothing, random crops and flips; or Adam), or load its weights
   (``--load-float``); float test accuracy;
3. halutize every conv and the linear (:func:`emulator.network.halutize`: BatchNorm folded,
   each layer learned from the float network's activations on ``--calib-images`` training
   images); golden test accuracy before retraining;
4. retrain the Halut layers (:func:`emulator.retrain.retrain`); golden test accuracy after;
5. write the bundle (``-o``), the float weights (``--save-float``) and the figures
   (``--json``).

The defaults are the full-size recipe (real CIFAR-10, Page's width-64 network, 24 float
epochs, one codebook per input channel of each 3x3 conv as halutmatmul, K=16, 4 retraining
epochs). A quick check on the synthetic stand-in, about 15 s on 2 cores::

    python examples/cifar10_resnet9.py --synthetic 1024 --width 8 --image-size 16 \\
        --float-epochs 6 --batch-size 64 --rows 4000 --calib-images 256 \\
        --retrain-epochs 2 --threads 1 -o /tmp/r9.halutnet --json /tmp/r9.json

See docs/zoo-cifar.md.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script from a checkout: the repository on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learning.errors import HalutError  # noqa: E402

#: the folder name of CIFAR-10's python batches once cifar-10-python.tar.gz is unpacked
DEFAULT_DATA = "cifar-10-batches-py"


# ---- data ------------------------------------------------------------------------------------

def write_synthetic_cifar(folder: str | Path, n_train: int, n_test: int, seed: int = 0,
                          noise: float = 128.0) -> Path:
    """A learnable stand-in for CIFAR-10 in its exact python format, written to ``folder``.

    Every class has a smooth random colour pattern (a 4x4 random image per channel,
    upsampled bilinearly to 32x32); an image is its class's pattern, shifted by up to 3
    pixels (rolled), at a random contrast, plus Gaussian noise, as uint8. The training
    images are split over ``data_batch_1`` ... ``data_batch_5`` (each batch gets at least one
    image; fewer batches when ``n_train < 5``) and the test images go to ``test_batch``:
    pickles (protocol 2) of ``{b'batch_label', b'labels', b'data' (N, 3072) uint8 with the
    1024 red, 1024 green, 1024 blue values of each image row-major, b'filenames'}`` as the
    CIFAR authors wrote them, plus ``batches.meta``. Returns ``folder``.
    """
    if n_train < 1 or n_test < 1:
        raise HalutError(f"the synthetic stand-in needs at least one training and one test "
                         f"image, got {n_train} and {n_test}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(-1.0, 1.0, size=(10, 3, 4, 4)).astype(np.float32))
    patterns = F.interpolate(coarse, size=(32, 32), mode="bilinear",
                             align_corners=False).numpy()  # (10, 3, 32, 32) in [-1, 1]

    def images(n: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.integers(0, 10, size=n)
        x = patterns[labels]
        shifts = rng.integers(-3, 4, size=(n, 2))
        x = np.stack([np.roll(img, (int(dy), int(dx)), axis=(1, 2))
                      for img, (dy, dx) in zip(x, shifts, strict=True)])
        contrast = rng.uniform(50.0, 90.0, size=(n, 1, 1, 1))
        x = 128.0 + contrast * x + rng.normal(0.0, noise, size=x.shape)
        data = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(n, 3072)
        return data, [int(v) for v in labels]

    def dump(name: str, label: str, data: np.ndarray, labels: list[int], first: int) -> None:
        batch = {b"batch_label": label.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"synthetic_{first + i:05d}.png".encode()
                                for i in range(len(labels))]}
        with open(out / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)

    n_batches = min(5, n_train)
    bounds = np.linspace(0, n_train, n_batches + 1).astype(int)
    data, labels = images(n_train)
    for b in range(n_batches):
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        dump(f"data_batch_{b + 1}", f"training batch {b + 1} of 5", data[lo:hi],
             labels[lo:hi], lo)
    data, labels = images(n_test)
    dump("test_batch", "testing batch 1 of 1", data, labels, n_train)
    from emulator.datasets import CIFAR10_CLASSES

    with open(out / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES],
                     b"num_cases_per_batch": int(bounds[1]), b"num_vis": 3072}, fh, protocol=2)
    return out


def downscale(X: np.ndarray, size: int) -> np.ndarray:
    """(N, C, 32, 32) images averaged down to (N, C, size, size) (area interpolation)."""
    if size == X.shape[-1]:
        return X
    out = F.interpolate(torch.from_numpy(X), size=(size, size), mode="area")
    return np.ascontiguousarray(out.numpy())


def channel_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of NCHW images, shaped (1, C, 1, 1)."""
    mean = X.mean(axis=(0, 2, 3), dtype=np.float64).reshape(1, -1, 1, 1)
    std = X.std(axis=(0, 2, 3), dtype=np.float64).reshape(1, -1, 1, 1)
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def augment(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random crops (``pad`` pixels of reflection padding each side) and horizontal flips,
    one draw per image."""
    n, _, h, w = x.shape
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]  # (n, 1, h, 1)
        cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :]  # (n, 1, 1, w)
        idx = torch.arange(n)[:, None, None, None]
        ch = torch.arange(x.shape[1])[None, :, None, None]
        x = xp[idx, ch, rows, cols]
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


# ---- float training and accuracy -------------------------------------------------------------

def accuracy(net: nn.Module, X: np.ndarray, y: np.ndarray, batch_size: int = 256,
             device: str = "cpu") -> float:
    """Top-1 accuracy of ``net`` (eval mode, no grad; Halut layers run their backend)."""
    net.eval()
    hits = 0
    with torch.no_grad():
        for lo in range(0, X.shape[0], batch_size):
            xb = torch.from_numpy(X[lo:lo + batch_size]).to(device)
            pred = net(xb).argmax(-1).cpu().numpy()
            hits += int((pred == y[lo:lo + batch_size]).sum())
    return hits / max(1, X.shape[0])


def one_cycle(step: int, total: int, peak: float, warmup: float = 5 / 24) -> float:
    """Page's piecewise-linear schedule: 0 -> ``peak`` over the first ``warmup`` of the
    steps, then linearly back to 0."""
    up = max(1, round(total * warmup))
    if step < up:
        return peak * (step + 1) / up
    return peak * max(0.0, (total - step) / max(1, total - up))


def float_lr(args: argparse.Namespace) -> float:
    """``--float-lr``, or its default: SGD 0.4 (Page's, with the 0.125 logit scale), 0.1 for
    the halutmatmul variant (no scale: 0.4 does not train there), Adam 3e-3."""
    if args.float_lr is not None:
        return float(args.float_lr)
    if args.optimizer == "adam":
        return 3e-3
    return 0.4 if args.variant == "page" else 0.1


def train_float(net: nn.Module, X: np.ndarray, y: np.ndarray, args: argparse.Namespace,
                device: str) -> list[dict[str, Any]]:
    """Train ``net`` in place (SGD Nesterov + one-cycle, or Adam + cosine; label smoothing;
    crops and flips unless ``--no-augment``). Returns one record per epoch."""
    gen = torch.Generator().manual_seed(args.seed)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    net.to(device)
    lr = float_lr(args)
    opt: torch.optim.Optimizer
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True,
                              weight_decay=args.weight_decay)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=args.weight_decay)
    n = Xt.shape[0]
    steps = -(-n // args.batch_size)
    total = args.float_epochs * steps
    pad = max(1, round(4 * X.shape[-1] / 32))  # 4 pixels at 32x32
    history = []
    for epoch in range(args.float_epochs):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(n, generator=gen)
        loss_sum, hits = 0.0, 0
        for i, lo in enumerate(range(0, n, args.batch_size)):
            idx = order[lo:lo + args.batch_size]
            xb = Xt[idx]
            if args.augment:
                xb = augment(xb, pad, gen)
            xb, yb = xb.to(device), yt[idx].to(device)
            step = epoch * steps + i
            for g in opt.param_groups:
                g["lr"] = (one_cycle(step, total, lr) if args.optimizer == "sgd"
                           else lr * 0.5 * (1 + math.cos(math.pi * step / total)))
            out = net(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            hits += int((out.detach().argmax(-1) == yb).sum())
        rec = {"epoch": epoch, "loss": loss_sum / n, "train_accuracy": hits / n,
               "seconds": round(time.perf_counter() - t0, 2)}
        history.append(rec)
        if args.progress:
            print(f"float epoch {epoch + 1}/{args.float_epochs}: loss {rec['loss']:.4f}, "
                  f"train accuracy {rec['train_accuracy']:.4f} ({rec['seconds']} s)",
                  flush=True)
    net.to("cpu").eval()
    return history


# ---- codebooks -------------------------------------------------------------------------------

def codebooks(model: nn.Module, C: str, min_dims: int) -> dict[str, int]:
    """C per conv/linear layer.

    * ``channel`` (halutmatmul's rule): one codebook per input channel of a 3x3 conv (its
      D / 9; D / C = 9), at least ``min_dims`` dims per codebook for other convs and
      ``min(16, D // min_dims)`` for the linear;
    * ``plan`` (:func:`flows.demo.codebook_plan`): two codebooks per input channel of a 3x3
      conv (D / C = 4.5), four features per codebook of the linear;
    * a number: that C for every layer, capped so that every codebook spans at least
      ``min_dims`` of the layer's D input dims (ResNet-9's first conv has D = 27: 6
      codebooks with the default 4).
    """
    if C == "plan":
        from flows.demo import codebook_plan

        return {k: max(1, min(v, 1024)) for k, v in codebook_plan(model).items()}
    plan: dict[str, int] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            taps = m.kernel_size[0] * m.kernel_size[1]
            D = m.in_channels // m.groups * taps
        elif isinstance(m, nn.Linear):
            taps, D = 1, m.in_features
        else:
            continue
        cap = max(1, D // min_dims)
        if C == "channel":
            plan[name] = (D // taps if isinstance(m, nn.Conv2d) and taps >= min_dims
                          else cap if isinstance(m, nn.Conv2d) else min(16, cap))
        else:
            plan[name] = min(int(C), cap)
    return plan


# ---- the recipe ------------------------------------------------------------------------------

def _c_arg(v: str) -> str:
    if v in ("plan", "channel"):
        return v
    try:
        if int(v) >= 1:
            return str(int(v))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"C must be a positive integer, 'channel' or 'plan', "
                                     f"got {v!r}")


def _positive(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v!r}")
    return n


def _count(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {v!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cifar10_resnet9.py",
        description="halutmatmul's recipe: train ResNet-9 on CIFAR-10, replace every conv "
                    "and the linear by MADDNESS (Halut) layers, retrain them, and report "
                    "float / before / after test accuracy. Defaults: the full-size recipe.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data", default=DEFAULT_DATA, metavar="DIR",
                   help="CIFAR-10's python batches (data_batch_1..5, test_batch), the folder "
                        "cifar-10-python.tar.gz unpacks to")
    d.add_argument("--synthetic", type=_positive, default=None, metavar="N",
                   help="instead of --data: write a learnable stand-in with N training and "
                        "N/4 test images in CIFAR-10's python format to a temporary folder "
                        "and load it from there")
    d.add_argument("--train-images", type=_count, default=0, metavar="N",
                   help="use the first N training images (0: all)")
    d.add_argument("--test-images", type=_count, default=0, metavar="N",
                   help="evaluate on the first N test images (0: all)")
    d.add_argument("--image-size", type=_positive, default=32,
                   help="downscale the 32x32 images to this size (area average; >= 8)")
    f = p.add_argument_group("float network")
    f.add_argument("--width", type=_positive, default=64,
                   help="ResNet-9's first width w")
    f.add_argument("--variant", choices=("page", "halutmatmul"), default="page",
                   help="page: stages w, 2w, 4w, 8w and logits x 0.125 (the zoo's default, "
                        "6.57M parameters at w = 64); halutmatmul: stages w, 2w, 4w, 4w, no "
                        "logit scale (halutmatmul's models/resnet9.py)")
    f.add_argument("--float-epochs", type=_count, default=24)
    f.add_argument("--batch-size", type=_positive, default=512, help="float training batch")
    f.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                   help="sgd: Nesterov momentum 0.9 with a one-cycle rate (Page's); adam: "
                        "cosine decay")
    f.add_argument("--float-lr", type=float, default=None,
                   help="peak learning rate (default: sgd 0.4, or 0.1 for the halutmatmul "
                        "variant; adam 3e-3)")
    f.add_argument("--weight-decay", type=float, default=5e-4)
    f.add_argument("--label-smoothing", type=float, default=0.2)
    f.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="random crops (4-pixel reflect padding at 32x32) and flips")
    f.add_argument("--device", default="auto",
                   help="device for the float training only (cpu, cuda, auto: cuda when "
                        "available); learning and retraining the Halut layers run on CPU")
    f.add_argument("--load-float", metavar="W.pt", default=None,
                   help="load the float weights instead of training (--float-epochs ignored)")
    f.add_argument("--save-float", metavar="W.pt", default=None,
                   help="save the float weights (state_dict)")
    h = p.add_argument_group("Halut layers")
    h.add_argument("--C", type=_c_arg, default="channel",
                   help="codebooks per layer: 'channel' (halutmatmul's: one per input "
                        "channel of a 3x3 conv, D/C = 9; 16 for the linear), 'plan' (two per "
                        "input channel, D/C = 4.5) or a number for every layer (capped by "
                        "--min-dims)")
    h.add_argument("--min-dims", type=_positive, default=4,
                   help="at least this many input dims per codebook")
    h.add_argument("--K", type=_positive, default=16, help="prototypes per codebook")
    h.add_argument("--rows", type=_positive, default=20000,
                   help="calibration rows kept per layer (NetConfig.rows)")
    h.add_argument("--calib-images", type=_positive, default=2048,
                   help="training images the layers are learned from")
    h.add_argument("--lut-format", choices=("int8", "fp16"), default="int8")
    h.add_argument("--threshold-format", choices=("fp16", "int8"), default="fp16")
    r = p.add_argument_group("retraining")
    r.add_argument("--retrain-epochs", type=_count, default=4,
                   help="epochs (layerwise: per layer); 0 skips retraining")
    r.add_argument("--schedule", choices=("all", "layerwise"), default="all")
    r.add_argument("--lr", type=float, default=0.01,
                   help="retraining step (RetrainConfig.lr, relative to each LUT's spread)")
    r.add_argument("--retrain-batch-size", type=_positive, default=128)
    r.add_argument("--retrain-images", type=_count, default=0, metavar="N",
                   help="retrain on the first N training images (0: all)")
    r.add_argument("--val-images", type=_count, default=0, metavar="N",
                   help="report golden accuracy on the first N test images after every "
                        "retraining epoch (0: none)")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", metavar="NET.halutnet", default=None,
                   help="write the retrained network bundle")
    o.add_argument("--json", metavar="OUT.json", default=None, help="write the figures")
    o.add_argument("--seed", type=_count, default=0)
    o.add_argument("--threads", type=_count, default=0,
                   help="torch CPU threads (0: torch's default); 1 is much faster for tiny "
                        "runs on a busy machine")
    o.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="per-epoch lines and retraining progress bars")
    return p


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``zoo:resnet9``'s keywords for ``args`` (what ``--save-float`` weights load into)."""
    kw: dict[str, Any] = {"in_channels": 3, "num_classes": 10,
                          "image_size": args.image_size, "width": args.width}
    if args.variant == "halutmatmul":
        w = args.width
        kw.update(widths=(w, 2 * w, 4 * w, 4 * w), scale=1.0)
    return kw


def _first(n: int, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(a[:n] if n else a for a in arrays)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole recipe; returns the figures (what ``--json`` writes). ``--threads`` holds
    for the run; torch's thread count is restored afterwards."""
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    # torch's optimizers import triton; with no GPU the Triton interpreter must be chosen
    # before that first import (as the demo does)
    from emulator.gpu import triton_kernels

    triton_kernels()
    from emulator.datasets import load_cifar10
    from emulator.network import NetConfig, halutize, model_checksum, save_network
    from emulator.retrain import RetrainConfig, float_state, retrain
    from emulator.zoo import load_model, load_state
    from learning.atomic import atomic_write_text, check_writable

    if args.image_size < 8 or args.image_size > 32:
        raise HalutError(f"--image-size must be between 8 and 32, got {args.image_size}")
    for path, what in ((args.output, "bundle"), (args.json, "figures"),
                       (args.save_float, "float weights")):
        if path:  # before hours of training, not after
            check_writable(path, what)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    secs: dict[str, float] = {}
    t_all = t0 = time.perf_counter()
    torch.manual_seed(args.seed)

    # 1. data, through the CIFAR-10 loader either way
    if args.synthetic is not None:
        with tempfile.TemporaryDirectory(prefix="cifar10-synthetic-") as tmp:
            folder = write_synthetic_cifar(tmp, args.synthetic, max(1, args.synthetic // 4),
                                           seed=args.seed)
            Xtr, ytr = load_cifar10(folder, "train")
            Xte, yte = load_cifar10(folder, "test")
        data = f"synthetic stand-in ({args.synthetic} training images)"
    else:
        Xtr, ytr = load_cifar10(args.data, "train")
        Xte, yte = load_cifar10(args.data, "test")
        data = str(args.data)
    Xtr, ytr = _first(args.train_images, Xtr, ytr)
    Xte, yte = _first(args.test_images, Xte, yte)
    Xtr, Xte = downscale(Xtr, args.image_size), downscale(Xte, args.image_size)
    mean, std = channel_stats(Xtr)
    Xtr = np.ascontiguousarray((Xtr - mean) / std, dtype=np.float32)
    Xte = np.ascontiguousarray((Xte - mean) / std, dtype=np.float32)
    secs["data"] = time.perf_counter() - t0
    if args.progress:
        print(f"data: {data}: {len(ytr)} training, {len(yte)} test images at "
              f"{args.image_size}x{args.image_size}", flush=True)

    # 2. the float network
    model = load_model("zoo:resnet9", **model_kwargs(args))
    t0 = time.perf_counter()
    float_history: list[dict[str, Any]] = []
    if args.load_float:
        load_state(model, args.load_float)
    else:
        float_history = train_float(model, Xtr, ytr, args, device)
    model.eval()
    secs["float_train"] = time.perf_counter() - t0
    if args.save_float:
        torch.save(model.state_dict(), args.save_float)
    t0 = time.perf_counter()
    acc_float = accuracy(model, Xte, yte)
    secs["float_eval"] = time.perf_counter() - t0
    if args.progress:
        print(f"float accuracy: {acc_float:.4f}", flush=True)
    source = model_checksum(model)

    # 3. every conv and the linear replaced
    t0 = time.perf_counter()
    n_cal = min(args.calib_images, len(ytr))
    calib = torch.from_numpy(Xtr[:n_cal])
    batches = [calib[i:i + 256] for i in range(0, n_cal, 256)]
    ncfg = NetConfig(C=int(args.C) if args.C.isdigit() else 16, K=args.K,
                     threshold_format=args.threshold_format, lut_format=args.lut_format,
                     overrides=codebooks(model, args.C, args.min_dims), rows=args.rows,
                     seed=args.seed)
    learned: dict[str, Any] = {}
    net = halutize(model, batches, ncfg, report=learned)
    secs["halutize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc_before = accuracy(net, Xte, yte)
    secs["before_eval"] = time.perf_counter() - t0
    if args.progress:
        print(f"golden accuracy before retraining ({len(ncfg.overrides)} layers replaced): "
              f"{acc_before:.4f}", flush=True)

    # 4. retraining
    t0 = time.perf_counter()
    history: list[dict[str, Any]] = []
    Xrt, yrt = _first(args.retrain_images, Xtr, ytr)
    n_val = min(args.val_images, len(yte))
    if args.retrain_epochs > 0:
        rcfg = RetrainConfig(epochs=args.retrain_epochs, lr=args.lr,
                             batch_size=args.retrain_batch_size,
                             schedule=args.schedule, seed=args.seed)
        retrain(net, (Xrt, yrt), rcfg, val=(Xte[:n_val], yte[:n_val]) if n_val else None,
                history=history, progress=args.progress)
    secs["retrain"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc_after = accuracy(net, Xte, yte)
    secs["after_eval"] = time.perf_counter() - t0
    if args.progress:
        print(f"golden accuracy after retraining: {acc_after:.4f}", flush=True)

    # 5. files
    files: dict[str, str] = {}
    if args.output:
        floats = float_state(net) or None
        files["bundle"] = str(save_network(args.output, net, source=source, config=ncfg,
                                           floats=floats))
    if args.save_float:
        files["float_weights"] = str(args.save_float)
    secs["total"] = time.perf_counter() - t_all
    layers = {name: {k: rep.get(k) for k in ("kind", "D", "M", "C", "K", "rows", "nmse_train")}
              for name, rep in learned.items() if not name.startswith("_")}
    result: dict[str, Any] = {
        "model": "zoo:resnet9", "model_kwargs": model_kwargs(args), "data": data,
        "accuracy": {"float": acc_float, "before": acc_before, "after": acc_after},
        "images": {"train": int(len(ytr)), "test": int(len(yte)), "calibration": n_cal,
                   "retrain": int(len(yrt)), "val": n_val},
        "seconds": {k: round(v, 2) for k, v in secs.items()},
        "layers": layers,
        "float_history": float_history,
        "retrain_history": history,
        "config": {k: v for k, v in vars(args).items()},
        "files": files,
    }
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2, default=str) + "\n")
    return result


def format_result(r: dict[str, Any]) -> str:
    a, s, n = r["accuracy"], r["seconds"], r["images"]
    return "\n".join([
        f"ResNet-9 (width {r['config']['width']}, {r['config']['image_size']}x"
        f"{r['config']['image_size']}) on {r['data']}: {len(r['layers'])} layers replaced",
        f"test accuracy on {n['test']} images: float {a['float']:.4f}, "
        f"before retraining {a['before']:.4f}, after {a['after']:.4f}",
        "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in s.items()),
        f"images: {n['train']} training ({n['calibration']} to learn the layers, "
        f"{n['retrain']} to retrain), {n['test']} test",
    ] + [f"files: {', '.join(r['files'].values())}"] * bool(r["files"]))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, run the recipe, print the figures; returns them. A HalutError is one
    line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except HalutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_result(result), flush=True)
    return result


if __name__ == "__main__":
    main()
