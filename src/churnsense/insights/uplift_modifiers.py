"""What the relative-risk uplift learner conditions on: the churn model's own risk and reasons for a customer.

The same columns at fit time (each logged customer as the model saw it on the day of its offer) and at serving
(each at-risk customer at the scoring cutoff), so the learner sees one definition (`churn_probability` is kept
beside them: the at-risk rule the decisions apply):
- `model_risk`: the model's churn probability over the offer's outcome window, `p_churn_<outcome_days>d` when the
  model has that hazard horizon, else `churn_probability` (its label horizon);
- `reason_share_<group>`: the share of the customer's churn probability `p` that the group causes. The attribution
  (`attr_<group>`, logit units) adds up to logit(p) minus the logit of the reference population's risk, so the
  reference risk is p_ref = sigmoid(logit(p) - sum attr); the excess 1 - p_ref / p (0 when p <= p_ref) is split
  over the risk-raising groups in proportion to their positive attribution; the rest of p is the risk anyone has
  (the learner's common effect applies to it). Missing when the customer was not explained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import expit, logit

RISK = "model_risk"
PROBABILITY = "churn_probability"  # the label-horizon probability: the at-risk rule of the decisions
SHARE = "reason_share_"
ATTR = "attr_"


def risk_column(columns: Sequence[str], outcome_days: int) -> str:
    """The model output closest to an outcome window of `outcome_days` (see module doc)."""
    horizon = f"p_churn_{int(outcome_days)}d"
    return horizon if horizon in columns else PROBABILITY


def reason_shares(attributions: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per row, each group's share of the churn probability `p` (see module doc; NaN where the row has no
    attribution at all)."""
    a = np.asarray(attributions, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    p_ref = expit(logit(p) - np.nansum(a, axis=1))
    excess = np.clip(1.0 - p_ref / p, 0.0, 1.0)[:, None]
    pos = np.clip(np.nan_to_num(a), 0.0, None)
    total = pos.sum(axis=1, keepdims=True)
    shares = excess * np.divide(pos, total, out=np.zeros_like(pos), where=total > 0)
    return np.where(np.isnan(a).all(axis=1, keepdims=True), np.nan, shares)


def effect_modifiers(scored: pd.DataFrame, attributions: pd.DataFrame | None, outcome_days: int) -> pd.DataFrame:
    """Index customer_id: `model_risk` and `reason_share_<group>` (see module doc). `scored`: customer_id and the
    model outputs (`churn_probability`: the attributed one); `attributions`: customer_id and `attr_<group>` columns
    of that probability's logit (None: no shares)."""
    ids = scored["customer_id"].to_numpy()
    out = pd.DataFrame(
        {
            RISK: scored[risk_column(list(scored.columns), outcome_days)].to_numpy(dtype=np.float64),
            PROBABILITY: scored[PROBABILITY].to_numpy(dtype=np.float64),
        },
        index=pd.Index(ids, name="customer_id"),
    )
    if attributions is None or attributions.empty:
        return out
    cols = [c for c in attributions.columns if c.startswith(ATTR)]
    attr = attributions.set_index("customer_id")[cols].reindex(ids).to_numpy(dtype=np.float64)
    p = scored[PROBABILITY].to_numpy(dtype=np.float64)
    shares = pd.DataFrame(reason_shares(attr, p), index=out.index, columns=[SHARE + c[len(ATTR) :] for c in cols])
    return pd.concat([out, shares], axis=1)


def modifier_columns(names: Sequence[str]) -> tuple[int | None, list[int]]:
    """(index of `model_risk`, indices of the `reason_share_*` columns) in a feature list (None: no risk)."""
    names = list(names)
    risk = names.index(RISK) if RISK in names else None
    return risk, [i for i, n in enumerate(names) if n.startswith(SHARE)]
