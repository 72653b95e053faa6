"""A model zoo defined in code (nothing is downloaded), and loading a user's model by SPEC.

The zoo holds the network shapes the issue names, each small enough to train on a CPU:

==============  =========================================================================
``lenet``       LeNet-style CNN: two 5x5 convs (padding 2) with ReLU and 2x2 max-pool,
                three linear layers
``resnet8``     CIFAR-style ResNet (He et al. 2016, 6n+2 layers, n = 1): 3x3 convs with
                BatchNorm, residual adds, stride-2 stages with 1x1 conv + BN shortcuts,
                global average pool, linear head
``resnet20``    the same with n = 3 blocks per stage
``resnet9``     the DAWNBench ResNet-9 for 32x32 CIFAR (David Page, "How to train your
                ResNet", 2018): conv-BN-ReLU blocks, three max-pooled stages, two
                residual blocks, global max pool, bias-free linear head scaled by 0.125
``dscnn``       DS-CNN for keyword spotting (Zhang et al., "Hello Edge", 2017): a strided
                conv, depthwise-separable blocks (depthwise 3x3 + BN + ReLU, pointwise 1x1 +
                BN + ReLU), average pool, linear head
``vit``         a small vision transformer: patch embedding (conv or linear), a class token
                or mean pooling, ``nn.TransformerEncoderLayer`` blocks (``batch_first``,
                pre-norm, GELU), layer norm, linear head
==============  =========================================================================

Every factory takes keyword arguments only (``in_channels``, ``num_classes``, ``image_size``
and model-specific widths), validates them with one-line :class:`HalutError` messages and
returns a freshly initialised ``nn.Module`` (seed torch first for reproducible weights).
Every zoo model traces with ``torch.fx`` (see :mod:`emulator.fold`).

:func:`load_model` resolves a SPEC (``zoo:NAME``, ``package.module:factory`` or
``path/to/file.py:factory``) and :func:`load_state` loads the user's float weights
(``torch.load(weights_only=True)``, or safetensors when installed).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

import torch
from torch import nn

from learning.errors import HalutError, one_line

Size2 = int | tuple[int, int]


# ---- argument checks -------------------------------------------------------------------------

def _positive(what: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HalutError(f"{what}: {name} must be a positive int, got {value!r}")
    return value


def _size2(what: str, name: str, value: object) -> tuple[int, int]:
    """An int or an (h, w) pair of positive ints, as (h, w)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return _positive(what, name, value[0]), _positive(what, name, value[1])
    if isinstance(value, int) and not isinstance(value, bool):
        v = _positive(what, name, value)
        return v, v
    raise HalutError(f"{what}: {name} must be a positive int or an (h, w) pair, got {value!r}")


# ---- LeNet -----------------------------------------------------------------------------------

