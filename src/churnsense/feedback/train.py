"""Composition root of feedback training: `python train.py task=feedback [experiment=feedback_full]`.

corpus -> tokenizer + converted e5 encoder -> Lightning fit (step budget, layer-wise LR) -> dev-set metrics per
language -> ONNX export with parity (+ int8 gated per language) -> one atomically published release -> MLflow
(params, curves, metrics, confusion matrices, release, registered model with its alias).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from churnsense.core.drift import ProfileSettings
from churnsense.core.lightning import end_distributed, is_rank_zero, make_trainer, run_dir
from churnsense.core.release import read_json, staged_release, write_json, write_yaml
from churnsense.core.tracking import TableInput, TrackedRun, git_commit, package_versions, run_name
from churnsense.feedback import data as fdata
from churnsense.feedback.card import model_card
from churnsense.feedback.evaluate import evaluate_with_breakdown
from churnsense.feedback.export import check_parity, export_onnx
from churnsense.feedback.labels import HEADS, encode_labels
from churnsense.feedback.metrics import confusion
from churnsense.feedback.model import FeedbackNet, TextEncoder, load_bert
from churnsense.feedback.plots import save_confusion_png
from churnsense.feedback.pyfunc import FeedbackPyfunc
from churnsense.feedback.release import load_release
from churnsense.feedback.report import evaluation_note
from churnsense.feedback.score import predict_texts, score_feedback_batch
from churnsense.feedback.serving_candidates import EXPORT_FILE, candidates, select_serving_model
from churnsense.feedback.tokenize import TextTokenizer
from churnsense.monitoring.feedback import feedback_reference_profile, reference_texts
from churnsense.monitoring.run import REFERENCE_FILE

log = logging.getLogger(__name__)
SERVING_REQUIREMENTS = ("onnxruntime", "tokenizers", "numpy", "pandas", "pyarrow", "churnsense")


def training_frame(corpus: DictConfig, seed: int) -> pd.DataFrame:
    """Generated corpus (training phrase banks) + English drug reviews + the generated feedback table (if present)."""
    parts = [fdata.synthetic_feedback(int(corpus.n_corpus), seed, "train", float(corpus.holdout_share))]
    if corpus.drugreview_rows:
        parts.append(fdata.drug_reviews(int(corpus.drugreview_rows), seed))
    if corpus.feedback_table and corpus.feedback_table_rows:
        table = fdata.feedback_table(corpus.feedback_table)
        parts.append(table.sample(min(len(table), int(corpus.feedback_table_rows)), random_state=seed))
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def holdout_frame(corpus: DictConfig) -> pd.DataFrame:
    """Corpus check composed only from held-out phrase-bank items (another seed): generalisation, not memory."""
    if not corpus.holdout.n:
        return pd.DataFrame(columns=fdata.COLUMNS)
    return fdata.synthetic_feedback(
        int(corpus.holdout.n), int(corpus.holdout.seed), "holdout", float(corpus.holdout_share)
    )


def record_evaluation(folder: Path, sets: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Breakdown metrics (per language, domain, phenomenon) of the served model on each non-empty labelled set
    (keys `<set>/...`), written into the release folder as evaluation.md and into its metadata.json."""
    release = load_release(folder)
    sets = {name: frame for name, frame in sets.items() if len(frame)}
    metrics: dict[str, float] = {}
    for name, frame in sets.items():
        metrics.update(evaluate_with_breakdown(release, frame, f"{name}/"))
    (folder / "evaluation.md").write_text(evaluation_note(metrics, tuple(sets)), encoding="utf-8")
    write_json(folder / "metadata.json", {**read_json(folder / "metadata.json"), "evaluation": metrics})
    return metrics


def build_net(model_cfg: DictConfig, bert: torch.nn.Module | None = None) -> FeedbackNet:
    """Feedback net on the converted encoder at `model.encoder_path` (or a given BertModel), bottom layers frozen."""
    bert = bert if bert is not None else load_bert(model_cfg.encoder_path)
    net = FeedbackNet(TextEncoder(bert), {h: len(n) for h, n in HEADS.items()}, float(model_cfg.dropout))
    net.freeze_bottom(model_cfg.trainable_layers)
    return net.train()


