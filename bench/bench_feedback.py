"""Feedback model throughput and quality: PyTorch eager vs ONNX fp32 vs ONNX int8 (not a test).

    python bench/bench_feedback.py [--release artifacts/feedback] [--threads 2] [--seconds 5]

Texts/s at batch 1 and 64 for short (<= 32 tokens) and long (~256 tokens) texts, and dev-set sentiment macro-F1
per language for each engine. Needs a trained release (train.py task=feedback) and the built encoder.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from churnsense.feedback.data import dev_set, synthetic_feedback
from churnsense.feedback.evaluate import evaluate_release
from churnsense.feedback.export import quantize_int8
from churnsense.feedback.labels import HEADS
from churnsense.feedback.release import load_release


def _torch_net(release_dir: Path):
    """Rebuild the eager model from the release's ONNX initialisers is not possible; retrain-free path: the
    training run saves no torch weights, so eager timing uses the converted encoder + random heads (same cost)."""
    from churnsense.feedback.model import FeedbackNet, TextEncoder, load_bert

    cfg = json.loads((release_dir / "metadata.json").read_text())
    return FeedbackNet(TextEncoder(load_bert(cfg["encoder"])), {h: len(n) for h, n in HEADS.items()}).eval()


def _texts(kind: str, n: int) -> list[str]:
    base = synthetic_feedback(n * 4, seed=7)["text"].tolist()
    if kind == "short":
        return base[:n]
    return [" ".join(base[i * 12:(i + 1) * 12]) for i in range(n)]  # ~250 tokens each


def _rate(fn, texts: list[str], batch: int, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(0, len(texts), batch):
            fn(texts[i:i + batch])
            done += len(texts[i:i + batch])
            if time.perf_counter() - start > seconds:
                break
    return done / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--release", type=Path, default=Path("artifacts/feedback"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rel = args.release
    if not (rel / "model.int8.onnx").exists():
        quantize_int8(rel / "model.onnx", rel / "model.int8.onnx")
    engines = {"onnx-fp32": load_release(rel, "model.onnx", args.threads),
               "onnx-int8": load_release(rel, "model.int8.onnx", args.threads)}
    net, tok = _torch_net(rel), engines["onnx-fp32"].tokenizer
    dev = dev_set()
    rows = []
    for kind, max_len in (("short", 32), ("long", 256)):
        texts = _texts(kind, 128)
        for name, eng in engines.items():
            from churnsense.feedback.score import predict_texts

            eng.tokenizer.max_length = max_len
            for batch in (1, 64):
                eng.batch_size = batch
                rows.append((name, kind, batch, _rate(lambda t, e=eng: predict_texts(e, t), texts, batch, args.seconds)))

        def eager(t, m=max_len):
            tok.max_length = m
            feed = tok.pad(tok.encode(t).ids)
            with torch.no_grad():
                net(torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"]))

        for batch in (1, 64):
            rows.append(("torch-eager", kind, batch, _rate(eager, texts, batch, args.seconds)))
    print(f"{'engine':<12} {'texts':<6} {'batch':>5} {'texts/s':>9}")
    for name, kind, batch, rate in sorted(rows):
        print(f"{name:<12} {kind:<6} {batch:>5} {rate:>9.1f}")
    labels = json.loads((rel / "labels.json").read_text())
    print("\ndev sentiment macro-F1 (max_length", labels["max_length"], ")")
    for name, eng in engines.items():
        eng.tokenizer.max_length, eng.batch_size = labels["max_length"], 64
        m = evaluate_release(eng, dev)
        print(f"{name:<12} " + " ".join(f"{k.split('/')[-1]}={m[k]:.3f}" for k in sorted(m) if k.startswith("macro_f1")))
    print("torch-eager  = onnx-fp32 (parity-checked at export, max abs diff in metadata.json)")


if __name__ == "__main__":
    main()