class LeNet(nn.Module):
    """conv 5x5 (pad 2) - ReLU - maxpool 2 - conv 5x5 (pad 2) - ReLU - maxpool 2 - flatten -
    linear - ReLU - linear - ReLU - linear. Input (N, in_channels, H, W) with H, W >= 4."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: Size2 = 28,
                 widths: tuple[int, int] = (6, 16), hidden: tuple[int, int] = (120, 84)) -> None:
        super().__init__()
        what = "zoo lenet"
        _positive(what, "in_channels", in_channels)
        _positive(what, "num_classes", num_classes)
        h, w = _size2(what, "image_size", image_size)
        if h < 4 or w < 4:
            raise HalutError(f"{what}: image_size must be at least 4x4 (two 2x2 pools), "
                             f"got {h}x{w}")
        c1, c2 = (_positive(what, "widths", v) for v in widths)
        f1, f2 = (_positive(what, "hidden", v) for v in hidden)
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(c2 * (h // 4) * (w // 4), f1)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(f1, f2)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(f2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


# ---- ResNet (CIFAR style) --------------------------------------------------------------------

class BasicBlock(nn.Module):
    """Two 3x3 conv + BN (the first strided), ReLU between, a residual add, ReLU. The
    shortcut is the identity, or a 1x1 conv + BN when the stride or the width changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet with ``6n + 2`` weight layers: a 3x3 stem conv + BN + ReLU, three
    stages of ``n`` :class:`BasicBlock` (widths w, 2w, 4w; stages 2 and 3 start with
    stride 2), global average pool, linear head. Any input size works (the pool is
    adaptive); ``image_size`` is checked (at least 1) and kept for reference."""

    def __init__(self, blocks_per_stage: int, in_channels: int = 3, num_classes: int = 10,
                 image_size: Size2 = 32, width: int = 16) -> None:
        super().__init__()
        what = f"zoo resnet{6 * blocks_per_stage + 2}"
        _positive(what, "blocks_per_stage", blocks_per_stage)
        _positive(what, "in_channels", in_channels)
        _positive(what, "num_classes", num_classes)
        _positive(what, "width", width)
        self.image_size = _size2(what, "image_size", image_size)
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        stages = []
        planes = width
        for s in range(3):
            out_planes = width * 2 ** s
            blocks = []
            for b in range(blocks_per_stage):
                stride = 2 if s > 0 and b == 0 else 1
                blocks.append(BasicBlock(planes, out_planes, stride))
                planes = out_planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


def resnet8(**kwargs: Any) -> ResNet:
    """ResNet-8 (one block per stage). Keywords: ``in_channels=3``, ``num_classes=10``,
    ``image_size=32``, ``width=16``."""
    return ResNet(1, **kwargs)


def resnet20(**kwargs: Any) -> ResNet:
    """ResNet-20 (three blocks per stage); keywords as :func:`resnet8`."""
    return ResNet(3, **kwargs)


# ---- ResNet-9 (DAWNBench, David Page) -----------------------------------------------------

class ConvBNReLU(nn.Module):
    """3x3 conv (padding 1, no bias) + BN + ReLU, then a 2x2 max-pool when ``pool``."""

    def __init__(self, in_planes: int, planes: int, pool: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_planes, planes, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        return x if self.pool is None else self.pool(x)


class Residual9(nn.Module):
    """ResNet-9's residual block: ``x + relu(bn2(conv2(relu(bn1(conv1(x))))))``, two 3x3
    convs keeping the width (no ReLU after the add, as in Page's network)."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return x + self.relu2(self.bn2(self.conv2(out)))


class ResNet9(nn.Module):
    """The DAWNBench ResNet-9 (Page's ``cifar10-fast``; halutmatmul's ResNet-9):

    * ``prep``: conv w, BN, ReLU
    * ``layer1``: conv 2w, BN, ReLU, max-pool 2; ``res1``: :class:`Residual9` at 2w
    * ``layer2``: conv 4w, BN, ReLU, max-pool 2
    * ``layer3``: conv 8w, BN, ReLU, max-pool 2; ``res3``: :class:`Residual9` at 8w
    * ``pool``: adaptive max-pool to 1x1 (Page's ``MaxPool2d(4)`` at 32x32), flatten,
      ``fc``: linear 8w -> classes without bias, then the logits times ``scale``
      (Page's ``Mul(0.125)``: it only tempers the softmax while training, argmax is the
      same; ``scale=1.0`` drops it)

    ``widths`` overrides the four widths (prep, layer1, layer2, layer3), e.g.
    ``(64, 128, 256, 256)`` for halutmatmul's variant, whose last stage stays at 256.
    8 convs and one linear: nine weight layers, every one replaceable by a Halut layer (the
    scale, pools, ReLUs and residual adds stay on the host). Input (N, in_channels, H, W)
    with H, W >= 8 (three 2x2 pools); the last pool adapts to any size."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: Size2 = 32,
                 width: int = 64, scale: float = 0.125,
                 widths: tuple[int, int, int, int] | None = None) -> None:
        super().__init__()
        what = "zoo resnet9"
        _positive(what, "in_channels", in_channels)
        _positive(what, "num_classes", num_classes)
        _positive(what, "width", width)
        if widths is None:
            w0, w1, w2, w3 = width, 2 * width, 4 * width, 8 * width
        elif isinstance(widths, (tuple, list)) and len(widths) == 4:
            w0, w1, w2, w3 = (_positive(what, "widths", v) for v in widths)
        else:
            raise HalutError(f"{what}: widths must be 4 positive ints (prep, layer1, layer2, "
                             f"layer3), got {widths!r}")
        h, w = _size2(what, "image_size", image_size)
        if h < 8 or w < 8:
            raise HalutError(f"{what}: image_size must be at least 8x8 (three 2x2 pools), "
                             f"got {h}x{w}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) \
                or not (float(scale) > 0 and float(scale) < float("inf")):
            raise HalutError(f"{what}: scale must be a finite number > 0, got {scale!r}")
        self.image_size = (h, w)
        self.scale = float(scale)
        self.prep = ConvBNReLU(in_channels, w0)
        self.layer1 = ConvBNReLU(w0, w1, pool=True)
        self.res1 = Residual9(w1)
        self.layer2 = ConvBNReLU(w1, w2, pool=True)
        self.layer3 = ConvBNReLU(w2, w3, pool=True)
        self.res3 = Residual9(w3)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(w3, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res1(self.layer1(self.prep(x)))
        x = self.res3(self.layer3(self.layer2(x)))
        return self.fc(self.flatten(self.pool(x))) * self.scale


def resnet9(**kwargs: Any) -> ResNet9:
    """ResNet-9 (DAWNBench). Keywords: ``in_channels=3``, ``num_classes=10``,
    ``image_size=32`` (at least 8), ``width=64`` (stages w, 2w, 4w, 8w), ``scale=0.125``
    (the logits' factor; 1.0 for none), ``widths=None`` (the four widths explicitly)."""
    return ResNet9(**kwargs)


# ---- DS-CNN ----------------------------------------------------------------------------------

class DSBlock(nn.Module):
    """Depthwise 3x3 conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn_dw = nn.BatchNorm2d(channels)
        self.relu_dw = nn.ReLU()
        self.pw = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn_pw = nn.BatchNorm2d(channels)
        self.relu_pw = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu_dw(self.bn_dw(self.dw(x)))
        return self.relu_pw(self.bn_pw(self.pw(x)))


class DSCNN(nn.Module):
    """Keyword-spotting DS-CNN: conv 10x4 stride 2 (padding 5x1) + BN + ReLU, ``blocks``
    :class:`DSBlock`, global average pool, linear head. Input (N, in_channels, frames,
    coefficients), by default 49 x 10 MFCC features and 12 classes."""

    def __init__(self, in_channels: int = 1, num_classes: int = 12,
                 image_size: Size2 = (49, 10), width: int = 64, blocks: int = 4) -> None:
        super().__init__()
        what = "zoo dscnn"
        _positive(what, "in_channels", in_channels)
        _positive(what, "num_classes", num_classes)
        _positive(what, "width", width)
        _positive(what, "blocks", blocks)
        h, w = _size2(what, "image_size", image_size)
        if h < 2 or w < 2:
            raise HalutError(f"{what}: image_size must be at least 2x2, got {h}x{w}")
        self.image_size = (h, w)
        self.conv1 = nn.Conv2d(in_channels, width, (10, 4), stride=2, padding=(5, 1),
                               bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.blocks = nn.Sequential(*(DSBlock(width) for _ in range(blocks)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        return self.fc(self.flatten(self.pool(x)))


# ---- vision transformer ----------------------------------------------------------------------

class PatchEmbedLinear(nn.Module):
    """Non-overlapping ``patch x patch`` patches, flattened (channel, row, column) and
    projected by one ``nn.Linear``: (N, C, H, W) -> (N, H*W/patch^2, dim)."""

    def __init__(self, in_channels: int, patch: int, dim: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.patch, self.grid = patch, grid
        self.proj = nn.Linear(in_channels * patch * patch, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (gh, gw), p = self.grid, self.patch
        n, c = x.shape[0], x.shape[1]
        x = x.reshape(n, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
        return self.proj(x.reshape(n, gh * gw, c * p * p))


class PatchEmbedConv(nn.Module):
    """Patch embedding as a ``patch x patch`` conv with stride ``patch``:
    (N, C, H, W) -> (N, H*W/patch^2, dim)."""

    def __init__(self, in_channels: int, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """A small vision transformer: patch embedding, a class token (``pool='cls'``) or mean
    pooling over tokens (``pool='mean'``), learned position embedding, ``depth``
    pre-norm ``nn.TransformerEncoderLayer`` blocks (batch_first, GELU, no dropout), layer
    norm, linear head. Input (N, in_channels, H, W) with H and W multiples of ``patch_size``."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: Size2 = 32,
                 patch_size: int = 4, dim: int = 64, depth: int = 2, heads: int = 4,
                 mlp_ratio: int = 2, pool: str = "cls", patch_embed: str = "conv") -> None:
        super().__init__()
        what = "zoo vit"
        for name, v in (("in_channels", in_channels), ("num_classes", num_classes),
                        ("patch_size", patch_size), ("dim", dim), ("depth", depth),
                        ("heads", heads), ("mlp_ratio", mlp_ratio)):
            _positive(what, name, v)
        h, w = _size2(what, "image_size", image_size)
        if h % patch_size or w % patch_size:
            raise HalutError(f"{what}: image_size {h}x{w} is not a multiple of "
                             f"patch_size {patch_size}")
        if dim % heads:
            raise HalutError(f"{what}: dim {dim} is not a multiple of heads {heads}")
        if pool not in ("cls", "mean"):
            raise HalutError(f"{what}: pool must be 'cls' or 'mean', got {pool!r}")
        if patch_embed not in ("conv", "linear"):
            raise HalutError(f"{what}: patch_embed must be 'conv' or 'linear', "
                             f"got {patch_embed!r}")
        grid = (h // patch_size, w // patch_size)
        self.pool = pool
        self.patch_embed: nn.Module = (
            PatchEmbedConv(in_channels, patch_size, dim) if patch_embed == "conv"
            else PatchEmbedLinear(in_channels, patch_size, dim, grid))
        tokens = grid[0] * grid[1] + (1 if pool == "cls" else 0)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*(
            nn.TransformerEncoderLayer(dim, heads, dim * mlp_ratio, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.blocks(x + self.pos_embed))
        x = x[:, 0] if self.pool == "cls" else x.mean(dim=1)
        return self.head(x)


# ---- the registry ----------------------------------------------------------------------------

def lenet(**kwargs: Any) -> LeNet:
    """LeNet-style CNN. Keywords: ``in_channels=1``, ``num_classes=10``, ``image_size=28``,
    ``widths=(6, 16)``, ``hidden=(120, 84)``."""
    return LeNet(**kwargs)


def dscnn(**kwargs: Any) -> DSCNN:
    """DS-CNN. Keywords: ``in_channels=1``, ``num_classes=12``, ``image_size=(49, 10)``,
    ``width=64``, ``blocks=4``."""
    return DSCNN(**kwargs)


def vit(**kwargs: Any) -> ViT:
    """Small ViT. Keywords: ``in_channels=3``, ``num_classes=10``, ``image_size=32``,
    ``patch_size=4``, ``dim=64``, ``depth=2``, ``heads=4``, ``mlp_ratio=2``,
    ``pool='cls'|'mean'``, ``patch_embed='conv'|'linear'``."""
    return ViT(**kwargs)


#: zoo name -> factory(**kwargs) returning a fresh nn.Module (read-only)
ZOO: Mapping[str, Callable[..., nn.Module]] = MappingProxyType({
    "lenet": lenet,
    "resnet8": resnet8,
    "resnet20": resnet20,
    "resnet9": resnet9,
    "dscnn": dscnn,
    "vit": vit,
})


# ---- load_model ------------------------------------------------------------------------------

def _import_file(path: Path, spec: str) -> ModuleType:
    if not path.is_file():
        raise HalutError(f"model {spec}: no such file {path}")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"_halut_user_model_{path.stem}_{digest}"
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise HalutError(f"model {spec}: cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(mspec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        mspec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise HalutError(f"model {spec}: {path} does not import ({one_line(exc)})") from None
    return module


def _import_module(name: str, spec: str) -> ModuleType:
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise HalutError(f"model {spec}: {name!r} is not a module name (SPEC is zoo:NAME, "
                         "package.module:factory or path/to/file.py:factory)")
    try:
        return importlib.import_module(name)
    except (Exception, SystemExit) as exc:
        raise HalutError(f"model {spec}: module {name} does not import "
                         f"({one_line(exc)})") from None


def _resolve_factory(spec: str) -> Callable[..., Any]:
    if spec.startswith("zoo:"):
        name = spec[4:]
        if name not in ZOO:
            raise HalutError(f"model {spec}: no zoo model {name!r} (known: "
                             f"{', '.join(sorted(ZOO))})")
        return ZOO[name]
    source, sep, attr = spec.rpartition(":")
    if not sep or not source or not attr:
        raise HalutError(f"model SPEC {spec!r} must be zoo:NAME, package.module:factory or "
                         "path/to/file.py:factory")
    is_file = source.endswith(".py") or os.sep in source or "/" in source
    module = _import_file(Path(source), spec) if is_file else _import_module(source, spec)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            where = source if obj is module else f"{source}:{attr}"
            raise HalutError(f"model {spec}: {where} has no attribute {part!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise HalutError(f"model {spec}: {attr} is a {type(obj).__name__}, not a callable "
                         "returning an nn.Module")
    return obj


def load_model(spec: str, **kwargs: Any) -> nn.Module:
    """The ``nn.Module`` that ``spec`` names, built with ``factory(**kwargs)``.

    Parameters
    ----------
    spec : str
        ``zoo:NAME`` (a :data:`ZOO` entry), ``package.module:factory`` (imported with
        importlib) or ``path/to/file.py:factory`` (the file is executed as a module). The
        factory may be a dotted attribute (``module:Class.build``) and is any callable
        returning an ``nn.Module`` (a class works).
    **kwargs
        passed to the factory.

    Raises
    ------
    HalutError
        one line for an unknown zoo name (the known ones listed), a module or file that does
        not import (with the reason, no traceback), a missing attribute, a factory that
        raises, or a factory returning something that is not an ``nn.Module``.
    """
    if not isinstance(spec, str) or not spec:
        raise HalutError(f"model SPEC must be a non-empty string, got {spec!r}")
    factory = _resolve_factory(spec)
    try:
        model = factory(**kwargs)
    except HalutError as exc:
        raise HalutError(f"model {spec}: {exc}") from None
    except (Exception, SystemExit) as exc:
        raise HalutError(f"model {spec}: the factory raised {one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise HalutError(f"model {spec}: the factory returned a {type(model).__name__}, "
                         "not an nn.Module")
    return model


# ---- load_state ------------------------------------------------------------------------------

def _safetensors_available() -> bool:
    return importlib.util.find_spec("safetensors") is not None


def _read_state(path: Path) -> Any:
    if path.suffix == ".safetensors":
        if not _safetensors_available():
            raise HalutError(f"state dict {path}: reading .safetensors needs the safetensors "
                             "package, which is not installed (pip install safetensors)")
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise HalutError(f"state dict {path} is not a readable safetensors file "
                             f"({one_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HalutError(f"state dict {path} is not a readable torch file (corrupt, or not "
                         f"written by torch.save of tensors: {one_line(exc)})") from None


def _keys(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_state(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load float weights from ``path`` into ``model`` (strictly: every key, every shape).

    ``.safetensors`` files are read with safetensors (when installed); anything else with
    ``torch.load(map_location='cpu', weights_only=True)`` (no arbitrary pickle). A checkpoint
    dict holding the weights under ``'state_dict'`` or ``'model'`` is accepted, and a
    ``module.`` prefix (``nn.DataParallel``) is stripped when that makes the keys match.

    Returns ``model`` (loaded in place). Raises a one-line :class:`HalutError` for a missing
    or corrupt file, something that is not a state dict, missing or unexpected keys (the
    first few named) and a tensor whose shape differs from the model's.
    """
    p = Path(path)
    if not p.is_file():
        raise HalutError(f"state dict {p}: no such file")
    state = _read_state(p)
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            inner = state.get(key)
            if isinstance(inner, Mapping):
                state = inner
                break
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise HalutError(f"state dict {p} holds a {type(state).__name__}, not a mapping of "
                         "parameter names to tensors (save model.state_dict())")
    own = model.state_dict()
    if set(state) != set(own) and state and all(k.startswith("module.") for k in state):
        stripped = {k[len("module."):]: v for k, v in state.items()}
        if set(stripped) == set(own):
            state = stripped
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected {_keys(unexpected)}")
        raise HalutError(f"state dict {p} does not match {type(model).__name__}: "
                         + "; ".join(parts))
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise HalutError(f"state dict {p} does not match {type(model).__name__}: {k} has "
                             f"shape {tuple(state[k].shape)}, the model's is {tuple(v.shape)}")
    try:
        model.load_state_dict(dict(state), strict=True)
    except Exception as exc:
        raise HalutError(f"state dict {p} does not load into {type(model).__name__} "
                         f"({one_line(exc)})") from None
    return model
