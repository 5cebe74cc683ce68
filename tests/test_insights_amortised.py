"""Amortised reasons: an explainer fitted on sampled Shapley values of a planted black box recovers each customer's
planted driver on new customers, round-trips through its saved form, and serving falls back to its teacher when a
release has none."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from churnsense.insights import enrich
from churnsense.insights.amortised import AmortisedExplainer, fit_amortised_explainer, training_rows
from churnsense.insights.attribution import BatchLayout, attribute_groups, build_group_index, groups_from_config

# the outage count is a history aggregate (`num`) as well as events: the explainer reads attributes and aggregates
LAYOUT = BatchLayout(["contract"], ["price", "outage_n"], ["<pad>", "<unk>", "usage", "outage"])
GROUPS = {
    "price_increase": {"num": ["price"]},
    "outages": {"events": ["outage"], "num": ["outage_n"]},
    "short_contract": {"cat": ["contract"]},
    "usage_decline": {"events": ["usage"]},
}
TEACHER = {"method": "antithetic", "n_samples": 2, "n_background": 4}
CFG = {
    "teacher": TEACHER,
    "candidates": 1000,
    "rows": 400,
    "risk_share": 1.0,
    "holdout": 0.25,
    "num_rounds": 60,
    "lightgbm": {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 10, "verbose": -1, "num_threads": 1},
    "predict_threads": 1,
}


def planted(n: int, seed: int):
    """Customers with one planted driver each (outages, a high price or a month-to-month contract), of varying
    strength, so the attributions vary within a driver too."""
    rng = np.random.default_rng(seed)
    driver = rng.choice(np.array(["outages", "price_increase", "short_contract"]), size=n)
    k = rng.integers(2, 5, size=n)  # driver strength
    seq_type = np.zeros((n, 8), np.int64)
    seq_type[:, :2] = 2
    for i in np.flatnonzero(driver == "outages"):
        seq_type[i, 2 : 2 + k[i]] = 3
    mask = seq_type > 0
    num = np.zeros((n, 2), np.float32)
    num[:, 0] = np.where(driver == "price_increase", 0.6 * k, 0.0) + rng.normal(0, 0.05, n)
    num[:, 1] = (seq_type == 3).sum(axis=1)
    cat = np.where(driver == "short_contract", 2, 1).reshape(-1, 1).astype(np.int64)
    batch = {
        "cat": cat,
        "num": num,
        "seq_type": seq_type,
        "seq_value": np.zeros((n, 8), np.float32),
        "seq_dt": np.where(mask, np.log1p(np.arange(8, 0, -1)), 0).astype(np.float32),
        "seq_mask": mask,
    }
    return batch, driver


def prob(b):
    outages = ((b["seq_type"] == 3) & b["seq_mask"]).sum(axis=1)
    logit = -2.0 + 0.8 * outages + 1.2 * b["num"][:, 0] + 2.0 * (b["cat"][:, 0] == 2)
    return 1 / (1 + np.exp(-logit))


def fitted():
    batch, _ = planted(500, seed=0)
    index = build_group_index(LAYOUT, groups_from_config(GROUPS))
    background = {k: v[:32] for k, v in batch.items()}
    return fit_amortised_explainer(batch, prob, index, background, CFG, seed=0), index, background


def test_amortised_explainer_recovers_the_planted_driver_of_new_customers():
    explainer, index, _ = fitted()
    fresh, driver = planted(120, seed=1)
    attr = explainer.attribute(fresh, np.arange(120))
    assert (np.array(index.names)[attr.argmax(axis=1)] == driver).mean() >= 0.95
    assert explainer.metrics["top1_agreement"] >= 0.9  # held-out agreement with the teacher, kept with the release
    assert explainer.metrics["r2"]["outages"] > 0.6  # against the teacher's noisy values: a lower bound
    np.testing.assert_allclose(explainer.attribute(fresh, np.arange(5)), attr[:5])  # a row does not see its batch
    assert "other" not in explainer.models  # a group that never moves the score is not fitted: always 0
    assert (attr[:, index.names.index("other")] == 0).all()


def test_amortised_explainer_round_trips_and_checks_its_groups():
    explainer, _, _ = fitted()
    fresh, _ = planted(40, seed=2)
    again = AmortisedExplainer.from_dict(json.loads(json.dumps(explainer.to_dict())))
    np.testing.assert_allclose(again.attribute(fresh, np.arange(40)), explainer.attribute(fresh, np.arange(40)))
    with pytest.raises(ValueError, match="fit for the groups"):
        again.check(build_group_index(LAYOUT, groups_from_config({"outages": GROUPS["outages"]})))
    with pytest.raises(ValueError, match="reads 3 model inputs, the batch has 2"):
        again.attribute({**fresh, "num": fresh["num"][:, :1]}, np.arange(3))


def test_serving_uses_the_explainer_and_falls_back_to_its_teacher_without_one(caplog):
    explainer, index, background = fitted()
    fresh, _ = planted(30, seed=3)
    ids, rows = np.array([f"C{i}" for i in range(30)]), np.arange(30)
    rcfg = {"method": "amortised", "groups": GROUPS, "auto_groups": False, "max_rows": 1000, "amortised": CFG}
    served, served_index, _ = enrich.attribute_rows(fresh, ids, rows, prob, LAYOUT, rcfg, 0, background, explainer)
    np.testing.assert_allclose(served, explainer.attribute(fresh, rows))
    assert served_index.names == index.names
    enrich._warned.difference_update({m for m in enrich._warned if "no amortised reason explainer" in m})
    with caplog.at_level(logging.WARNING):
        fallback, _, _ = enrich.attribute_rows(fresh, ids, rows, prob, LAYOUT, rcfg, 0, background, None)
    assert "no amortised reason explainer" in caplog.text
    sampled = attribute_groups(
        enrich.logit_from_probability(prob), fresh, index, background, seed=0, keys=ids, **TEACHER
    )
    np.testing.assert_allclose(fallback, sampled)


def test_large_data_scores_a_sample_of_candidates_only():
    batch, _ = planted(500, seed=0)
    index = build_group_index(LAYOUT, groups_from_config(GROUPS))
    seen = []

    def counted(b):
        seen.append(len(b["num"]))
        return prob(b)

    cfg = {**CFG, "candidates": 200, "rows": 60, "risk_share": 0.5}
    explainer = fit_amortised_explainer(batch, counted, index, {k: v[:32] for k, v in batch.items()}, cfg, seed=0)
    assert seen[0] == 200  # the riskiest are looked for among 200 candidates, not all 500 rows
    assert explainer.metrics["training_rows"] + explainer.metrics["rows"] == 60


def test_training_rows_come_from_the_riskiest_share():
    p = np.linspace(0, 1, 100)
    rows = training_rows(p, 10, 0.3, seed=0)
    assert len(rows) == 10 and (p[rows] >= p[70]).all() and (np.diff(rows) > 0).all()
    assert len(training_rows(p, 1000, 0.3, seed=0)) == 30
