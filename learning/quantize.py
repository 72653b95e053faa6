"""Quantization of a float :class:`HalutModel` to a :class:`HardwareProgram`.

See docs/quantization.md for the reasoning. In short:

* fp16 thresholds: the hardware decides ``fp16(x) > t16`` with ``fp16`` round-to-nearest-even,
  so the decision boundary in ``x`` is the midpoint between ``t16`` and the next fp16 value
  up. We pick, among the fp16 neighbours of ``t``, the one whose boundary is nearest ``t``.
* int8 thresholds: ``q(x) = sat(rne(x * s))``; ``q(x) > tq`` iff ``x * s > tq + 1/2``
  (ties aside), so ``tq = floor(t * s)`` puts the boundary within ``1/(2s)`` of ``t``, the
  best the grid allows. The global scale ``s`` is chosen among quantiles of the training
  features (``model.calibration``) to minimise the fraction of changed codes.
* int8 LUT: per-(m, c) offsets (the midpoint of the entries' range) are folded into the
  bias; one scale per column ``m`` maps the widest centred range onto [-127, 127];
  round-half-even, saturate; the rounding error's mean under the training code frequencies
  is folded into the bias as well.
* fp16 LUT: the same offsets, then a power-of-two scale per column (exact) keeping the
  centred entries below 2^15 (no overflow, few subnormals).
"""

from __future__ import annotations

import numpy as np

from learning.errors import HalutError
from learning.model import HalutModel, tree_encode
from learning.program import LUT_FORMATS, THRESHOLD_FORMATS, HardwareProgram

FP16_MAX = float(np.finfo(np.float16).max)
_SCALE_QUANTILES = (1.0, 0.99999, 0.9999, 0.999, 0.995, 0.99)


def _fp16_boundary(t16: np.ndarray) -> np.ndarray:
    """Decision boundary (float64) of ``fp16(x) > t16``: midpoint to the next fp16 up."""
    with np.errstate(over="ignore"):
        up = np.nextafter(t16, np.float16(np.inf))
        b = (t16.astype(np.float64) + up.astype(np.float64)) / 2
    return np.where(np.isfinite(up), b, np.inf)


def fp16_thresholds(t: np.ndarray) -> np.ndarray:
    """fp16 thresholds so that ``fp16(x) > t16`` agrees with ``x > t`` for as many float32
    ``x`` as possible: the fp16 value (of the 3 around ``t``) whose boundary is nearest ``t``.

    Parameters
    ----------
    t : float32 array, any shape

    Returns
    -------
    float16 array, same shape, finite (clipped to +-65504)
    """
    t64 = np.asarray(t, dtype=np.float64)
    t_clip = np.clip(t64, -FP16_MAX, FP16_MAX)
    with np.errstate(over="ignore"):
        near = t_clip.astype(np.float16)
    with np.errstate(over="ignore"):
        down = np.where(near.astype(np.float64) > t_clip,
                        np.nextafter(near, np.float16(-np.inf)), near)  # largest fp16 <= t
    down = np.where(np.isfinite(down), down, np.float16(-FP16_MAX))
    with np.errstate(over="ignore"):
        below = np.nextafter(down, np.float16(-np.inf))
        above = np.nextafter(down, np.float16(np.inf))
    # order matters for ties: prefer a boundary at or above t (so x == t stays left)
    cands = np.stack([down, above, below])
    cands = np.where(np.isfinite(cands), cands, down[None])
    cands = np.clip(cands, np.float16(-FP16_MAX), np.float16(FP16_MAX))
    dist = np.abs(_fp16_boundary(cands) - t64[None])
    pick = np.argmin(dist, axis=0)
    out = np.take_along_axis(cands, pick[None], axis=0)[0]
    return np.where(out == 0, np.float16(0.0), out).astype(np.float16)  # -0 -> +0


def int8_thresholds(t: np.ndarray, input_scale: float) -> np.ndarray:
    """int8 thresholds ``floor(t * s)`` saturated to [-128, 127]: ``q(x) > tq`` then holds
    iff ``x * s > tq + 1/2`` (ties to even aside), the grid boundary nearest ``t * s``."""
    ts = np.asarray(t, dtype=np.float64) * float(np.float32(input_scale))
    return np.clip(np.floor(ts), -128, 127).astype(np.int8)


def _quantize_features(f: np.ndarray, s: float) -> np.ndarray:
    scaled = np.asarray(f, dtype=np.float32) * np.float32(s)
    return np.clip(np.rint(scaled), -128, 127).astype(np.int8)


