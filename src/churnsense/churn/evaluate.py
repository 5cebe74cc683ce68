"""`python serve.py task=evaluate`: how a release does on a labelled period — the decay curve a team watches.

The release scores the customers at `cutoff` with the very framing it was trained with (the label is observed
after the cutoff, customers whose label window is not fully observed are left out), and the training metrics code
(ROC-AUC, PR-AUC, Brier, log loss, ECE, recall and lift in the top decile) scores the scores. Results go to
`evaluation.json` and figures in `output_dir`, and to MLflow as an evaluation run whose metrics are linked to the
registered model version (and to the evaluated dataset), so the registry shows every period a version was checked on.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from churnsense.churn.metrics import evaluate_probabilities
from churnsense.churn.plots import save_evaluation_plots
from churnsense.churn.release import ChurnRelease
from churnsense.core.release import write_json
from churnsense.core.tracking import TableInput, TrackedRun, registered_version, run_name, serving_logger
from churnsense.data.contract import KINDS, DataSpec
from churnsense.data.framing import end_of_observation, make_snapshot
from churnsense.data.loading import Tables, load_tables

log = logging.getLogger(__name__)


def spec_for_inputs(spec: DataSpec, inputs: dict[str, str]) -> DataSpec:
    """The release's data contract pointed at the given files (`{kind: path}`); tables without a file are dropped."""
    tables = {
        kind: dataclasses.replace(spec.table(kind), path=inputs[kind], extra_paths=())
        if spec.table(kind) is not None and inputs.get(kind)
        else None
        for kind in KINDS
    }
    return dataclasses.replace(spec, **tables)


def evaluate_period(
    release: ChurnRelease, spec: DataSpec, tables: Tables, cutoff: pd.Timestamp | None, top_fraction: float
) -> tuple[dict[str, float], np.ndarray, np.ndarray, pd.Timestamp]:
    """(metrics, probabilities, labels, cutoff) of the release on the labelled period in `tables` (validated with
    `spec`). `cutoff` None: the latest cutoff whose whole label window is observed in the data."""
    horizon = pd.Timedelta(days=spec.framing.horizon_days)
    cutoff = pd.Timestamp(cutoff) if cutoff is not None else (end_of_observation(tables, spec) - horizon).normalize()
    snapshot = make_snapshot(tables, spec, [cutoff], with_labels=True)
    labels = snapshot.static["label"].to_numpy(dtype=np.float32)
    if len(labels) == 0 or labels.min() == labels.max():
        raise ValueError(
            f"evaluation at {cutoff.date()}: {len(labels)} customers with an observed label window, "
            f"{int(labels.sum()) if len(labels) else 0} churned; need both outcomes (pick another "
            "cutoff= whose horizon lies inside the data)"
        )
    p = release.run(release.pipeline.transform(snapshot))["churn_probability"]
    metrics = evaluate_probabilities(
        torch.as_tensor(p, dtype=torch.float32), torch.as_tensor(labels), "eval/", top_fraction
    )
    metrics.update(
        {
            "eval/customers": float(len(labels)),
            "eval/churn_rate": float(labels.mean()),
            "eval/mean_probability": float(np.mean(p)),
        }
    )
    return metrics, p, labels, cutoff


def serve_evaluate(cfg: DictConfig) -> dict[str, float]:
    """Composition root of `serve.py task=evaluate` (see conf/serve/task/evaluate.yaml)."""
    release = ChurnRelease.load(
        str(cfg.model),
        num_threads=int(cfg.num_threads),
        tracking_uri=cfg.tracking_uri,
        slice_rows=int(cfg.onnx_slice_rows),
    )
    inputs = {kind: str(cfg.input[kind]) for kind in KINDS if cfg.input[kind]}
    if not inputs:
        raise ValueError("task=evaluate: give the labelled period's files (input.customers / input.events ...)")
    spec = spec_for_inputs(release.spec, inputs)
    tables = load_tables(spec)
    metrics, p, labels, cutoff = evaluate_period(release, spec, tables, cfg.cutoff, float(cfg.top_fraction))
    out = Path(str(cfg.output_dir))
    plots = save_evaluation_plots(p, labels, out, stage=f"eval_{cutoff.date()}")
    version = registered_version(str(cfg.model), cfg.tracking_uri)
    info: dict[str, Any] = {
        "model": str(cfg.model),
        "cutoff": str(cutoff.date()),
        "inputs": inputs,
        "horizon_days": spec.framing.horizon_days,
        "metrics": metrics,
    }
    if version is not None:
        info.update(model_name=version.name, model_version=int(version.version))
    write_json(out / "evaluation.json", info)
    _track(cfg, release, spec, tables, metrics, plots + [out / "evaluation.json"], version, cutoff)
    parts = " | ".join(
        f"{k.split('/')[1]} {v:.4f}"
        for k, v in metrics.items()
        if k.split("/")[1] in ("auroc", "pr_auc", "brier", "ece", f"lift_top{int(round(cfg.top_fraction * 100))}")
    )
    print(
        f"[evaluate] {cfg.model} at {cutoff.date()}: {int(metrics['eval/customers']):,} customers, churn rate "
        f"{metrics['eval/churn_rate']:.3f} | {parts} -> {out / 'evaluation.json'}"
    )
    return metrics


def _track(
    cfg: DictConfig,
    release: ChurnRelease,
    spec: DataSpec,
    tables: Tables,
    metrics: dict[str, float],
    files: list[Path],
    version: Any,
    cutoff: pd.Timestamp,
) -> None:
    """An evaluation run: metrics linked to the registered model version and the evaluated customers table."""
    name = f"{version.name}-v{version.version}" if version is not None else Path(str(release.path)).name
    run = TrackedRun.start(
        serving_logger(cfg.mlflow, cfg.tracking_uri),
        run_name("evaluate", name, str(cutoff.date())),
        {
            "task": "evaluate",
            "model": str(cfg.model),
            "cutoff": str(cutoff.date()),
            **({"model_name": version.name, "model_version": str(version.version)} if version else {}),
        },
    )
    if run is None:
        return
    primary = "customers" if spec.customers is not None else "events"
    (dataset,) = run.log_tables(
        [
            TableInput(
                f"{spec.name}.{primary}",
                getattr(tables, primary),
                spec.table(primary).path,
                "evaluation",
                {"cutoff": str(cutoff.date())},
            )
        ]
    )
    run.log_metrics(metrics, model_id=getattr(version, "model_id", None), dataset=dataset)
    run.log_artifacts({"evaluation": files[-1]})
    run.log_artifacts({"evaluation/plots": files[0].parent})
    if version is not None:
        for key in ("auroc", "pr_auc", "ece"):
            run.client.set_model_version_tag(
                version.name, version.version, f"eval.{cutoff.date()}.{key}", f"{metrics[f'eval/{key}']:.4f}"
            )
    run.end()
