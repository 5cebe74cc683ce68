"""Playbook, routing, team choice, CLTV and the enriched output schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnsense.insights import playbook as pb
from churnsense.insights.decisions import allocate
from churnsense.insights.decisions import recommend_actions as decide
from churnsense.insights.enrich import INSIGHT_COLUMNS, add_insights
from churnsense.insights.state import InsightsState
from churnsense.insights.value import cltv
from helpers import default_insights_config

PLAYBOOK = {
    "price_increase": {"action": "discount", "talking_points": "discount"},
    "outages": {"action": "call", "talking_points": "apologise"},
}
ACTIONS = {"discount": {"cost": 10.0}, "call": {"cost": 5.0}}


def test_decisions_only_supported_actions_that_pay():
    frame = pd.DataFrame(
        {
            "reason_codes": ["price_increase", "outages;price_increase", "price_increase", "", "x"],
            "cltv": [1000.0, 1000.0, 50.0, 1000.0, 1000.0],
        }
    )
    uplift = pd.DataFrame({"call": [0.0, 0.2, 0.3, 0.0, 0.5], "discount": [0.1, 0.1, 0.3, 0.0, 0.9]})
    rec = decide(
        frame, PLAYBOOK, ACTIONS, uplift, {"call": True, "discount": True}, pd.Series([True, True, True, True, False])
    )
    assert rec["recommended_action"].tolist() == ["discount", "call", "call", "none", "none"]
    assert rec.loc[1, "expected_saved_value"] == 0.2 * 1000 - 5  # call beats discount (0.1 * 1000 - 10)
    assert rec.loc[1, "action_reason"] == "outages" and rec.loc[0, "talking_points"] == "discount"
    assert rec.loc[4, "why"] == "not at risk" and rec.loc[3, "why"].startswith("none: the best supported")
    assert "uplift 20.0% x CLTV 1,000 - cost 5 = 195" in rec.loc[1, "why"]
    no_evidence = decide(frame, PLAYBOOK, ACTIONS, uplift, {"call": False, "discount": False})
    assert (no_evidence["recommended_action"] == "none").all() and (no_evidence["expected_saved_value"] == 0).all()
    assert no_evidence["why"].str.contains("no action has held-out evidence").all()
    capped = decide(
        frame.assign(churn_probability=[0.5, 0.05, 0.5, 0.5, 0.5]),
        PLAYBOOK,
        ACTIONS,
        uplift,
        {"call": True, "discount": True},
    )
    # p = 0.05: no action can prevent more churn than that; call 0.2 -> 0.05 (saves 45), discount 0.1 -> 0.05 (40)
    assert capped.loc[1, "expected_uplift"] == 0.05 and capped.loc[1, "recommended_action"] == "call"


def test_action_supported_on_average_answers_the_customers_reasons():
    """No held-out evidence that the effect varies by customer, but a randomised average effect above zero: the
    action is offered where the playbook answers the customer's reasons with it, valued at that average."""
    frame = pd.DataFrame(
        {"reason_codes": ["price_increase", "outages", "", "price_increase"], "cltv": [1000.0, 1000.0, 1000.0, 100.0]}
    )
    uplift = pd.DataFrame({"call": [0.3] * 4, "discount": [0.0] * 4})
    rec = decide(frame, PLAYBOOK, ACTIONS, uplift, {"call": False, "discount": False}, average={"discount": 0.05})
    assert rec["recommended_action"].tolist() == ["discount", "none", "none", "none"]
    assert rec.loc[0, "expected_uplift"] == 0.05 and rec.loc[0, "expected_saved_value"] == 0.05 * 1000 - 10
    assert "average effect in the randomised offer log" in rec.loc[0, "why"]
    assert "(call) has no evidence" in rec.loc[1, "why"]  # a personal prediction without evidence is not used
    assert rec.loc[3, "why"].startswith("none: the best supported action (discount) saves -5")
    personal = decide(frame, PLAYBOOK, ACTIONS, uplift, {"call": True, "discount": False}, average={"discount": 0.05})
    assert personal.loc[0, "recommended_action"] == "call"  # 0.3 x 1000 - 5 beats the average discount
    per_customer = pd.DataFrame({"discount": [0.02, np.nan, np.nan, 0.2]})  # the average applied to each one's risk
    scaled = decide(frame, PLAYBOOK, ACTIONS, uplift, {"call": False, "discount": False}, average=per_customer)
    assert scaled["expected_uplift"].tolist() == [0.02, 0.0, 0.0, 0.2] and scaled.loc[3, "expected_saved_value"] == 10
    # the model's choice has no evidence of beating the playbook: the playbook's answer, valued by the model
    kept = decide(
        frame, PLAYBOOK, ACTIONS, uplift, {"call": True, "discount": False}, average={"discount": 0.05}, chooses=False
    )
    assert kept["recommended_action"].tolist() == ["discount", "call", "none", "none"]
    assert "no evidence that choosing otherwise helps" in kept.loc[1, "why"]


