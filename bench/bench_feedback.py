"""Feedback model throughput, size and quality per serving engine (not a test).

    python bench/bench_feedback.py [--release artifacts/feedback] [--threads 2] [--seconds 6] [--repeats 3]
                                   [--variants int8:float16,int8:int8,fp32:float16] [--work DIR] [--no-eager]

Engines: PyTorch eager; `onnx-fp32` = the plain export with default onnxruntime options (what releases served
before); then the serving candidates of conf/export/feedback_onnx.yaml built from that export (`int8:float16` =
int8 graph with float16 token embeddings, `fp32:float16` = fused fp32 graph) run with the config's session options.
Prints texts/s at batch 1 and 64 for short (<= 32 tokens) and long (~256 tokens) texts (median of `--repeats`
windows, engines interleaved), the speed-up over onnx-fp32 on short texts at batch 64,
the share of tokenisation in a short batch of 64, model / release size in MB, and dev-set sentiment macro-F1 per
language with the gate verdict. Needs a release that still holds its export `model.onnx` (the baseline demo
release does; new ones keep it with export.keep_fp32=true) and the encoder it was trained from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from churnsense.feedback.data import dev_set, synthetic_feedback
from churnsense.feedback.evaluate import evaluate_release, per_language_drop
from churnsense.feedback.labels import HEADS
from churnsense.feedback.quantize import build_serving_model, calibration_feeds
from churnsense.feedback.release import FILES, load_release
from churnsense.feedback.score import predict_texts
from churnsense.feedback.serving_candidates import EXPORT_FILE, calibration_texts, recipe_from

KINDS = (("short", 32), ("long", 256))


def _texts(kind: str, n: int) -> list[str]:
    base = synthetic_feedback(n * 12, seed=7)["text"].tolist()
    return base[:n] if kind == "short" else [" ".join(base[i * 12 : (i + 1) * 12]) for i in range(n)]


def _window(fn, texts: list[str], batch: int, seconds: float) -> float:
    """texts/s of `fn` over batches of `texts` during about `seconds`."""
    done, start, i = 0, time.perf_counter(), 0
    while done == 0 or time.perf_counter() - start < seconds:
        chunk = texts[i : i + batch]
        fn(chunk)
        done += len(chunk)
        i = (i + batch) % len(texts)
    return done / (time.perf_counter() - start)


def _rates(fns: dict, texts: list[str], batch: int, seconds: float, repeats: int) -> dict[str, float]:
    """Median texts/s per engine; engines take turns within each repeat so that shared-core load hits all alike."""
    got: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            got[name].append(_window(fn, texts, batch, seconds / repeats))
    return {name: statistics.median(v) for name, v in got.items()}


def _release_copy(src: Path, dst: Path, session_opts: dict) -> Path:
    """`dst` = the release's small files + a link to its export, metadata's session options replaced."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy(src / name, dst / name)
    if not (dst / EXPORT_FILE).exists():
        (dst / EXPORT_FILE).symlink_to((src / EXPORT_FILE).resolve())
    meta = json.loads((dst / "metadata.json").read_text())
    meta.update(session=session_opts, serve_model=EXPORT_FILE)
    (dst / "metadata.json").write_text(json.dumps(meta, indent=2))
    return dst


def build_engines(rel: Path, work: Path, export, variants: list[str], encoder: Path, threads: int) -> dict:
    """name -> (loaded release, model path); candidates are built once into `work` and reused."""
    today = _release_copy(rel, work / "today", {})
    tuned = _release_copy(rel, work / "tuned", OmegaConf.to_container(export.session, resolve=True))
    heads = json.loads((encoder / "config.json").read_text())["num_attention_heads"]
    recipe = recipe_from(export)
    engines = {"onnx-fp32": (load_release(today, EXPORT_FILE, threads), today / EXPORT_FILE)}
    feeds = None
    for spec in variants:
        compute, embeddings = spec.split(":")
        path = tuned / f"model.{compute}.{embeddings}.onnx"
        if not path.exists():
            if feeds is None:
                feeds = calibration_feeds(engines["onnx-fp32"][0].tokenizer, calibration_texts(recipe), 64)
            build_serving_model(
                tuned / EXPORT_FILE,
                path,
                num_heads=heads,
                int8=compute == "int8",
                embeddings=embeddings,
                recipe=recipe,
                feeds=feeds,
            )
        engines[f"onnx-{compute}/emb-{embeddings}"] = (load_release(tuned, path.name, threads), path)
    return engines


def speed_rows(engines: dict, net, args) -> list[tuple]:
    """(engine, kind, batch, texts/s) for every engine, short/long texts, batch 1/64."""
    rows = []
    tok = next(iter(engines.values()))[0].tokenizer
    for kind, max_len in KINDS:
        texts = _texts(kind, 128)
        for batch in (1, 64):
            fns = {name: _scorer(eng, max_len, batch) for name, (eng, _) in engines.items()}
            if net is not None:
                fns["torch-eager"] = _eager(net, tok, max_len)
            rows += [
                (name, kind, batch, r) for name, r in _rates(fns, texts, batch, args.seconds, args.repeats).items()
            ]
    return rows


