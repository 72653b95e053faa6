"""Fold BatchNorm into the convolution or linear layer before it, found by tracing with torch.fx.

In eval mode a BatchNorm is an affine map per channel,
``bn(z) = (z - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``, so after
``z = W x + b`` it folds into the layer: ``W' = W * s`` (per output channel, dim 0 of the
weight, which also holds for grouped and depthwise convs) and ``b' = (b - mean) * s + beta``
(``b = 0`` for a layer without bias; the folded layer gets one). The fold is computed in
float64 and rounded once to the weight's dtype, so the folded network's outputs equal the
original's (eval mode) up to float32 rounding.

Before the Halut layers are learned the BatchNorms should be folded, so that each learned
matmul is the whole affine map. To keep BatchNorm (no folding), simply do not call
:func:`fold_batchnorm`: the replacement works on the unfolded model just as well, with the
BatchNorms staying on the host in float.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from learning.errors import HalutError, one_line

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: the BatchNorm that may follow each convolution (its output has 2 + spatial dims)
_BN_FOR_CONV: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}


@dataclass(frozen=True)
class FoldedBN:
    """BatchNorm ``bn`` (qualified module name) folded into the layer ``into``."""

    bn: str
    into: str


@dataclass(frozen=True)
class KeptBN:
    """BatchNorm ``bn`` left in the model, and why."""

    bn: str
    reason: str


@dataclass(frozen=True)
class FoldReport:
    """What :func:`fold_batchnorm` did, BatchNorms in graph order."""

    folded: tuple[FoldedBN, ...]
    kept: tuple[KeptBN, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"folded": [{"bn": f.bn, "into": f.into} for f in self.folded],
                "kept": [{"bn": k.bn, "reason": k.reason} for k in self.kept]}

    def __str__(self) -> str:
        lines = [f"{len(self.folded)} BatchNorm folded, {len(self.kept)} kept"]
        lines += [f"  folded {f.bn} into {f.into}" for f in self.folded]
        lines += [f"  kept   {k.bn}: {k.reason}" for k in self.kept]
        return "\n".join(lines)


def _describe(node: object, gm: fx.GraphModule) -> str:
    """A node as a reader of the model would name it."""
    if not isinstance(node, fx.Node):
        return f"the constant {node!r}"
    if node.op == "call_module":
        mod = gm.get_submodule(str(node.target))
        return f"{node.target} ({type(mod).__name__})"
    if node.op == "call_function":
        return f"{getattr(node.target, '__name__', node.target)}()"
    if node.op == "call_method":
        return f".{node.target}()"
    if node.op == "placeholder":
        return f"the model input {node.target!r}"
    if node.op == "get_attr":
        return f"the attribute {node.target}"
    return str(node)


def _shared_parameters(model: nn.Module) -> set[int]:
    """ids of parameters that more than one module (or attribute) holds."""
    counts = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    return {i for i, n in counts.items() if n > 1}


def _out_ndim(node: fx.Node) -> int | None:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return None if shape is None else len(shape)


def _why_not(bn_node: fx.Node, gm: fx.GraphModule, calls: Counter[str], shared: set[int],
             shapes_known: bool) -> str | None:
    """Why ``bn_node`` cannot be folded into its input's layer, or None when it can."""
    bn = gm.get_submodule(str(bn_node.target))
    if calls[str(bn_node.target)] > 1:
        return f"the module is called {calls[str(bn_node.target)]} times"
    if bn.running_mean is None or bn.running_var is None:
        return "it has no running statistics (track_running_stats=False: batch statistics)"
    if len(bn_node.args) != 1 or bn_node.kwargs:
        return "it is called with more than one argument"
    src = bn_node.args[0]
    layer = (gm.get_submodule(str(src.target))
             if isinstance(src, fx.Node) and src.op == "call_module" else None)
    if not isinstance(src, fx.Node) or layer is None or type(layer) not in (*_CONV, nn.Linear):
        return f"its input is {_describe(src, gm)}, not a conv or linear output"
    name = str(src.target)
    if calls[name] > 1:
        return f"{name} is called {calls[name]} times (folding would change every call)"
    users = [u for u in src.users if u is not bn_node]
    if users:
        return (f"the output of {name} is also used by "
                f"{', '.join(_describe(u, gm) for u in users)}")
    if any(id(p) in shared for p in layer.parameters(recurse=False)):
        return f"{name} shares its parameters with another module"
    out = layer.out_channels if isinstance(layer, _CONV) else layer.out_features
    if bn.num_features != out:
        return f"it has {bn.num_features} features, {name} has {out} outputs"
    ndim = _out_ndim(src) if shapes_known else None
    if isinstance(layer, _CONV):
        expect = type(layer).__name__[-2:]  # "1d" / "2d" / "3d"
        if not isinstance(bn, _BN_FOR_CONV[type(layer)]):
            return f"a {type(bn).__name__} after a {type(layer).__name__}"
        if shapes_known and ndim != int(expect[0]) + 2:
            return f"the output of {name} is unbatched (ndim {ndim})"
    else:
        if not isinstance(bn, nn.BatchNorm1d):
            return f"a {type(bn).__name__} after a Linear"
        if not shapes_known:
            return (f"{name} is a Linear: BatchNorm1d normalises dim 1, which is its feature "
                    "dim only for 2-D outputs (pass example_input to check the shape)")
        if ndim != 2:
            return (f"the output of {name} has {ndim} dims: BatchNorm1d normalises dim 1, "
                    "not the Linear's features")
    return None


