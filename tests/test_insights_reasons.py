"""Reasons: group attribution on a planted black-box model recovers the planted drivers; text and hit rates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnsense.insights.attribution import BatchLayout, GroupSpec, attribute_groups, build_group_index, merge_sequences
from churnsense.insights.reason_texts import reason_texts
from churnsense.insights.reasons import customer_facts, global_ranking, hit_rates, rank_reasons, reasons_frame
from churnsense.insights.wording import load_language

LAYOUT = BatchLayout(["contract"], ["price", "price__missing"], ["<pad>", "<unk>", "usage", "outage"])
GROUPS = [
    GroupSpec("price_increase", num=["price*"]),
    GroupSpec("outages", events=["outage"]),
    GroupSpec("short_contract", cat=["contract"]),
    GroupSpec("usage_decline", events=["usage"]),
]


def planted(n: int = 60, seed: int = 0):
    """Customers with one planted driver each: outages (3 outage events), high price, or month-to-month."""
    rng = np.random.default_rng(seed)
    driver = np.array(["outages", "price_increase", "short_contract"])[np.arange(n) % 3]
    seq_type = np.zeros((n, 8), np.int64)
    seq_type[:, :3] = 2  # everyone has 3 usage events
    seq_type[driver == "outages", 3:6] = 3
    mask = seq_type > 0
    dt = np.where(mask, np.log1p(np.arange(8, 0, -1)), 0).astype(np.float32)
    num = np.zeros((n, 2), np.float32)
    num[driver == "price_increase", 0] = 2.0
    cat = np.ones((n, 1), np.int64)
    cat[driver == "short_contract", 0] = 2
    batch = {
        "cat": cat,
        "num": num + rng.normal(0, 0.01, num.shape).astype(np.float32),
        "seq_type": seq_type,
        "seq_value": np.zeros((n, 8), np.float32),
        "seq_dt": dt,
        "seq_mask": mask,
    }
    return batch, driver


def logit(b):
    outages = ((b["seq_type"] == 3) & b["seq_mask"]).sum(axis=1)
    return -2.0 + 0.8 * outages + 1.2 * b["num"][:, 0] + 2.0 * (b["cat"][:, 0] == 2)


def test_merge_keeps_contract():
    batch, _ = planted(6)
    keep_own = batch["seq_type"] != 3
    out = merge_sequences(batch, {k: v[::-1] for k, v in batch.items()}, keep_own, batch["seq_type"][::-1] == 3)
    m = out["seq_mask"]
    assert (np.diff(m.astype(int), axis=1) <= 0).all()  # left-aligned
    dt = np.where(m, out["seq_dt"], -np.inf)
    assert all((np.diff(dt[i][m[i]]) <= 0).all() for i in range(len(dt)))  # chronological (older first)
    assert ((out["seq_type"] == 0) == ~m).all()


def test_reasons_match_planted_drivers():
    batch, driver = planted()
    index = build_group_index(LAYOUT, GROUPS)
    assert index.names == ["price_increase", "outages", "short_contract", "usage_decline", "other"]  # other: <unk>
    attr = attribute_groups(logit, batch, index, n_samples=3, n_background=8, seed=1)
    ids = [f"C{i}" for i in range(len(driver))]
    facts = pd.DataFrame(
        {
            "outage_n_30d": np.where(driver == "outages", 3.0, 0.0),
            "price_change_last": np.where(driver == "price_increase", 0.2, np.nan),
            "price_change_days_since": 9.5,
            "contract": "month_to_month",
        },
        index=ids,
    )
    frame = reasons_frame(ids, attr, index.names, facts, top_k=3, min_logit=0.05, min_share=0.15)
    assert (frame["reason_1"].to_numpy() == driver).mean() >= 0.95
    assert frame.loc[driver == "outages", "reason_1_text"].eq("3 outages in the last 30 days").all()
    assert frame.loc[driver == "price_increase", "reason_1_text"].eq("price rose 20% 10 days ago").all()
    assert frame.loc[driver == "short_contract", "reason_1_text"].eq("month-to-month contract: can leave any day").all()
    assert frame["top_reasons_local"].equals(frame["top_reasons"])  # no customer language given: English
    np.testing.assert_allclose(attr[:, index.names.index("usage_decline")], 0.0, atol=1e-9)  # unused input
    truth = pd.Series(driver, index=ids)
    rates = hit_rates(frame.set_index("customer_id")["reason_codes"], truth, {}, global_ranking(attr, index.names))
    overall = rates.set_index("mechanism").loc["all"]
    assert overall["top1"] >= 0.95 and overall["baseline_top1"] < 0.5 and overall["top3"] == 1.0


def test_ablation_method():
    batch, _driver = planted(9)
    index = build_group_index(LAYOUT, GROUPS)
    attr = attribute_groups(logit, batch, index, method="ablation", n_background=2)
    assert attr.shape == (9, 5)


def test_only_risk_raising_contributions_above_the_share_are_reasons():
    groups = ["a", "b", "c", "other"]
    attr = np.array(
        [
            [1.0, 0.3, -0.5, 0.2],  # shares of 1.5: a 67%, b 20%, other 13% (never shown)
            [0.1, 0.05, 0.0, 0.0],  # a 67% but below min_logit 0.2
            [0.4, 0.4, 0.39, 0.0],
        ]
    )
    ranked = rank_reasons(attr, groups, top_k=3, min_logit=0.2, exclude=["other"], min_share=0.25)
    assert ranked == [["a"], [], ["a", "b", "c"]]
    assert rank_reasons(attr, groups, None, 0.0, ["other"], 0.1)[0] == ["a", "b"]


def test_reason_text_never_states_a_zero_count_nor_a_missing_fact():
    en = load_language("en")
    assert reason_texts(["outages"], {"outage_n_30d": 3, "outage_n_90d": 4}, [en], 3)[1]["en"] == [
        "3 outages in the last 30 days"
    ]
    assert reason_texts(["outages"], {"outage_n_30d": 0, "outage_n_90d": 1}, [en], 3)[1]["en"] == [
        "1 outage in the last 90 days"
    ]
    assert reason_texts(["outages"], {"outage_n_30d": float("nan")}, [en], 3) == ([], {"en": []})  # nothing true


def test_customer_facts_counts_and_change():
    cutoff = pd.Timestamp("2024-06-01")
    cust = pd.DataFrame({"customer_id": ["a", "b"], "signup_date": pd.to_datetime(["2024-04-01", "2020-01-01"])})
    ts = cutoff - pd.to_timedelta([1, 5, 10, 70, 80, 90], unit="D")
    ev = pd.DataFrame(
        {
            "customer_id": "a",
            "ts": ts,
            "event_type": ["outage"] * 3 + ["usage"] * 3,
            "value": [1.0, 1.0, 1.0, 5.0, 5.0, 10.0],
        }
    )
    ev = pd.concat(
        [
            ev,
            pd.DataFrame(
                {"customer_id": ["a"], "ts": [cutoff - pd.Timedelta(days=3)], "event_type": ["usage"], "value": [4.0]}
            ),
        ]
    )
    fb = pd.DataFrame(
        {
            "customer_id": ["a", "a"],
            "ts": [cutoff - pd.Timedelta(days=2)] * 2,
            "text": ["x", "y"],
            "sentiment": ["negative", "positive"],
            "language": ["he", "en"],
            "topic": ["billing", "app"],
        }
    )
    f = customer_facts(cust, ev, fb, cutoff, {"he": "Hebrew"})
    assert f.loc["a", "outage_n_30d"] == 3 and f.loc["b", "outage_n_30d"] != 3
    assert f.loc["a", "usage_drop_pct"] == 80.0  # 4 in the last 60 days vs 20 in the 60 before
    assert f.loc["a", "feedback_language_name"] == "Hebrew" and f.loc["a", "feedback_topic"] == "billing"
    assert 1.9 < f.loc["a", "tenure_months"] < 2.1


def test_history_aggregates_follow_their_events_group():
    """A `num` column computed from outage events is swapped with the outage events, never on its own."""
    layout = BatchLayout(
        ["contract"],
        ["price", "history:n_outage_30d", "history:recency_days", "history:recency_days__missing"],
        ["<pad>", "<unk>", "usage", "outage"],
        {"history:n_outage_30d": "outage", "history:recency_days": "*"},
    )
    index = build_group_index(layout, GROUPS)
    assert index.names[index.num[1]] == "outages" and index.names[index.num[0]] == "price_increase"
    auto = build_group_index(layout, [], other=None, auto=True)
    assert auto.names[auto.num[1]] == "events:outage"
    assert auto.names[auto.num[2]] == auto.names[auto.num[3]] == "attr:activity"
    assert "attr:history:n_outage_30d" not in auto.names


def interacting_logit(b):
    outages = ((b["seq_type"] == 3) & b["seq_mask"]).sum(axis=1)
    return logit(b) + 0.5 * outages * b["num"][:, 0] - 0.7 * (b["cat"][:, 0] == 2) * b["num"][:, 0]


def test_skipping_null_groups_leaves_shapley_values_unchanged(monkeypatch):
    import churnsense.insights.attribution as attribution

    batch, _ = planted(30, seed=2)
    index = build_group_index(LAYOUT, GROUPS)
    calls = []

    def counted(b):
        calls.append(len(b["cat"]))
        return interacting_logit(b)

    fast = attribute_groups(counted, batch, index, n_samples=4, n_background=3, seed=5)
    fast_rows = sum(calls)
    monkeypatch.setattr(
        attribution, "active_groups", lambda own, ref, idx: np.ones((len(own["cat"]), len(idx.names)), bool)
    )
    calls.clear()
    every = attribute_groups(counted, batch, index, n_samples=4, n_background=3, seed=5)
    np.testing.assert_allclose(fast, every, atol=1e-9)
    assert fast_rows < sum(calls)


def test_antithetic_pairs_recover_drivers_per_customer():
    batch, driver = planted()
    index = build_group_index(LAYOUT, GROUPS)
    attr = attribute_groups(interacting_logit, batch, index, method="antithetic", n_samples=2, n_background=8, seed=1)
    assert (np.array(index.names)[attr.argmax(axis=1)] == driver).mean() >= 0.9
    alone = attribute_groups(
        interacting_logit,
        {k: v[:5] for k, v in batch.items()},
        index,
        method="antithetic",
        n_samples=2,
        n_background=8,
        seed=1,
        reference=batch,
    )
    again = attribute_groups(
        interacting_logit, batch, index, method="antithetic", n_samples=2, n_background=8, seed=1, reference=batch
    )
    np.testing.assert_allclose(alone, again[:5])  # a row's attribution does not depend on its batch
    assert np.isfinite(attr).all()