def write_feedback_release(
    folder: Path, net: FeedbackNet, cfg: DictConfig, dev: pd.DataFrame, tokenizer: TextTokenizer, metrics: dict
) -> dict[str, float]:
    """Write every file of a feedback release into `folder` (a staging folder): ONNX (+ parity), tokenizer, labels,
    config, metadata, model card; then serve the first faster candidate (int8, fused fp32) that loses no more than
    `export.int8_max_f1_drop` dev macro-F1 in any language (`serving_candidates`)."""
    net = net.cpu().float().eval()
    export_onnx(net, folder / EXPORT_FILE, int(cfg.export.opset))
    enc = tokenizer.encode(dev["text"].tolist()[:16])
    parity = check_parity(
        net, folder / EXPORT_FILE, [tokenizer.pad(enc.ids[:1]), tokenizer.pad(enc.ids)], atol=float(cfg.export.atol)
    )
    shutil.copy(Path(cfg.model.encoder_path) / "tokenizer.json", folder / "tokenizer.json")
    write_json(
        folder / "labels.json",
        {
            "heads": {h: list(n) for h, n in HEADS.items()},
            "max_length": int(cfg.model.max_length),
            "prefix": tokenizer.prefix,
        },
    )
    write_yaml(folder / "config.yaml", OmegaConf.to_container(cfg, resolve=True))
    meta = {
        "task": "feedback",
        "created": datetime.now(UTC).isoformat(),
        "metrics": metrics,
        "onnx_parity_max_abs": parity,
        "versions": package_versions(),
        "serve_model": EXPORT_FILE,
        "encoder": str(cfg.model.encoder_path),
        "session": OmegaConf.to_container(cfg.export.session, resolve=True),
    }
    write_json(folder / "metadata.json", meta)
    result = {"export/onnx_parity_max_abs": parity}
    if candidates(cfg.export):
        served, report = select_serving_model(folder, cfg.export, dev, int(net.encoder.bert.config.num_attention_heads))
        meta.update(
            serve_model=served,
            serving_candidates=report["candidates"],
            gated_on_cpu_saturating_int8=report["gated_on_cpu_saturating_int8"],
        )
        if served != EXPORT_FILE and not cfg.export.keep_fp32:
            (folder / EXPORT_FILE).unlink()
        write_json(folder / "metadata.json", meta)
        for cand in report["candidates"]:
            kind = "int8" if cand["int8"] else "fp32"
            result.update(
                {f"export/{kind}_max_f1_drop": cand["max_f1_drop"], f"export/{kind}_accepted": float(cand["accepted"])}
            )
    result["export/serve_model_mb"] = (folder / meta["serve_model"]).stat().st_size / 1e6
    (folder / "MODEL_CARD.md").write_text(model_card(cfg, {**metrics, **result}, dev), encoding="utf-8")
    return result


def write_drift_reference(folder: Path, cfg: DictConfig, frame: pd.DataFrame) -> None:
    """`drift_reference.json` in the release folder: its reference texts (`reference_texts`) scored by the release
    itself; nothing when `drift.enabled` is false."""
    if not cfg.drift.enabled:
        return
    table = cfg.corpus.feedback_table
    texts = reference_texts(
        frame, Path(table).name if table else None, int(cfg.drift.feedback_reference_rows), int(cfg.seed)
    )
    scored, _ = score_feedback_batch(texts[["text"]], load_release(folder), "text")
    settings = ProfileSettings(bins=int(cfg.drift.bins), max_categories=int(cfg.drift.max_categories))
    sources = sorted(texts["source"].astype(str).unique()) if "source" in texts else []
    feedback_reference_profile(scored, settings, "text", {"texts": sources}).save(folder / REFERENCE_FILE)


def dev_confusions(release_dir: Path, dev: pd.DataFrame) -> dict[str, np.ndarray]:
    """Confusion matrices of the released model on the dev set (sentiment, topic)."""
    probs, _ = predict_texts(load_release(release_dir), dev["text"].tolist())
    out = {}
    for head in ("sentiment", "topic"):
        y = np.asarray(encode_labels(dev[head].tolist(), HEADS[head]))
        out[f"{head}/dev"] = confusion(y[y >= 0], probs[f"p_{head}"].argmax(1)[y >= 0], len(HEADS[head]))
    return out


