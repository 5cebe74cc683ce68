"""Drift monitoring of churn scoring on the demo generator, through `serve.py task=churn`'s code path: a release whose
reference profile was built as training builds it (training split + validation predictions) scores another seed of
the same generator without any alert, and a copy of it with a planted shift (a new plan value, prices +30 %, a
different language mix) with exactly those three features flagged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from churnsense.churn.features import FeaturePipeline
from churnsense.core.drift import Profile, ProfileSettings
from churnsense.data.contract import DataSpec
from churnsense.data.framing import make_splits
from churnsense.data.loading import load_tables
from churnsense.monitoring.churn import churn_reference_profile, events_per_customer
from churnsense.monitoring.run import REFERENCE_FILE
from churnsense.synth.generate import generate, synth_config
from helpers import default_insights_config, serve_config, train_config

ROOT = Path(__file__).resolve().parents[1]
N_CUSTOMERS = 3000
PLANTED = ["language", "monthly_charge", "plan"]


def data_config(data_dir: Path) -> dict:
    """conf/data/synth.yaml (the demo's data config) with `paths.data_dir` = `data_dir`."""
    return OmegaConf.to_container(train_config(f"paths.data_dir={data_dir}").data, resolve=True)


def build_release(data_dir: Path, out: Path) -> Path:
    """Pipeline fit on the training split, an untrained tiny ChurnNet exported to ONNX, and the drift reference of
    `churn.finish.drift_reference` (training split + validation predictions, the insights' at-risk rule)."""
    from churnsense.churn.export import ScoringGraph, export_onnx
    from churnsense.churn.net import ChurnNet
    from churnsense.churn.release import write_churn_release
    from churnsense.churn.sequence import SequenceEncoder
    from churnsense.churn.tabular import TabularEncoder
    from churnsense.core.release import staged_release
    from churnsense.core.runtime import onnx_session
    from churnsense.insights.enrich import risk_threshold

    config = {"data": data_config(data_dir), "seed": 0}
    spec = DataSpec.from_config(config["data"])
    splits = make_splits(load_tables(spec), spec)
    pipeline = FeaturePipeline.from_spec(spec).fit(splits["train"])
    torch.manual_seed(0)
    net = ChurnNet(
        TabularEncoder(pipeline.cat_cardinalities, pipeline.n_numeric, d_token=4, hidden_dim=8),
        SequenceEncoder(pipeline.n_event_types, d_model=8),
        hidden_dim=8,
    )
    val = pipeline.transform(splits["val"])
    onnx_path = export_onnx(
        ScoringGraph(net.eval()), {k: torch.as_tensor(v[:4]) for k, v in val.items()}, out / "tmp" / "model.onnx"
    )
    session = onnx_session(onnx_path)
    p_val = session.run(["p_churn"], {i.name: val[i.name] for i in session.get_inputs()})[0]
    drift = train_config().drift
    profile = churn_reference_profile(
        splits["train"],
        pipeline.categorical,
        pipeline.numeric,
        ProfileSettings(bins=drift.bins, max_categories=drift.max_categories),
        p_val,
        risk_threshold(p_val, default_insights_config()),
    )
    with staged_release(out / "churn") as staging:
        write_churn_release(staging, onnx_path, pipeline, config, {})
        profile.save(staging / REFERENCE_FILE)
    return out / "churn"


def plant_shift(src: Path, dst: Path, seed: int = 0) -> Path:
    """A copy of the base whose customers have a new plan value (10 %), prices +30 % and another language mix."""
    rng = np.random.default_rng(seed)
    dst.mkdir(parents=True)
    cust = pd.read_parquet(src / "customers.parquet")
    cust.loc[rng.random(len(cust)) < 0.1, "plan"] = "family"
    cust["monthly_charge"] = cust["monthly_charge"] * 1.3
    cust["language"] = rng.choice(["en", "ru", "uk", "he"], len(cust), p=[0.3, 0.3, 0.25, 0.15])
    cust.to_parquet(dst / "customers.parquet", index=False)
    for name in ("events", "feedback"):
        (dst / f"{name}.parquet").symlink_to(src / f"{name}.parquet")
    return dst


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("drift_demo")
    for seed in (7, 8):
        generate(synth_config(n_customers=N_CUSTOMERS, seed=seed, out_dir=str(root / f"s{seed}" / "demo")))
    return {
        "release": build_release(root / "s7", root),
        "unshifted": root / "s8" / "demo",
        "shifted": plant_shift(root / "s8" / "demo", root / "shifted"),
    }


def serve(release: Path, base: Path, output: Path, *extra: str):
    from churnsense.churn.serve import serve_churn

    cfg = serve_config(
        "task=churn",
        f"model={release}",
        f"input.customers={base / 'customers.parquet'}",
        f"input.events={base / 'events.parquet'}",
        f"input.feedback={base / 'feedback.parquet'}",
        f"output={output}",
        "progress=false",
        "feedback_model=null",
        "insights=false",
        "partitions=3",
        "drift.mlflow.enabled=false",
        *extra,
    )
    serve_churn(cfg)
    report = output.with_name(f"{output.stem}.drift.json")
    return json.loads(report.read_text()) if report.is_file() else None


def test_reference_profile_is_saved_with_the_release(demo):
    ref = Profile.load(demo["release"] / REFERENCE_FILE)
    groups = {name: f.group for name, f in ref.features.items()}
    assert {n for n, g in groups.items() if g == "input"} == {
        "plan",
        "contract",
        "payment_method",
        "region",
        "language",
        "age_band",
        "monthly_charge",
        "n_lines",
        "tenure_days",
    }
    assert {n for n, g in groups.items() if g == "derived"} == {
        "event_type",
        "events_per_customer",
        "feedback_language",
        "feedback_text_length",
    }
    assert {n for n, g in groups.items() if g == "prediction"} == {"churn_probability", "at_risk"}
    assert 0 < ref.meta["at_risk_threshold"] < 1 and ref.meta["rows"] > N_CUSTOMERS  # 3 training cutoffs


def test_unshifted_scoring_run_flags_nothing(demo, tmp_path, capsys):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    doc = serve(
        demo["release"],
        demo["unshifted"],
        tmp_path / "scores.csv",
        "drift.mlflow.enabled=true",
        f"tracking_uri={uri}",
        f"drift.mlflow.artifact_location={(tmp_path / 'mlartifacts').as_uri()}",
    )
    out = capsys.readouterr().out
    assert doc["summary"]["drifted_features"] == [] and doc["summary"]["passed"], doc["summary"]
    assert doc["summary"]["tested"] == 15 and "DRIFT" not in out
    assert (tmp_path / "scores.drift.html").is_file()
    scored = pd.read_csv(tmp_path / "scores.csv")
    assert sum(doc["current_profile"]["features"]["churn_probability"]["counts"]) == len(scored)
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("churnsense-monitoring").experiment_id])
    assert run.data.tags["drift.passed"] == "True" and run.data.metrics["drift/drifted"] == 0
    assert run.data.metrics["drift/psi/tenure_days"] == pytest.approx(
        next(f["value"] for f in doc["features"] if f["name"] == "tenure_days")
    )
    assert {a.path for a in client.list_artifacts(run.info.run_id, "drift")} == {
        "drift/scores.drift.json",
        "drift/scores.drift.html",
    }


