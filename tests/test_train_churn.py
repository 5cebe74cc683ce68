"""One-epoch churn training through the real Hydra config on tiny synthetic data, tracked in a tmp MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from helpers import CONF, serve_config, tiny_churn_overrides, train_config


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """300 synthetic customers (the data layer's generator), generated once for this module; background churn
    raised so every split holds churners (training refuses a split it could not measure)."""
    synth = pytest.importorskip("churnsense.synth.generate")
    root = tmp_path_factory.mktemp("churn")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "synth", overrides=["n_customers=300", "background_churn=0.3", f"out_dir={root / 'data' / 'demo'}"]
        )
    synth.generate(OmegaConf.to_container(cfg, resolve=True))
    return root


def test_one_epoch_tracked_run(synth_root: Path):
    import mlflow

    from churnsense.churn.train import train_churn

    uri = f"sqlite:///{synth_root / 'mlflow.db'}"
    cfg = train_config(
        *tiny_churn_overrides(synth_root),
        f"logger.tracking_uri={uri}",
        f"logger.artifact_location={synth_root / 'mlartifacts'}",
    )
    metrics = train_churn(cfg)
    for key in (
        "val/auroc",
        "test/auroc",
        "test/pr_auc",
        "test/brier",
        "test/log_loss",
        "test/ece",
        "test/calibrated_ece",
        "test/lift_top10",
        "test/recall_top10",
        "calibration/temperature",
    ):
        assert key in metrics, key
    release = synth_root / "artifacts" / "churn"
    assert {p.name for p in release.iterdir()} >= {"model.onnx", "pipeline.json", "config.yaml", "metadata.json"}
    meta = json.loads((release / "metadata.json").read_text())
    assert meta["output_names"] == ["p_churn", "p_horizon"] and meta["hazard_horizons"] == [30, 60, 90]
    assert meta["parity_max_abs_diff"] <= 1e-4 and meta["temperature"] > 0
    from churnsense.insights.state import load_state

    state = load_state(release)  # insights fixed at training time: serving never depends on the scored batch
    assert state.at_risk_threshold is not None and 0 < state.monthly_retention <= 1 and state.event_types
    assert state.background["seq_type"].shape == (64, int(cfg.data.framing.max_events))
    explainer = state.metrics["reasons_explainer"]  # the amortised reasons, fitted for this model and saved with it
    assert (release / "insights_explainer.json").is_file() and state.explainer["groups"][0] == "usage_decline"
    assert explainer["training_rows"] > 0 and 0 <= explainer["top1_agreement"] <= 1
    assert {"insights/at_risk_threshold", "insights/explainer_top1_agreement"} <= set(metrics)
    from churnsense.core.drift import Profile

    drift = Profile.load(release / "drift_reference.json")  # in the release before it was published
    assert {"plan", "monthly_charge", "event_type", "churn_probability", "at_risk"} <= set(drift.features)
    assert drift.meta["at_risk_threshold"] == pytest.approx(state.at_risk_threshold, abs=0.05)

    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("churnsense-churn").experiment_id])
    assert {"val/auroc", "train/loss", "test/auroc", "test/calibrated_ece"} <= set(run.data.metrics)
    assert run.data.params["model.seq_encoder"] == "gru" and len(run.data.tags["git_commit"]) >= 40
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "release", "checkpoints"} <= top
    assert {a.path for a in client.list_artifacts(run.info.run_id, "release")} >= {
        "release/model.onnx",
        "release/pipeline.json",
        "release/drift_reference.json",
    }
    assert run.info.run_name == "churn-synth-tabular+gru-k8-s42"
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"synth.customers", "synth.events", "synth.feedback"}
    versions = client.search_model_versions("name='churnsense-churn'")
    assert len(versions) == 1 and versions[0].run_id == run.info.run_id
    champion = client.get_model_version_by_alias("churnsense-churn", "champion")
    assert str(champion.version) == str(versions[0].version) and champion.description.startswith("# churnsense churn")
    assert (release / "MODEL_CARD.md").read_text() == champion.description
    info = mlflow.models.get_model_info(f"models:/churnsense-churn/{versions[0].version}")
    assert info.signature is not None and "python_function" in info.flavors


def test_transformer_without_logger(synth_root: Path, tmp_path: Path):
    from churnsense.churn.train import train_churn

    cfg = train_config(
        *tiny_churn_overrides(synth_root),
        "logger=none",
        "model.seq_encoder=transformer",
        "model.heads=2",
        "model.hazard_horizons=[]",
        "export.enabled=false",
        f"paths.output_dir={tmp_path}",
    )
    metrics = train_churn(cfg)
    assert 0.0 <= metrics["val/auroc"] <= 1.0 and not any(k.startswith("val/hazard") for k in metrics)


def test_evaluate_a_labelled_period_against_the_registered_champion(synth_root: Path, tmp_path: Path):
    """`serve.py task=evaluate`: the champion scored on a labelled period, metrics linked to the registered version."""
    import mlflow

    from churnsense.churn.evaluate import serve_evaluate

    uri = f"sqlite:///{synth_root / 'mlflow.db'}"
    demo = synth_root / "data" / "demo"
    cfg = serve_config(
        "task=evaluate",
        "model=models:/churnsense-churn@champion",
        f"tracking_uri={uri}",
        f"input.customers={demo / 'customers.parquet'}",
        f"input.events={demo / 'events.parquet'}",
        "cutoff=2025-09-01",
        f"output_dir={tmp_path / 'eval'}",
    )
    metrics = serve_evaluate(cfg)
    doc = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert doc["cutoff"] == "2025-09-01" and doc["model_name"] == "churnsense-churn"
    assert 0 <= metrics["eval/auroc"] <= 1 and metrics["eval/customers"] > 0
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("churnsense-evaluation").experiment_id])
    assert run.data.metrics["eval/auroc"] == pytest.approx(metrics["eval/auroc"])
    version = client.get_model_version("churnsense-churn", str(doc["model_version"]))
    assert "eval.2025-09-01.auroc" in version.tags
