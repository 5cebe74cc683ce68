"""After fitting: temperature on validation, final val/test metrics, figures, ONNX export with its parity gate,
fitted insights, one atomically published release, MLflow (metrics, artifacts, registered model with its alias)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from churnsense.churn.calibration import calibrated_probs, fit_temperature
from churnsense.churn.card import model_card
from churnsense.churn.datamodule import ArrayBatches
from churnsense.churn.evaluation import evaluate_split, predict, summary_line
from churnsense.churn.export import ScoringGraph, check_parity, export_onnx
from churnsense.churn.net import MODEL_INPUTS
from churnsense.churn.offer_context import offer_context
from churnsense.churn.plots import save_evaluation_plots
from churnsense.churn.pyfunc import ChurnPyfunc
from churnsense.churn.release import ChurnRelease, write_churn_release
from churnsense.core.drift import Profile, ProfileSettings
from churnsense.core.io import read_table
from churnsense.core.release import staged_release
from churnsense.core.runtime import RowParallelRunner, row_parallel_workers
from churnsense.core.tracking import TrackedRun, package_versions
from churnsense.insights.enrich import risk_threshold
from churnsense.insights.fit import fit_insights
from churnsense.insights.state import InsightsState
from churnsense.insights.uplift_fit import EVIDENCE
from churnsense.insights.value import revenue_notice
from churnsense.monitoring.churn import churn_reference_profile
from churnsense.monitoring.run import REFERENCE_FILE

if TYPE_CHECKING:
    from churnsense.churn.train import PreparedData

log = logging.getLogger(__name__)
SERVING_REQUIREMENTS = ("onnxruntime", "numpy", "pandas", "pyarrow", "omegaconf", "churnsense")


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


def export_checked(cfg: DictConfig, data: PreparedData, graph: ScoringGraph, out_dir: Path) -> tuple[Path, dict]:
    """Export the scoring graph and check parity on a held-out (test) batch; raises ExportParityError on failure."""
    sizes = [int(s) for s in cfg.export.parity_batch_sizes]
    held_out = held_out_batch(data.arrays["test"], max(sizes))
    onnx_path = export_onnx(graph, held_out, out_dir / "model.onnx", opset=int(cfg.export.opset))
    parity = check_parity(
        graph, onnx_path, held_out, sorted({min(s, len(held_out["label"])) for s in sizes}), atol=float(cfg.export.atol)
    )
    return onnx_path, parity


def scoring_release(onnx_path: Path, data: PreparedData, metadata: dict[str, Any]) -> ChurnRelease:
    """The exported model as a scoring release before it is published (the offer-date risk and reasons)."""
    runner = RowParallelRunner(onnx_path, workers=row_parallel_workers(0))
    return ChurnRelease(onnx_path.parent, runner, data.pipeline, data.spec, metadata=metadata)


def fit_release_insights(
    cfg: DictConfig, data: PreparedData, p_val: np.ndarray, release: ChurnRelease | None = None
) -> InsightsState | None:
    """Segments, the uplift learner and the team table at the validation cutoff, the at-risk threshold from the
    validation predictions and the attribution background from the training split's model inputs (None when
    there are no validation rows). Without a customers table only the last two (and retention). `release`: the
    exported model, whose risk and reasons on each logged customer's offer date the uplift learners see."""
    snap = data.snapshots["val"].static
    if snap.empty:
        log.info("insights: skipped (no validation rows)")
        return None
    attributes = data.spec.customers.attributes if data.spec.customers is not None else []
    notice = revenue_notice(
        OmegaConf.to_container(cfg.insights, resolve=True), attributes, data.pipeline.event_type_names
    )
    if notice:
        print(f"notice: {notice}")
    cutoff = pd.Timestamp(snap["cutoff"].max())
    offers = data.tables.offers  # the contract's offer log; fit_insights keeps what was known at the cutoff
    p_churn = pd.Series(p_val, index=snap["customer_id"].to_numpy()).groupby(level=0).last()
    tables = data.tables
    insights = OmegaConf.to_container(cfg.insights, resolve=True)
    context = offer_context(release, tables, insights) if release is not None else None
    state = fit_insights(
        tables.customers,
        tables.events,
        tables.feedback,
        offers,
        cutoff,
        p_churn,
        insights,
        data.spec.framing.horizon_days,
        model_inputs=data.arrays["train"],
        offer_context=context,
        prob_fn=(lambda b: release.run(b)["churn_probability"]) if release is not None else None,
        layout=data.pipeline.batch_layout(),
    )
    seg = state.metrics.get("segments", {})
    supported = [a for a, ok in (state.uplift.get("supported") or {}).items() if ok]
    log.info(
        "insights: %d segments, uplift %s",
        seg.get("k", 0),
        f"fitted (supported: {', '.join(supported) or 'none'})" if state.uplift else "off",
    )
    return state


