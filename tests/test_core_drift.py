"""Drift core on seeded synthetic frames: planted shifts flag exactly the shifted features, another seed of the same
distribution flags none; streaming and merging give the one-shot counts; plain-JSON profiles; the report files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from churnsense.core.drift import (
    CATEGORICAL,
    NUMERIC,
    DriftThresholds,
    Profile,
    ProfileAccumulator,
    ProfileSettings,
    compare,
    psi,
    reference_profile,
)
from churnsense.core.drift_report import alert_line, drift_paths, write_drift_html, write_drift_json
from churnsense.monitoring.churn import prediction_values

CONF = Path(__file__).resolve().parents[1] / "conf"
PLANS, LANGS = ["basic", "standard", "premium", "unlimited"], ["en", "ru", "uk", "he"]


def thresholds(**overrides) -> DriftThresholds:
    """The repository's serving thresholds (conf/serve/drift/default.yaml), with overrides."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "serve" / "drift" / "default.yaml"))
    cfg.pop("mlflow")
    return DriftThresholds.from_config({**cfg, **overrides})


def customers(
    n: int,
    seed: int,
    *,
    new_plan: float = 0.0,
    price: float = 1.0,
    lang_p=(0.55, 0.2, 0.15, 0.1),
    missing_tenure: float = 0.0,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = np.asarray(PLANS, dtype=object)[rng.choice(4, n, p=[0.3, 0.35, 0.2, 0.15])]
    plan[rng.random(n) < new_plan] = "family"
    charge = pd.Series(plan).map({"basic": 25, "standard": 45, "premium": 70, "unlimited": 95, "family": 60})
    tenure = rng.exponential(400, n)
    tenure[rng.random(n) < missing_tenure] = np.nan
    return pd.DataFrame(
        {
            "plan": plan,
            "language": np.asarray(LANGS, dtype=object)[rng.choice(4, n, p=lang_p)],
            "region": rng.choice(["north", "south", "east"], n),
            "monthly_charge": charge.to_numpy(float) * rng.uniform(0.9, 1.1, n) * price,
            "n_lines": rng.integers(1, 5, n).astype(float),
            "tenure_days": tenure,
        }
    )


def profile_of(frame: pd.DataFrame) -> Profile:
    return reference_profile({c: ("input", frame[c]) for c in frame}, ProfileSettings())


def run(reference: Profile, frame: pd.DataFrame, parts: int = 4, **overrides):
    acc = ProfileAccumulator(reference)
    for chunk in np.array_split(np.arange(len(frame)), parts):
        acc.add({c: frame[c].iloc[chunk] for c in frame})
    return compare(reference, acc.profile(), thresholds(**overrides)), acc.profile()


@pytest.fixture(scope="module")
def reference() -> Profile:
    return profile_of(customers(20_000, seed=0))


def test_unshifted_sample_flags_nothing(reference):
    report, _ = run(reference, customers(8_000, seed=1))
    assert report.drifted == [] and report.summary["passed"] and report.summary["tested"] == 6
    assert max(f.value for f in report.features) < 0.02  # sampling noise only


def test_planted_shifts_flag_exactly_those_features(reference):
    shifted = customers(8_000, seed=2, new_plan=0.1, price=1.3, lang_p=(0.3, 0.3, 0.25, 0.15))
    report, _ = run(reference, shifted)
    assert sorted(report.drifted) == ["language", "monthly_charge", "plan"]
    assert not report.summary["passed"] and report.summary["drifted_share"] == pytest.approx(0.5)
    by = {f.name: f for f in report.features}
    assert [n["category"] for n in by["plan"].new_categories] == ["family"]
    assert by["plan"].new_share == pytest.approx(0.1, abs=0.015)
    assert by["plan"].top_shifted[0]["label"] == "family"
    assert by["monthly_charge"].value > 0.3 and by["monthly_charge"].kind == NUMERIC
    top = by["monthly_charge"].bins[-2]  # the open-ended top bin (the last one is the missing bin)
    assert top["label"].endswith(", inf)") and top["current"] > 2 * top["reference"]
    assert by["language"].kind == CATEGORICAL and by["language"].top_shifted[0]["label"] == "en"
    assert [f.name for f in report.features[:3]] == sorted(report.drifted, key=lambda n: -by[n].value)


def test_a_rare_new_category_alone_is_flagged(reference):
    frame = customers(8_000, seed=3)
    frame.loc[:19, "plan"] = "family_plus"  # 0.25 % of the rows: PSI barely moves, the new-category rule fires
    report, _ = run(reference, frame)
    plan = next(f for f in report.features if f.name == "plan")
    assert report.drifted == ["plan"] and plan.value < 0.2 and plan.new_categories[0]["rows"] == 20


def test_missing_values_are_a_bin_of_their_own(reference):
    report, _ = run(reference, customers(8_000, seed=4, missing_tenure=0.3))
    tenure = next(f for f in report.features if f.name == "tenure_days")
    assert report.drifted == ["tenure_days"] and tenure.missing_reference == 0
    assert tenure.missing_current == pytest.approx(0.3, abs=0.02) and tenure.top_shifted[0]["label"] == "(missing)"


def test_infinite_values_count_as_missing_and_profiles_stay_strict_json():
    values = pd.Series([1.0, 2.0, np.inf, -np.inf, np.nan, 3.0])
    ref = reference_profile({"x": ("derived", values)}, ProfileSettings(bins=2))
    assert ref.features["x"].missing == 3 and ref.features["x"].rows == 6 and ref.features["x"].hi == 3.0
    json.dumps(ref.to_dict(), allow_nan=False)


def test_streaming_and_merging_equal_one_shot_counts(reference):
    frame = customers(5_000, seed=5, price=1.1)
    _, streamed = run(reference, frame, parts=7)
    _, once = run(reference, frame, parts=1)
    assert streamed.to_dict() == once.to_dict()
    a, b = ProfileAccumulator(reference), ProfileAccumulator(reference)
    a.add({c: frame[c].iloc[:1234] for c in frame})
    b.add({c: frame[c].iloc[1234:] for c in frame})
    merged = Profile.from_dict(json.loads(json.dumps(a.profile().to_dict()))).merge(b.profile())
    assert merged.to_dict()["features"] == once.to_dict()["features"]
    assert sum(once.features["monthly_charge"].counts) == len(frame)


def test_profile_is_plain_json_and_checked_on_load(reference, tmp_path):
    path = reference.save(tmp_path / "ref.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "churnsense-drift-profile" and doc["features"]["plan"]["categories"]["basic"] > 0
    assert len(doc["features"]["monthly_charge"]["counts"]) == len(doc["features"]["monthly_charge"]["edges"]) + 1
    assert Profile.load(path).to_dict() == reference.to_dict()
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(ValueError, match=r"bad\.json: not a churnsense-drift-profile"):
        Profile.load(tmp_path / "bad.json")


def test_small_runs_are_reported_not_flagged(reference):
    report, _ = run(reference, customers(50, seed=6, price=2.0), parts=1)
    assert report.drifted == [] and report.summary["tested"] == 0
    assert set(report.summary["untested"].values()) == {"too few rows"}


def test_unknown_categories_are_counted_in_bounded_memory():
    ref = reference_profile({"city": ("input", pd.Series(["a", "b"] * 500))}, ProfileSettings())
    acc = ProfileAccumulator(ref, max_new_categories=5)
    acc.add({"city": pd.Series([f"new{i}" for i in range(40)] + ["a"] * 960)})
    cur = acc.profile().features["city"]
    assert len(cur.categories) == 6 and cur.other == 35 and cur.rows == 1000
    report = compare(ref, acc.profile(), thresholds(max_new_categories=5))
    assert report.drifted == ["city"] and len(report.features[0].new_categories) == 5
    assert report.features[0].new_share == pytest.approx(0.04)  # the pooled unknown ones count as new too


def test_truncated_reference_does_not_call_rare_categories_new():
    values = pd.Series(["a"] * 600 + ["b"] * 300 + [f"rare{i}" for i in range(100)])
    ref = reference_profile({"city": ("input", values)}, ProfileSettings(max_categories=2))
    assert ref.features["city"].other == 100
    report, _ = run(ref, pd.DataFrame({"city": values.sample(frac=1.0, random_state=0)}))
    assert report.drifted == [] and report.features[0].new_categories == []


def test_per_feature_threshold_overrides_the_default(reference):
    frame = customers(8_000, seed=7, lang_p=(0.45, 0.25, 0.18, 0.12))  # a moderate move of the language mix
    report, _ = run(reference, frame)
    language = next(f for f in report.features if f.name == "language")
    assert 0.02 < language.value < 0.2 and report.drifted == []
    assert run(reference, frame, per_feature={"language": 0.02})[0].drifted == ["language"]


def test_prediction_drift_score_distribution_and_share_at_risk():
    rng = np.random.default_rng(8)
    ref = reference_profile(prediction_values(rng.beta(1, 6, 10_000), 0.3), ProfileSettings())
    same, riskier = ProfileAccumulator(ref), ProfileAccumulator(ref)
    same.add({k: v for k, (_, v) in prediction_values(rng.beta(1, 6, 5_000), 0.3).items()})
    riskier.add({k: v for k, (_, v) in prediction_values(rng.beta(2, 5, 5_000), 0.3).items()})
    assert compare(ref, same.profile(), thresholds()).drifted == []
    report = compare(ref, riskier.profile(), thresholds())
    assert sorted(report.drifted) == ["at_risk", "churn_probability"]
    assert {f.group for f in report.features} == {"prediction"}


def test_psi_is_zero_for_equal_shares_and_symmetric():
    a, b = np.array([10.0, 20, 70]), np.array([30.0, 20, 50])
    assert psi(a, a * 3, 1e-4) == pytest.approx(0.0) and psi(a, b, 1e-4) == pytest.approx(psi(b, a, 1e-4))


def test_json_html_and_alert_line(reference, tmp_path):
    report, current = run(reference, customers(8_000, seed=9, new_plan=0.1, price=1.3))
    json_path, html_path = drift_paths(tmp_path / "out" / "scores.csv")
    assert (json_path.name, html_path.name) == ("scores.drift.json", "scores.drift.html")
    write_drift_json(report, current, json_path, {"task": "churn"})
    write_drift_html(report, html_path, "Drift of scores.csv", {"task": "churn"})
    doc = json.loads(json_path.read_text())
    assert doc["summary"]["drifted_features"] == report.drifted and doc["task"] == "churn"
    assert Profile.from_dict(doc["current_profile"]).to_dict() == current.to_dict()
    page = html_path.read_text()
    assert page.count('<tr class="drift">') == 2 and page.count("<svg") == 2 and "family (1" in page
    assert page.index(">plan<") < page.index(">region<")  # drifted features first
    line = alert_line(report, "churn", html_path)
    assert line.startswith("DRIFT churn: 2/6 features drifted [FAIL]") and "plan new [family]" in line
    assert "monthly_charge PSI" in line and str(html_path) in line
    assert alert_line(run(reference, customers(8_000, seed=10))[0], "churn", html_path) is None


def test_config_block_is_fully_read():
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "serve" / "drift" / "default.yaml"))
    assert set(cfg) - {"enabled", "mlflow"} == set(DriftThresholds.__dataclass_fields__)
    train = OmegaConf.load(CONF / "drift" / "default.yaml")
    assert {"bins", "max_categories"} <= set(train) and set(ProfileSettings.__dataclass_fields__) <= set(train)


def test_misspelt_config_key_is_named():
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "serve" / "drift" / "default.yaml"))
    cfg.pop("mlflow")
    cfg["psi_treshold"] = cfg.pop("psi")
    with pytest.raises(ValueError, match=r"unknown keys \['psi_treshold'\], missing keys \['psi'\]"):
        DriftThresholds.from_config(cfg)


def test_counts_made_elsewhere_add_up_to_the_values(reference):
    """A worker counts its partition (`count`, pickled back) and the run adds the counts: the same profile as
    adding the values, the cap on unknown categories included."""
    import pickle

    frame = customers(3_000, seed=8, new_plan=0.02).assign(plan=lambda f: f["plan"] + f.index.astype(str).str[-1])
    direct, counted = ProfileAccumulator(reference, max_new_categories=3), ProfileAccumulator(reference, 3)
    for chunk in np.array_split(np.arange(len(frame)), 5):
        values = {c: frame[c].iloc[chunk] for c in frame}
        direct.add(values)
        counted.add_counts(pickle.loads(pickle.dumps(ProfileAccumulator.count(reference, values))))
    assert counted.profile().to_dict() == direct.profile().to_dict()
    assert direct.profile().features["plan"].other > 0  # the cap was reached
