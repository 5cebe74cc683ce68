"""`python train.py task=feedback [feedback=full]`: train, evaluate per language, export the release, log to MLflow."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from churnsense.text import data as fdata
from churnsense.text.evaluate import evaluate_release, evaluate_with_breakdown, per_language_drop
from churnsense.text.export import check_parity, export_onnx, quantize_int8
from churnsense.text.labels import HEADS, encode_labels
from churnsense.text.lit_module import FeedbackLitModule
from churnsense.text.metrics import confusion
from churnsense.text.model import FeedbackNet, TextEncoder, load_bert
from churnsense.text.release import load_release, predict_texts
from churnsense.text.report import evaluation_note
from churnsense.text.tokenize import TextTokenizer
from churnsense.text.tracking import log_feedback_run, package_versions


def training_frame(fc: DictConfig, seed: int) -> pd.DataFrame:
    """Generated corpus (training phrase banks) + English drug reviews + the generated feedback table (if present)."""
    parts = [fdata.synthetic_feedback(int(fc.data.n_corpus), seed, "train", float(fc.data.holdout_share))]
    if fc.data.drugreview_rows:
        parts.append(fdata.drug_reviews(int(fc.data.drugreview_rows), seed))
    if fc.data.get("feedback_table") and fc.data.feedback_table_rows:
        table = fdata.feedback_table(fc.data.feedback_table)
        parts.append(table.sample(min(len(table), int(fc.data.feedback_table_rows)), random_state=seed))
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def holdout_frame(fc: DictConfig) -> pd.DataFrame:
    """Corpus check composed only from held-out phrase-bank items (another seed): generalisation, not memory."""
    return fdata.synthetic_feedback(int(fc.holdout.n), int(fc.holdout.seed), "holdout", float(fc.data.holdout_share))


def build_net(fc: DictConfig, bert: torch.nn.Module | None = None) -> FeedbackNet:
    """Feedback net on the converted encoder at `fc.encoder_path` (or a given BertModel), bottom layers frozen."""
    bert = bert if bert is not None else load_bert(fc.encoder_path)
    net = FeedbackNet(TextEncoder(bert), {h: len(n) for h, n in HEADS.items()}, float(fc.dropout))
    net.freeze_bottom(fc.trainable_layers)
    return net.train()


def write_release(net: FeedbackNet, fc: DictConfig, cfg: DictConfig, out: Path, dev: pd.DataFrame,
                  tokenizer: TextTokenizer, metrics: dict) -> dict[str, float]:
    """Export ONNX (+ parity), labels/tokenizer/config/metadata; int8 kept only if no language drops > limit."""
    out.mkdir(parents=True, exist_ok=True)
    net = net.cpu().float().eval()
    export_onnx(net, out / "model.onnx", int(fc.export.opset))
    enc = tokenizer.encode(dev["text"].tolist()[:16])
    parity = check_parity(net, out / "model.onnx", [tokenizer.pad(enc.ids[:1]), tokenizer.pad(enc.ids)])
    shutil.copy(Path(fc.encoder_path) / "tokenizer.json", out / "tokenizer.json")
    labels = {"heads": {h: list(n) for h, n in HEADS.items()}, "max_length": int(fc.max_length),
              "prefix": tokenizer.prefix}
    (out / "labels.json").write_text(json.dumps(labels, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    meta = {"task": "feedback", "metrics": metrics, "onnx_parity_max_abs": parity, "versions": package_versions(),
            "serve_model": "model.onnx", "encoder": str(fc.encoder_path)}
    (out / "metadata.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    result = {"export/onnx_parity_max_abs": parity}
    if fc.export.int8:
        quantize_int8(out / "model.onnx", out / "model.int8.onnx")
        base = evaluate_release(load_release(out), dev)
        q8 = evaluate_release(load_release(out, "model.int8.onnx"), dev)
        drop = per_language_drop(base, q8)
        accepted = drop <= float(fc.export.int8_max_f1_drop)
        meta.update(int8_max_f1_drop=drop, int8_accepted=accepted, int8_metrics=q8)
        meta["serve_model"] = "model.int8.onnx" if accepted else "model.onnx"
        if not accepted:
            (out / "model.int8.onnx").unlink()
        (out / "metadata.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        result.update({"export/int8_max_f1_drop": drop, "export/int8_accepted": float(accepted)})
    return result


def record_evaluation(release, out: Path, sets: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Breakdown metrics of the served model on each non-empty labelled set (keys `<set>/...`), written to the
    release as evaluation.md and into metadata.json."""
    sets = {name: frame for name, frame in sets.items() if len(frame)}
    metrics: dict[str, float] = {}
    for name, frame in sets.items():
        metrics.update(evaluate_with_breakdown(release, frame, f"{name}/"))
    (out / "evaluation.md").write_text(evaluation_note(metrics, tuple(sets)), encoding="utf-8")
    meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    meta["evaluation"] = metrics
    (out / "metadata.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return metrics


def train_feedback(cfg: DictConfig) -> dict[str, float]:
    """Composition root: data -> model -> Lightning fit -> dev metrics -> release + MLflow; returns metrics."""
    fc = cfg.feedback
    pl.seed_everything(int(cfg.seed), workers=True)
    if fc.get("num_threads"):
        torch.set_num_threads(int(fc.num_threads))
    tokenizer = TextTokenizer.from_file(Path(fc.encoder_path) / "tokenizer.json", int(fc.max_length))
    train_set = fdata.FeedbackDataset(training_frame(fc, int(cfg.seed)), tokenizer)
    dev = fdata.dev_set(fc.dev_path) if fc.get("dev_path") else fdata.dev_set()
    dev_set = fdata.FeedbackDataset(dev, tokenizer)
    net = build_net(fc)
    module = FeedbackLitModule(net, HEADS, float(fc.lr), float(fc.head_lr), float(fc.layer_decay),
                               float(fc.weight_decay), int(fc.warmup_steps), int(fc.max_steps),
                               dict(fc.head_weights))
    trainer = instantiate(cfg.trainer, **OmegaConf.to_container(fc.trainer, resolve=True),
                          max_steps=int(fc.max_steps), logger=False, enable_checkpointing=False)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(module, train_set.loader(int(fc.batch_size), True, int(cfg.seed), bucket=int(fc.bucket_batches)),
                dev_set.loader(int(fc.eval_batch_size), False))
    metrics = {"time/fit_seconds": time.perf_counter() - wall, "time/fit_cpu_seconds": time.process_time() - cpu}
    trainer.validate(module, dev_set.loader(int(fc.eval_batch_size), False), verbose=False)
    metrics.update(module.last_metrics)
    out = Path(fc.release_dir)
    metrics.update(write_release(module.net, fc, cfg, out, dev, tokenizer, metrics))
    release = load_release(out)
    metrics.update(record_evaluation(release, out, {"dev": dev, "holdout": holdout_frame(fc)}))
    probs, _ = predict_texts(release, dev["text"].tolist())
    confusions = {}
    for head in ("sentiment", "topic"):
        y = np.asarray(encode_labels(dev[head].tolist(), HEADS[head]))
        confusions[f"{head}/dev"] = confusion(y[y >= 0], probs[f"p_{head}"].argmax(1)[y >= 0], len(HEADS[head]))
    log_feedback_run(cfg, metrics, confusions, HEADS, out)
    print((out / "evaluation.md").read_text(encoding="utf-8"))
    print(json.dumps({k: round(v, 1) for k, v in metrics.items() if k.startswith("time/")}))
    return metrics