def drift_reference(cfg: DictConfig, data: PreparedData, p_val: np.ndarray) -> Profile | None:
    """The release's drift reference (`drift_reference.json`): the training split's inputs and history, and the
    validation predictions with the insights' at-risk rule; None when `drift.enabled` is false."""
    if not cfg.drift.enabled:
        return None
    insights = OmegaConf.to_container(cfg.insights, resolve=True)
    settings = ProfileSettings(bins=int(cfg.drift.bins), max_categories=int(cfg.drift.max_categories))
    return churn_reference_profile(
        data.snapshots["train"],
        data.pipeline.categorical,
        data.pipeline.numeric,
        settings,
        p_val,
        risk_threshold(p_val, insights),
        {"data": str(cfg.data.name), "split": "train", "predictions": "validation"},
    )


def insights_metrics(state: InsightsState | None) -> dict[str, float]:
    """The fitted insights' numbers worth tracking (segments, at-risk threshold, the amortised reason explainer's
    held-out fit, held-out Qini / AUUC, the held-out value of the model's choice of action vs the playbook's)."""
    if state is None:
        return {}
    out = {
        "insights/segments_k": float(state.metrics.get("segments", {}).get("k", 0)),
        "insights/at_risk_threshold": float(state.at_risk_threshold),
    }
    explainer = state.metrics.get("reasons_explainer") or {}
    if "top1_agreement" in explainer:
        out["insights/explainer_top1_agreement"] = float(explainer["top1_agreement"])
        out["insights/explainer_r2_mean"] = float(np.mean(list(explainer["r2"].values()))) if explainer["r2"] else 0.0
    for row in state.metrics.get("uplift", []):
        for key in EVIDENCE:
            if row.get(key) is not None:
                out[f"insights/uplift_{key}_{row.get('action', 'all')}"] = float(row[key])
        for key, value in (row.get("policy") or {}).items():
            if isinstance(value, (bool, int, float)):
                out[f"insights/uplift_policy_{key}"] = float(value)
    return out


def raw_input_example(data: PreparedData, n: int = 5) -> pd.DataFrame:
    """The serving pyfunc's input example, as the source file has it: a few customer rows, or (events-only data)
    the event rows of a few customers."""
    kind = "customers" if data.spec.customers is not None else "events"
    table = data.spec.table(kind)
    rows = read_table(table.paths[0], read_options=table.read_options)
    if kind == "customers":
        return rows.head(n)
    ids = rows[table.source("customer_id")]
    return rows[ids.isin(ids.drop_duplicates().head(n))].reset_index(drop=True)


