"""Product quantization (PQ): the float-only baseline the accuracy sweep compares MADDNESS
with (docs/sweep.md).

The layer ``A @ B + bias`` is approximated as in Jegou et al.'s product quantization, the
encoder MADDNESS replaces with hash trees:

* the D input dimensions are split into C contiguous subspaces (sizes differ by at most one,
  :func:`learning.program.codebook_bounds`, the same split MADDNESS uses);
* per subspace, K centroids are learned on the calibration rows with k-means (k-means++
  seeding from ``seed``, then ``iters`` Lloyd iterations; numpy only);
* a row is encoded by its nearest centroid (squared Euclidean distance) in every subspace;
* the lookup table holds, per subspace, ``centroids_c @ B[subspace c]`` (C, K, M), and
  ``y = sum_c LUT[c, code_c] + bias``.

The encoder needs distance computations (C*K dot products of the subspace's width per row),
which the accelerator does not have: PQ runs only on the host, in float32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from learning.errors import HalutError
from learning.program import codebook_bounds
from learning.validate import as_float_matrix, as_float_vector

#: rows per block when encoding (bounds the (rows, K) distance matrix)
_BLOCK = 8192


@dataclass(frozen=True)
class PQModel:
    """A learned product quantizer of one layer.

    bounds : (C+1,) int64, subspace c covers input dims ``[bounds[c], bounds[c+1])``
    centroids : C arrays (K, width_c) float32
    lut : (C, K, M) float32, ``centroids[c] @ B[bounds[c]:bounds[c+1]]``
    bias : (M,) float32
    stats : ``n_rows``, ``iters``, ``seed``, ``nmse_train``, ``seconds``
    """

    bounds: np.ndarray
    centroids: tuple[np.ndarray, ...]
    lut: np.ndarray
    bias: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def C(self) -> int:
        return int(self.lut.shape[0])

    @property
    def K(self) -> int:
        return int(self.lut.shape[1])

    @property
    def M(self) -> int:
        return int(self.lut.shape[2])

    @property
    def D(self) -> int:
        return int(self.bounds[-1])

    def encode(self, A: np.ndarray) -> np.ndarray:
        """The nearest centroid of every row in every subspace: (N, C) int32."""
        A32 = as_float_matrix(A, "activations", cols=self.D)
        codes = np.empty((A32.shape[0], self.C), dtype=np.int32)
        for c, cent in enumerate(self.centroids):
            sub = A32[:, self.bounds[c]:self.bounds[c + 1]]
            codes[:, c] = _nearest(sub, cent.astype(np.float64))
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """``sum_c LUT[c, codes[:, c]] + bias``: (N, M) float32."""
        codes = np.asarray(codes)
        y = np.zeros((codes.shape[0], self.M), dtype=np.float32)
        for c in range(self.C):
            y += self.lut[c, codes[:, c]]
        return y + self.bias[None, :]

    def predict(self, A: np.ndarray) -> np.ndarray:
        """The approximate ``A @ B + bias``: (N, M) float32."""
        return self.decode(self.encode(A))


def _sq_dist(X: np.ndarray, cent: np.ndarray) -> np.ndarray:
    """Squared distances (rows of X) x (centroids), float64, clipped at 0."""
    d = (np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ cent.T)
         + np.einsum("ij,ij->i", cent, cent)[None, :])
    return np.maximum(d, 0.0)


def _nearest(X: np.ndarray, cent: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid of every row (ties: the lowest index), in blocks."""
    out = np.empty(X.shape[0], dtype=np.int32)
    for r0 in range(0, X.shape[0], _BLOCK):
        block = X[r0:r0 + _BLOCK].astype(np.float64)
        out[r0:r0 + _BLOCK] = np.argmin(_sq_dist(block, cent), axis=1)
    return out


