"""MLflow in one style: model-training experiments, readable runs, dataset lineage, the champion rule."""

from __future__ import annotations

import pandas as pd
from mlflow import MlflowClient

from churnsense.core.tracking import TableInput, TrackedRun, flatten, registered_version, run_name


def _cfg(tmp_path) -> dict:
    return {
        "enabled": True,
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "experiment_name": "exp",
        "artifact_location": (tmp_path / "mlartifacts").as_uri(),
    }


def _version(tmp_path, auroc: float) -> dict:
    run = TrackedRun.start(_cfg(tmp_path), run_name("churn", "synth", "gru", "s1"), {"data": "synth"})
    run.log_metrics({"val/auroc": auroc})
    return run.register(
        f"runs:/{run.run_id}/model", "churnsense-churn-x", f"card {auroc}", {"data": "synth"}, promote_on="val/auroc"
    )


def test_champion_moves_only_when_the_validation_metric_improves(tmp_path):
    first, worse, better = _version(tmp_path, 0.80), _version(tmp_path, 0.75), _version(tmp_path, 0.85)
    assert (first["alias"], worse["alias"], better["alias"]) == ("champion", "challenger", "champion")
    assert worse["compared_with"] == 1 and better["compared_with"] == 1
    uri = _cfg(tmp_path)["tracking_uri"]
    client = MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias("churnsense-churn-x", "champion").version) == "3"
    assert str(client.get_model_version_by_alias("churnsense-churn-x", "challenger").version) == "2"
    assert client.get_model_version("churnsense-churn-x", "3").description == "card 0.85"
    assert str(registered_version("models:/churnsense-churn-x@champion", uri).version) == "3"
    assert str(registered_version("models:/churnsense-churn-x/2", uri).version) == "2"
    assert registered_version("/some/folder", uri) is None


def test_experiment_kind_run_name_and_dataset_lineage(tmp_path):
    run = TrackedRun.start(_cfg(tmp_path), "churn-synth-gru-s42", {"task": "churn"})
    frame = pd.DataFrame({"customer_id": ["a", "b"], "ts": pd.to_datetime(["2024-01-01", "2024-02-01"])})
    (dataset,) = run.log_tables(
        [
            TableInput(
                "synth.events", frame, str(tmp_path / "events.parquet"), "training", {"rows": 2, "first": "2024-01-01"}
            )
        ]
    )
    run.log_metrics({"test/auroc": 0.9, "bad": float("nan")}, dataset=dataset)
    client = MlflowClient(tracking_uri=_cfg(tmp_path)["tracking_uri"])
    experiment = client.get_experiment_by_name("exp")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    got = client.get_run(run.run_id)
    assert got.info.run_name == "churn-synth-gru-s42" and set(got.data.metrics) == {"test/auroc"}
    (inp,) = got.inputs.dataset_inputs
    assert inp.dataset.name == "synth.events" and inp.dataset.digest == dataset.digest
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
    assert TrackedRun.start({**_cfg(tmp_path), "enabled": False}, "x", {}) is None


def test_flatten_cuts_long_values():
    flat = flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x" * 7000})
    assert flat["a.b"] == "1" and flat["a.c"] == "[1, 2]" and len(flat["d"]) == 6000
