"""Judging the retention decisions against the simulator's truth (synthetic data only).

With the true uplift of every action for every scored customer at the scoring date (`uplift_truth`, written by
the generator), each targeting policy contacts the same number of customers K (our call list's size; the number
at risk when the list is empty) and is scored by the true churners its contacts prevent in expectation:
our decisions (the call list), ranking by predicted uplift (best predicted action, among the customers with a
prediction), ranking by churn risk (the
playbook's action for the top reason, what a risk-only system does), random customers with random actions (its
expectation), and the oracle (best true action of the customers with the largest true uplift).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from churnsense.insights.decisions import _codes, _playbook_choice


def _true(truth: pd.DataFrame, ids, actions) -> np.ndarray:
    """True uplift of (customer, action) pairs (0 for unknown customers or actions)."""
    t = truth.set_index("customer_id")
    out = np.zeros(len(ids))
    for i, (c, a) in enumerate(zip(ids, actions)):
        col = f"uplift_{a}"
        if col in t and c in t.index:
            out[i] = float(t.at[c, col])
    return out


def _row(
    name: str,
    ids,
    actions,
    truth: pd.DataFrame,
    cltv: pd.Series,
    cost: Mapping[str, float],
    predicted: np.ndarray | None = None,
) -> dict:
    true = _true(truth, ids, actions)
    value = true * cltv.reindex(ids).fillna(0).to_numpy() - np.array([cost.get(a, 0.0) for a in actions])
    return {
        "policy": name,
        "customers": len(ids),
        "true_churners_prevented": float(true.sum()),
        "predicted_churners_prevented": float(np.nansum(predicted)) if predicted is not None else np.nan,
        "true_saved_value": float(value.sum()),
    }


def policy_table(
    scores: pd.DataFrame,
    predicted: pd.DataFrame,
    truth: pd.DataFrame,
    calls: pd.DataFrame,
    playbook: Mapping[str, Mapping],
    costs: Mapping[str, float],
    seed: int = 0,
) -> pd.DataFrame:
    """One row per policy (see module doc) + ratios to churn-risk targeting and to the oracle."""
    s = scores.set_index("customer_id")
    truth = truth[truth["customer_id"].isin(s.index)]
    k = len(calls) if len(calls) else int(s["at_risk"].sum())
    cltv = s["cltv"].astype(float)
    acts = [c[len("uplift_") :] for c in truth.columns if c.startswith("uplift_")]
    rows = [
        _row(
            "our decisions (call list)",
            calls["customer_id"].tolist(),
            calls["recommended_action"].tolist(),
            truth,
            cltv,
            costs,
            calls["expected_uplift"].to_numpy(dtype=float),
        )
    ]
    pred = predicted.reindex(s.index).dropna(how="all")
    best = pred.max(axis=1).sort_values(ascending=False, kind="stable").head(k)
    rows.append(
        _row(
            "ranked by predicted uplift",
            best.index.tolist(),
            pred.loc[best.index].idxmax(axis=1).tolist(),
            truth,
            cltv,
            costs,
            best.to_numpy(),
        )
    )
    risky = s["churn_probability"].sort_values(ascending=False, kind="stable").head(k)
    by_reason = [
        _playbook_choice(_codes(s.at[c, "reason_codes"]) if "reason_codes" in s else [], playbook)[0]
        for c in risky.index
    ]
    rows.append(_row("ranked by churn risk (playbook action)", risky.index.tolist(), by_reason, truth, cltv, costs))
    tu = truth.set_index("customer_id")[[f"uplift_{a}" for a in acts]]
    rows.append(
        {
            "policy": "random customers, random action",
            "customers": k,
            "true_churners_prevented": float(k * tu.to_numpy().mean()),
            "predicted_churners_prevented": np.nan,
            "true_saved_value": np.nan,
        }
    )
    top = tu.max(axis=1).sort_values(ascending=False, kind="stable").head(k)
    rows.append(
        _row(
            "oracle (true uplift)",
            top.index.tolist(),
            [c[len("uplift_") :] for c in tu.loc[top.index].idxmax(axis=1)],
            truth,
            cltv,
            costs,
        )
    )
    table = pd.DataFrame(rows)
    risk = table.loc[table["policy"].str.startswith("ranked by churn"), "true_churners_prevented"].iloc[0]
    oracle = table["true_churners_prevented"].iloc[-1]
    table["vs_churn_risk"] = table["true_churners_prevented"] / risk if risk > 0 else np.nan
    table["share_of_oracle"] = table["true_churners_prevented"] / oracle if oracle > 0 else np.nan
    return table


def uplift_spearman(predicted: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Spearman correlation of predicted vs true uplift per action over the scored customers."""
    t = truth.set_index("customer_id").reindex(predicted.index)
    return {
        a: float(spearmanr(predicted[a], t[f"uplift_{a}"], nan_policy="omit").statistic)
        for a in predicted.columns
        if f"uplift_{a}" in t
    }
