"""learning/pq.py: the product-quantization baseline, against the exact product."""

from __future__ import annotations

import numpy as np
import pytest

from learning.datasets import nmse, synthetic
from learning.errors import HalutError
from learning.pq import kmeans, learn_pq


def test_exact_when_every_subspace_has_at_most_K_distinct_rows() -> None:
    rng = np.random.default_rng(0)
    D, M, C, K = 12, 5, 3, 8
    # each subspace (4 dims) takes one of 6 distinct values per row: 6 <= K centroids
    parts = [rng.standard_normal((6, D // C))[rng.integers(0, 6, 300)] for _ in range(C)]
    A = np.concatenate(parts, axis=1).astype(np.float32)
    B = rng.standard_normal((D, M)).astype(np.float32)
    bias = rng.standard_normal(M).astype(np.float32)
    model = learn_pq(A, B, C, K, bias=bias, seed=3)
    exact = A @ B + bias
    np.testing.assert_allclose(model.predict(A), exact, rtol=1e-5, atol=1e-5)
    assert model.stats["nmse_train"] < 1e-10
    # fresh rows built from the same values are exact too
    A2 = np.concatenate([p[::-1] for p in parts], axis=1).astype(np.float32)
    assert nmse(model.predict(A2), A2 @ B + bias) < 1e-10
    assert model.encode(A).shape == (300, C) and model.lut.shape == (C, K, M)


def test_error_falls_as_K_grows_and_learning_is_seeded() -> None:
    A, A_test, B = synthetic(n_train=2000, n_test=500, D=32, M=8, seed=1)
    errs = []
    for K in (2, 8, 32):
        model = learn_pq(A, B, 8, K, seed=0)
        errs.append(nmse(model.predict(A_test), A_test @ B))
    assert errs[0] > errs[1] > errs[2] > 0, errs
    a, b = learn_pq(A, B, 8, 8, seed=5), learn_pq(A, B, 8, 8, seed=5)
    assert np.array_equal(a.lut, b.lut)


def test_uneven_subspaces_and_fewer_rows_than_centroids() -> None:
    rng = np.random.default_rng(2)
    A = rng.standard_normal((5, 7)).astype(np.float32)  # 5 rows, K=16: every row a centroid
    B = rng.standard_normal((7, 3)).astype(np.float32)
    model = learn_pq(A, B, 3, 16)
    assert [int(x) for x in model.bounds] == [0, 3, 5, 7]
    np.testing.assert_allclose(model.predict(A), A @ B, rtol=1e-5, atol=1e-5)
    cent = kmeans(np.zeros((4, 2)), 3)  # all rows equal: no division by zero
    assert cent.shape == (3, 2) and not np.isnan(cent).any()


@pytest.mark.parametrize("kwargs, message", [
    ({"C": 9}, "cannot split D=8"),
    ({"C": 0}, "C must be a positive integer"),
    ({"K": 0}, "K must be a positive integer"),
    ({"iters": -1}, "iters"),
    ({"B": np.ones((7, 2), np.float32)}, "D=8 rows"),
    ({"bias": np.ones(3, np.float32)}, "bias"),
])
def test_bad_arguments_are_one_line(kwargs: dict, message: str) -> None:
    args = {"A": np.ones((10, 8), np.float32), "B": np.ones((8, 2), np.float32), "C": 2,
            "K": 4}
    args.update(kwargs)
    with pytest.raises(HalutError, match=message):
        learn_pq(**args)
