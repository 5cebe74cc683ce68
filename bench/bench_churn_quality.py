"""Quality of the churn net against the GBDT a user already has, on identical splits, repeated (not a test).

    python bench/bench_churn_quality.py --data synth,telco,cdnow --seeds 0,1,2,3,4
    python bench/bench_churn_quality.py --config-dir ~/my_conf --data mine          # conf/data/mine.yaml of yours
    python bench/bench_churn_quality.py --data telco --nn "k8=" --nn "k1=model.ensemble_size=1" --out runs.jsonl
    python bench/bench_churn_quality.py --report runs.jsonl          # tables of the lines gathered so far

Protocol: for each seed the project's own framing (`prepare_data`: leakage-free cutoffs, customers split
stratified by label with `data.framing.seed=<seed>`) makes train/val/test once, and every model sees those very
splits: each net (`train_churn`, early stopping and temperature on val), LightGBM and CatBoost (early stopping on
val) given the static attributes + the hand-made history aggregates (`churnsense.churn.aggregates`). Reported:
test ROC-AUC, PR-AUC, Brier, top-decile lift as mean ± std over seeds, validation ROC-AUC (what choices are made
on), training seconds, and the paired per-seed difference of each net to the best GBDT (by mean test ROC-AUC).
`--config-dir DIR` adds DIR to Hydra's config search path (as `python train.py --config-dir DIR data=mine`), so a
data config outside the repo is benchmarked by name. `--out FILE` appends one JSON line per (data, seed, model).
Published single-split IBM Telco ROC-AUC for reference: LightGBM 0.834, CatBoost 0.847, TabPFN 0.850.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from churnsense.churn.aggregates import history_aggregates
from churnsense.churn.metrics import evaluate_probabilities
from churnsense.churn.train import PreparedData, prepare_data, train_churn

CONF = Path(__file__).resolve().parents[1] / "conf"
METRICS = {"ROC-AUC": "auroc", "PR-AUC": "pr_auc", "Brier": "brier", "lift@10%": "lift_top10"}
GBDTS = ("LightGBM", "CatBoost")
THREADS = int(os.environ.get("OMP_NUM_THREADS", "2"))  # GBDT threads: oversubscribed shared cores crawl


def make_cfg(data: str, seed: int, out: str, config_dir: str | None, quick: bool, extra: list[str]):
    """The train config for one (data, seed) run: no logger, no export, CPU, splits seeded by `seed`."""
    overrides = [
        f"data={data}",
        "logger=none",
        "trainer=cpu",
        f"seed={seed}",
        "export.enabled=false",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        f"paths.output_dir={out}",
        f"data.framing.seed={seed}",
        *extra,
    ]
    if config_dir:
        overrides.append(f"hydra.searchpath=[file://{Path(config_dir).resolve()}]")
    if quick:
        overrides.append("trainer.max_epochs=2")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


def net_run(cfg, data: PreparedData) -> dict[str, float]:
    """One net: test and validation metrics (calibrated probabilities) and training seconds."""
    started = time.perf_counter()
    m = train_churn(cfg, data)
    out = {name: m[f"test/calibrated_{key}"] for name, key in METRICS.items()}
    return {**out, "val ROC-AUC": m["val/calibrated_auroc"], "seconds": time.perf_counter() - started}


def gbdt_frames(data: PreparedData) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """(features, labels) per split: static attributes (categoricals as pandas categories) + history aggregates
    over the event types seen in training (the same columns on every split)."""
    cats, nums = data.pipeline.categorical, data.pipeline.numeric
    types = sorted(data.snapshots["train"].history["event_type"].astype(str).unique().tolist())
    out = {}
    for name, snap in data.snapshots.items():
        st = snap.static
        x = pd.concat(
            [st[cats].astype("string").astype("category"), st[nums].astype("float64"), history_aggregates(snap, types)],
            axis=1,
        )
        out[name] = (x, st["label"].to_numpy(dtype="float32"))
    categories = {c: out["train"][0][c].cat.categories for c in cats}  # one category coding for every split
    for x, _ in out.values():
        for c in cats:
            x[c] = pd.Categorical(x[c].astype("string"), categories=categories[c])
    return out


def fit_gbdt(kind: str, frames, seed: int, quick: bool):
    """LightGBM or CatBoost with early stopping on the validation split."""
    (xtr, ytr), (xva, yva) = frames["train"], frames["val"]
    rounds = 200 if quick else 3000
    if kind == "LightGBM":
        import lightgbm as lgb

        model = lgb.LGBMClassifier(
            n_estimators=rounds,
            learning_rate=0.03,
            num_leaves=31,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=seed,
            verbose=-1,
            n_jobs=THREADS,
        )
        model.fit(xtr, ytr, eval_set=[(xva, yva)], callbacks=[lgb.early_stopping(100, verbose=False)])
        return model
    from catboost import CatBoostClassifier

    cats = [c for c in xtr.columns if isinstance(xtr[c].dtype, pd.CategoricalDtype)]
    model = CatBoostClassifier(
        iterations=rounds,
        learning_rate=0.05,
        depth=6,
        random_seed=seed,
        verbose=0,
        thread_count=THREADS,
        od_type="Iter",
        od_wait=100,
        cat_features=cats,
        allow_writing_files=False,
    )
    model.fit(_catboost_frame(xtr, cats), ytr, eval_set=(_catboost_frame(xva, cats), yva), use_best_model=True)
    return model


def _catboost_frame(x: pd.DataFrame, cats: list[str]) -> pd.DataFrame:
    return x.assign(**{c: x[c].astype(str) for c in cats})  # CatBoost wants str categories


def gbdt_run(kind: str, frames, seed: int, quick: bool) -> dict[str, float]:
    started = time.perf_counter()
    model = fit_gbdt(kind, frames, seed, quick)
    seconds = time.perf_counter() - started
    cats = [c for c in frames["train"][0].columns if isinstance(frames["train"][0][c].dtype, pd.CategoricalDtype)]

    def probs(split: str) -> np.ndarray:
        x = frames[split][0]
        return model.predict_proba(_catboost_frame(x, cats) if kind == "CatBoost" else x)[:, 1]

    test = evaluate_probabilities(torch.tensor(probs("test")), torch.tensor(frames["test"][1]), "")
    val = evaluate_probabilities(torch.tensor(probs("val")), torch.tensor(frames["val"][1]), "")
    return {**{name: test[key] for name, key in METRICS.items()}, "val ROC-AUC": val["auroc"], "seconds": seconds}


def run_seed(data_name: str, seed: int, nets: dict[str, list[str]], args) -> dict[str, dict[str, float]]:
    """Every model on the splits of one seed; data are prepared once per distinct data config."""
    results: dict[str, dict[str, float]] = {}
    prepared: dict[str, PreparedData] = {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as out:
        for name, extra in nets.items():
            cfg = make_cfg(data_name, seed, out, args.config_dir, args.quick, extra)
            key = OmegaConf.to_yaml(cfg.data)
            if key not in prepared:
                prepared[key] = prepare_data(cfg)
            results[name] = net_run(cfg, prepared[key])
            _record(args.out, data_name, seed, name, results[name])
        base = make_cfg(data_name, seed, out, args.config_dir, args.quick, [])
        key = OmegaConf.to_yaml(base.data)
        frames = gbdt_frames(prepared[key] if key in prepared else prepare_data(base))
        for kind in args.gbdt:
            results[kind] = gbdt_run(kind, frames, seed, args.quick)
            _record(args.out, data_name, seed, kind, results[kind])
    return results


def _record(path: str | None, data: str, seed: int, model: str, metrics: dict[str, float]) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"data": data, "seed": seed, "model": model, **metrics}) + "\n")


def _cell(values: list[float], digits: int = 3) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def table(data_name: str, runs: dict[str, list[dict[str, float]]], nets: list[str], gbdts: list[str]) -> str:
    """Markdown: per model mean ± std over seeds; then each net minus the best GBDT, paired by seed."""
    n = len(next(iter(runs.values())))
    cols = [*METRICS, "val ROC-AUC", "seconds"]
    lines = [
        f"\n## {data_name} (test split unless marked, mean ± std over {n} seeds)",
        "| model | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for model, rows in runs.items():
        lines.append(
            f"| {model} | " + " | ".join(_cell([r[c] for r in rows], 0 if c == "seconds" else 3) for c in cols) + " |"
        )
    if gbdts:
        best = max(gbdts, key=lambda g: np.mean([r["ROC-AUC"] for r in runs[g]]))
        lines += [
            f"\npaired difference to the best GBDT ({best}), mean ± std over seeds:",
            "| net | Δ ROC-AUC | Δ PR-AUC | Δ val ROC-AUC | seeds net ≥ GBDT |",
            "|---|---|---|---|---|",
        ]
        for net in nets:
            d = {c: [a[c] - b[c] for a, b in zip(runs[net], runs[best])] for c in ("ROC-AUC", "PR-AUC", "val ROC-AUC")}
            wins = sum(x >= 0 for x in d["ROC-AUC"])
            lines.append(
                f"| {net} | {_cell(d['ROC-AUC'])} | {_cell(d['PR-AUC'])} | {_cell(d['val ROC-AUC'])} | {wins}/{n} |"
            )
    return "\n".join(lines)


def report(path: str) -> None:
    """Print the tables of a results file (`--out` lines, possibly from several invocations): per data set, the
    seeds every model has, in seed order."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    for data_name in dict.fromkeys(r["data"] for r in rows):
        mine = {(r["model"], r["seed"]): r for r in rows if r["data"] == data_name}  # the last line of a pair wins
        models = list(dict.fromkeys(m for m, _ in mine))
        seeds = sorted(set.intersection(*({s for m2, s in mine if m2 == m} for m in models)))
        runs = {m: [mine[(m, s)] for s in seeds] for m in models}
        if seeds:
            print(table(data_name, runs, [m for m in models if m not in GBDTS], [m for m in models if m in GBDTS]))


