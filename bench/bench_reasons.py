"""Reason attribution: cost per explained customer and hit rates against the true drivers — not a test.

    python bench/bench_reasons.py --model artifacts/churn --data data/demo --cutoff 2025-10-01 \
        --variant exact:method=shapley,n_samples=6,n_background=3 --variant fast:method=antithetic \
        --min-share 0,0.15

Scores the base once at `--cutoff` (a backtest: the churn of the next `--horizon` days is known from the ground
truth), then explains every at-risk customer with each variant (`insights.reasons` overrides, `key=value` pairs)
and prints milliseconds per explained customer (wall and CPU: the cores may be shared; `method=amortised` uses the
release's amortised explainer, fitted at training time) and the top-1 / top-3 hit rates
of the served reasons against the true drivers of the customers who churned, at each `min_share`: over the churners with
reasons (`serve.py task=report`) and over every explained churner (one without a reason counts as a miss). """

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from churnsense.churn.release import ChurnRelease
from churnsense.churn.score import _canonical, score_churn_batch
from churnsense.core.io import read_table
from churnsense.data.contract import KINDS
from churnsense.data.validation import validate_chunk
from churnsense.insights import enrich as enrich_module
from churnsense.insights.reason_texts import typical_facts
from churnsense.insights.reasons import customer_facts, hit_rates, reasons_frame
from churnsense.insights.report import observed_outcome, reason_evaluation
from churnsense.insights.risk_direction import cached_directions


def load_inputs(release: ChurnRelease, data: Path) -> dict[str, pd.DataFrame | None]:
    """The base's tables, validated into canonical columns (with their `_row`), as `serve_churn` partitions them."""
    frames = {}
    for kind in KINDS:
        table, path = release.spec.table(kind), data / f"{kind}.parquet"
        if table is None or not path.is_file():
            frames[kind] = None
            continue
        frames[kind], _ = validate_chunk(read_table(str(path), read_options=table.read_options), table, kind, str(path))
    return frames


def parse_variant(text: str) -> tuple[str, dict]:
    """`name:key=value,key=value` -> (name, reasons overrides); values parsed as YAML scalars."""
    name, _, pairs = text.partition(":")
    overrides = {}
    for pair in filter(None, pairs.split(",")):
        key, _, value = pair.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    return name, overrides


@dataclass
class Explained:
    """The served reasons of the at-risk customers and what it cost; what `reselect` needs to re-rank them."""

    reasons: pd.DataFrame
    wall: float
    cpu: float
    facts: pd.DataFrame
    languages: dict
    typical: dict


def explain_at_risk(
    release: ChurnRelease, scored: pd.DataFrame, frames: dict, snapshot, features: dict, cfg: dict
) -> Explained:
    """The reasons `enrich` serves for every at-risk customer, timed (wall and CPU seconds)."""
    state, rcfg = release.insights_state, cfg["reasons"]
    cutoff = pd.Timestamp(scored["cutoff"].iloc[0])
    facts = customer_facts(
        _canonical(frames["customers"]),
        _canonical(frames["events"]),
        _canonical(frames["feedback"]),
        cutoff,
        rcfg.get("languages"),
        state.event_types,
    )
    ids = snapshot.static["customer_id"].to_numpy()
    p = pd.Series(ids).map(scored.set_index("customer_id")["churn_probability"]).to_numpy(dtype=float)
    rows = np.flatnonzero(p >= enrich_module.at_risk_threshold(state, p, cfg))
    typical = typical_facts(release.pipeline.num_stats, float(rcfg.get("min_deviation", 0.5)))
    languages = enrich_module.service_languages(facts, cfg).to_dict()
    prob_fn = lambda b: release.run(b)["churn_probability"]  # noqa: E731
    if state.background:  # computed once per release and process (served partitions reuse it): not timed
        cached_directions(prob_fn, state.background, list(release.pipeline.cat_cardinalities), fixed=True)
    wall, cpu = time.perf_counter(), time.process_time()
    reasons = enrich_module.explain(
        features,
        ids,
        rows,
        prob_fn,
        release.pipeline.batch_layout(),
        facts,
        rcfg,
        int(cfg.get("seed", 0)),
        state.background or None,
        languages,
        typical,
        cat_cardinalities=list(release.pipeline.cat_cardinalities),
        explainer=enrich_module.amortised_explainer(state),
    )
    return Explained(reasons, time.perf_counter() - wall, time.process_time() - cpu, facts, languages, typical)