def choose_input_scale(model: HalutModel) -> float:
    """The int8 input scale (a multiplier) minimising changed codes on the calibration rows.

    Candidates map a quantile of ``|x|`` over the training features at the split dims onto
    127 (the maximum first). Without calibration data: 127 / max |threshold|.
    """
    if model.calibration is None or model.calibration.shape[0] == 0:
        top = float(np.max(np.abs(model.thresholds)))
        return 127.0 / top if top > 0 else 1.0
    cal = model.calibration
    ref = tree_encode(model.dims, model.thresholds, cal)
    mags = np.abs(cal).ravel()
    best_s, best_err = 1.0, np.inf
    for q in _SCALE_QUANTILES:
        top = float(np.quantile(mags, q))
        if not top > 0:
            continue
        s = float(np.float32(127.0 / top))
        codes = tree_encode(model.dims, int8_thresholds(model.thresholds, s),
                            _quantize_features(cal, s))
        err = float(np.mean(codes != ref))
        if err < best_err:
            best_s, best_err = s, err
    return best_s


def _lut_offsets(lut: np.ndarray) -> np.ndarray:
    """Per-(m, c) offsets (M, C) float64: the midpoint of the K entries' range."""
    return (lut.max(axis=2) + lut.min(axis=2)) / 2


def _code_freq(model: HalutModel) -> np.ndarray:
    """(C, K) training frequency of each code (uniform without counts)."""
    if model.counts is None or model.counts.sum() == 0:
        return np.full((model.C, model.K), 1.0 / model.K)
    cnt = model.counts.astype(np.float64)
    return cnt / np.maximum(cnt.sum(axis=1, keepdims=True), 1)


def quantize_lut(model: HalutModel, lut_format: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lut (M, C, K) int8|float16, scale (M,) float32, bias (M,) float32)."""
    lut = model.lut.astype(np.float64)
    off = _lut_offsets(lut)  # (M, C)
    centred = lut - off[:, :, None]
    span = np.abs(centred).max(axis=(1, 2))  # (M,)
    if lut_format == "int8":
        scale = np.where(span > 0, span / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(centred / scale.astype(np.float64)[:, None, None]), -128, 127)
        q_lut = q.astype(np.int8)
    else:
        e = np.ceil(np.log2(np.where(span > 0, span, 1.0))) - 15
        scale = np.exp2(e).astype(np.float32)
        q_lut = (centred / scale.astype(np.float64)[:, None, None]).astype(np.float16)
        q = q_lut.astype(np.float64)
    # mean rounding error under the training code frequencies, folded into the bias
    err = centred - q * scale.astype(np.float64)[:, None, None]
    drift = np.einsum("mck,ck->m", err, _code_freq(model))
    bias = model.bias.astype(np.float64) + off.sum(axis=1) + drift
    return q_lut, scale, bias.astype(np.float32)


def quantize(model: HalutModel, threshold_format: str = "fp16",
             lut_format: str = "int8", *, input_scale: float | None = None) -> HardwareProgram:
    """Quantize ``model`` into a hardware program (see the module docstring).

    Parameters
    ----------
    model : HalutModel
    threshold_format : "fp16" or "int8" (features and thresholds)
    lut_format : "int8" or "fp16"
    input_scale : int8 thresholds only: this input scale instead of the one chosen from the
        calibration rows (retraining keeps a layer's scale fixed while its thresholds move)

    Returns
    -------
    HardwareProgram whose ``bias`` includes ``model.bias`` and the LUT offsets.
    """
    if not isinstance(model, HalutModel):
        raise HalutError(f"quantize needs a HalutModel, got {type(model).__name__}")
    if threshold_format not in THRESHOLD_FORMATS:
        raise HalutError(f"threshold format must be one of {THRESHOLD_FORMATS}, "
                         f"got {threshold_format!r}")
    if lut_format not in LUT_FORMATS:
        raise HalutError(f"LUT format must be one of {LUT_FORMATS}, got {lut_format!r}")
    if threshold_format == "fp16":
        thr = fp16_thresholds(model.thresholds)
        input_scale = 1.0
    else:
        if input_scale is None:
            input_scale = choose_input_scale(model)
        elif not (np.isfinite(input_scale) and input_scale > 0):
            raise HalutError(f"input_scale must be finite and > 0, got {input_scale}")
        thr = int8_thresholds(model.thresholds, input_scale)
    lut, scale, bias = quantize_lut(model, lut_format)
    return HardwareProgram(dims=model.dims, thresholds=thr, lut=lut, scale=scale, bias=bias,
                           D=model.D, threshold_format=threshold_format,
                           lut_format=lut_format, input_scale=input_scale)
