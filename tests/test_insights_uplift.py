"""Uplift: the T-learner finds who an action helps (known effect), beats random targeting on Qini; JSON state."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from churnsense.insights.uplift import TLearner, evaluate_uplift, offer_arms, uplift_metrics


def offers_log(n: int = 2400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Discount helps price-sensitive customers only (x=1: churn 0.6 -> 0.2 if accepted); acceptance is random."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"price_sensitive": (rng.random(n) < 0.5).astype(float), "noise": rng.normal(size=n)})
    accepted = rng.random(n) < 0.5
    p = np.where(accepted & (x["price_sensitive"] == 1), 0.2, 0.6 - 0.2 * (x["price_sensitive"] == 0))
    offers = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "action": "discount", "accepted": accepted,
                           "churned_within_90d": rng.random(n) < p})
    return x, offers


def test_t_learner_recovers_known_effect():
    x, offers = offers_log()
    arm, contrasts = offer_arms(offers)
    assert contrasts["discount"][:2] == ("discount:accepted", "discount:declined")
    train = np.arange(len(x)) < 1600
    learner = TLearner(["price_sensitive", "noise"], num_rounds=60)
    learner.fit(x[train], arm[train], offers["churned_within_90d"][train], contrasts)
    learner = TLearner.from_dict(json.loads(json.dumps(learner.to_dict())))
    up = learner.predict_uplift(x)["discount"]
    sens = x["price_sensitive"] == 1
    scale = contrasts["discount"][2]  # acceptance rate: uplift of making the offer
    assert abs(up[sens].mean() - 0.4 * scale) < 0.08 and abs(up[~sens].mean()) < 0.06
    res = evaluate_uplift(learner, x[~train], arm[~train], offers["churned_within_90d"][~train]).iloc[0]
    assert res["qini"] > 0.02 and res["auuc"] > res["auuc_random"]


def test_qini_random_and_perfect():
    rng = np.random.default_rng(1)
    n = 4000
    helped = rng.random(n) < 0.3
    treated = rng.random(n) < 0.5
    retained = np.where(treated & helped, 1.0, (rng.random(n) < 0.5).astype(float))
    perfect = uplift_metrics(helped.astype(float) + rng.random(n) * 0.01, treated, retained)
    rand = uplift_metrics(rng.random(n), treated, retained)
    assert perfect["qini"] > 0.02 and abs(rand["qini"]) < 0.01  # perfect: 0.075 * (0.3/2 + 0.7) - 0.075/2
    assert abs(perfect["ate_retention"] - rand["ate_retention"]) < 1e-9