def reselect(done: Explained, rcfg: dict) -> pd.DataFrame:
    """The reasons of the same attributions under other selection settings (`min_share`, `min_logit`, ...)."""
    groups = [c.removeprefix("attr_") for c in done.reasons.columns if c.startswith("attr_")]
    attr = done.reasons[[f"attr_{g}" for g in groups]].to_numpy()
    return reasons_frame(
        list(done.reasons["customer_id"]),
        attr,
        groups,
        done.facts,
        int(rcfg.get("top_k", 3)),
        float(rcfg.get("min_logit", 0.0)),
        rcfg.get("not_reasons") or (),
        float(rcfg.get("min_share", 0.0)),
        done.languages,
        done.typical,
        str(rcfg.get("language", "en")),
    )


def all_explained(reasons: pd.DataFrame, truth: pd.DataFrame, vocabulary: dict) -> pd.Series:
    """Hit rates over every explained churner with a known driver (one without a reason counts as a miss; the
    report's `reason_evaluation` scores those with reasons only)."""
    codes = reasons.set_index("customer_id")["reason_codes"].fillna("")
    drivers = truth.set_index("customer_id")["drivers"].reindex(codes.index)
    drivers = drivers[drivers.fillna("").ne("")]
    driver_of = {c: str(v.get("driver", c)) for c, v in vocabulary.items()}
    return hit_rates(codes.reindex(drivers.index), drivers, driver_of).set_index("mechanism").loc["all"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="artifacts/churn")
    parser.add_argument("--data", default="data/demo", help="folder with customers/events/feedback/ground_truth")
    parser.add_argument("--cutoff", default="2025-10-01")
    parser.add_argument("--horizon", type=int, default=90, help="days of observed churn after the cutoff")
    parser.add_argument("--variant", action="append", default=None, help="name:key=value,... (repeatable)")
    parser.add_argument("--min-share", default="0,0.15", help="reason selection thresholds to evaluate")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    release = ChurnRelease.load(args.model, num_threads=args.threads)
    frames = load_inputs(release, Path(args.data))
    cutoff = pd.Timestamp(args.cutoff)
    captured = {}
    scored, _ = score_churn_batch(
        frames["customers"],
        frames["events"],
        frames["feedback"],
        release,
        cutoff,
        validated=True,
        monitor=lambda snap, _: captured.update(snapshot=snap),
    )
    snapshot = captured["snapshot"]
    features = release.pipeline.transform(snapshot)
    truth = read_table(str(Path(args.data) / "ground_truth.parquet"), typed=True, text_columns=["customer_id"])
    churned = observed_outcome(scored, truth, _canonical(frames["customers"]), args.horizon)
    churned_ids = scored.loc[churned.eq(1.0).to_numpy(), "customer_id"]
    truth = truth[truth["customer_id"].isin(churned_ids)]
    base = release.insights_config
    variants = [parse_variant(v) for v in (args.variant or ["current:"])]
    print(
        f"{len(scored):,} customers scored at {cutoff.date()}, {len(churned_ids):,} churned within {args.horizon} days"
    )
    print(
        "| variant | reasons settings | explained | ms / customer (wall) | ms / customer (CPU) | min_share | "
        "churners with reasons | top-1 | top-3 | explained churners | top-1 | top-3 |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for name, overrides in variants:
        done = None
        for share in [float(x) for x in args.min_share.split(",")]:
            cfg = copy.deepcopy(base)
            cfg["reasons"] = {**cfg["reasons"], **overrides, "min_share": share}
            if done is None:  # attribution does not depend on the selection: computed once per variant
                done = explain_at_risk(release, scored, frames, snapshot, features, cfg)
                reasons = done.reasons
            else:
                reasons = reselect(done, cfg["reasons"])
            vocabulary = cfg["reasons"].get("vocabulary") or {}
            rates = reason_evaluation(reasons, truth, vocabulary).set_index("mechanism").loc["all"]
            every = all_explained(reasons, truth, vocabulary)
            settings = ",".join(f"{k}={v}" for k, v in overrides.items()) or "release config"
            n = len(done.reasons)
            print(
                f"| {name} | {settings} | {n:,} | {1000 * done.wall / max(n, 1):.2f} | "
                f"{1000 * done.cpu / max(n, 1):.2f} | {share:g} | {int(rates['n'])} | {rates['top1']:.3f} | "
                f"{rates['top3']:.3f} | {int(every['n'])} | {every['top1']:.3f} | {every['top3']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
