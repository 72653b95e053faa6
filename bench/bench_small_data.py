"""Learning on small training sets (docs/learning.md): held-out NMSE of the adaptive LUT fit
(``ridge="auto"``: shrunk toward the leaf means, strength chosen on held-out folds) against
the plain leaf means (``ridge=None``) and the former default (ridge lambda = 1 toward zero),
on smooth series-like data: sums of a few random sinusoids and steps, D = 320, the weights B
made of training rows (M = 32), N_train in {40, 100, 200}, 2000 held-out rows, C in
{8, 16, 32}, K = 16, 5 seeds. Target: auto no worse than the better of the two at every
(N, C) (mean over seeds)."""

from __future__ import annotations

import numpy as np
from common import write_result

from learning import learn
from learning.datasets import nmse
from learning.maddness import _fold_stats
from learning.program import codebook_bounds

D, M, K, N_TEST = 320, 32, 16, 2000
NS, CS, SEEDS = (40, 100, 200), (8, 16, 32), range(5)


def series(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows of ``n`` smooth series: 3 sinusoids and 2 steps each, plus a little noise."""
    t = np.linspace(0, 1, D)[None, :]
    X = np.zeros((n, D))
    for _ in range(3):
        f = rng.uniform(0.5, 6, (n, 1))
        X += rng.normal(0, 1, (n, 1)) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3, (n, 1)))
    for _ in range(2):
        X += rng.normal(0, 1, (n, 1)) * (t > rng.uniform(0, 1, (n, 1)))
    return (X + rng.normal(0, 0.05, X.shape)).astype(np.float32)


def ridge_toward_zero(A: np.ndarray, B: np.ndarray, model: object, lam: float) -> np.ndarray:
    """The former fit: prototypes by ridge toward zero (lambda = 1), as a LUT (M, C, K)."""
    C = model.C  # type: ignore[attr-defined]
    bounds = codebook_bounds(D, C)
    codes = model.encode(A)  # type: ignore[attr-defined]
    st = _fold_stats(A, B, codes, bounds, K, np.zeros(A.shape[0], np.int64), 1)[0]
    T = np.linalg.solve(st.gtg + lam * np.eye(st.gtg.shape[0]), st.gty)
    return T.reshape(C, K, M).transpose(2, 0, 1)


def main() -> None:
    rows = []
    for N in NS:
        for C in CS:
            errs: dict[str, list[float]] = {"auto": [], "leaf_means": [], "lambda_1_to_zero": []}
            lams = []
            for seed in SEEDS:
                rng = np.random.default_rng(1000 * N + seed)
                A = series(rng, N + N_TEST)
                A_tr, A_te = A[:N], A[N:]
                B = np.ascontiguousarray(A_tr[:M].T)
                Y = A_te @ B
                auto = learn(A_tr, B, C, K, seed=seed)
                lams.append(auto.stats["ridge_lambda"])
                means = learn(A_tr, B, C, K, ridge=None)
                errs["auto"].append(nmse(auto.predict(A_te), Y))
                errs["leaf_means"].append(nmse(means.predict(A_te), Y))
                old = type(auto)(**{**auto.__dict__, "lut": ridge_toward_zero(A_tr, B, auto, 1.0)
                                    .astype(np.float32)})
                errs["lambda_1_to_zero"].append(nmse(old.predict(A_te), Y))
            mean = {k: float(np.mean(v)) for k, v in errs.items()}
            best_other = min(mean["leaf_means"], mean["lambda_1_to_zero"])
            rows.append({"N_train": N, "C": C, "K": K, **{f"nmse_{k}": v for k, v in mean.items()},
                         "auto_lambdas": lams,
                         "auto_vs_best_other": mean["auto"] / best_other,
                         "met": mean["auto"] <= best_other * 1.0001})
            print(rows[-1], flush=True)
    write_result("small_data", {"D": D, "M": M, "K": K, "test_rows": N_TEST,
                                "seeds": len(SEEDS), "rows": rows,
                                "target_met": all(r["met"] for r in rows)})


if __name__ == "__main__":
    main()
