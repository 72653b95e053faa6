"""MADDNESS learning (Blalock & Guttag, arXiv 2106.10860, sections 4.1-4.3).

``learn(A, B, C, K)`` learns, for each of ``C`` contiguous codebooks of the input dims, a
balanced binary tree of depth ``L = log2 K`` whose levels each split on ONE dimension
(the hash function of section 4.2), then the lookup table jointly by ridge regression on
the one-hot codes (section 4.3, eq. 8), solved in output space (``LUT = prototypes . B``
directly) and shrunk toward the leaf means with a strength chosen on held-out rows
(:func:`fit_lut`).

Tree learning, per codebook and level (all buckets of the level at once):

1. per dimension, the within-bucket sum of squared errors summed over the current buckets;
   the ``n_candidates`` dims with the largest loss are the candidates;
2. for a candidate dim ``j``, rows are ordered by (bucket, x_j) and cumulative sums of the
   codebook's columns and their squares give, for every split position in every bucket,
   the summed SSE of the two children; each bucket takes its best position (only between
   distinct values, threshold = midpoint, rounded to float32 so that the split is kept);
3. the candidate with the lowest total loss becomes the level's dim.

Cost per codebook: ``O(L * n_candidates * N * (log N + D/C))``. Ridge: ``G^T G`` (CK x CK)
from code co-occurrence counts (one ``bincount`` per codebook), ``G^T Y`` (CK x M) and the
leaf sums of the partial products as sparse products; neither builds the N x CK one-hot
matrix densely.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse
import threadpoolctl

from learning.errors import HalutError
from learning.model import HalutModel
from learning.program import codebook_bounds, log2_exact
from learning.validate import as_float_matrix

_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Tree:
    """One codebook's learned tree: split dims (absolute) (L,), heap-ordered float32
    thresholds (K-1,) and the training rows' codes (N,) int64."""

    dims: np.ndarray
    thresholds: np.ndarray
    codes: np.ndarray


def _bucket_sums(X: np.ndarray, code: np.ndarray, nb: int) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """Per-bucket row counts (nb,), column sums (nb, d) and sums of squares (nb, d)."""
    cnt = np.bincount(code, minlength=nb)
    G = scipy.sparse.csr_matrix((np.ones(code.size), (code, np.arange(code.size))),
                                shape=(nb, code.size))
    s = np.asarray(G @ X)
    s2 = np.asarray(G @ (X * X))
    return cnt, s, s2