def train_feedback(cfg: DictConfig) -> dict[str, float]:
    """Composition root: data -> model -> Lightning fit -> dev metrics -> release + MLflow; returns metrics."""
    pl.seed_everything(int(cfg.seed), workers=True)
    if cfg.model.num_threads:
        torch.set_num_threads(int(cfg.model.num_threads))
    tokenizer = TextTokenizer.from_file(Path(cfg.model.encoder_path) / "tokenizer.json", int(cfg.model.max_length))
    frame = training_frame(cfg.corpus, int(cfg.seed))
    train_set = fdata.FeedbackDataset(frame, tokenizer)
    dev = fdata.dev_set(cfg.corpus.dev_path) if cfg.corpus.dev_path else fdata.dev_set()
    dev_set = fdata.FeedbackDataset(dev, tokenizer)
    module = instantiate(cfg.model.module)(
        net=build_net(cfg.model),
        label_names=HEADS,
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler),
    )
    out_dir = run_dir(cfg)
    run = start_run(cfg, frame, dev) if is_rank_zero() else None
    trainer, _ = make_trainer(
        cfg,
        out_dir,
        run.lightning_logger() if run is not None else None,
        max_steps=int(cfg.model.max_steps),
        enable_checkpointing=False,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(
        module,
        train_set.loader(int(cfg.model.batch_size), True, int(cfg.seed), bucket=int(cfg.model.bucket_batches)),
        dev_set.loader(int(cfg.model.eval_batch_size), False),
    )
    metrics = {"time/fit_seconds": time.perf_counter() - wall, "time/fit_cpu_seconds": time.process_time() - cpu}
    trainer.validate(module, dev_set.loader(int(cfg.model.eval_batch_size), False), verbose=False)
    if not end_distributed(trainer):
        return {}
    metrics.update(module.last_metrics)
    release = Path(cfg.export.release_dir)
    with staged_release(release) as staging:
        metrics.update(write_feedback_release(staging, module.net, cfg, dev, tokenizer, metrics))
        metrics.update(
            record_evaluation(
                staging, {"dev": dev, "plain": fdata.dev_set(fdata.PLAIN_DEVSET), "holdout": holdout_frame(cfg.corpus)}
            )
        )
        write_drift_reference(staging, cfg, frame)
    log.info("release published at %s", release)
    if run is not None:
        _track(cfg, run, metrics, release, dev, out_dir, int(trainer.global_step) + 1)
    print((release / "evaluation.md").read_text(encoding="utf-8"))
    print(json.dumps({k: round(v, 1) for k, v in metrics.items() if k.startswith("time/")}))
    return metrics


def start_run(cfg: DictConfig, frame: pd.DataFrame, dev: pd.DataFrame) -> TrackedRun | None:
    """The MLflow run of this training job (None with `logger=none`), named after what runs, with its config and
    the texts it read (training corpus by source, dev set)."""
    name = cfg.logger.run_name or run_name("feedback", "e5", f"{cfg.model.max_length}tok", f"s{cfg.seed}")
    run = TrackedRun.start(cfg.logger, name, {"task": "feedback", "git_commit": str(git_commit())})
    if run is not None:
        run.log_params(OmegaConf.to_container(cfg, resolve=True))
        sources = frame["source"].astype(str).value_counts().to_dict() if "source" in frame else {}
        run.log_tables(
            [
                TableInput(
                    "feedback.training",
                    frame,
                    "churnsense.feedback.data",
                    "training",
                    {"rows": len(frame), **{f"rows.{k}": v for k, v in sources.items()}},
                ),
                TableInput(
                    "feedback.dev",
                    dev,
                    str(cfg.corpus.dev_path or fdata.DEVSET),
                    "evaluation",
                    {"rows": len(dev), "languages": ",".join(sorted(dev["language"].astype(str).unique()))},
                ),
            ]
        )
    return run


def _track(
    cfg: DictConfig,
    run: TrackedRun,
    metrics: dict[str, float],
    release: Path,
    dev: pd.DataFrame,
    out_dir: Path,
    step: int,
) -> None:
    """Final metrics, confusion matrices, the release, and the registered model with its alias."""
    run.log_metrics(metrics, step=step)
    run.set_tags({"release": str(release), **{f"version.{k}": v for k, v in package_versions().items()}})
    plots = out_dir / "plots"
    for name, cm in dev_confusions(release, dev).items():
        save_confusion_png(cm, list(HEADS[name.split("/")[0]]), name, plots / f"confusion_{name.replace('/', '_')}.png")
    run.log_artifacts({"plots": plots, "release": release})
    if not cfg.logger.register_model:
        return
    requirements = [f"{k}=={v}" for k, v in package_versions().items() if k in SERVING_REQUIREMENTS]
    example = dev[["text"]].head(5).reset_index(drop=True)
    uri = run.log_release_model(FeedbackPyfunc(), release, example, requirements, params=FeedbackPyfunc.PARAMS)
    run.register(
        uri,
        cfg.logger.registered_model_name,
        (release / "MODEL_CARD.md").read_text(encoding="utf-8"),
        {
            "task": "feedback",
            "languages": ",".join(HEADS["language"]),
            "serve_model": str(read_json(release / "metadata.json")["serve_model"]),
        },
        promote_on=str(cfg.logger.promote_on),
    )
