"""Uplift: every learner kind recovers a planted effect per action, the evidence gate passes real effects and
stops a null one, the state round-trips through JSON; Qini against random and a perfect ranking."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from churnsense.insights.uplift import KINDS, UpliftLearner, UpliftModel
from churnsense.insights.uplift_fit import available_kinds, design_of, fit_uplift
from churnsense.insights.uplift_metrics import bootstrap_interval, uplift_metrics
from churnsense.insights.uplift_modifiers import effect_modifiers, reason_shares
from helpers import default_insights_config

# action -> the binary fact whose customers it helps (churn 0.5 -> 0.15 when offered); "survey" helps no one
PLANTED = {"discount": "price_hike", "call": "complaint", "survey": None}


def planted_log(n: int = 3000, seed: int = 0, control_share: float = 0.35) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A randomised log: a shared hold-out and three actions drawn at random; facts indexed by customer id."""
    rng = np.random.default_rng(seed)
    ids = [f"C{i:05d}" for i in range(n)]
    facts = pd.DataFrame(
        {
            "price_hike": (rng.random(n) < 0.4).astype(float),
            "complaint": (rng.random(n) < 0.4).astype(float),
            "noise": rng.normal(size=n),
            "contract": rng.choice(["monthly", "yearly"], n),
        },
        index=pd.Index(ids, name="customer_id"),
    )
    control = rng.random(n) < control_share
    action = np.where(control, None, np.array(list(PLANTED), dtype=object)[rng.integers(0, len(PLANTED), n)])
    p = np.full(n, 0.5)
    for a, fact in PLANTED.items():
        if fact:
            p = np.where((action == a) & (facts[fact].to_numpy() == 1), 0.15, p)
    propensity = np.where(control, control_share, (1 - control_share) / len(PLANTED))
    offers = pd.DataFrame(
        {
            "customer_id": ids,
            "ts": pd.Timestamp("2025-03-01"),
            "action": action,
            "treated": ~control,
            "propensity": propensity,
            "accepted": ~control,
            "churned": rng.random(n) < p,
        }
    )
    return facts, offers


def small_config(**over) -> dict:
    cfg = default_insights_config()["uplift"]
    return {
        **cfg,
        "features": ["price_hike", "complaint", "noise"],
        "categorical": ["contract"],
        "bootstrap": 100,
        "cv_folds": 2,
        "inner_folds": 2,
        "num_rounds": 40,
        **over,
    }


@pytest.fixture(scope="module")
def fitted():
    facts, offers = planted_log()
    return facts, offers, fit_uplift(facts, offers, small_config(learners=["t", "ct"]))


def test_planted_effect_recovered_per_action(fitted):
    facts, _offers, (model, rows, design) = fitted
    assert design == "randomised"
    up = UpliftModel.from_dict(json.loads(json.dumps(model.to_dict()))).predict_uplift(facts)
    metrics = {r["action"]: r for r in rows}
    for action, fact in PLANTED.items():
        if fact is None:  # the null action: no evidence, so no decision may rely on it
            assert not metrics[action]["supported"] and abs(up[action].mean()) < 0.08
            continue
        helped = facts[fact] == 1
        assert abs(up.loc[helped, action].mean() - 0.35) < 0.1 and abs(up.loc[~helped, action].mean()) < 0.08
        assert metrics[action]["supported"] and metrics[action]["qini_low"] > 0
    assert model.supported == {a: metrics[a]["supported"] for a in PLANTED}


@pytest.mark.parametrize("kind", KINDS)
def test_every_learner_kind_ranks_the_helped_first(kind):
    facts, offers = planted_log(2000, seed=1)
    rows = offers["action"].isna() | (offers["action"] == "call")
    x = facts[["price_hike", "complaint", "noise"]].to_numpy()[rows.to_numpy()]
    t, y = offers.loc[rows, "treated"].to_numpy(), offers.loc[rows, "churned"].to_numpy(float)
    learner = UpliftLearner(kind, {"num_leaves": 4, "min_data_in_leaf": 30, "verbose": -1}, rounds=40, folds=2)
    for design in (True, False):  # randomised (design share) and estimated propensity
        tau = learner.fit(x, t, y, design_propensity=design).predict(x)
        helped = x[:, 1] == 1
        assert tau[helped].mean() - tau[~helped].mean() > 0.2, (kind, design)


# action -> the relative effect it has on the churn risk caused by each reason (shares of the risk by reason)
RELATIVE = {"discount": {"price": 0.8, "support": 0.0}, "call": {"price": 0.1, "support": 0.7}, "survey": {}}