def _kmeans_pp(X: np.ndarray, K: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: (K, width) float64. Once every row coincides with a chosen
    centroid (fewer distinct rows than K), the rest repeat chosen rows (their clusters stay
    empty)."""
    N = X.shape[0]
    cent = np.empty((K, X.shape[1]), dtype=np.float64)
    cent[0] = X[rng.integers(N)]
    d2 = _sq_dist(X, cent[:1])[:, 0]
    for k in range(1, K):
        total = float(d2.sum())
        # once every row is a centroid already (total 0), any row
        i = int(rng.choice(N, p=d2 / total)) if total > 0.0 else int(rng.integers(N))
        cent[k] = X[i]
        d2 = np.minimum(d2, _sq_dist(X, cent[k:k + 1])[:, 0])
    return cent


def kmeans(X: np.ndarray, K: int, *, seed: int = 0, iters: int = 10) -> np.ndarray:
    """K centroids of the rows of ``X`` (N, width): k-means++ seeding, then ``iters`` Lloyd
    iterations (an empty cluster keeps its centroid). Returns (K, width) float64."""
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    cent = _kmeans_pp(X, K, rng)
    for _ in range(iters):
        assign = np.argmin(_sq_dist(X, cent), axis=1)
        counts = np.bincount(assign, minlength=K)
        sums = np.zeros_like(cent)
        np.add.at(sums, assign, X)
        filled = counts > 0
        new = cent.copy()
        new[filled] = sums[filled] / counts[filled, None]
        if np.array_equal(new, cent):
            break
        cent = new
    return cent


def learn_pq(A: np.ndarray, B: np.ndarray, C: int, K: int, *, bias: np.ndarray | None = None,
             seed: int = 0, iters: int = 10) -> PQModel:
    """Learn a product quantizer of the layer ``A @ B + bias`` (see the module).

    Parameters
    ----------
    A : (N, D) float calibration rows (finite)
    B : (D, M) float weights
    C : subspaces, 1 <= C <= D
    K : centroids per subspace, >= 1
    bias : (M,) or None (zeros)
    seed : seeds k-means++ (subspace c uses ``seed + c``)
    iters : Lloyd iterations (at most; stops early once nothing moves)

    Returns
    -------
    PQModel, ``stats["nmse_train"]`` its NMSE on ``A`` (NaN for a constant exact output).
    """
    t0 = time.perf_counter()
    for name, v in (("C", C), ("K", K)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise HalutError(f"{name} must be a positive integer, got {v!r}")
    if not isinstance(iters, (int, np.integer)) or isinstance(iters, bool) or iters < 0:
        raise HalutError(f"iters must be an integer >= 0, got {iters!r}")
    A32 = as_float_matrix(A, "activations")
    D = A32.shape[1]
    B32 = as_float_matrix(B, "weights")
    if B32.shape[0] != D:
        raise HalutError(f"weights must have D={D} rows (the activations' columns), got "
                         f"shape {B32.shape}")
    M = B32.shape[1]
    bias32 = (np.zeros(M, dtype=np.float32) if bias is None
              else as_float_vector(bias, "bias", length=M))
    bounds = codebook_bounds(D, int(C))
    cents, luts = [], []
    for c in range(int(C)):
        lo, hi = int(bounds[c]), int(bounds[c + 1])
        cent = kmeans(A32[:, lo:hi], int(K), seed=int(seed) + c, iters=int(iters))
        cents.append(cent.astype(np.float32))
        luts.append(cent @ B32[lo:hi].astype(np.float64))
    lut = np.stack(luts).astype(np.float32)
    model = PQModel(bounds=bounds, centroids=tuple(cents), lut=lut, bias=bias32,
                    stats={"n_rows": int(A32.shape[0]), "iters": int(iters), "seed": int(seed)})
    y = A32.astype(np.float64) @ B32.astype(np.float64) + bias32
    y_hat = model.predict(A32)
    var = float(((y - y.mean()) ** 2).sum())
    model.stats["nmse_train"] = float(((y_hat - y) ** 2).sum() / var) if var > 0 else float("nan")
    model.stats["seconds"] = time.perf_counter() - t0
    return model


__all__ = ["PQModel", "kmeans", "learn_pq"]