def test_without_offer_history_no_saving_is_claimed():
    frame = pd.DataFrame({"reason_codes": ["price_increase", "outages;price_increase", ""], "cltv": 1000.0})
    rec = decide(frame, PLAYBOOK, ACTIONS, None)
    assert rec["recommended_action"].tolist() == ["discount", "call", "none"]  # no reason, no `_default` entry
    assert rec["expected_saved_value"][:2].isna().all() and rec["expected_uplift"][:2].isna().all()
    assert rec["why"][:2].str.contains("no saving claimed").all()


def test_allocation_under_budget_and_capacity():
    calls = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "expected_saved_value": [50.0, 40, 30, 20, 10],
            "value_at_risk": 1.0,
            "action_cost": [10.0, 10, 10, 10, 30],
            "team": ["t1", "t1", "t2", "t2", "t2"],
            "script_language": ["en", "he", "en", "en", "he"],
            "why": "x",
        }
    )
    kept, held = allocate(calls, {"budget": 35, "capacity": {"team": {"t1": 1}, "language": {"en": 2}}})
    assert kept["customer_id"].tolist() == ["a", "c"]  # b: team t1 full; d: en full; e: over budget
    assert held.set_index("customer_id")["why"].str.contains("team t1").loc["b"]
    assert "language en" in held.set_index("customer_id").loc["d", "why"]
    assert "over budget" in held.set_index("customer_id").loc["e", "why"]
    assert len(allocate(calls, None)[0]) == 5


def test_route_and_best_team():
    lang = pd.Series(["he", "fr", None])
    p = pd.Series([0.9, 0.6, 0.3])
    q = pb.route(
        lang, p, pd.Series(["call", "call", "none"]), ["en", "he"], {"standard": 0.0, "high": 0.5, "critical": 0.8}
    )
    assert q.tolist() == ["he-critical", "en-high", ""]
    offers = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(200)],
            "action": "call",
            "team": np.where(np.arange(200) % 2, "a", "b"),
            "churned": np.where(np.arange(200) % 2, np.arange(200) % 10 == 1, True),
        }
    )
    seg = pd.Series(0, index=offers["customer_id"])
    scores = pb.team_scores(offers, seg)
    assert pb.best_team(pd.Series([0, 5]), pd.Series(["call", "call"]), scores).tolist() == ["a", "a"]


def test_cltv_formula():
    value = cltv(pd.Series([10.0]), retention=1.0, horizon_months=12, discount_rate=0.0)
    assert value.iloc[0] == 120.0
    assert cltv(pd.Series([10.0]), 0.5, 2, 0.0).iloc[0] == 10.0 + 5.0


def test_enriched_schema():
    cfg = default_insights_config()
    ids = ["C1", "C2", "C3"]
    scored = pd.DataFrame({"customer_id": ids, "churn_probability": [0.9, 0.1, 0.4]})
    facts = pd.DataFrame({"monthly_charge": [50.0, 20.0, 30.0], "language": ["he", "en", "ru"]}, index=ids)
    reasons = pd.DataFrame(
        {
            "customer_id": ["C1", "C3"],
            "reason_codes": ["price_increase", "outages"],
            "top_reasons": ["price rose 20%", "3 outages"],
            "top_reasons_local": ["x", "y"],
            "reason_1": ["price_increase", "outages"],
            "reason_1_text": ["price rose 20%", "3 outages"],
            "reason_2": "",
            "reason_2_text": "",
            "reason_3": "",
            "reason_3_text": "",
        }
    )
    out = add_insights(scored, facts, reasons, InsightsState(monthly_retention=0.97), cfg)
    assert list(out.columns) == ["customer_id", "churn_probability"] + INSIGHT_COLUMNS
    older = {**cfg, "value": {k: v for k, v in cfg["value"].items() if k != "horizon_months"}}
    with pytest.raises(ValueError, match=r"no insights\.value\.horizon_months \(trained by an older version\)"):
        add_insights(scored, facts, reasons, InsightsState(monthly_retention=0.97), older)  # no silent default
    assert out["recommended_action"].tolist() == ["discount", "none", "call"]
    assert out["action_reason"].tolist() == ["price_increase", "", "outages"]
    assert out["queue"].tolist() == ["he-critical", "", "ru-standard"]
    assert out["script_language"].tolist() == ["he", "", "ru"]  # the queue's language
    assert out.loc[1, "call_script"] == "" and out.loc[0, "call_script"].count("\n") == 5
    assert out.loc[0, "value_at_risk"] == out.loc[0, "cltv"] * 0.9
    assert out["team"].tolist() == ["retention", "", "retention"]


