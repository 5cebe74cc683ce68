"""After fitting: temperature on validation, final val/test metrics, figures, ONNX release, MLflow logging."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from churnsense.export.onnx import ScoringGraph, check_parity, export_onnx, model_inputs
from churnsense.export.release import write_release
from churnsense.models.datamodule import ArrayBatches
from churnsense.models.net import MODEL_INPUTS
from churnsense.training.calibration import calibrated_probs, fit_temperature
from churnsense.training.evaluation import evaluate_split, predict
from churnsense.training.plots import save_evaluation_plots
from churnsense.training.tracking import log_final, package_versions, register_release

log = logging.getLogger(__name__)


def held_out_batch(arrays: dict[str, np.ndarray], size: int) -> dict[str, torch.Tensor]:
    """The first `size` rows of a split as one batch (sequence axis trimmed like training batches)."""
    ds = ArrayBatches(arrays)
    return ds[list(range(min(size, len(ds))))]


def release_dir(cfg: DictConfig, out_dir: Path) -> Path:
    """`export.release_dir` for a single run; inside a `-m` sweep each job keeps its own release in its job dir
    (so jobs do not overwrite one another; MLflow holds each run's copy too)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return out_dir / "release"
    return Path(cfg.export.release_dir)


def export_release(cfg: DictConfig, data: Any, graph: ScoringGraph, out_dir: Path, metadata: dict[str, Any],
                   extra_json: dict[str, Any] | None = None) -> tuple[Path, dict[str, float]]:
    """Export the scoring graph, check parity on a held-out test batch (raises on failure), write the release
    (with the `extra_json` documents)."""
    sizes = [int(s) for s in cfg.export.parity_batch_sizes]
    held_out = held_out_batch(data.arrays["test"], max(sizes))
    onnx_path = export_onnx(graph, held_out, out_dir / "model.onnx", opset=int(cfg.export.opset))
    parity = check_parity(graph, onnx_path, held_out, sorted({min(s, len(held_out["label"])) for s in sizes}),
                          atol=float(cfg.export.atol))
    metadata = {**metadata, "parity_max_abs_diff": max(parity.values()), "opset": int(cfg.export.opset)}
    release = write_release(release_dir(cfg, out_dir), onnx_path, data.pipeline,
                            OmegaConf.to_container(cfg, resolve=True), metadata, extra_json)
    log.info("release written to %s", release)
    return release, parity


def drift_reference(cfg: DictConfig, data: Any, p_val: np.ndarray) -> dict[str, Any]:
    """`{drift_reference.json: profile}` for the release: the training split's inputs and history, and the
    validation predictions with the insights' at-risk rule; {} when `drift.enabled` is false."""
    if cfg.get("drift") is None or not cfg.drift.enabled:
        return {}
    from churnsense.core.drift import ProfileSettings
    from churnsense.insights.enrich import risk_threshold
    from churnsense.monitoring.churn import churn_reference_profile
    from churnsense.monitoring.run import REFERENCE_FILE

    insights = OmegaConf.to_container(cfg.insights, resolve=True) if cfg.get("insights") is not None else {}
    settings = ProfileSettings(bins=int(cfg.drift.bins), max_categories=int(cfg.drift.max_categories))
    profile = churn_reference_profile(data.snapshots["train"], data.pipeline.categorical, data.pipeline.numeric,
                                      settings, p_val, risk_threshold(p_val, insights),
                                      {"data": str(cfg.data.get("name", "")), "split": "train",
                                       "predictions": "validation"})
    return {REFERENCE_FILE: profile.to_dict()}


def fit_release_insights(cfg: DictConfig, data: Any, release: Path, p_val: np.ndarray) -> dict[str, float]:
    """Fit segments, the uplift learner and the team table at the validation cutoff, the at-risk threshold from the
    validation predictions and the attribution background from the training split's model inputs; saved as
    insights.json (+ insights_background.npz). Without a customers table only the last two (and retention)."""
    from churnsense.data.io import read_table
    from churnsense.insights.fit import fit_insights

    tables, snap = data.tables, data.snapshots["val"].static
    if snap.empty:
        log.info("insights: skipped (no validation rows)")
        return {}
    offers_path = cfg.data.get("offers")
    offers = read_table(offers_path) if offers_path and Path(offers_path).exists() else None
    cutoff = pd.Timestamp(snap["cutoff"].max())
    if offers is not None:  # only offers made before the cutoff may inform the fitted state
        offers = offers[pd.to_datetime(offers["ts"]) < cutoff]
    p_churn = pd.Series(p_val, index=snap["customer_id"].to_numpy()).groupby(level=0).last()
    state = fit_insights(tables.customers, tables.events, tables.feedback, offers, cutoff, p_churn,
                         OmegaConf.to_container(cfg.insights, resolve=True), data.spec.framing.horizon_days,
                         model_inputs=data.arrays["train"])
    state.save(release)
    seg = state.metrics.get("segments", {})
    out = {"insights/segments_k": float(seg.get("k", 0)),
           "insights/at_risk_threshold": float(state.at_risk_threshold)}
    for row in state.metrics.get("uplift", []):
        for key in ("qini", "qini_random", "auuc", "auuc_random"):
            if key in row and row[key] is not None:
                out[f"insights/{key}_{row.get('action', 'all')}"] = float(row[key])
    log.info("insights: %d segments, uplift %s", seg.get("k", 0), "fitted" if state.uplift else "skipped")
    return out


def raw_customers_example(spec: Any, n: int = 5) -> Any:
    """A few customer rows as the source file has them (the serving pyfunc's input), or None."""
    if spec.customers is None:
        return None
    from churnsense.data.io import read_table

    table = spec.customers
    rows = read_table(table.paths[0], read_options=table.read_options, str_columns=[table.source("customer_id")])
    return rows.head(n)


def finish_run(cfg: DictConfig, data: Any, module: Any, datamodule: Any, mlf: Any, out_dir: Path,
               best_ckpt: Path | None, extra: dict[str, float], commit: str | None, step: int = 0) -> dict[str, float]:
    """Calibrate, evaluate, plot, export, release and log; returns the final metrics."""
    net, offset = module.net, float(module.logit_offset)
    horizons = list(net.hazard.horizons) if net.hazard is not None else []
    val = predict(net, datamodule.val_dataloader())
    test = predict(net, datamodule.test_dataloader())
    temperature = fit_temperature(val["logit"], val["label"], offset)
    top = float(cfg.model.top_fraction)
    metrics = {**evaluate_split(val, "val", temperature, offset, top, horizons),
               **evaluate_split(test, "test", temperature, offset, top, horizons),
               **extra, "calibration/temperature": temperature}
    plots = save_evaluation_plots(calibrated_probs(test["logit"], temperature, offset).numpy(),
                                  test["label"].numpy(), out_dir / "plots", "test",
                                  raw_probs=calibrated_probs(test["logit"], 1.0, offset).numpy())
    log.info("val/auroc %.4f test/auroc %.4f test/ece %.4f -> %.4f (T=%.3f)", metrics["val/auroc"],
             metrics["test/auroc"], metrics["test/ece"], metrics["test/calibrated_ece"], temperature)
    graph = ScoringGraph(net, temperature, offset)
    metadata = {"task": "churn", "created": datetime.now(timezone.utc).isoformat(), "git_commit": commit,
                "mlflow_run_id": getattr(mlf, "run_id", None), "input_names": list(MODEL_INPUTS),
                "output_names": graph.output_names, "temperature": temperature, "logit_offset": offset,
                "hazard_horizons": horizons, "net_spec": module.hparams.get("net_spec"),
                "seq_encoder": str(cfg.model.seq_encoder), "metrics": metrics, "versions": package_versions()}
    release = None
    if cfg.export.enabled:
        p_val = calibrated_probs(val["logit"], temperature, offset).numpy()
        release, parity = export_release(cfg, data, graph, out_dir, metadata, drift_reference(cfg, data, p_val))
        metrics.update({f"export/{k}": v for k, v in parity.items()})
        if cfg.get("insights") is not None and cfg.insights.get("enabled", True):
            metrics.update(fit_release_insights(cfg, data, release, p_val))
    if mlf is not None:
        _track(cfg, data, mlf, metrics, plots, best_ckpt, release, graph, commit, step)
    return metrics


def _track(cfg: DictConfig, data: Any, mlf: Any, metrics: dict[str, float], plots: list[Path],
           best_ckpt: Path | None, release: Path | None, graph: ScoringGraph, commit: str | None,
           step: int) -> None:
    """Final metrics (logged after the last epoch's step, so they are the run's latest values), artifacts, model."""
    artifacts: dict[str, Path] = {"plots": plots[0].parent}
    if best_ckpt is not None:
        artifacts["checkpoints"] = best_ckpt
    if release is not None:
        artifacts["release"] = release
    tags = {"git_commit": str(commit), "seq_encoder": str(cfg.model.seq_encoder),
            **{f"version.{k}": v for k, v in package_versions().items()}}
    log_final(mlf, metrics, artifacts, tags, step=step)
    if release is None:
        return
    example = held_out_batch(data.arrays["test"], 5)
    inputs = {k: v.numpy() for k, v in zip(MODEL_INPUTS, model_inputs(example))}
    with torch.no_grad():
        outputs = {n: t.numpy() for n, t in zip(graph.output_names, graph(*model_inputs(example)))}
    name = cfg.logger.registered_model_name if cfg.logger.get("register_model") else None
    flavour = register_release(mlf, release, name, inputs, outputs, raw_customers_example(data.spec))
    log.info("logged MLflow model (%s flavour)%s", flavour, f", registered as {name}" if name else "")
