"""Composition root of churn training: `train_churn(cfg)` is the only place that instantiates from config.

data -> FeaturePipeline (fit on train) -> ChurnNet (branches from the pipeline's shapes) -> Lightning fit with
early stopping/best checkpoint -> temperature on validation -> test metrics -> ONNX export + parity -> release
directory -> MLflow (params, per-epoch metrics, final metrics, figures, checkpoint, release, registered model).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from churnsense.churn.features import FeaturePipeline
from churnsense.churn.finish import finish_run
from churnsense.churn.tabular import quantile_bins
from churnsense.core.lightning import end_distributed, is_rank_zero, make_trainer, run_dir
from churnsense.core.tracking import TableInput, TrackedRun, git_commit, run_name
from churnsense.data.contract import KINDS, DataSpec
from churnsense.data.framing import Snapshot, check_framing, check_splits, make_splits
from churnsense.data.loading import Tables, load_tables

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """The validated tables, their train/val/test snapshots, the fitted pipeline and the model inputs per split."""

    spec: DataSpec
    pipeline: FeaturePipeline
    snapshots: dict[str, Snapshot]
    arrays: dict[str, dict[str, np.ndarray]]
    tables: Tables


def prepare_data(cfg: DictConfig) -> PreparedData:
    """Load tables, check the label mode against their columns, frame train/val/test snapshots, check every split
    can be learned and measured (both raise one clear ValueError before anything is trained or published), fit
    the feature pipeline on train, transform all splits."""
    spec = DataSpec.from_config(OmegaConf.to_container(cfg.data, resolve=True))
    tables = load_tables(spec)
    check_framing(spec, tables)
    snapshots = make_splits(tables, spec)
    check_splits(snapshots, spec)
    pipeline = FeaturePipeline.from_spec(spec).fit(snapshots["train"])
    arrays = {name: pipeline.transform(snap) for name, snap in snapshots.items()}
    for name, arr in arrays.items():
        log.info("%s: %d rows, churn rate %.3f", name, len(arr["label"]), float(np.mean(arr["label"])))
    return PreparedData(spec, pipeline, snapshots, arrays, tables)


def resolve_pos_weight(value: Any, labels: np.ndarray) -> float:
    """`auto` -> #negatives / #positives on train (within [1, 100]); a number is used as given."""
    if str(value) != "auto":
        return float(value)
    pos = float(np.sum(labels == 1))
    return float(np.clip((len(labels) - pos) / max(pos, 1.0), 1.0, 100.0))


def has_churn_times(train: dict[str, np.ndarray]) -> bool:
    """True when the data has churn times for a hazard head: some observed churn (finite `ttc_days`) and follow-up
    (label modes `label` and `inactivity` have none: a hazard head would only learn that nobody churns)."""
    return all(k in train and bool(np.isfinite(train[k]).any()) for k in ("ttc_days", "followup_days"))


def numeric_bins(cfg: DictConfig, train: dict[str, np.ndarray]) -> list[list[float]] | None:
    """Quantile bin edges of the training split's numeric inputs for the piecewise-linear embedding (else None)."""
    if cfg.model.numeric_embedding != "piecewise" or train["num"].shape[1] == 0:
        return None
    return quantile_bins(np.asarray(train["num"], dtype=np.float64), int(cfg.model.n_bins))


def build_net(cfg: DictConfig, pipeline: Any, train: dict[str, np.ndarray]) -> tuple[torch.nn.Module, dict]:
    """ChurnNet with the branches the data supports; returns it and the spec that rebuilds it."""
    shapes = {
        "cat_cardinalities": list(pipeline.cat_cardinalities),
        "n_numeric": int(pipeline.n_numeric),
        "n_event_types": int(pipeline.n_event_types),
        "max_events": int(pipeline.max_events),
    }
    use_tab = len(shapes["cat_cardinalities"]) + shapes["n_numeric"] > 0
    use_seq = bool(np.asarray(train["seq_mask"]).any())
    horizons = [int(h) for h in cfg.model.hazard_horizons or []] if has_churn_times(train) else []
    bins = numeric_bins(cfg, train) if use_tab else None
    tabular = (
        instantiate(cfg.model.tabular)(
            cat_cardinalities=shapes["cat_cardinalities"], n_numeric=shapes["n_numeric"], bins=bins
        )
        if use_tab
        else None
    )
    sequence = instantiate(cfg.model.sequence)(n_event_types=shapes["n_event_types"]) if use_seq else None
    net = instantiate(cfg.model.net)(tabular=tabular, sequence=sequence, hazard_horizons=horizons or None)
    net_spec = {**shapes, "tabular": use_tab, "sequence": use_seq, "hazard_horizons": horizons, "numeric_bins": bins}
    log.info(
        "ChurnNet: tabular=%s sequence=%s (%s) hazard=%s, %d parameters",
        use_tab,
        use_seq,
        cfg.model.seq_encoder,
        horizons,
        sum(p.numel() for p in net.parameters()),
    )
    return net, net_spec