def _scorer(eng, max_len: int, batch: int):
    def score(texts: list[str]) -> None:
        eng.tokenizer.max_length, eng.batch_size = max_len, batch
        predict_texts(eng, texts)

    return score


def _eager(net, tok, max_len: int):
    def score(texts: list[str]) -> None:
        tok.max_length = max_len
        feed = tok.pad(tok.encode(texts).ids)
        with torch.no_grad():
            net(torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"]))

    return score


def tokenise_share(engines: dict, seconds: float) -> dict[str, float]:
    """Fraction of a short batch of 64's scoring time spent in tokenisation + padding."""
    texts = _texts("short", 64)
    out = {}
    for name, (eng, _) in engines.items():
        eng.tokenizer.max_length, eng.batch_size = 32, 64
        tok_rate = _window(lambda t, e=eng: e.tokenizer.pad(e.tokenizer.encode(t).ids), texts, 64, seconds / 3)
        out[name] = _window(_scorer(eng, 32, 64), texts, 64, seconds / 3) / tok_rate
    return out


def print_tables(engines: dict, rows: list[tuple], share: dict, rel: Path) -> None:
    small = sum((rel / n).stat().st_size for n in FILES) / 1e6
    size = {name: path.resolve().stat().st_size / 1e6 for name, (_, path) in engines.items()}
    rate = {(n, k, b): r for n, k, b, r in rows}
    names = list(dict.fromkeys(n for n, *_ in rows))
    print(
        f"\n{'engine':<24} {'short b1':>9} {'short b64':>9} {'long b1':>8} {'long b64':>8} {'x fp32 s64':>10} "
        f"{'model MB':>9} {'release MB':>10} {'tokenise':>8}"
    )
    for n in names:
        cells = " ".join(f"{rate[(n, k, b)]:>{9 if k == 'short' else 8}.1f}" for k, _ in KINDS for b in (1, 64))
        gain = rate[(n, "short", 64)] / rate[("onnx-fp32", "short", 64)]
        mb = f"{size[n]:>9.1f} {size[n] + small:>10.1f}" if n in size else f"{'-':>9} {'-':>10}"
        tok = f"{share[n]:>8.1%}" if n in share else f"{'-':>8}"
        print(f"{n:<24} {cells} {gain:>10.2f} {mb} {tok}")


def print_quality(engines: dict, rel: Path, limit: float, sizes: list[int]) -> None:
    """Dev sentiment macro-F1 per language at the last gate batch size; the gate's worst drop over all of them."""
    labels = json.loads((rel / "labels.json").read_text())
    dev, base = dev_set(), {}
    print(
        f"\ndev sentiment macro-F1 (max_length {labels['max_length']}, batch {sizes[-1]}); gate: worst drop over "
        f"batch sizes {sizes} <= {limit}"
    )
    for name, (eng, _) in engines.items():
        eng.tokenizer.max_length = labels["max_length"]
        drops, m = [], {}
        for b in sizes:
            eng.batch_size = b
            m = evaluate_release(eng, dev)
            base.setdefault(b, m)
            drops.append(per_language_drop(base[b], m))
        f1 = " ".join(f"{k.split('/')[-1]}={m[k]:.3f}" for k in sorted(m) if k.startswith("macro_f1/"))
        print(
            f"{name:<24} all={m['macro_f1']:.3f} {f1}  worst drop={max(drops):+.3f} "
            f"{'pass' if max(drops) <= limit else 'FAIL'}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--release", type=Path, default=Path("artifacts/feedback"))
    ap.add_argument("--conf", type=Path, default=Path("conf/export/feedback_onnx.yaml"))
    ap.add_argument("--variants", default="int8:float16,int8:int8,fp32:float16")
    ap.add_argument("--work", type=Path, default=None, help="where candidates are built (default: a temp dir)")
    ap.add_argument("--encoder", type=Path, default=None, help="default: metadata.json's encoder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-eager", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rel = args.release
    if not (rel / EXPORT_FILE).is_file():
        raise SystemExit(f"{rel}: no {EXPORT_FILE} (the fp32 export); train with export.keep_fp32=true")
    export = OmegaConf.load(args.conf)
    encoder = args.encoder or Path(json.loads((rel / "metadata.json").read_text())["encoder"])
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_feedback_"))
    engines = build_engines(rel, work, export, [v for v in args.variants.split(",") if v], encoder, args.threads)
    net = None
    if not args.no_eager:
        from churnsense.feedback.model import FeedbackNet, TextEncoder, load_bert

        # no torch weights ship with a release: eager timing uses the encoder + random heads (same cost)
        net = FeedbackNet(TextEncoder(load_bert(encoder)), {h: len(n) for h, n in HEADS.items()}).eval()
    print(f"threads={args.threads} load average before: {os.getloadavg()[0]:.1f}")
    rows = speed_rows(engines, net, args)
    share = tokenise_share(engines, args.seconds)
    print(f"load average after: {os.getloadavg()[0]:.1f} (2 cores; timings are indicative on shared cores)")
    print_tables(engines, rows, share, rel)
    print_quality(engines, rel, float(export.int8_max_f1_drop), [int(b) for b in export.gate_batch_sizes])


if __name__ == "__main__":
    main()