def relative_log(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A randomised log where an offer removes a share of the customer's risk that depends on why it is at risk:
    facts carry the model's risk and the reason shares (`uplift_modifiers` columns) and one noise fact."""
    rng = np.random.default_rng(seed)
    ids = [f"C{i:05d}" for i in range(n)]
    risk = rng.uniform(0.05, 0.7, n)
    price = rng.beta(0.5, 0.5, n)  # mostly one reason or the other
    facts = pd.DataFrame(
        {
            "model_risk": risk,
            "reason_share_price": price,
            "reason_share_support": 1 - price,
            "noise": rng.normal(size=n),
        },
        index=pd.Index(ids, name="customer_id"),
    )
    control = rng.random(n) < 0.35
    action = np.where(control, None, np.array(list(RELATIVE), dtype=object)[rng.integers(0, len(RELATIVE), n)])
    rho = np.zeros(n)
    for a, eff in RELATIVE.items():
        rho = np.where(action == a, eff.get("price", 0) * price + eff.get("support", 0) * (1 - price), rho)
    offers = pd.DataFrame(
        {
            "customer_id": ids,
            "ts": pd.Timestamp("2025-03-01"),
            "action": action,
            "treated": ~control,
            "propensity": np.where(control, 0.35, 0.65 / len(RELATIVE)),
            "churned": rng.random(n) < risk * (1 - rho),
        }
    )
    return facts, offers


def test_relative_learner_recovers_the_effect_of_each_reason():
    facts, offers = relative_log()
    cfg = small_config(learners=["rr"], features=["model_risk", "reason_share_*", "noise"], categorical=[])
    model, rows, _ = fit_uplift(facts, offers, cfg)
    metrics = {r["action"]: r for r in rows}
    up = UpliftModel.from_dict(json.loads(json.dumps(model.to_dict()))).predict_uplift(facts)
    for action, eff in RELATIVE.items():
        coef = metrics[action]["relative_effects"]
        for reason in ("price", "support"):
            assert abs(coef[f"reason_share_{reason}"] - eff.get(reason, 0.0)) < 0.2, (action, reason, coef)
        planted = facts["model_risk"] * (
            eff.get("price", 0) * facts["reason_share_price"] + eff.get("support", 0) * facts["reason_share_support"]
        )
        assert (up[action] - planted).abs().mean() < 0.05, action
        assert metrics[action]["supported"] == bool(eff), action  # survey: no evidence, so no decision relies on it
    assert abs(metrics["discount"]["relative_effects"]["b"] - 1.0) < 0.25  # the risk was calibrated


def test_relative_learner_needs_the_model_risk():
    cfg = small_config(learners=["t", "rr"])
    assert available_kinds(cfg, ["price_hike", "noise"]) == ["t"]
    assert available_kinds(cfg, ["model_risk", "reason_share_a"]) == ["t", "rr"]


def test_effect_modifiers_share_the_risk_raising_attribution():
    """Shares of the churn probability by cause: the attribution adds up to logit(p) - logit(p_ref), the excess over
    the reference risk is split over the risk-raising groups; a customer at or below the reference has none."""
    scored = pd.DataFrame(
        {"customer_id": ["a", "b", "c"], "churn_probability": [0.2, 0.3, 0.4], "p_churn_90d": [0.5, 0.6, 0.7]}
    )
    attr = pd.DataFrame({"customer_id": ["b", "a"], "attr_price": [1.0, -0.5], "attr_support": [3.0, -0.1]})
    mods = effect_modifiers(scored, attr, 90)
    assert mods["model_risk"].tolist() == [0.5, 0.6, 0.7]  # the horizon of the offers' outcome window
    assert effect_modifiers(scored, None, 30)["model_risk"].tolist() == [0.2, 0.3, 0.4]  # no such horizon
    p_ref = 1 / (1 + np.exp(-(np.log(0.3 / 0.7) - 4.0)))
    shares = mods[["reason_share_price", "reason_share_support"]]
    np.testing.assert_allclose(shares.loc["b"], (1 - p_ref / 0.3) * np.array([0.25, 0.75]))
    assert shares.loc["a"].tolist() == [0.0, 0.0]  # below the reference risk: nothing to remove by cause
    assert shares.loc["c"].isna().all()  # not explained: no shares
    assert mods["churn_probability"].tolist() == [0.2, 0.3, 0.4]  # kept for the at-risk rule
    at_reference = reason_shares(np.array([[0.0, 0.0], [2.0, -2.0]]), np.array([0.3, 0.3]))
    np.testing.assert_allclose(at_reference, [[0.0, 0.0], [0.0, 0.0]])


def test_design_detection():
    _, offers = planted_log(300)
    assert design_of(offers) == "randomised"
    varied = offers.assign(propensity=np.linspace(0.2, 0.8, len(offers)))
    assert design_of(varied) == "observational" and design_of(varied, "randomised") == "randomised"
    assert design_of(offers[offers["treated"]]) == "accepted_vs_declined"


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
    lo, hi = bootstrap_interval(helped.astype(float), treated, retained, reps=200)
    assert 0 < lo < perfect["qini"] < hi
    lo, hi = bootstrap_interval(np.zeros(n), treated, retained, reps=200)  # all tied: the random line itself
    assert lo < 0 < hi


def test_dr_learner_agrees_with_causalml():
    """Cross-check against a reference implementation (causalml's DR-learner; training-time reference only, not a
    dependency of the package): both find the same customers helped."""
    meta = pytest.importorskip("causalml.inference.meta")
    from lightgbm import LGBMRegressor

    facts, offers = planted_log(3000, seed=2)
    rows = (offers["action"].isna() | (offers["action"] == "discount")).to_numpy()
    x = facts[["price_hike", "complaint", "noise"]].to_numpy()[rows]
    t, y = offers["treated"].to_numpy()[rows], offers["churned"].to_numpy(float)[rows]
    ours = UpliftLearner("dr", {"num_leaves": 4, "min_data_in_leaf": 30, "verbose": -1}, rounds=40).fit(x, t, y)
    ref = meta.BaseDRLearner(learner=LGBMRegressor(n_estimators=40, num_leaves=4, verbose=-1), control_name=0)
    theirs = -ref.fit_predict(x, treatment=t.astype(int), y=y, p=np.full(len(t), t.mean())).ravel()  # churn reduction
    helped = x[:, 0] == 1
    for tau in (ours.predict(x), theirs):
        assert tau[helped].mean() - tau[~helped].mean() > 0.2
    assert np.corrcoef(ours.predict(x), theirs)[0, 1] > 0.7


def test_served_decisions_follow_the_reasons_the_model_gives():
    """Serving: the relative-risk model turns each at-risk customer's risk and attribution into a per-action
    uplift (`expected_uplift_<action>`; not at risk: none), and the action answers the customer's main reason."""
    from churnsense.insights.enrich import add_insights
    from churnsense.insights.state import InsightsState
    from helpers import default_insights_config

    facts, offers = relative_log()
    cfg = small_config(learners=["rr"], features=["model_risk", "reason_share_*"], categorical=[])
    model, _, _ = fit_uplift(facts, offers, cfg)
    ids = ["P", "S", "L"]
    scored = pd.DataFrame({"customer_id": ids, "churn_probability": [0.5, 0.5, 0.01], "p_churn_90d": [0.6, 0.6, 0.02]})
    blank = dict.fromkeys(("reason_codes", "top_reasons", "top_reasons_local"), "")
    blank.update({f"reason_{k}{t}": "" for k in (1, 2, 3) for t in ("", "_text")})
    reasons = pd.DataFrame({"customer_id": ["P", "S"], **blank, "attr_price": [2.0, 0.1], "attr_support": [0.1, 2.0]})
    state = InsightsState(monthly_retention=0.97, at_risk_threshold=0.2, uplift=model.to_dict())
    out = add_insights(
        scored, pd.DataFrame({"monthly_charge": 80.0}, index=ids), reasons, state, default_insights_config()
    )
    up = out.set_index("customer_id")[[f"expected_uplift_{a}" for a in RELATIVE]]
    assert up.loc["L"].isna().all() and up.loc[["P", "S"]].notna().all().all()
    assert up.loc["P", "expected_uplift_discount"] > up.loc["P", "expected_uplift_call"] > 0
    assert up.loc["S", "expected_uplift_call"] > up.loc["S", "expected_uplift_discount"]
    assert out["recommended_action"].tolist() == ["discount", "call", "none"]


def test_model_chooses_actions_only_when_its_choices_beat_the_playbook_on_the_log():
    """Off-policy evidence on the randomised log: choosing by predicted uplift beats a playbook that answers every
    customer with the same action when the effect depends on the customer; a playbook that already answers right
    leaves the model no evidence to override it."""
    from churnsense.insights.uplift_policy import policy_evidence, prevented_per_customer

    facts, offers = planted_log(6000, seed=4)
    control = offers["action"].isna().to_numpy()
    held = pd.DataFrame(
        {a: 0.35 * facts[fact].to_numpy() if fact else np.zeros(len(facts)) for a, fact in PLANTED.items()}
    )  # what a good model predicts: each action helps the customers with its fact
    cfg = {"bootstrap": 200, "level": 0.95}
    one_size = policy_evidence(held, offers, control, np.full(len(offers), "survey", dtype=object), cfg)
    assert one_size["model_chooses"] and one_size["gain_low"] > 0.05
    right = held.columns.to_numpy()[held.to_numpy().argmax(axis=1)]
    same = policy_evidence(held, offers, control, right, cfg)
    assert not same["model_chooses"] and same["gain"] == 0.0
    action = offers["action"].astype("string").fillna("").to_numpy()
    churned, propensity = offers["churned"].astype(float).to_numpy(), offers["propensity"].to_numpy()
    survey = prevented_per_customer(np.full(len(offers), "survey"), action, control, churned, propensity)
    assert abs(survey) < 0.05  # the action that helps no one prevents nothing