def parse_nets(specs: list[str] | None) -> dict[str, list[str]]:
    """`name=override override ...` per net; default: the default net only."""
    if not specs:
        return {"ChurnNet": []}
    out = {}
    for spec in specs:
        name, _, overrides = spec.partition("=")
        out[name.strip()] = overrides.split()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synth,telco,cdnow", help="comma-separated data configs (conf/data/*)")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (splits and initialisation)")
    parser.add_argument("--config-dir", default=None, help="extra Hydra config dir holding data/<name>.yaml")
    parser.add_argument(
        "--nn",
        action="append",
        help='a net to run: "name=override ..." (repeatable); default: the default configuration as "ChurnNet"',
    )
    parser.add_argument("--gbdt", default=",".join(GBDTS), help="GBDT baselines to run (comma-separated, or '')")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 200 boosting rounds: a smoke run")
    parser.add_argument("--out", default=None, help="append one JSON line per (data, seed, model) here")
    parser.add_argument("--report", default=None, help="only print the tables of an --out file (nothing is run)")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    args.gbdt = [g for g in args.gbdt.split(",") if g]
    unknown = set(args.gbdt) - set(GBDTS)
    if unknown:
        parser.error(f"unknown GBDT {sorted(unknown)}: expected some of {GBDTS}")
    nets = parse_nets(args.nn)
    for data_name in args.data.split(","):
        runs: dict[str, list[dict[str, float]]] = defaultdict(list)
        for seed in (int(s) for s in args.seeds.split(",")):
            for model, metrics in run_seed(data_name, seed, nets, args).items():
                runs[model].append(metrics)
        print(table(data_name, runs, list(nets), args.gbdt), flush=True)


if __name__ == "__main__":
    main()
