"""Segments: K chosen by silhouette, JSON-able state, profiles, plot."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from churnsense.insights.segments import assign_segments, fit_segments, plot_segments, profile_segments


def blobs(n: int = 150, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.arange(n) % 3
    return pd.DataFrame(
        {
            "outage_n_90d": np.array([1, 6, 1])[g] * rng.lognormal(0, 0.1, n),
            "usage_sum_recent": np.array([50, 50, 2])[g] * rng.lognormal(0, 0.1, n),
            "tenure_months": rng.uniform(10, 12, n),
        },
        index=[f"C{i}" for i in range(n)],
    )


def test_segments_found_and_profiled(tmp_path):
    facts = blobs()
    state = fit_segments(facts, ["outage*", "usage*"], (2, 5), {"outage_n_90d": "outages"})
    state = json.loads(json.dumps(state))  # plain JSON round trip
    assert state["k"] == 3 and state["criterion"] == "silhouette" and len(state["silhouette"]) == 4
    seg = assign_segments(facts, state)
    truth = np.arange(len(facts)) % 3
    assert pd.crosstab(seg.to_numpy(), truth).gt(0).sum(axis=1).eq(1).all()  # pure clusters
    assert any("high outages" in name for name in state["names"])
    risk = pd.Series(np.where(truth == 1, 0.8, 0.1), index=facts.index)
    frame = pd.DataFrame(
        {
            "customer_id": facts.index,
            "segment": seg.to_numpy(),
            "churn_probability": risk.to_numpy(),
            "reason_1": np.where(truth == 1, "outages", ""),
            "label": (truth == 1).astype(float),
        }
    )
    prof = profile_segments(frame, facts, state, label="label")
    assert prof["size"].sum() == len(facts) and prof["churn_rate_source"].eq("observed").all()
    outage_seg = prof.loc[prof["churn_rate"].idxmax()]
    assert outage_seg["churn_rate"] == 1.0 and outage_seg["dominant_reasons"].startswith("outages 100%")
    assert "outage_n_90d" in outage_seg["typical_attributes"]
    png = plot_segments(facts, seg, risk, state, tmp_path / "segments.png")
    assert png.stat().st_size > 1000


def test_other_data_sets_segment_on_their_own_facts_and_labels_never_become_facts():
    from churnsense.insights.reasons import customer_facts

    rng = np.random.default_rng(0)
    n = 300
    customers = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "label": rng.integers(0, 2, n),
            "tenure": np.r_[rng.normal(5, 1, n // 2), rng.normal(60, 5, n - n // 2)],
            "monthlycharges": rng.normal(70, 10, n),
        }
    )
    facts = customer_facts(customers, None, None, pd.Timestamp("2024-01-01"))
    assert "label" not in facts.columns  # the training target must not describe (or segment) customers
    state = fit_segments(facts, ["usage_sum_recent", "outage_n_90d"], (2, 4), sample=300)  # synth's feature names
    assert set(state["features"]) == {"tenure", "monthlycharges"} and state["k"] >= 2
