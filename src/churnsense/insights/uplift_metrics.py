"""How good an uplift ranking is on held-out rows: Qini and uplift curves, their areas against random targeting,
and bootstrap intervals.

Outcome convention: `retained` (1 = stayed); a good score ranks first the customers whom treatment makes stay.
Rows may carry weights (inverse propensity of the arm received, for logs whose assignment was not randomised).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def _sorted(score, treated, retained, weight):
    w = np.ones(len(score)) if weight is None else np.asarray(weight, dtype=np.float64)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    return np.asarray(treated, bool)[order], np.asarray(retained, np.float64)[order], w[order]


def qini_curve(
    score: np.ndarray, treated: np.ndarray, retained: np.ndarray, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve: targeting the top fraction x by `score`, gain(x) = R_t - R_c * N_t / N_c (weighted counts of
    retained customers in treatment / control among the targeted), as a fraction of the population."""
    t, r, w = _sorted(score, treated, retained, weight)
    n_t, n_c = np.cumsum(w * t), np.cumsum(w * ~t)
    r_t, r_c = np.cumsum(w * t * r), np.cumsum(w * ~t * r)
    gain = r_t - r_c * np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c > 0)
    x = np.concatenate([[0.0], np.arange(1, len(t) + 1) / max(len(t), 1)])
    return x, np.concatenate([[0.0], gain / w.sum()])


def uplift_curve(
    score: np.ndarray, treated: np.ndarray, retained: np.ndarray, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve: (retention rate treated - control among the targeted) x share targeted."""
    t, r, w = _sorted(score, treated, retained, weight)
    n_t, n_c = np.cumsum(w * t), np.cumsum(w * ~t)
    rate_t = np.divide(np.cumsum(w * t * r), n_t, out=np.zeros_like(n_t), where=n_t > 0)
    rate_c = np.divide(np.cumsum(w * ~t * r), n_c, out=np.zeros_like(n_c), where=n_c > 0)
    x = np.concatenate([[0.0], np.arange(1, len(t) + 1) / max(len(t), 1)])
    return x, np.concatenate([[0.0], (rate_t - rate_c) * (n_t + n_c) / w.sum()])


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def qini_above_random(score, treated, retained, weight=None) -> float:
    """Area between the Qini curve and the random line (the straight line to the same end point)."""
    x, q = qini_curve(score, treated, retained, weight)
    return _area(x, q) - q[-1] / 2.0


def uplift_metrics(
    score: np.ndarray, treated: np.ndarray, retained: np.ndarray, weight: np.ndarray | None = None
) -> dict[str, float]:
    """Qini and AUUC of a ranking vs random targeting. `qini` = area between the Qini curve and random
    (`qini_area` - `qini_random`); `auuc` / `auuc_random` = areas under the uplift curve and its random line;
    `ate_retention` = the average effect on retention (treated - control) over all rows."""
    xq, q = qini_curve(score, treated, retained, weight)
    xu, u = uplift_curve(score, treated, retained, weight)
    return {
        "qini_area": _area(xq, q),
        "qini_random": q[-1] / 2.0,
        "qini": _area(xq, q) - q[-1] / 2.0,
        "auuc": _area(xu, u),
        "auuc_random": u[-1] / 2.0,
        "ate_retention": float(u[-1]),
        "n": int(len(score)),
        "n_treated": int(np.asarray(treated, bool).sum()),
    }


def bootstrap_interval(
    score: np.ndarray,
    treated: np.ndarray,
    retained: np.ndarray,
    weight: np.ndarray | None = None,
    reps: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `qini` (rows resampled within each arm, so both arms keep their size;
    resampled rows shuffled, so tied scores are not ordered by arm)."""
    rng = np.random.default_rng(seed)
    treated = np.asarray(treated, bool)
    arms = [np.flatnonzero(treated), np.flatnonzero(~treated)]
    w = None if weight is None else np.asarray(weight, dtype=np.float64)
    values = np.empty(int(reps))
    for b in range(int(reps)):
        rows = rng.permutation(np.concatenate([rng.choice(a, size=a.size, replace=True) for a in arms if a.size]))
        values[b] = qini_above_random(score[rows], treated[rows], retained[rows], None if w is None else w[rows])
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def curve_points(score, treated, retained, weight=None, points: int = 51) -> dict[str, list[float]]:
    """The Qini curve at `points` points, for plots (`curve_x`, `curve_qini`)."""
    x, q = qini_curve(score, treated, retained, weight)
    pick = np.linspace(0, len(x) - 1, min(points, len(x))).astype(int)
    return {"curve_x": x[pick].round(4).tolist(), "curve_qini": q[pick].round(5).tolist()}


def wilson(successes: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(centre - half), float(centre + half)


def difference_interval(s1: float, n1: float, s2: float, n2: float, level: float = 0.95) -> tuple[float, float, float]:
    """p1 - p2 with Newcombe's hybrid score interval (method 10 of Newcombe 1998)."""
    z = float(norm.ppf(0.5 + level / 2))
    p1, p2 = s1 / n1, s2 / n2
    (l1, u1), (l2, u2) = wilson(s1, n1, z), wilson(s2, n2, z)
    d = p1 - p2
    return d, d - float(np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)), d + float(np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))
