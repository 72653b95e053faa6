"""Data sets for learning and benchmarks.

``synthetic`` is the issue's low-rank-plus-noise set: activations that look like a layer's
inputs (strongly correlated dimensions) and Gaussian weights.
"""

from __future__ import annotations

import numpy as np

from learning.errors import HalutError


def synthetic(n_train: int = 20000, n_test: int = 5000, D: int = 512, M: int = 64,
              seed: int = 0, rank: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Low-rank activations plus noise, and Gaussian weights.

    ``A = Z @ W + 0.1 * E`` with ``Z`` (N, rank) and ``E`` (N, D) standard normal and
    ``W`` (rank, D) standard normal divided by ``sqrt(rank)``; ``B`` (D, M) standard normal.
    Train and test rows share ``W`` (the same distribution).

    Returns
    -------
    A_train : (n_train, D) float32
    A_test : (n_test, D) float32
    B : (D, M) float32
    """
    for name, v in (("n_train", n_train), ("n_test", n_test), ("D", D), ("M", M),
                    ("rank", rank)):
        if int(v) < 1:
            raise HalutError(f"synthetic: {name} must be >= 1, got {v}")
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((rank, D)) / np.sqrt(rank)

    def rows(n: int) -> np.ndarray:
        Z = rng.standard_normal((n, rank))
        E = rng.standard_normal((n, D))
        return (Z @ W + 0.1 * E).astype(np.float32)

    A_train = rows(n_train)
    A_test = rows(n_test)
    B = rng.standard_normal((D, M)).astype(np.float32)
    return A_train, A_test, B


def nmse(y_hat: np.ndarray, y: np.ndarray) -> float:
    """Normalised mean squared error ``||y_hat - y||^2 / ||y - mean(y)||^2``.

    The mean is over all entries of ``y`` (one scalar), computed in float64.

    Parameters
    ----------
    y_hat, y : (N, M) arrays of the same shape
    """
    a = np.asarray(y_hat, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise HalutError(f"nmse: shapes differ, {a.shape} vs {b.shape}")
    denom = float(np.sum((b - b.mean()) ** 2))
    if denom == 0.0:
        raise HalutError("nmse: the reference output is constant (zero variance)")
    return float(np.sum((a - b) ** 2) / denom)
