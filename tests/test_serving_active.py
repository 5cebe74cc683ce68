"""Scoring only customers who are customers at the cutoff; the others are rejected with the reason."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnsense.churn.score import reject_customers
from churnsense.data.contract import DataSpec


def test_churned_and_future_customers_are_rejected_with_dates():
    spec = DataSpec.from_config(
        {
            "name": "t",
            "customers": {
                "path": "c.csv",
                "columns": {"customer_id": "id", "churn_date": "left", "signup_date": "joined"},
            },
        }
    )
    cutoff = pd.Timestamp("2025-06-01")
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "churn_date": pd.to_datetime(["2025-05-01", None, "2025-07-01", None]),
            "signup_date": pd.to_datetime(["2024-01-01", "2025-06-01", "2024-01-01", "2023-03-03"]),
            "_row": np.arange(1, 5),
        }
    )
    kept, rejects, rejected_ids = reject_customers(customers, cutoff, set(), "c.csv", spec)
    assert kept["customer_id"].tolist() == ["c", "d"] and "churn_date" not in kept  # c churns later: still active
    rej = pd.concat(rejects).set_index("customer_id")
    assert rej.loc["a", "reason"] == "already churned on 2025-05-01 (cutoff 2025-06-01)"
    assert rej.loc["a", "column"] == "left" and rej.loc["a", "row"] == 1
    assert rej.loc["b", "reason"].startswith("not yet a customer: signed up on 2025-06-01")
    assert rej.loc["b", "column"] == "joined" and len(rej) == 2 and rejected_ids == {"a", "b"}
