"""Synthetic base: deterministic per seed; churn base rate and mechanism mix follow the config; offers, feedback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from churnsense.config import conf_dir
from churnsense.synth.generate import TABLES, generate, synth_config
from churnsense.synth.world import DELAY, MECHANISMS

N = 6000


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    cfg = synth_config(n_customers=N, out_dir=str(out), chunk_size=2500, seed=11)
    summary = generate(cfg)
    return cfg, summary, {t: pd.read_parquet(out / f"{t}.parquet") for t in TABLES}


def test_hydra_config_composes():
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="synth", overrides=["n_customers=10"])
    assert cfg.n_customers == 10 and cfg.out_dir.endswith("demo")


def test_deterministic_for_a_seed(tmp_path):
    runs = []
    for name in ("a", "b"):
        generate(synth_config(n_customers=300, out_dir=str(tmp_path / name), seed=5, chunk_size=128))
        runs.append({t: pd.read_parquet(tmp_path / name / f"{t}.parquet") for t in TABLES})
    for t in TABLES:
        pd.testing.assert_frame_equal(runs[0][t], runs[1][t])
    generate(synth_config(n_customers=300, out_dir=str(tmp_path / "c"), seed=6, chunk_size=128))
    assert not pd.read_parquet(tmp_path / "c" / "events.parquet").equals(runs[0]["events"])


def test_tables_are_consistent(base):
    _cfg, summary, t = base
    c, e, gt = t["customers"], t["events"], t["ground_truth"]
    assert c["customer_id"].is_unique and len(c) == N and set(e["customer_id"]) <= set(c["customer_id"])
    assert 60 <= summary["events_per_customer"] <= 100
    ev = e.merge(c[["customer_id", "signup_date", "churn_date", "observed_until"]], on="customer_id")
    assert (ev["ts"] >= ev["signup_date"]).all() and (ev["ts"] < ev["observed_until"]).all()
    assert (ev["churn_date"].isna() | (ev["ts"] < ev["churn_date"])).all()  # nothing after churn
    assert (gt["churned"] == c["churn_date"].notna()).all()
    drivers = gt.loc[gt["churned"], "drivers"].str.split(";").explode()
    assert drivers.isin([*MECHANISMS, "other"]).all()
    assert (gt.loc[~gt["churned"], "drivers"] == "").all()


def test_churn_rate_and_mechanism_mix_match_config(base):
    cfg, summary, t = base
    gt, offers = t["ground_truth"], t["offers"]
    untreated = ~gt["customer_id"].isin(offers.loc[offers["accepted"], "customer_id"])
    for m in MECHANISMS:
        exposed = gt["exposed"].str.contains(m)
        if m != "short_contract":
            assert abs(exposed.mean() - cfg["mechanisms"][m]["exposure"]) < 0.02, m
        # customers whose whole delay fits in the window, without an accepted offer
        observable = (
            exposed & untreated & (gt[f"onset_{m}"] + pd.Timedelta(days=DELAY[m][1]) < pd.Timestamp(summary["end"]))
        )
        rate = gt.loc[observable, "drivers"].str.contains(m).mean()
        assert abs(rate - cfg["mechanisms"][m]["churn_prob"]) < 0.1, (m, rate)
    expected = 1 - (1 - cfg["background_churn"]) * np.prod(
        [1 - cfg["mechanisms"][m]["churn_prob"] * gt["exposed"].str.contains(m).mean() for m in MECHANISMS]
    )
    assert abs(gt["p_churn_no_offer"].mean() - expected) < 0.02
    assert abs(summary["churn_rate"] - expected) < 0.05  # censoring at the window end and offers lower it a bit


def test_offer_log_has_a_randomised_control_arm(base):
    cfg, _, t = base
    o, truth = t["offers"], t["uplift_truth"]
    control = ~o["treated"]
    assert o["customer_id"].is_unique and abs(control.mean() - cfg["offers"]["control_share"]) < 0.03
    assert o.loc[control, "action"].isna().all() and o.loc[control, "team"].isna().all()
    assert (
        set(o.loc[~control, "action"]) == {"discount", "plan_upgrade", "call"} and not o.loc[control, "accepted"].any()
    )
    assert (o.groupby(o["action"].fillna(""))["propensity"].nunique() == 1).all()  # known by design
    assert 0.4 < o.loc[~control, "accepted"].mean() < 0.9
    for a in ("discount", "plan_upgrade", "call"):
        assert (truth[f"uplift_{a}"] >= -1e-12).all() and truth[f"uplift_{a}"].mean() > 0
    # the campaign targets live risk: logged customers are far more likely to churn than the base
    assert o["churned_within_90d"].mean() > 1.5 * truth["p_churn_no_offer"].mean()


def test_true_uplift_matches_the_randomised_contrast(base):
    """The simulator's truth at the offer month agrees with what the randomised arms show (all actions pooled)."""
    _, _, t = base
    o, truth = t["offers"], t["uplift_truth"]
    o = o.assign(cutoff=o["ts"].dt.to_period("M").dt.to_timestamp())
    m = o.merge(truth, on=["customer_id", "cutoff"], how="inner")
    m = m[m["ts"] < m["cutoff"] + pd.Timedelta(days=20)]
    true = np.mean([m.loc[m["action"] == a, f"uplift_{a}"].mean() for a in ("discount", "plan_upgrade", "call")])
    observed = m.loc[~m["treated"], "churned_within_90d"].mean() - m.loc[m["treated"], "churned_within_90d"].mean()
    assert true > 0.01 and abs(observed - true) < 0.04, (observed, true)


def test_feedback_languages_sentiment_and_noise(base):
    cfg, _, t = base
    fb = t["feedback"]
    assert set(fb["language"]) == {"en", "ru", "uk", "he"}
    assert set(fb["sentiment"]) == {"negative", "neutral", "positive"}
    assert fb["text"].str.len().gt(0).all() and fb["text"].nunique() > 0.8 * len(fb)
    noise = (fb["sentiment"] != fb["true_sentiment"]).mean()
    assert abs(noise - cfg["label_noise"]) < 0.03
    lang = fb.merge(t["customers"][["customer_id", "language"]], on="customer_id", suffixes=("", "_pref"))
    assert (lang["language"] == lang["language_pref"]).mean() > 0.85
