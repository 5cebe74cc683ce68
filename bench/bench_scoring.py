"""Scoring throughput — not a test.

    python bench/bench_scoring.py [--model artifacts/churn] [--threads 2] [--workers 0] [--sizes 100000,1000000]
                                  [--months 3] [--insights off,on] [--engines local,spark] [--spark-insights off]

(1) ONNX Runtime vs PyTorch eager, rows/s at batch 1, 64 and 1024 (same architecture and threads; the model part
only: features precomputed; engines interleaved, median of 3 rounds). ONNX Runtime is timed as serving runs it
(row-parallel slices, `onnx_slice_rows`) and as one plain call with intra-op threads. (2) End to end
`serve.py task=churn` rows/s and peak RSS on synthetic bases of each size (`churnsense.synth.generate`, `--months`
of history): read + validate + partition + features + ONNX + write; `--engines local,spark` adds the Spark engine
for the `--spark-insights` modes (default: scores only, `off`)
(`engine=spark`, embedded `local[<threads>]`; its peak RSS is the driver's: executors are not counted).
Without `--model` (or if it does not exist) an untrained release of the configured architecture is built on a small
synthetic base (weights do not change the cost); with it, eager timing uses an untrained net of its architecture.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from churnsense.synth.generate import generate, synth_config

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3  # model-only timing: rounds per engine and batch size


def synth_base(out_dir: Path, n: int, months: int, seed: int = 7) -> Path:
    if not (out_dir / "customers.parquet").is_file():
        summary = generate(synth_config(n_customers=n, months=months, seed=seed, out_dir=str(out_dir)))
        print(
            f"synthetic base {n:,} customers, {summary['events']:,} events, {summary['feedback']:,} feedback "
            f"({summary['seconds']:.0f} s) -> {out_dir}",
            flush=True,
        )
    return out_dir


def build(work: Path, months: int, release: Path | None):
    """(ScoringGraph, feature arrays of the small base, release dir) for the configured architecture."""
    from churnsense.churn.export import ScoringGraph, export_onnx
    from churnsense.churn.features import FeaturePipeline
    from churnsense.churn.release import write_churn_release
    from churnsense.churn.train import build_net, prepare_data
    from churnsense.core.release import staged_release

    data_dir = work / "fit"
    synth_base(data_dir / "demo", 3000, max(months, 12))  # a year of history: every branch of the net is built
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["data=synth", "logger=none", f"paths.data_dir={data_dir}"])
    data = prepare_data(cfg)
    given = release is not None and (release / "model.onnx").is_file()
    pipeline = FeaturePipeline.load(release / "pipeline.json") if given else data.pipeline
    split = {name: pipeline.transform(snap) for name, snap in data.snapshots.items()} if given else data.arrays
    net, spec = build_net(cfg, pipeline, split["train"])  # eager net of the release's input shapes
    print(f"eager net: tabular={spec['tabular']} sequence={spec['sequence']} hazard={spec['hazard_horizons']}")
    graph = ScoringGraph(net.eval())
    arrays = {k: v for k, v in split["test"].items() if k in ("cat", "num") or k.startswith("seq_")}
    if not given:
        example = {k: torch.as_tensor(v[:8]) for k, v in arrays.items()}
        onnx = export_onnx(graph, example, work / "export" / "model.onnx")
        release = work / "release"
        with staged_release(release) as staging:
            write_churn_release(
                staging,
                onnx,
                data.pipeline,
                OmegaConf.to_container(cfg, resolve=True),
                {"hazard_horizons": list(net.hazard.horizons) if net.hazard else []},
            )
    return graph, arrays, release


def rows_per_second(fn, batch: int, seconds: float) -> float:
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n * batch / (time.perf_counter() - start)


def micro(graph, arrays: dict[str, np.ndarray], release: Path, threads: int, seconds: float, slice_rows: int) -> None:
    from churnsense.churn.export import model_inputs
    from churnsense.churn.net import MODEL_INPUTS
    from churnsense.core.runtime import RowParallelRunner

    torch.set_num_threads(threads)
    runner = RowParallelRunner(release / "model.onnx", workers=threads, slice_rows=slice_rows)  # what serving runs
    plain = RowParallelRunner(release / "model.onnx", workers=1, slice_rows=0, threads=threads)  # one call
    names, outputs = runner.input_names, runner.output_names
    n = len(arrays["cat"])
    print(f"\n## Model only, {threads} thread(s), history length {arrays['seq_type'].shape[1]}")
    print(
        f"ONNX Runtime as served: row-parallel, slices of <= {slice_rows} rows on {threads} threads; plain: one "
        f"call with {threads} intra-op threads; eager: PyTorch with {threads} threads."
    )
    print(
        "| batch | ONNX Runtime rows/s (served) | ONNX Runtime plain rows/s | PyTorch eager rows/s | served / eager |\n"
        "|---|---|---|---|---|"
    )
    for batch in (1, 64, 1024):
        idx = np.arange(batch) % n
        feed = {k: arrays[k][idx] for k in names}
        tensors = model_inputs({k: arrays[k][idx] for k in MODEL_INPUTS})
        engines = {
            "served": lambda feed=feed: runner.run(outputs, feed),
            "plain": lambda feed=feed: plain.run(outputs, feed),
            "eager": lambda tensors=tensors: graph(*tensors),
        }
        rates: dict[str, list[float]] = {name: [] for name in engines}
        with torch.inference_mode():
            for _ in range(ROUNDS):  # engines interleaved, median of the rounds: drift of a shared machine cancels
                for name, fn in engines.items():
                    rates[name].append(rows_per_second(fn, batch, seconds / ROUNDS))
        served, single, eager = (float(np.median(rates[name])) for name in engines)
        print(f"| {batch} | {served:,.0f} | {single:,.0f} | {eager:,.0f} | {served / eager:.2f}x |", flush=True)


def end_to_end(
    release: Path,
    work: Path,
    sizes: list[int],
    months: int,
    threads: int,
    insights_modes: list[str],
    workers: int,
    engines: list[str],
    spark_modes: list[str] | None = None,
) -> None:
    print(
        f"\n## End to end `serve.py task=churn` (workers={workers}, num_threads={threads}, {months} months of history;"
        " peak RSS counts the worker processes)"
    )
    print(
        "| customers | engine | insights | events | seconds | rows/s | peak RSS MiB | partitions |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    runs = [(n, m, e) for n in sizes for m in insights_modes for e in engines]
    for n, mode, engine in [r for r in runs if r[2] != "spark" or spark_modes is None or r[1] in spark_modes]:
        base = synth_base(work / f"base{n}", n, months)
        out = work / f"scores{n}-{engine}.parquet"
        spark = ["engine=spark", f"spark.master='local[{threads}]'"] if engine == "spark" else []
        cmd = [
            sys.executable,
            str(ROOT / "serve.py"),
            "task=churn",
            f"model={release}",
            f"input.customers={base / 'customers.parquet'}",
            f"input.events={base / 'events.parquet'}",
            f"input.feedback={base / 'feedback.parquet'}",
            f"output={out}",
            "progress=false",
            f"num_threads={threads}",
            f"workers={workers}",
            "feedback_model=null",
            f"tmp_dir={work}",
            f"insights={mode == 'on'}",
            *spark,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("[churn] rows in")), None)
        if proc.returncode or line is None:
            print(f"| {n:,} | {engine} | {mode} | failed: {proc.stderr.strip().splitlines()[-1:]} |", flush=True)
            continue
        seconds, rate, rss = re.search(r"\| ([\d.]+) s, ([\d,]+) rows/s, peak RSS ([\d,]+) MiB", line).groups()
        parts = re.search(r"(\d+) partition", proc.stdout).group(1)
        events = __import__("pyarrow.parquet").parquet.ParquetFile(base / "events.parquet").metadata.num_rows
        print(f"| {n:,} | {engine} | {mode} | {events:,} | {seconds} | {rate} | {rss} | {parts} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a release directory (default: build an untrained one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    parser.add_argument("--workers", type=int, default=0, help="serve.py workers (0 = one per core)")
    parser.add_argument("--slice-rows", type=int, default=128, help="serve.py onnx_slice_rows (row-parallel slices)")
    parser.add_argument("--sizes", default="100000,1000000", help="customers per end-to-end run ('' to skip)")
    parser.add_argument("--months", type=int, default=3, help="months of synthetic history")
    parser.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument(
        "--insights",
        default="off,on",
        help="serve with insights off (scores only) and/or on (reasons, segments, actions)",
    )
    parser.add_argument("--engines", default="local", help="serve.py engines: local and/or spark (needs pyspark)")
    parser.add_argument("--spark-insights", default="off", help="insights modes the Spark engine runs ('' = all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        work = Path(args.work or tmp)
        graph, arrays, release = build(work, args.months, Path(args.model) if args.model else None)
        micro(graph, arrays, release, args.threads, args.seconds, args.slice_rows)
        sizes = [int(s) for s in args.sizes.split(",") if s]
        if sizes:
            engines = args.engines.split(",")
            spark_modes = args.spark_insights.split(",") if args.spark_insights else None
            modes = args.insights.split(",")
            end_to_end(release, work, sizes, args.months, args.threads, modes, args.workers, engines, spark_modes)


if __name__ == "__main__":
    main()
