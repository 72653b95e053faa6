"""The torch implementation of the GPU reference path (used where Triton is not installed).

Same contract and same host-prepared tables as the Triton kernels (emulator/gpu_kernels.py),
written with plain torch tensor ops so it runs on CPU or any torch device:

* features -> int32 order keys (fp16 bit patterns with ``-0 == +0``, or int8 values via
  ``float32(x) * input_scale``, saturate, ``torch.round``, which rounds half to even);
* the tree walk, one level at a time over all rows and codebooks;
* the accumulation, a Python loop over c = 0..C-1 with one elementwise add per codebook (no
  ``sum`` reduction, whose order torch does not promise);
* ``y = float32(acc) * scale + bias`` as two separate torch ops (separately rounded: torch
  does not fuse eager elementwise ops into an FMA).

Subnormals: torch keeps them unless ``torch.set_flush_denormal(True)`` was called;
:func:`check_no_flush` detects that and refuses to run.
"""

from __future__ import annotations

import torch

from learning.errors import HalutError


def check_no_flush(device: torch.device) -> None:
    """Raise a HalutError when float32 subnormals are flushed to zero on ``device``."""
    tiny = torch.tensor([2.0**-140], dtype=torch.float32, device=device)
    one = torch.tensor([1.0], dtype=torch.float32, device=device)
    if float(torch.mul(tiny, one).item()) == 0.0:
        raise HalutError("torch flushes float32 subnormals to zero (torch.set_flush_denormal"
                         "(True) is active); the GPU reference path needs IEEE subnormals")


def feature_keys(x: torch.Tensor, fp16_features: bool, input_scale: torch.Tensor) -> torch.Tensor:
    """float32 activations (any shape) -> int32 order keys of the converted features."""
    if fp16_features:
        bits = x.to(torch.float16).view(torch.int16).to(torch.int32)
        mag = torch.bitwise_and(bits, 0x7FFF)
        return torch.where(bits < 0, -mag, mag)
    s = torch.mul(x, input_scale)
    s = torch.clamp(s, -128.0, 127.0)
    return torch.round(s).to(torch.int32)


def encode(A: torch.Tensor, dims: torch.Tensor, thr_keys: torch.Tensor, L: int,
           fp16_features: bool, input_scale: torch.Tensor) -> torch.Tensor:
    """Codes of every row and codebook.

    Parameters
    ----------
    A : (N, D) float32
    dims : (C, L) int64
    thr_keys : (C, K-1) int32 order keys of the thresholds (heap order)

    Returns
    -------
    (N, C) int64 codes in [0, K)
    """
    N, C = A.shape[0], dims.shape[0]
    keys = feature_keys(A[:, dims], fp16_features, input_scale)  # (N, C, L)
    code = torch.zeros((N, C), dtype=torch.int64, device=A.device)
    cb = torch.arange(C, device=A.device)[None, :].expand(N, C)
    for level in range(L):
        node = (1 << level) - 1 + code
        t = thr_keys[cb, node]
        code = 2 * code + (keys[:, :, level] > t).to(torch.int64)
    return code


def decode(codes: torch.Tensor, lut_t: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
           fp16_lut: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequential accumulation over codebooks, then dequantization.

    Parameters
    ----------
    codes : (N, C) int64
    lut_t : (C, K, M) int8 | float16, the LUT transposed
    scale, bias : (M,) float32

    Returns
    -------
    acc : (N, M) int32 | float32, y : (N, M) float32
    """
    N, C = codes.shape
    M = lut_t.shape[2]
    acc_dtype = torch.float32 if fp16_lut else torch.int32
    acc = torch.zeros((N, M), dtype=acc_dtype, device=codes.device)
    for c in range(C):
        acc = torch.add(acc, lut_t[c][codes[:, c]].to(acc_dtype))
    prod = torch.mul(acc.to(torch.float32), scale[None, :])
    y = torch.add(prod, bias[None, :])
    return acc, y
