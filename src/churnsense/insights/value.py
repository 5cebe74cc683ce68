"""Customer lifetime value and value at risk.

Formula (stated): CLTV_i = m_i * sum_{t=1..H} r^(t-1) / (1 + d)^t — the discounted revenue over the next H months
of a customer who is retained now, with m_i = monthly revenue, r = monthly retention of the base (from the
population's churn probabilities: r = (1 - mean p)^(30.44 / horizon_days), or configured), d = monthly discount
rate. Value at risk_i = CLTV_i * p_i. Expected saved value of action a = uplift_i(a) * CLTV_i - cost(a).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

DAYS_PER_MONTH = 30.44


def monthly_retention(p_churn: pd.Series, horizon_days: float) -> float:
    """Base monthly retention implied by the mean churn probability over `horizon_days`."""
    p = float(np.clip(np.nanmean(p_churn.to_numpy(dtype=float)), 0.0, 0.999)) if len(p_churn) else 0.0
    return float((1.0 - p) ** (DAYS_PER_MONTH / float(horizon_days)))


def monthly_revenue(
    facts: pd.DataFrame, column: str | None = None, event_types: Sequence[str] = (), default: float = 1.0
) -> pd.Series:
    """Monthly revenue per customer: the `column` attribute if present, else the last 90 days' value of the
    revenue events (`<type>_sum_recent` spans 60 days) / months, else `default` (so value is in units of m)."""
    if column and column in facts:
        return pd.to_numeric(facts[column], errors="coerce").fillna(default).clip(lower=0.0)
    cols = [f"{t}_sum_recent" for t in event_types if f"{t}_sum_recent" in facts]
    if cols:
        return (facts[cols].fillna(0.0).sum(axis=1) / (60.0 / DAYS_PER_MONTH)).clip(lower=0.0)
    return pd.Series(default, index=facts.index, dtype=float)


def cltv(revenue: pd.Series, retention: float, horizon_months: int = 24, discount_rate: float = 0.01) -> pd.Series:
    """CLTV per customer (see module doc)."""
    t = np.arange(1, int(horizon_months) + 1)
    factor = float(np.sum(retention ** (t - 1) / (1.0 + discount_rate) ** t))
    return (revenue.astype(float) * factor).rename("cltv")


def value_at_risk(cltv_values: pd.Series, p_churn: pd.Series) -> pd.Series:
    return (cltv_values.astype(float) * p_churn.astype(float)).rename("value_at_risk")


def revenue_notice(
    insights_cfg: Mapping[str, Any] | None, attributes: Sequence[str], event_types: Sequence[str]
) -> str | None:
    """None when customers have a monthly revenue (`value.revenue_column` is a customer attribute, or one of
    `value.revenue_events` occurs in the data); else one line saying what follows and what to set."""
    if not insights_cfg:
        return None
    vcfg = insights_cfg.get("value") or {}
    column, events = vcfg.get("revenue_column"), list(vcfg.get("revenue_events") or ())
    if (column and column in attributes) or any(t in set(event_types) for t in events):
        return None
    said = f"revenue_column {column!r} is not a customer attribute" if column else "no revenue_column is set"
    said += f" and no revenue event ({', '.join(events)}) occurs" if events else ""
    return (
        f"no revenue per customer ({said}): CLTV, value at risk and saved value count months of revenue "
        "(1 per month), so actions costing more than that are not recommended; set `revenue_column: <numeric "
        "attribute with the monthly revenue>` (or `revenue_events`) in the data config and retrain"
    )