def test_report_files(tmp_path):
    from churnsense.insights.crm_export import CALL_LIST, columns
    from churnsense.insights.report import write_report

    cfg = default_insights_config()
    ids = [f"C{i}" for i in range(6)]
    scored = pd.DataFrame({"customer_id": ids, "churn_probability": [0.9, 0.1, 0.4, 0.3, 0.05, 0.7]})
    facts = pd.DataFrame({"monthly_charge": [50.0, 20, 30, 40, 10, 60], "language": "en"}, index=ids)
    reasons = pd.DataFrame(
        {
            "customer_id": ids,
            "reason_codes": "outages",
            "top_reasons": "outages",
            "top_reasons_local": "outages",
            "reason_1": "outages",
            "reason_1_text": "outages",
            "reason_2": "",
            "reason_2_text": "",
            "reason_3": "",
            "reason_3_text": "",
        }
    )
    out = add_insights(scored, facts, reasons, InsightsState(monthly_retention=0.97), cfg)
    cutoff = pd.Timestamp("2025-06-01")
    out["cutoff"] = cutoff
    days = [10, None, 20, 200, None, 40]  # C3 churns after the 90-day window: not an observed churner here
    truth = pd.DataFrame(
        {
            "customer_id": ids,
            "drivers": ["outages", "", "price_increase", "usage_decline", "", "outages"],
            "churn_date": [cutoff + pd.Timedelta(days=d) if d else pd.NaT for d in days],
        }
    )
    at_end = write_report(out, tmp_path / "end", InsightsState(), cfg, {"ground_truth": truth}, horizon_days=365)
    assert "reason_hit_rates" not in at_end  # window not inside the data: nothing observed, nothing claimed
    files = write_report(out, tmp_path, InsightsState(), cfg, {"ground_truth": truth}, horizon_days=90)
    crm = pd.read_csv(files["crm"] / f"{CALL_LIST}.csv")
    assert list(crm.columns) == columns(CALL_LIST) and crm["value_at_risk"].is_monotonic_decreasing
    assert crm["expected_saved_value"].isna().all()  # a release without an uplift model claims no saving
    assert crm["rank"].tolist() == list(range(1, len(crm) + 1)) and len(crm) >= 1
    hits = pd.read_csv(files["reason_hit_rates"]).set_index("mechanism")
    assert hits.loc["outages", "top1"] == 1.0 and hits.loc["all", "n"] == 3
    assert files["html"].is_file()


def test_no_offer_log_switches_uplift_off(caplog):
    from churnsense.insights.fit import fit_insights

    cfg = default_insights_config()
    ids = [f"C{i}" for i in range(40)]
    customers = pd.DataFrame(
        {"customer_id": ids, "monthly_charge": np.linspace(10, 80, 40), "signup_date": pd.Timestamp("2024-01-01")}
    )
    p = pd.Series(np.linspace(0.05, 0.9, 40), index=ids)
    state = fit_insights(customers, None, None, None, pd.Timestamp("2025-01-01"), p, cfg)
    assert not state.uplift and "uplift is off" in caplog.text
    scored = pd.DataFrame({"customer_id": ids[-3:], "churn_probability": [0.6, 0.7, 0.9]})
    reasons = pd.DataFrame(
        {
            "customer_id": ids[-3:],
            "reason_codes": "outages",
            "top_reasons": "o",
            "top_reasons_local": "o",
            "reason_1": "outages",
            "reason_1_text": "o",
            "reason_2": "",
            "reason_2_text": "",
            "reason_3": "",
            "reason_3_text": "",
        }
    )
    out = add_insights(scored, customers.set_index("customer_id"), reasons, state, cfg)
    assert (out["recommended_action"] == "call").all() and out["expected_saved_value"].isna().all()
    assert out["why"].str.contains("no saving claimed").all()
