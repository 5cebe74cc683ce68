"""Behavioural segments: K-means on standardised behaviour facts, K chosen by the silhouette score.

Features: numeric customer facts (`insights.segments.features`, exact names or `prefix*`; empty = all numeric
facts), signed-log1p transformed (counts and sums are heavy-tailed), missing -> training median, standardised.
K: the K in `k_range` with the highest mean silhouette on a sample (stated criterion; all scores kept in state).
State is plain JSON (medians, mean/scale, centres, names, 2-D PCA basis for plots): no pickle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def _select(facts: pd.DataFrame, patterns: Sequence[str]) -> list[str]:
    numeric = [
        c for c in facts.columns if pd.api.types.is_numeric_dtype(facts[c]) and not pd.api.types.is_bool_dtype(facts[c])
    ]
    if not patterns:
        return numeric
    return [c for c in numeric if any(c == p or (p.endswith("*") and c.startswith(p[:-1])) for p in patterns)]


def _matrix(facts: pd.DataFrame, state: Mapping[str, Any]) -> np.ndarray:
    x = facts.reindex(columns=state["features"]).astype(float)
    x = x.fillna(pd.Series(state["medians"], index=state["features"]))
    x = np.sign(x.to_numpy()) * np.log1p(np.abs(x.to_numpy()))
    return (x - np.asarray(state["mean"])) / np.asarray(state["scale"])


def fit_segments(
    facts: pd.DataFrame,
    features: Sequence[str] = (),
    k_range: Sequence[int] = (2, 8),
    labels: Mapping[str, str] | None = None,
    sample: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the segmentation; returns its JSON-able state (see module doc)."""
    from sklearn.cluster import KMeans  # fitting only: serving assigns with the saved centroids
    from sklearn.metrics import silhouette_score

    def usable(columns: list[str]) -> list[str]:
        return [c for c in columns if facts[c].notna().mean() > 0.05 and facts[c].nunique() > 1]

    cols = usable(_select(facts, features))
    if len(cols) < 2 and features:  # the configured features are another data set's: use every numeric fact
        log.warning("segments: configured features match %s here; clustering on all numeric facts", cols or "none")
        cols = usable(_select(facts, ()))
    if not cols:
        raise ValueError("segments: no numeric behaviour facts to cluster on")
    medians = facts[cols].astype(float).median().fillna(0.0)
    raw = facts[cols].astype(float).fillna(medians).to_numpy()
    logged = np.sign(raw) * np.log1p(np.abs(raw))
    mean, scale = logged.mean(axis=0), logged.std(axis=0)
    scale[scale < 1e-9] = 1.0
    state: dict[str, Any] = {
        "features": cols,
        "medians": medians.tolist(),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
    }
    x = (logged - mean) / scale
    rng = np.random.default_rng(seed)
    xs = x[rng.choice(len(x), size=min(sample, len(x)), replace=False)]
    scores: dict[int, float] = {}
    fits: dict[int, KMeans] = {}
    for k in range(int(k_range[0]), int(k_range[1]) + 1):
        if k >= len(xs):
            break
        fits[k] = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(xs)
        scores[k] = float(silhouette_score(xs, fits[k].labels_, sample_size=min(2000, len(xs)), random_state=seed))
    best = max(scores, key=scores.get)
    centers = fits[best].cluster_centers_
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    state.update(
        k=best,
        criterion="silhouette",
        silhouette=scores,
        centers=centers.tolist(),
        pca=vt[:2].tolist(),
        names=[segment_name(c, cols, labels) for c in centers],
    )
    return state


def assign_segments(facts: pd.DataFrame, state: Mapping[str, Any]) -> pd.Series:
    """Nearest-centre segment id (int) per customer, indexed like `facts`."""
    x = _matrix(facts, state)
    d = ((x[:, None, :] - np.asarray(state["centers"])[None, :, :]) ** 2).sum(axis=2)
    return pd.Series(d.argmin(axis=1), index=facts.index, name="segment")


def segment_name(
    center: np.ndarray,
    features: Sequence[str],
    labels: Mapping[str, str] | None = None,
    n_terms: int = 2,
    min_z: float = 0.3,
) -> str:
    """A readable name from the centre's largest standardised deviations, e.g. "high outages, low usage"."""
    labels = dict(labels or {})
    order = np.argsort(-np.abs(center))[:n_terms]
    terms = [
        f"{'high' if center[j] > 0 else 'low'} {labels.get(features[j], features[j].replace('_', ' '))}"
        for j in order
        if abs(center[j]) >= min_z
    ]
    return ", ".join(terms) if terms else "typical"


def profile_segments(
    frame: pd.DataFrame,
    facts: pd.DataFrame | None,
    state: Mapping[str, Any],
    label: str | None = None,
    n_attributes: int = 4,
) -> pd.DataFrame:
    """One row per segment: size, share, churn rate (observed `label` if given, else mean `churn_probability`),
    mean risk, typical attributes (largest deviations: median value in the segment), dominant reasons, name.
    `frame`: customer_id, segment, churn_probability[, reason_1][, label]."""
    f = frame.set_index("customer_id")
    x = facts.reindex(f.index) if facts is not None else None
    rows = []
    for seg in range(int(state["k"])):
        m = f["segment"].to_numpy() == seg
        center = np.asarray(state["centers"][seg])
        attrs = []
        for j in np.argsort(-np.abs(center))[:n_attributes]:
            col, z = state["features"][j], f"{'+' if center[j] > 0 else ''}{center[j]:.1f}sd"
            attrs.append(f"{col}={x.loc[m, col].median():.3g} ({z})" if x is not None else f"{col} {z}")
        reasons = f.loc[m, "reason_1"].replace("", np.nan).dropna() if "reason_1" in f else pd.Series(dtype=str)
        top = reasons.value_counts(normalize=True).head(3)
        observed = label and label in f and f.loc[m, label].notna().any()
        rows.append(
            {
                "segment": seg,
                "name": state["names"][seg],
                "size": int(m.sum()),
                "share": float(m.mean()),
                "churn_rate": float(f.loc[m, label].mean())
                if observed
                else float(f.loc[m, "churn_probability"].mean()),
                "churn_rate_source": "observed" if observed else "predicted",
                "mean_risk": float(f.loc[m, "churn_probability"].mean()) if m.any() else np.nan,
                "typical_attributes": "; ".join(attrs),
                "dominant_reasons": "; ".join(f"{r} {s:.0%}" for r, s in top.items()),
            }
        )
    return pd.DataFrame(rows)


def plot_segments(
    facts: pd.DataFrame,
    segment: pd.Series,
    risk: pd.Series,
    state: Mapping[str, Any],
    path: str | Path,
    max_points: int = 5000,
    seed: int = 0,
) -> Path:
    """2-D PCA scatter of the standardised facts, coloured by segment, sized by churn risk; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.random.default_rng(seed).permutation(len(facts))[:max_points]
    xy = _matrix(facts.iloc[idx], state) @ np.asarray(state["pca"]).T
    seg, r = segment.to_numpy()[idx], np.nan_to_num(risk.to_numpy()[idx].astype(float))
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for s in range(int(state["k"])):
        m = seg == s
        ax.scatter(xy[m, 0], xy[m, 1], s=4 + 60 * r[m], alpha=0.5, label=f"{s}: {state['names'][s]}")
    ax.set(xlabel="PC1", ylabel="PC2", title="Customer segments (size = churn risk)")
    ax.legend(fontsize=7, markerscale=0.6, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