def _split_midpoint(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """float32 thresholds t with ``lo <= t < hi`` (lo < hi float32), near the midpoint."""
    mid = ((lo.astype(np.float64) + hi.astype(np.float64)) / 2).astype(np.float32)
    return np.where(mid >= hi, lo, mid).astype(np.float32)


@dataclass(frozen=True)
class _Bins:
    """A column cut into value bins: bin b holds ``edges[b-1] < x <= edges[b]``.

    bins (N,) int64; edges (E,) float32, data values, the last one the column's max;
    above (E,) float32, the smallest data value above each edge (the edge itself for the
    last one).
    """

    bins: np.ndarray
    edges: np.ndarray
    above: np.ndarray


def _column_bins(x: np.ndarray, max_bins: int | None) -> _Bins:
    """Bins of a float32 column: every distinct value its own bin when there are at most
    ``max_bins`` distinct values (or ``max_bins`` is None), else quantile bins."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    uniq = xs[np.concatenate([[True], xs[1:] != xs[:-1]])]
    if max_bins is None or uniq.size <= max_bins:
        edges = uniq
    else:
        q = xs[(np.arange(1, max_bins) * xs.size) // max_bins]
        edges = np.unique(np.append(q, xs[-1]))
    bins = np.empty(x.size, dtype=np.int64)
    bins[order] = np.searchsorted(edges, xs, side="left")  # sorted queries: fast
    pos = np.minimum(np.searchsorted(uniq, edges, side="right"), uniq.size - 1)
    # the column's maximum has no value above it: use a value well clear of it, so that a
    # threshold placed there stays above the maximum after fp16/int8 rounding
    # (at most float32's largest value: a column reaching it gets the maximum itself, which
    # still sends every training value left)
    clear = np.minimum(edges.astype(np.float64) + np.maximum(np.abs(edges), 1.0),
                       _F32_MAX).astype(np.float32)
    above = np.where(uniq[pos] > edges, uniq[pos], clear)
    return _Bins(bins=bins, edges=edges, above=above)


def _best_split(W: np.ndarray, col: _Bins, code: np.ndarray, nb: int,
                whole: np.ndarray) -> tuple[float, np.ndarray]:
    """Best threshold per bucket for one candidate dim.

    Parameters
    ----------
    W : (N, d+2) float64, the codebook's centred columns, then ``sum_d X**2``, then ones
    col : the candidate column's bins
    code : (N,) int64, the current bucket of each row
    nb : number of buckets
    whole : (nb,) float64, each bucket's SSE without a split

    Returns
    -------
    total loss (float) and thresholds (nb,) float32 (NaN for an empty bucket)
    """
    N, d2 = W.shape
    d = d2 - 2
    E = col.edges.size
    keys = code * E + col.bins
    G = scipy.sparse.csc_matrix((np.ones(N), keys, np.arange(N + 1)), shape=(nb * E, N))
    H = np.asarray(G @ W).reshape(nb, E, d2)  # per (bucket, bin): sums, sum of squares, count
    cum = np.cumsum(H, axis=1)  # left child when splitting after bin b
    tot = cum[:, -1:, :]
    sl, ql, nl = cum[:, :, :d], cum[:, :, d], cum[:, :, d + 1]
    sr, qr, nr = tot[:, :, :d] - sl, tot[:, :, d] - ql, tot[:, :, d + 1] - nl
    filled = H[:, :, d + 1] > 0
    valid = filled & (nr > 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = (ql - np.einsum("ijk,ijk->ij", sl, sl) / nl
                + qr - np.einsum("ijk,ijk->ij", sr, sr) / nr)
    loss = np.where(valid, loss, np.inf)
    b = np.argmin(loss, axis=1)
    rows = np.arange(nb)
    best = loss[rows, b]
    split = np.isfinite(best) & (best < whole)
    best_loss = np.where(split, best, whole)
    # next filled bin at or after each position, per bucket (E where none)
    nxt = np.where(filled, np.arange(E)[None, :], E)
    nxt = np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1]
    thr = np.full(nb, np.nan, dtype=np.float32)
    last = E - 1 - np.argmax(filled[:, ::-1], axis=1)  # last filled bin: all rows go left
    nonempty = filled.any(axis=1)
    # midway to the next value of the column, never exactly on a training value
    thr[nonempty] = _split_midpoint(col.edges[last[nonempty]], col.above[last[nonempty]])
    if np.any(split):
        bs = b[split]
        b2 = nxt[rows[split], np.minimum(bs + 1, E - 1)]
        thr[split] = _split_midpoint(col.edges[bs], col.above[b2 - 1])
    return float(np.maximum(best_loss, 0.0).sum()), thr


def learn_tree(Xc: np.ndarray, offset: int, L: int, n_candidates: int,
               max_bins: int | None) -> Tree:
    """Learn one codebook's tree on its columns ``Xc`` (N, d) float32 (section 4.2).

    Returns the tree with absolute split dims (``offset`` + local dim).
    """
    N, d = Xc.shape
    X = Xc.astype(np.float64)
    X -= X.mean(axis=0)  # SSE is shift-invariant; centring keeps the cumulative sums exact
    W = np.empty((N, d + 2))
    W[:, :d] = X
    W[:, d] = np.einsum("ij,ij->i", X, X)
    W[:, d + 1] = 1.0
    cols: dict[int, _Bins] = {}
    code = np.zeros(N, dtype=np.int64)
    dims = np.zeros(L, dtype=np.int32)
    thresholds = np.zeros((1 << L) - 1, dtype=np.float32)
    for level in range(L):
        nb = 1 << level
        cnt, s, s2 = _bucket_sums(X, code, nb)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_dim = np.where(cnt[:, None] > 0, s2 - s * s / np.maximum(cnt, 1)[:, None], 0.0)
        whole = per_dim.sum(axis=1)
        cands = np.argsort(-per_dim.sum(axis=0), kind="stable")[:n_candidates]
        best: tuple[float, int, np.ndarray] | None = None
        for j in cands:
            j = int(j)
            if j not in cols:
                cols[j] = _column_bins(Xc[:, j], max_bins)
            loss, thr = _best_split(W, cols[j], code, nb, whole)
            if best is None or loss < best[0]:
                best = (loss, j, thr)
        assert best is not None
        _, j, thr = best
        empty = np.isnan(thr)
        if np.any(empty):  # an empty bucket: any value keeps it consistent; use the median
            thr[empty] = np.float32(np.median(Xc[:, j].astype(np.float64)))
        dims[level] = offset + j
        thresholds[nb - 1:2 * nb - 1] = thr
        code = 2 * code + (Xc[:, j] > thr[code]).astype(np.int64)
    return Tree(dims=dims, thresholds=thresholds, codes=code)


def _gram(codes: np.ndarray, K: int) -> np.ndarray:
    """``G^T G`` (CK, CK) float64 from code co-occurrence counts; codes (N, C)."""
    N, C = codes.shape
    flat = codes + (np.arange(C) * K)[None, :]
    gtg = np.zeros((C * K, C * K))
    for c in range(C):
        keys = (codes[:, c:c + 1] * (C * K) + flat[:, c:]).ravel()
        block = np.bincount(keys, minlength=K * C * K).reshape(K, C * K)[:, c * K:]
        gtg[c * K:(c + 1) * K, c * K:] = block
        gtg[c * K:, c * K:(c + 1) * K] = block.T
    return gtg


def _code_matrix(codes: np.ndarray, K: int) -> scipy.sparse.csr_matrix:
    """The one-hot code matrix transposed, ``G^T`` (CK, N), sparse; codes (N, C)."""
    N, C = codes.shape
    cols = np.repeat(np.arange(N), C)
    return scipy.sparse.csr_matrix((np.ones(N * C), ((codes + np.arange(C) * K).ravel(), cols)),
                                   shape=(C * K, N))


@dataclass
class _FitStats:
    """Sufficient statistics of a set of rows for the LUT fit (all float64): ``G^T G``
    (CK, CK), ``G^T Y`` (CK, M), the leaf sums of each codebook's own partial outputs (CK, M)
    and the leaf counts (CK,) (the leaf-mean prior), ``||Y||^2``."""

    gtg: np.ndarray
    gty: np.ndarray
    own: np.ndarray
    count: np.ndarray
    yy: float

    def __sub__(self, o: _FitStats) -> _FitStats:
        return _FitStats(self.gtg - o.gtg, self.gty - o.gty, self.own - o.own,
                         self.count - o.count, self.yy - o.yy)

    def prior(self) -> np.ndarray:
        """The leaf-mean LUT (CK, M): each leaf's mean of its codebook's partial output."""
        return self.own / np.maximum(self.count, 1)[:, None]

    def solve(self, lam: float) -> np.ndarray:
        """The LUT minimising ``||Y - G T||^2 + lam ||T - prior||^2`` (inf: the prior)."""
        if np.isinf(lam):
            return self.prior()
        lhs = self.gtg + lam * np.eye(self.gtg.shape[0])
        rhs = self.gty + lam * self.prior()
        # a small dense solve: one BLAS thread is as fast, and multi-threaded OpenBLAS slows
        # down ~70x on a busy 2-core machine (measured: 15 ms vs 1.1 s for 512 x 512)
        threads = 1 if lhs.shape[0] <= 4096 else None
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            factor = scipy.linalg.cho_factor(lhs, lower=False, check_finite=False)
            return np.asarray(scipy.linalg.cho_solve(factor, rhs, check_finite=False))

    def sse(self, T: np.ndarray) -> float:
        """``||Y - G T||^2`` of these rows, from the statistics alone."""
        return float(self.yy - 2 * np.sum(T * self.gty) + np.sum(T * (self.gtg @ T)))


def _fold_stats(A: np.ndarray, B: np.ndarray, codes: np.ndarray, bounds: np.ndarray, K: int,
                folds: np.ndarray, n_folds: int) -> list[_FitStats]:
    """The statistics of each fold's rows (``folds``: (N,) fold ids in [0, n_folds)):
    ``G^T Y`` and ``G^T G`` from one sparse code matrix per fold, the leaf-mean prior as
    (leaf sums of each codebook's own input dims) @ its rows of B, so no N x M product per
    codebook is ever formed."""
    C = codes.shape[1]
    B64 = B.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        Y = (A @ B).astype(np.float64)
    if not np.all(np.isfinite(Y)):  # partial sums beyond float32 (finite inputs): in float64
        Y = A.astype(np.float64) @ B64
    out = []
    for f in range(n_folds):
        m = folds == f
        cf, Af, Yf = codes[m], A[m], Y[m]
        Gt = _code_matrix(cf, K)
        own = np.concatenate([
            (Gt[c * K:(c + 1) * K] @ Af[:, int(bounds[c]):int(bounds[c + 1])].astype(np.float64))
            @ B64[int(bounds[c]):int(bounds[c + 1])] for c in range(C)])
        count = np.asarray(Gt.sum(axis=1)).ravel()
        out.append(_FitStats(_gram(cf, K), np.asarray(Gt @ Yf), np.asarray(own), count,
                             float(np.sum(Yf * Yf))))
    return out


#: ridge strengths tried by ``ridge="auto"``, times the mean leaf size N / K; inf: leaf means
#: (with plentiful rows every third one: the strength matters little there)
AUTO_RIDGE_SCALES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, np.inf)
_FOLDS = 5
#: how much lower (relative) a ridge's held-out error must be than the leaf means' to win
_AUTO_MARGIN = 0.05
#: with this many rows per LUT entry or more, one 20 % hold-out instead of 5 folds
_ONE_FOLD_ROWS = 10


def fit_lut(A: np.ndarray, B: np.ndarray, codes: np.ndarray, bounds: np.ndarray, K: int,
            ridge: float | str | None, seed: int = 0) -> tuple[np.ndarray, float]:
    """The LUT (C*K, M) float64 of the trees' codes, and the ridge strength it used.

    Fitted in output space: ``T = argmin ||A B - G T||^2 + lam ||T - T0||^2`` where G is the
    one-hot code matrix and T0 the leaf-mean LUT (each leaf's mean of its codebook's own
    partial product ``A[:, dims_c] @ B[dims_c]``): the ridge shrinks toward the leaf means,
    never toward zero (``lam = inf`` is the leaf means). ``ridge``: a strength, None (leaf
    means) or ``"auto"``: the strength among :data:`AUTO_RIDGE_SCALES` x N/K with the least
    squared error on held-out rows (5 folds; one 20 % hold-out when rows are plentiful),
    computed from per-fold statistics without revisiting the rows; leaf means are among the
    candidates, so the choice is never worse than them on the held-out folds.
    """
    N, C = codes.shape
    if ridge is None or ridge != "auto":
        lam = np.inf if ridge is None else float(ridge)
        return _fold_stats(A, B, codes, bounds, K, np.zeros(N, np.int64), 1)[0].solve(lam), lam
    one = N >= _ONE_FOLD_ROWS * C * K  # plentiful rows: one 20 % hold-out, fewer strengths
    folds = np.random.default_rng(seed).permutation(N) % _FOLDS
    if one:
        folds = (folds != 0).astype(np.int64)  # fold 0: the hold-out; fold 1: the rest
    stats = _fold_stats(A, B, codes, bounds, K, folds, 2 if one else _FOLDS)
    total = stats[0]
    for st in stats[1:]:
        total = _FitStats(total.gtg + st.gtg, total.gty + st.gty, total.own + st.own,
                          total.count + st.count, total.yy + st.yy)
    n_folds = 1 if one else _FOLDS
    scales = AUTO_RIDGE_SCALES[::3] if one else AUTO_RIDGE_SCALES
    mean_leaf = N / K
    scored = []
    for scale in scales:
        lam = scale * mean_leaf
        err = 0.0
        for f in range(n_folds):
            try:
                err += stats[f].sse((total - stats[f]).solve(lam))
            except np.linalg.LinAlgError:
                err = np.inf
                break
        scored.append((err, lam))
    # the leaf means unless a ridge beats them clearly on the held-out folds: a small gain
    # there is within the folds' noise, and a small-sample fit must not do worse than them
    means_err = scored[-1][0]  # the last scale is inf: the leaf means
    scored = [(e if np.isinf(lam) or e < (1 - _AUTO_MARGIN) * means_err else np.inf, lam)
              for e, lam in scored]
    scored.sort(key=lambda e: e[0])  # stable: ties keep the weaker ridge
    for _, lam in scored:  # the best whose table float32 holds (extreme activations)
        try:
            T = total.solve(lam)
        except np.linalg.LinAlgError:
            continue
        if np.all(np.abs(T) <= _F32_MAX):
            return T, float(lam)
    lam = scored[0][1]
    return total.solve(lam), float(lam)


def _check_options(C: int, K: int, n_candidates: int, ridge: float | str | None,
                   calibration_rows: int) -> None:
    if not isinstance(C, (int, np.integer)) or isinstance(C, bool) or C < 1:
        raise HalutError(f"C must be a positive integer, got {C!r}")
    log2_exact(K)
    if int(n_candidates) < 1:
        raise HalutError(f"n_candidates must be >= 1, got {n_candidates}")
    if ridge is not None and ridge != "auto" and (
            isinstance(ridge, (str, bool)) or not (np.isfinite(ridge) and ridge >= 0)):
        raise HalutError(f"ridge must be 'auto', None or a finite number >= 0, got {ridge!r}")
    if int(calibration_rows) < 0:
        raise HalutError(f"calibration_rows must be >= 0, got {calibration_rows}")


def learn(A: np.ndarray, B: np.ndarray, C: int, K: int, *, seed: int = 0,
          bias: np.ndarray | None = None, n_candidates: int = 4,
          ridge: float | str | None = "auto",
          max_bins: int | None = 256, calibration_rows: int = 1024,
          keep_weights: bool = True) -> HalutModel:
    """Learn a MADDNESS model of the layer ``A @ B + bias``.

    Parameters
    ----------
    A : (N, D) float array, training activations (finite; N >= K)
    B : (D, M) float array, the layer's weights
    C : number of codebooks, 1 <= C <= D (contiguous groups of dims, sizes differ by <= 1)
    K : prototypes per codebook, a power of two in [2, 256]
    seed : seeds the choice of calibration rows (learning itself is deterministic)
    bias : (M,) float array or None (zeros)
    n_candidates : candidate split dims tried per tree level (the top by bucket SSE)
    ridge : the prototypes' ridge strength toward the leaf means (:func:`fit_lut`): a number,
        None (the leaf means themselves) or ``"auto"`` (chosen on held-out rows)
    calibration_rows : training rows whose split-dim features are kept for quantization
    keep_weights : store ``B`` in the model (needed for :meth:`HalutModel.exact`)

    Returns
    -------
    HalutModel with ``stats`` holding ``nmse_train`` (NMSE of the float model against
    ``A @ B + bias`` on the training rows), ``n_rows`` and ``seconds``.
    """
    t0 = time.perf_counter()
    _check_options(C, K, n_candidates, ridge, calibration_rows)
    A32 = as_float_matrix(A, "activations")
    N, D = A32.shape
    B32 = as_float_matrix(B, "weights")
    if B32.shape[0] != D:
        raise HalutError(f"weights must have D={D} rows (the activations' columns), "
                         f"got shape {B32.shape}")
    M = B32.shape[1]
    if bias is None:
        bias32 = np.zeros(M, dtype=np.float32)
    else:
        bias32 = as_float_matrix(np.asarray(bias).reshape(1, -1), "bias", cols=M)[0]
        if np.asarray(bias).ndim != 1:
            raise HalutError(f"bias must be a vector of {M} values, got shape "
                             f"{np.asarray(bias).shape}")
    bounds = codebook_bounds(D, int(C))
    L = log2_exact(K)
    if N < K:
        raise HalutError(f"need at least K={K} training rows, got N={N}")
    y = exact_outputs(A32, B32, bias32)

    trees = [learn_tree(A32[:, bounds[c]:bounds[c + 1]], int(bounds[c]), L,
                        int(n_candidates), max_bins) for c in range(int(C))]
    codes = np.stack([t.codes for t in trees], axis=1)  # (N, C)
    T, lam = fit_lut(A32, B32, codes, bounds, K, ridge, seed)
    lut = T.reshape(int(C), K, M).transpose(2, 0, 1)
    _check_float32_range(lut, "lookup-table entries", A32)
    counts = np.stack([np.bincount(codes[:, c], minlength=K) for c in range(int(C))])
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(N, size=min(N, int(calibration_rows)), replace=False))
    dims = np.stack([t.dims for t in trees])
    stats: dict[str, Any] = {"n_rows": int(N), "ridge": ridge,
                             "ridge_lambda": None if np.isinf(lam) else lam,
                             "n_candidates": int(n_candidates), "seed": int(seed)}
    model = HalutModel(dims=dims, thresholds=np.stack([t.thresholds for t in trees]),
                       lut=lut.astype(np.float32), bias=bias32, D=D,
                       weights=B32 if keep_weights else None, stats=stats, counts=counts,
                       calibration=A32[rows][:, dims] if rows.size else None)
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        y_hat = model.decode(codes.astype(np.int32))
    _check_float32_range(y_hat, "outputs on the training rows", A32)
    stats["nmse_train"] = _nmse(y_hat, y)
    stats["seconds"] = time.perf_counter() - t0
    object.__setattr__(model, "stats", stats)
    return model


def _largest(a: np.ndarray) -> str:
    with np.errstate(over="ignore", invalid="ignore"):
        return f"{float(np.max(np.abs(a))):.4g}"


def exact_outputs(A32: np.ndarray, B32: np.ndarray, bias32: np.ndarray) -> np.ndarray:
    """``A @ B + bias`` as float32 (N, M), or a one-line HalutError when it is beyond
    float32's range: no float32 model (nor the accelerator) can produce such outputs. Rows
    whose float32 product overflows only on the way (partial sums) are redone in float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        y = A32 @ B32 + bias32[None, :]
    rows = np.flatnonzero(~np.all(np.isfinite(y), axis=1))
    if rows.size:
        y64 = A32[rows].astype(np.float64) @ B32.astype(np.float64) + bias32[None, :]
        over = ~(np.abs(y64) <= _F32_MAX)
        if not over.any():
            y[rows] = y64.astype(np.float32)
            return y
        i, m = (int(j) for j in np.argwhere(over)[0])
        n = int(rows[i])
        raise HalutError(f"the exact outputs A @ B + bias overflow float32 (row {n}, column "
                         f"{m}; |activations| up to {_largest(A32)}, |weights| up to "
                         f"{_largest(B32)}): scale the activations or weights down")
    return y


def _check_float32_range(a: np.ndarray, what: str, A32: np.ndarray) -> None:
    """A one-line HalutError when the learned model's ``what`` (``a``, any float dtype) are
    not finite float32 values: such a model must not be returned (or saved)."""
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(a) | (np.abs(a) > _F32_MAX)
    if bad.any():
        raise HalutError(f"the learned model's {what} overflow float32 (|activations| up to "
                         f"{_largest(A32)} leave no float32 model of this layer): scale the "
                         "activations down or remove their extreme values")


def _nmse(y_hat: np.ndarray, y: np.ndarray) -> float:
    """NMSE, or NaN when the exact output is constant (no variance to normalise by)."""
    from learning.datasets import nmse

    if not np.any(y != y.flat[0]):
        return float("nan")
    return nmse(y_hat, y)