def finish_run(
    cfg: DictConfig,
    data: PreparedData,
    module: Any,
    datamodule: Any,
    run: TrackedRun | None,
    out_dir: Path,
    best_ckpt: Path | None,
    extra: dict[str, float],
    commit: str | None,
    step: int = 0,
) -> dict[str, float]:
    """Calibrate, evaluate, plot, export, publish the release and track it; returns the final metrics."""
    net, offset = module.net, float(module.logit_offset)
    horizons = list(net.hazard.horizons) if net.hazard is not None else []
    val = predict(net, datamodule.predict_loader("val"))
    test = predict(net, datamodule.predict_loader("test"))
    temperature = fit_temperature(val["logit"], val["label"], offset)
    top = float(cfg.model.top_fraction)
    metrics = {
        **evaluate_split(val, "val", temperature, offset, top, horizons),
        **evaluate_split(test, "test", temperature, offset, top, horizons),
        **extra,
        "calibration/temperature": temperature,
    }
    plots = save_evaluation_plots(
        calibrated_probs(test["logit"], temperature, offset).numpy(),
        test["label"].numpy(),
        out_dir / "plots",
        "test",
        raw_probs=calibrated_probs(test["logit"], 1.0, offset).numpy(),
    )
    print(summary_line(metrics, top))
    graph = ScoringGraph(net, temperature, offset)
    metadata = {
        "task": "churn",
        "created": datetime.now(UTC).isoformat(),
        "git_commit": commit,
        "mlflow_run_id": run.run_id if run is not None else None,
        "input_names": list(MODEL_INPUTS),
        "output_names": graph.output_names,
        "temperature": temperature,
        "logit_offset": offset,
        "hazard_horizons": horizons,
        "net_spec": module.hparams.get("net_spec"),
        "seq_encoder": str(cfg.model.seq_encoder),
        "metrics": metrics,
        "versions": package_versions(),
    }
    release = None
    if cfg.export.enabled:
        onnx_path, parity = export_checked(cfg, data, graph, out_dir)
        metrics.update({f"export/{k}": v for k, v in parity.items()})
        metadata.update(parity_max_abs_diff=max(parity.values()), opset=int(cfg.export.opset))
        p_val = calibrated_probs(val["logit"], temperature, offset).numpy()
        scorer = scoring_release(onnx_path, data, metadata)
        state = fit_release_insights(cfg, data, p_val, scorer) if cfg.insights.enabled else None
        metrics.update(insights_metrics(state))
        config = OmegaConf.to_container(cfg, resolve=True)
        card = model_card(cfg, metrics, data)
        with staged_release(release_dir(cfg, out_dir)) as staging:
            write_churn_release(staging, onnx_path, data.pipeline, config, metadata, state, card)
            reference = drift_reference(cfg, data, p_val)
            if reference is not None:
                reference.save(staging / REFERENCE_FILE)
        release = release_dir(cfg, out_dir)
        log.info("release published at %s", release)
    if run is not None:
        _track(cfg, data, run, metrics, plots, best_ckpt, release, step)
    return metrics


def _track(
    cfg: DictConfig,
    data: PreparedData,
    run: TrackedRun,
    metrics: dict[str, float],
    plots: list[Path],
    best_ckpt: Path | None,
    release: Path | None,
    step: int,
) -> None:
    """Final metrics (logged after the last epoch's step, so they are the run's latest values), artifacts, model."""
    run.log_metrics(metrics, step=step)
    run.set_tags(
        {
            "seq_encoder": str(cfg.model.seq_encoder),
            "release": str(release or ""),
            **{f"version.{k}": v for k, v in package_versions().items()},
        }
    )
    run.log_artifacts({"plots": plots[0].parent, "checkpoints": best_ckpt or Path(""), "release": release or Path("")})
    if release is None or not cfg.logger.register_model:
        return
    requirements = [f"{k}=={v}" for k, v in package_versions().items() if k in SERVING_REQUIREMENTS]
    uri = run.log_release_model(
        ChurnPyfunc(), release, raw_input_example(data), requirements, params=ChurnPyfunc.PARAMS
    )
    card = (release / "MODEL_CARD.md").read_text(encoding="utf-8")
    run.register(
        uri,
        cfg.logger.registered_model_name,
        card,
        {"data": str(cfg.data.name), "task": "churn"},
        promote_on=str(cfg.logger.promote_on),
    )
