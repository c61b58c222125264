"""The test's label mix over the joint labels: EM, BBSE and the label-shift check on label combinations.

A multi-label clip's label is one of the 2^L combinations (fake/real: neither, fake only, real only,
both); a multiclass clip's is its class. A label shift changes the shares of these joint classes and
nothing else, so every function of the audio — each column of each run, whatever label it was meant
for — keeps its distribution within a joint class, and its test distribution is the mixture
Σ_c π_c·F_c of its OOF per-class distributions. Checking a column against its own label's two-part
mixture (the per-label check) rejects a true label shift whenever the column also moves with another
label: a run with its fake/real columns swapped, or a real score that differs between one-voice and
two-voice clips. The mixture over joint classes does not: a swapped or inverted column is a mixture of
the same classes, so the check reads the runs exactly as the blend uses them after `flip` (which only
reorders and mirrors columns) while a covariate shift (noisier audio) still breaks it at every π.

- Joint posteriors: a multinomial logistic regression on the blend's logits, fitted on the fit rows'
  nested predictions (a few parameters; calibrated to the fit rows' joint shares by construction).
- EM (Saerens et al. 2002) over the joint classes; BBSE (Lipton et al. 2018) in its soft form, solved
  on the simplex, with a bootstrap standard error of each label's share.
- The mixture check with free shares is a linear program (the KS distance is a maximum of absolute
  values of functions affine in π), solved on at most MAX_GRID test quantiles and re-measured exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_JOINT_LABELS = 4  # 16 combinations at most; beyond this each label is checked on its own
MAX_GRID = 1000       # test quantiles the mixture LP is solved on (the distance is then measured on all)
MIN_CLASS_ROWS = 5    # a combination seen on fewer fit rows is no class of its own (its rows are kept out)
BBSE_BOOT = 30        # bootstrap resamples for BBSE's standard error


@dataclass
class JointPrior:
    """Joint classes (as label combinations) and their shares on the fit rows and by EM and BBSE."""

    combos: np.ndarray    # (K, L) 0/1: which labels each class holds
    train: np.ndarray     # (K,)
    em: np.ndarray        # (K,)
    bbse: np.ndarray      # (K,)
    bbse_error: np.ndarray  # (L,) standard error of BBSE's per-label shares

    def marginals(self, shares: np.ndarray) -> list[float]:
        """Each label's share under joint `shares`."""
        return [float(v) for v in shares @ self.combos]

    def names(self, labels: list[str]) -> list[str]:
        return ["+".join(l for l, on in zip(labels, c) if on) or "none" for c in self.combos]

    def record(self, labels: list[str]) -> dict:
        return {"classes": self.names(labels), "train": self.train.round(6).tolist(),
                "em": self.em.round(6).tolist(), "bbse": self.bbse.round(6).tolist()}


