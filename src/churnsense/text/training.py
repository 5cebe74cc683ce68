"""`python train.py task=feedback [feedback=full]`: train, evaluate per language, export the release, log to MLflow."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from churnsense.text import data as fdata
from churnsense.text.export import check_parity, export_onnx
from churnsense.text.labels import HEADS, encode_labels
from churnsense.text.lit_module import FeedbackLitModule
from churnsense.text.metrics import confusion
from churnsense.text.model import FeedbackNet, TextEncoder, load_bert
from churnsense.text.release import load_release, predict_texts
from churnsense.text.serving_candidates import EXPORT_FILE, candidates, select_serving_model
from churnsense.text.tokenize import TextTokenizer
from churnsense.text.tracking import log_feedback_run, package_versions


def training_frame(fc: DictConfig, seed: int) -> pd.DataFrame:
    """Generated multilingual messages + English drug reviews + the generated feedback table (if present)."""
    parts = [fdata.synthetic_feedback(int(fc.data.n_synth), seed, float(fc.data.mixed_rate))]
    if fc.data.drugreview_rows:
        parts.append(fdata.drug_reviews(int(fc.data.drugreview_rows), seed))
    if fc.data.get("feedback_table") and fc.data.feedback_table_rows:
        table = fdata.feedback_table(fc.data.feedback_table)
        parts.append(table.sample(min(len(table), int(fc.data.feedback_table_rows)), random_state=seed))
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def build_net(fc: DictConfig, bert: torch.nn.Module | None = None) -> FeedbackNet:
    """Feedback net on the converted encoder at `fc.encoder_path` (or a given BertModel), bottom layers frozen."""
    bert = bert if bert is not None else load_bert(fc.encoder_path)
    net = FeedbackNet(TextEncoder(bert), {h: len(n) for h, n in HEADS.items()}, float(fc.dropout))
    net.freeze_bottom(fc.trainable_layers)
    return net.train()


def write_release(net: FeedbackNet, fc: DictConfig, cfg: DictConfig, out: Path, dev: pd.DataFrame,
                  tokenizer: TextTokenizer, metrics: dict) -> dict[str, float]:
    """Export ONNX (+ parity), labels/tokenizer/config/metadata, then serve the first smaller/faster candidate that
    loses no more than `export.int8_max_f1_drop` dev macro-F1 in any language (see serving_candidates)."""
    out.mkdir(parents=True, exist_ok=True)
    net = net.cpu().float().eval()
    export_onnx(net, out / EXPORT_FILE, int(fc.export.opset))
    enc = tokenizer.encode(dev["text"].tolist()[:16])
    parity = check_parity(net, out / EXPORT_FILE, [tokenizer.pad(enc.ids[:1]), tokenizer.pad(enc.ids)])
    shutil.copy(Path(fc.encoder_path) / "tokenizer.json", out / "tokenizer.json")
    labels = {"heads": {h: list(n) for h, n in HEADS.items()}, "max_length": int(fc.max_length),
              "prefix": tokenizer.prefix}
    (out / "labels.json").write_text(json.dumps(labels, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    meta = {"task": "feedback", "metrics": metrics, "onnx_parity_max_abs": parity, "versions": package_versions(),
            "serve_model": EXPORT_FILE, "encoder": str(fc.encoder_path),
            "session": OmegaConf.to_container(fc.export.session, resolve=True)}
    _write_meta(out, meta)
    result = {"export/onnx_parity_max_abs": parity}
    if candidates(fc.export):
        served, report = select_serving_model(out, fc.export, dev, int(net.encoder.bert.config.num_attention_heads))
        meta.update(serve_model=served, serving_candidates=report["candidates"])
        if served != EXPORT_FILE and not fc.export.keep_fp32:
            (out / EXPORT_FILE).unlink()
        _write_meta(out, meta)
        for cand in report["candidates"]:
            kind = "int8" if cand["int8"] else "fp32"
            result.update({f"export/{kind}_max_f1_drop": cand["max_f1_drop"],
                           f"export/{kind}_accepted": float(cand["accepted"])})
    result["export/serve_model_mb"] = (out / meta["serve_model"]).stat().st_size / 1e6
    return result


def _write_meta(out: Path, meta: dict) -> None:
    (out / "metadata.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


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
    trainer.fit(module, train_set.loader(int(fc.batch_size), True, int(cfg.seed)),
                dev_set.loader(int(fc.eval_batch_size), False))
    trainer.validate(module, dev_set.loader(int(fc.eval_batch_size), False), verbose=False)
    metrics = dict(module.last_metrics)
    out = Path(fc.release_dir)
    metrics.update(write_release(module.net, fc, cfg, out, dev, tokenizer, metrics))
    release = load_release(out)
    probs, _ = predict_texts(release, dev["text"].tolist())
    confusions = {}
    for head in ("sentiment", "topic"):
        y = np.asarray(encode_labels(dev[head].tolist(), HEADS[head]))
        confusions[f"{head}/dev"] = confusion(y[y >= 0], probs[f"p_{head}"].argmax(1)[y >= 0], len(HEADS[head]))
    log_feedback_run(cfg, metrics, confusions, HEADS, out)
    print(json.dumps({k: round(v, 4) for k, v in metrics.items() if "macro_f1" in k or "accuracy" in k}, indent=1))
    return metrics
