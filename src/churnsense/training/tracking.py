"""MLflow tracking for churn training: Lightning's MLFlowLogger for per-epoch metrics, the MLflow client for the
rest (params, final metrics, figures, checkpoint, release, registered model). Callers log from rank zero only."""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import inspect
import logging
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
PACKAGES = ("churnsense", "torch", "pyarrow", "omegaconf", "pytorch-lightning", "torchmetrics", "onnx", "onnxruntime", "onnxscript",
            "mlflow", "hydra-core", "numpy", "pandas")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become strings (MLflow params are strings)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v if isinstance(v, (int, float, bool, str)) or v is None else str(v)
    return out


def package_versions() -> dict[str, str]:
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
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return None


def run_name(base: str, seed: int, sweep: Mapping[str, str] | None = None) -> str:
    """`<base>-seed<seed>`, with `-trial<n>` inside a sweep: the name says what ran."""
    return f"{base}-seed{seed}" + (f"-trial{sweep['sweep.trial']}" if sweep else "")


def sweep_tags() -> dict[str, str]:
    """Inside a Hydra multirun (e.g. an Optuna sweep): the sweep's directory and this job's number; else {}."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    hc = HydraConfig.get()
    return {"sweep.dir": str(Path(hc.sweep.dir).resolve()), "sweep.trial": str(hc.job.num)}


def sweep_parent_run(logger_cfg: Mapping[str, Any], sweep: Mapping[str, str]) -> str:
    """Id of the sweep's parent MLflow run (created by the first trial), under which every trial is nested."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=logger_cfg.get("tracking_uri"))
    exp = client.get_experiment_by_name(logger_cfg["experiment_name"])
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(
        logger_cfg["experiment_name"], artifact_location=logger_cfg.get("artifact_location"))
    query = f"tags.`sweep.dir` = '{sweep['sweep.dir']}' and tags.`sweep.parent` = 'true'"
    found = client.search_runs([exp_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    parent = client.create_run(exp_id, run_name=f"sweep-{Path(sweep['sweep.dir']).name}",
                               tags={"sweep.dir": sweep["sweep.dir"], "sweep.parent": "true"})
    return parent.info.run_id


def make_mlflow_logger(logger_cfg: Mapping[str, Any], tags: dict[str, str] | None = None, name: str | None = None):
    """Lightning MLFlowLogger from `cfg.logger` (None when `enabled: false`); `name` is the run name. Inside a
    sweep the run is nested under the sweep's parent run and tagged with the sweep and trial."""
    if not logger_cfg.get("enabled", False):
        return None
    from pytorch_lightning.loggers import MLFlowLogger

    tags = dict(tags or {})
    sweep = sweep_tags()
    if sweep:
        tags.update(sweep)
        tags["mlflow.parentRunId"] = sweep_parent_run(logger_cfg, sweep)
    return MLFlowLogger(
        experiment_name=logger_cfg["experiment_name"],
        run_name=name or logger_cfg.get("run_name"),
        tracking_uri=logger_cfg.get("tracking_uri"),
        artifact_location=logger_cfg.get("artifact_location"),
        tags=tags,
        save_dir=logger_cfg.get("save_dir") or "./mlruns",
        log_model=False,
    )


def log_params(logger, params: Mapping[str, Any]) -> None:
    """Flattened resolved config as run params (values cut to MLflow's 6000-character limit)."""
    client, run_id = logger.experiment, logger.run_id
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100])


def log_final(logger, metrics: Mapping[str, float], artifacts: Mapping[str, str | Path],
              tags: Mapping[str, str], step: int = 0) -> None:
    """Final metrics, tags and artifacts (`{artifact_path: local file or directory}`) on the logger's run."""
    import time

    from mlflow.entities import Metric, RunTag

    client, run_id = logger.experiment, logger.run_id
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()
                                      if np.isfinite(v)], tags=[RunTag(k, str(v)) for k, v in tags.items()])
    for artifact_path, local in artifacts.items():
        local = Path(local)
        if local.is_dir():
            client.log_artifacts(run_id, str(local), artifact_path)
        elif local.is_file():
            client.log_artifact(run_id, str(local), artifact_path or None)


def _serving_python_model():
    """The serving engineer's PythonModel class (`churnsense.serving.pyfunc`), if it exists."""
    if importlib.util.find_spec("churnsense.serving.pyfunc") is None:
        return None
    import mlflow.pyfunc

    module = importlib.import_module("churnsense.serving.pyfunc")
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, mlflow.pyfunc.PythonModel) and c is not mlflow.pyfunc.PythonModel]
    return classes[0] if classes else None


def _pyfunc_signature(model_cls: type, release_dir: Path, example: Any):
    """Signature from a throw-away instance (the logged one must stay unloaded: an ONNX session can't pickle)."""
    from mlflow.models import infer_signature
    from mlflow.pyfunc import PythonModelContext

    probe = model_cls()
    probe.load_context(PythonModelContext(artifacts={"release": str(release_dir)}, model_config={}))
    return infer_signature(example, probe.predict(None, example))


def register_release(logger, release_dir: Path, model_name: str | None, onnx_inputs: dict[str, np.ndarray],
                     onnx_outputs: dict[str, np.ndarray], pyfunc_example: Any = None) -> str:
    """Log the release as an MLflow model (pyfunc over the release dir if serving provides one, else ONNX flavour)
    with signature and input example, registering it under `model_name` (None = don't register). Returns flavour."""
    import mlflow
    from mlflow.models import infer_signature

    _ = logger.experiment  # creates the run and sets MLflow's tracking URI to the logger's
    requirements = [f"{k}=={v}" for k, v in package_versions().items()
                     if k in ("onnxruntime", "numpy", "pandas", "pyarrow", "omegaconf", "churnsense")]
    with mlflow.start_run(run_id=logger.run_id):
        model_cls = _serving_python_model()
        if model_cls is not None and pyfunc_example is not None:
            try:
                mlflow.pyfunc.log_model(
                    name="model", python_model=model_cls(), artifacts={"release": str(release_dir)},
                    signature=_pyfunc_signature(model_cls, release_dir, pyfunc_example),
                    input_example=pyfunc_example, registered_model_name=model_name, pip_requirements=requirements)
                return "pyfunc"
            except Exception as err:  # noqa: BLE001 - fall back to the plain ONNX flavour, loudly
                log.warning("pyfunc model logging failed (%s); registering the ONNX flavour instead", err)
        import onnx

        mlflow.onnx.log_model(
            onnx.load(str(release_dir / "model.onnx")), name="model", registered_model_name=model_name,
            signature=infer_signature(onnx_inputs, onnx_outputs), input_example=onnx_inputs,
            pip_requirements=requirements, save_as_external_data=False,
            onnx_execution_providers=["CPUExecutionProvider"])
        return "onnx"