def joint_codes(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's joint class index and the classes' label combinations (those with ≥ MIN_CLASS_ROWS
    rows; rows of rarer combinations get −1)."""
    bits = (y > 0.5).astype(np.int64) @ (1 << np.arange(y.shape[1]))
    values, counts = np.unique(bits, return_counts=True)
    kept = values[counts >= MIN_CLASS_ROWS]
    code = np.full(len(y), -1)
    for k, v in enumerate(kept):
        code[bits == v] = k
    combos = ((kept[:, None] >> np.arange(y.shape[1])) & 1).astype(float)
    return code, combos


def _features(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(q) - np.log1p(-q)


def joint_posteriors(p_fit: np.ndarray, code: np.ndarray, p_test: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Joint-class posteriors of the fit rows and the test rows, from a multinomial logistic regression on
    the blend's per-label logits."""
    from sklearn.linear_model import LogisticRegression

    keep = code >= 0
    model = LogisticRegression(C=100.0, max_iter=1000).fit(_features(p_fit[keep]), code[keep])
    order = np.argsort(model.classes_)
    return model.predict_proba(_features(p_fit))[:, order], model.predict_proba(_features(p_test))[:, order]


def em_joint(post_test: np.ndarray, train: np.ndarray, max_iter: int = 1000, tol: float = 1e-9) -> np.ndarray:
    """Saerens–Latinne–Decaestecker EM over joint classes: the shares behind posteriors fitted at `train`."""
    pi = post_test.mean(axis=0)
    for _ in range(max_iter):
        w = post_test * (pi / train)
        new = (w / w.sum(axis=1, keepdims=True)).mean(axis=0)
        if np.abs(new - pi).max() < tol:
            return new
        pi = new
    return pi


def _bbse_once(post_fit: np.ndarray, code: np.ndarray, post_test: np.ndarray, K: int) -> np.ndarray:
    from scipy.optimize import nnls

    confusion = np.stack([post_fit[code == c].mean(axis=0) for c in range(K)], axis=1)  # (pred, true)
    # Σπ = 1 as a heavily weighted extra equation; π ≥ 0 by NNLS
    A = np.vstack([confusion, 100.0 * np.ones((1, K))])
    b = np.concatenate([post_test.mean(axis=0), [100.0]])
    pi, _ = nnls(A, b)
    return pi / pi.sum() if pi.sum() > 0 else np.full(K, 1.0 / K)


def bbse_joint(post_fit: np.ndarray, code: np.ndarray, post_test: np.ndarray, combos: np.ndarray,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Soft BBSE over joint classes (the mean test posterior = confusion · π, π on the simplex) and the
    bootstrap standard error of each label's share."""
    K = len(combos)
    keep = code >= 0
    pf, cf = post_fit[keep], code[keep]
    pi = _bbse_once(pf, cf, post_test, K)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(BBSE_BOOT):
        i, t = rng.integers(0, len(cf), len(cf)), rng.integers(0, len(post_test), len(post_test))
        if len(np.unique(cf[i])) == K:
            reps.append(_bbse_once(pf[i], cf[i], post_test[t], K) @ combos)
    error = np.std(reps, axis=0) if len(reps) > 1 else np.zeros(combos.shape[1])
    return pi, error


def estimate(p_fit: np.ndarray, y_fit: np.ndarray, p_test: np.ndarray) -> tuple[JointPrior, np.ndarray]:
    """Joint shares by EM and BBSE from the blend's per-label predictions; also each fit row's class."""
    code, combos = joint_codes(y_fit)
    K = len(combos)
    train = np.array([(code == c).mean() for c in range(K)])
    train = train / train.sum()
    if K < 2:
        same = train.copy()
        return JointPrior(combos, train, same, same, np.zeros(y_fit.shape[1])), code
    post_fit, post_test = joint_posteriors(p_fit, code, p_test, K)
    em = em_joint(post_test, train)
    bbse, error = bbse_joint(post_fit, code, post_test, combos)
    return JointPrior(combos, train, em, bbse, error), code


def joint_mixture_ks(col_fit: np.ndarray, code: np.ndarray, col_test: np.ndarray, shares: np.ndarray | None,
                     tests: int = 1) -> tuple[float, float]:
    """KS distance between a column's test values and the label-shift mixture Σ_c π_c·F_c of its fit-row
    per-class distributions, and the distance sampling noise alone reaches at MIXTURE_ALPHA split over
    `tests` tests. `shares=None`: the mixture that fits best over the simplex (a linear program)."""
    from ensemble.stack.prior import _critical

    K = int(code.max()) + 1
    per_class = [np.sort(col_fit[code == c]) for c in range(K)]
    n = np.array([len(v) for v in per_class], dtype=float)
    grid = np.sort(col_test)
    test_cdf = np.arange(1, len(grid) + 1) / len(grid)

    def cdfs(points: np.ndarray, side: str) -> np.ndarray:
        return np.stack([np.searchsorted(v, points, side=side) / len(v) for v in per_class], axis=1)

    right, left = cdfs(grid, "right"), cdfs(grid, "left")

    def distance(pi: np.ndarray) -> float:
        return float(max(np.abs(test_cdf - right @ pi).max(), np.abs(test_cdf - 1 / len(grid) - left @ pi).max()))

    if shares is None:
        shares = _best_shares(test_cdf, right, left, len(grid))
    n_ref = 1.0 / float(np.sum(shares**2 / n))
    return distance(shares), float(_critical(tests) * np.sqrt(1 / len(grid) + 1 / n_ref))


def _best_shares(test_cdf: np.ndarray, right: np.ndarray, left: np.ndarray, n: int) -> np.ndarray:
    """The shares on the simplex minimising the KS distance (LP on at most MAX_GRID points)."""
    from scipy.optimize import linprog

    idx = np.unique(np.linspace(0, len(test_cdf) - 1, min(len(test_cdf), MAX_GRID)).astype(int))
    K = right.shape[1]
    targets = np.concatenate([test_cdf[idx], test_cdf[idx] - 1 / n])
    F = np.vstack([right[idx], left[idx]])
    # variables (π, t): minimise t subject to ±(target − F π) ≤ t, Σπ = 1, π ≥ 0
    A = np.block([[-F, -np.ones((len(F), 1))], [F, -np.ones((len(F), 1))]])
    b = np.concatenate([-targets, targets])
    res = linprog(np.r_[np.zeros(K), 1.0], A_ub=A, b_ub=b, A_eq=np.r_[np.ones(K), 0.0][None, :], b_eq=[1.0],
                  bounds=[(0, None)] * K + [(0, None)], method="highs")
    if not res.success:
        return np.full(K, 1.0 / K)
    pi = np.clip(res.x[:K], 0, None)
    return pi / pi.sum()