def test_planted_shift_flags_exactly_the_shifted_features(demo, tmp_path, capsys):
    doc = serve(demo["release"], demo["shifted"], tmp_path / "scores.parquet")
    out = capsys.readouterr().out
    assert sorted(doc["summary"]["drifted_features"]) == PLANTED and not doc["summary"]["passed"]
    plan = next(f for f in doc["features"] if f["name"] == "plan")
    assert [c["category"] for c in plan["new_categories"]] == ["family"]
    lines = [line for line in out.splitlines() if line.startswith("DRIFT")]
    assert len(lines) == 1 and all(name in lines[0] for name in PLANTED) and "scores.drift.html" in lines[0]
    page = (tmp_path / "scores.drift.html").read_text()
    assert page.count('<tr class="drift">') == 3 and page.count("<svg") == 3


def test_drift_monitoring_can_be_switched_off(demo, tmp_path, capsys):
    assert serve(demo["release"], demo["shifted"], tmp_path / "scores.csv", "drift.enabled=false") is None
    assert (tmp_path / "scores.csv").is_file() and not list(tmp_path.glob("*.drift.*"))
    assert "DRIFT" not in capsys.readouterr().out


def test_events_per_customer_counts_zero_history_rows():
    from churnsense.data.framing import Snapshot

    static = pd.DataFrame(
        {"customer_id": ["a", "b", "c", "a"], "cutoff": pd.to_datetime(["2025-01-01"] * 3 + ["2025-02-01"])}
    )
    history = pd.DataFrame(
        {
            "customer_id": ["a", "a", "c", "a"],
            "cutoff": pd.to_datetime(["2025-01-01", "2025-01-01", "2025-01-01", "2025-02-01"]),
            "event_type": "usage",
        }
    )
    assert events_per_customer(Snapshot(static, history)).tolist() == [2, 0, 1, 1]
    assert events_per_customer(Snapshot(static.iloc[:3], history.iloc[:3])).tolist() == [2, 0, 1]


def test_release_without_reference_scores_with_a_warning(demo, tmp_path, caplog):
    import shutil

    old = shutil.copytree(demo["release"], tmp_path / "old_release")
    (old / REFERENCE_FILE).unlink()
    with caplog.at_level("WARNING"):
        assert serve(old, demo["unshifted"], tmp_path / "scores.csv") is None
    assert (tmp_path / "scores.csv").is_file() and f"has no {REFERENCE_FILE}" in caplog.text