def net_description(net_spec: dict[str, Any], cfg: DictConfig) -> str:
    """What the net is, for run names: its branches and ensemble size, e.g. `tabular+gru-k8`."""
    branches = ["tabular"] * bool(net_spec["tabular"]) + [str(cfg.model.seq_encoder)] * bool(net_spec["sequence"])
    return "+".join(branches) + f"-k{int(cfg.model.ensemble_size)}"


def auto_batch_size(n_train: int, rows_per_step: int, smallest: int, largest: int) -> int:
    """A power of two near `n_train / rows_per_step` within [smallest, largest]: small data get more, smaller
    steps per epoch; large data bigger batches (fewer optimizer steps, better throughput)."""
    target = max(n_train / max(rows_per_step, 1), 1.0)
    return int(np.clip(2 ** round(math.log2(target)), smallest, largest))


def resolve_auto_sizes(cfg: DictConfig, n_train: int) -> None:
    """Replace `auto` sizes in `cfg.model` by values for this training split (in place), so the logged and
    released config holds what actually ran."""
    auto = cfg.model.auto
    if str(cfg.model.batch_size) == "auto":
        with open_dict(cfg):
            cfg.model.batch_size = auto_batch_size(
                n_train, int(auto.rows_per_step), int(auto.min_batch_size), int(auto.max_batch_size)
            )
        log.info("batch_size auto -> %d (%d training rows)", cfg.model.batch_size, n_train)


def train_churn(cfg: DictConfig, data: PreparedData | None = None) -> dict[str, float]:
    """Train, calibrate, evaluate, export and track the churn model; returns final metrics (incl. `val/auroc`).
    `data`: splits already prepared from this `cfg.data` (benchmarks reuse them across models), else prepared here."""
    pl.seed_everything(int(cfg.seed), workers=True)
    data = data if data is not None else prepare_data(cfg)
    resolve_auto_sizes(cfg, len(data.arrays["train"]["label"]))
    net, net_spec = build_net(cfg, data.pipeline, data.arrays["train"])
    pos_weight = resolve_pos_weight(cfg.model.pos_weight, data.arrays["train"]["label"])
    module = instantiate(cfg.model.module)(
        net=net,
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler),
        pos_weight=pos_weight,
        net_spec=net_spec,
    )
    datamodule = instantiate(cfg.model.datamodule)(splits=data.arrays, seed=int(cfg.seed))
    out_dir = run_dir(cfg)
    commit = git_commit()
    run = start_run(cfg, commit, data, net_spec) if is_rank_zero() else None
    trainer, callbacks = make_trainer(cfg, out_dir, run.lightning_logger() if run is not None else None)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    fit_seconds = time.perf_counter() - started
    if not end_distributed(trainer):
        return {}
    checkpoint = callbacks.get("checkpoint")
    best = checkpoint.best_model_path if checkpoint is not None else ""
    if best:
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"])
    epochs = max(int(trainer.current_epoch), 1)
    return finish_run(
        cfg,
        data,
        module,
        datamodule,
        run,
        out_dir,
        Path(best) if best else None,
        extra={
            "train/epoch_time_s": fit_seconds / epochs,
            "train/epochs": float(epochs),
            "train/pos_weight": pos_weight,
            "train/logit_offset": math.log(pos_weight),
        },
        commit=commit,
        step=int(trainer.global_step) + 1,
    )


def start_run(cfg: DictConfig, commit: str | None, data: PreparedData, net_spec: dict) -> TrackedRun | None:
    """The MLflow run of this training job (None with `logger=none`), named after what runs, with its config and
    the tables it read."""
    name = cfg.logger.run_name or run_name("churn", cfg.data.name, net_description(net_spec, cfg), f"s{cfg.seed}")
    run = TrackedRun.start(cfg.logger, name, {"task": "churn", "data": str(cfg.data.name), "git_commit": str(commit)})
    if run is not None:
        run.log_params(OmegaConf.to_container(cfg, resolve=True))
        run.log_tables(table_inputs(data))
    return run


def table_inputs(data: PreparedData) -> list[TableInput]:
    """The tables of the data contract this run read, with their date range and the split cutoffs."""
    cutoffs = {
        f"cutoffs.{name}": ",".join(sorted({str(c.date()) for c in s.static["cutoff"].unique()}))
        for name, s in data.snapshots.items()
    }
    out = []
    for kind in KINDS:
        table, frame = data.spec.table(kind), getattr(data.tables, kind)
        if table is None or frame is None:
            continue
        tags = {"data": data.spec.name, "rows": len(frame), "files": len(table.paths), **cutoffs}
        if "ts" in frame and len(frame):
            tags.update(first=str(frame["ts"].min().date()), last=str(frame["ts"].max().date()))
        out.append(TableInput(f"{data.spec.name}.{kind}", frame, table.paths[0], "training", tags))
    return out