def _fold_into(layer: nn.Module, bn: nn.Module) -> None:
    """Fold ``bn``'s eval-mode affine map into ``layer``'s weight and bias, in place."""
    weight, old_bias = layer.weight, layer.bias
    mean, var = bn.running_mean, bn.running_var
    gamma, beta = bn.weight, bn.bias
    assert isinstance(weight, torch.Tensor)
    assert isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor)
    assert isinstance(bn.eps, float)
    with torch.no_grad():
        scale = torch.rsqrt(var.double() + bn.eps)
        if isinstance(gamma, torch.Tensor):
            scale = scale * gamma.double()
        bias = old_bias.double() if isinstance(old_bias, torch.Tensor) \
            else torch.zeros_like(scale)
        bias = (bias - mean.double()) * scale
        if isinstance(beta, torch.Tensor):
            bias = bias + beta.double()
        shape = (-1,) + (1,) * (weight.dim() - 1)
        new_w = (weight.double() * scale.reshape(shape)).to(weight.dtype)
        layer.weight = nn.Parameter(new_w, requires_grad=weight.requires_grad)
        layer.bias = nn.Parameter(bias.to(weight.dtype), requires_grad=weight.requires_grad)


def fold_batchnorm(model: nn.Module, example_input: torch.Tensor | Sequence[torch.Tensor]
                   | None = None, concrete_args: dict[str, Any] | None = None
                   ) -> tuple[fx.GraphModule, FoldReport]:
    """A copy of ``model`` with every foldable BatchNorm folded into the layer before it.

    ``model`` is traced with :func:`torch.fx.symbolic_trace` (on a deep copy: the original is
    untouched). A ``BatchNorm1d/2d/3d`` module is folded when its only input is the output of
    a ``Conv1d/2d/3d`` (any groups, depthwise included, with or without bias, any padding
    mode) or a ``Linear`` module, that output feeds nothing else, each module is called once
    and the layer's parameters are not shared. Every other BatchNorm is kept, with the
    reason in the report: for instance one after a ReLU or an add, one whose conv output
    also feeds a residual branch, one without running statistics.

    A Linear followed by BatchNorm1d folds only when the Linear's output is 2-D (BatchNorm1d
    normalises dim 1): that needs ``example_input`` to propagate shapes; without it such a
    BatchNorm is kept. With ``example_input`` the conv outputs' ranks are checked too.

    Keeping BatchNorm (no folding) is simply not calling this function.

    Parameters
    ----------
    model : nn.Module whose ``forward`` torch.fx can trace
    example_input : a tensor or tuple of tensors for ``model(*example_input)`` (optional),
        used only to learn the shapes
    concrete_args : passed to ``symbolic_trace`` (fixes non-tensor forward arguments)

    Returns
    -------
    (folded, report) : the new ``fx.GraphModule`` in eval mode, its submodules keeping
        their qualified names (folded BatchNorms removed), and a :class:`FoldReport`.

    Raises
    ------
    HalutError
        when torch.fx cannot trace the model (the reason in one line) or the example input
        does not run through it.
    """
    if not isinstance(model, nn.Module):
        raise HalutError(f"fold_batchnorm needs an nn.Module, got {type(model).__name__}")
    what = type(model).__name__
    work = copy.deepcopy(model).eval()
    try:
        gm = fx.symbolic_trace(work, concrete_args=concrete_args)
    except Exception as exc:
        raise HalutError(f"cannot fold BatchNorm in {what}: torch.fx cannot trace it "
                         f"({one_line(exc)}); make forward traceable or fold by hand") from None
    gm.eval()
    if example_input is not None:
        args = (example_input,) if isinstance(example_input, torch.Tensor) \
            else tuple(example_input)
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(*args)
        except Exception as exc:
            raise HalutError(f"cannot fold BatchNorm in {what}: the example input does not "
                             f"run through it ({one_line(exc)})") from None
    calls = Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_module")
    shared = _shared_parameters(gm)
    folded: list[FoldedBN] = []
    kept: list[KeptBN] = []
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and getattr(node.target, "__name__", "") == "batch_norm":
            kept.append(KeptBN(node.name, "a functional batch_norm call, not a module"))
            continue
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), _BN):
            continue
        reason = _why_not(node, gm, calls, shared, example_input is not None)
        if reason is not None:
            kept.append(KeptBN(str(node.target), reason))
            continue
        src = node.args[0]
        _fold_into(gm.get_submodule(src.target), gm.get_submodule(node.target))
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        gm.delete_submodule(node.target)
        folded.append(FoldedBN(str(node.target), str(src.target)))
    gm.graph.lint()
    gm.recompile()
    return gm.eval(), FoldReport(tuple(folded), tuple(kept))
