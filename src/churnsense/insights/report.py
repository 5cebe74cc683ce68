"""The report of a scoring run (`python serve.py task=report`): CSV + PNG + HTML files, logged to MLflow.

Reads the enriched scores of `serve.py task=churn` (+ optional raw tables for observed churn by period and the
segment plot, the synthetic ground truth for reason hit rates) and the release's `insights.json` (segments, Qini).
Files: summary.json, segments.csv, churn_by_segment_period.csv, top_reasons.csv, reason_hit_rates.csv,
uplift_evidence.csv (held-out Qini per action with its interval), uplift_relative_effects.csv (the relative-risk
learner's effects per reason), uplift_policy_evidence.csv (the model's choice of action vs the playbook's on the
offer log), policy_value.csv + uplift_vs_truth.csv (with the simulator's `uplift_truth`: churners prevented by our
decisions vs churn-risk targeting, random and the oracle at the same number of contacts, from the served
per-action predictions of the at-risk customers; Spearman of predicted vs true uplift), segments.png,
uplift_qini.png, report.html (`report_page`), and the CRM export in `crm/` (`crm_export`: call list per queue and
team, segment membership; CSV + JSON Lines, versioned layout)."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnsense.core.io import read_table
from churnsense.core.release import read_yaml
from churnsense.core.tracking import TrackedRun, run_name, serving_logger
from churnsense.data.contract import DataSpec
from churnsense.data.validation import split_valid_rows
from churnsense.insights.crm_export import CALL_LIST, write_export
from churnsense.insights.enrich import UPLIFT_PREFIX, uplift_model
from churnsense.insights.policy_eval import policy_table, uplift_spearman
from churnsense.insights.reasons import customer_facts, hit_rates
from churnsense.insights.report_page import write_page
from churnsense.insights.segments import plot_segments, profile_segments
from churnsense.insights.state import InsightsState, load_config, load_state
from churnsense.insights.uplift_fit import EVIDENCE

log = logging.getLogger(__name__)


def churn_by_period(customers: pd.DataFrame, segment: pd.Series, freq: str = "MS") -> pd.DataFrame:
    """Observed churn and retention rate per segment and month: churned in the month / active at its start."""
    c = customers.assign(segment=customers["customer_id"].map(segment)).dropna(subset=["segment"])
    end = c["observed_until"].max() if "observed_until" in c else c["churn_date"].max()
    periods = pd.date_range(c["signup_date"].min().to_period("M").to_timestamp(), end, freq=freq)
    rows = []
    for start, stop in itertools.pairwise(periods):
        active = (c["signup_date"] < start) & (c["churn_date"].isna() | (c["churn_date"] >= start))
        churned = active & (c["churn_date"] < stop)
        g = pd.DataFrame({"active": active, "churned": churned, "segment": c["segment"]}).groupby("segment").sum()
        rows.append(g.assign(period=start.date()).reset_index())
    out = (
        pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["segment", "active", "churned", "period"])
    )
    out = out[out["active"] > 0]
    out["churn_rate"] = out["churned"] / out["active"]
    out["retention_rate"] = 1.0 - out["churn_rate"]
    return out[["period", "segment", "active", "churned", "churn_rate", "retention_rate"]]


def top_reasons(scores: pd.DataFrame) -> pd.DataFrame:
    """Per top reason: customers, share of at-risk customers, value at risk behind it."""
    s = scores[scores["reason_1"].fillna("").ne("")]
    g = s.groupby("reason_1").agg(
        customers=("customer_id", "size"),
        value_at_risk=("value_at_risk", "sum"),
        mean_risk=("churn_probability", "mean"),
    )
    g["share"] = g["customers"] / max(len(s), 1)
    return g.sort_values("value_at_risk", ascending=False).reset_index().rename(columns={"reason_1": "reason"})


def reason_evaluation(scores: pd.DataFrame, truth: pd.DataFrame, vocabulary: Mapping[str, Mapping]) -> pd.DataFrame:
    """Hit rates of the reasons vs the true drivers of explained customers who churned (truth: customer_id,
    drivers). Baseline: one global ranking = reason codes by how often they appear in customers' top-3."""
    s = scores[scores["reason_codes"].fillna("").ne("")].set_index("customer_id")["reason_codes"]
    codes = s.str.split(";").explode()
    baseline = codes.value_counts().index.tolist()
    t = truth.set_index("customer_id")["drivers"].reindex(s.index)
    t = t[t.fillna("").ne("")]
    driver_of = {c: str(v.get("driver", c)) for c, v in vocabulary.items()}
    return hit_rates(s, t, driver_of, baseline)


def _plot_qini(metrics: list[dict], path: Path) -> Path | None:
    curves = [m for m in metrics if m.get("curve_x")]
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m in curves:
        x, q = np.asarray(m["curve_x"]), np.asarray(m["curve_qini"])
        line = ax.plot(x, q, label=f"{m['action']} (Qini {m['qini']:.4f})")[0]
        ax.plot([0, 1], [0, q[-1]], ls="--", color=line.get_color(), alpha=0.6)
    ax.set(
        xlabel="share of offered customers targeted (by predicted uplift)",
        ylabel="incremental retained / n",
        title="Qini curves on held-out offers (dashed: random targeting)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def observed_outcome(
    scores: pd.DataFrame, truth: pd.DataFrame | None, customers: pd.DataFrame | None, horizon_days: int
) -> pd.Series | None:
    """1.0 if the customer churned within `horizon_days` after the scoring cutoff, else 0.0 — only when that whole
    window is observed in the data (a backtest); None otherwise (e.g. scoring at the end of the data)."""
    if truth is None or "churn_date" not in truth or "cutoff" not in scores or scores.empty:
        return None
    cutoff = pd.Timestamp(scores["cutoff"].iloc[0])
    churn = pd.to_datetime(truth.set_index("customer_id")["churn_date"])
    end = customers["observed_until"].max() if customers is not None and "observed_until" in customers else churn.max()
    stop = cutoff + pd.Timedelta(days=int(horizon_days))
    if pd.isna(end) or stop > pd.Timestamp(end):
        return None
    when = scores["customer_id"].map(churn)
    return ((when >= cutoff) & (when < stop)).astype(float)


def write_report(
    scores: pd.DataFrame,
    out_dir: str | Path,
    state: InsightsState,
    cfg: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame | None] | None = None,
    horizon_days: int = 90,
    page: Mapping[str, Any] | None = None,
    crm: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write every report file into `out_dir`; `tables`: optional customers/events/feedback/ground_truth.
    Observed churn (segment churn rates, reason hit rates) = churn within `horizon_days` after the cutoff, used
    only when that window lies inside the data; otherwise segment churn rates are the predicted ones.
    `page`: report.html knobs (`report_page.write_page`); `crm`: CRM export knobs (formats, split_by)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = dict(tables or {})
    files: dict[str, Path] = {}
    frames: dict[str, pd.DataFrame] = {}
    cust = tables.get("customers")
    label = None
    outcome = observed_outcome(scores, tables.get("ground_truth"), cust, horizon_days)
    if outcome is not None:
        scores = scores.assign(churned=outcome.to_numpy())
        label = "churned"
    facts = None
    if cust is not None and "cutoff" in scores:
        facts = customer_facts(
            cust[cust["customer_id"].isin(scores["customer_id"])],
            tables.get("events"),
            tables.get("feedback"),
            pd.Timestamp(scores["cutoff"].iloc[0]),
        )
    if state.segments:
        frames["segments"] = profile_segments(scores, facts, state.segments, label=label)
        if facts is not None:
            seg = scores.set_index("customer_id")
            files["segments_png"] = plot_segments(
                facts.reindex(seg.index), seg["segment"], seg["churn_probability"], state.segments, out / "segments.png"
            )
    if cust is not None and {"signup_date", "churn_date"} <= set(cust.columns):
        frames["churn_by_segment_period"] = churn_by_period(cust, scores.set_index("customer_id")["segment"])
    frames["top_reasons"] = top_reasons(scores)
    if label is not None:  # drivers of the customers who did churn within the horizon
        truth = tables["ground_truth"]
        churned_ids = scores.loc[scores[label].eq(1.0), "customer_id"]
        frames["reason_hit_rates"] = reason_evaluation(
            scores, truth[truth["customer_id"].isin(churned_ids)], (cfg.get("reasons") or {}).get("vocabulary") or {}
        )
    if state.metrics.get("uplift"):
        frames["uplift_evidence"] = uplift_evidence(state.metrics["uplift"])
        frames.update(uplift_details(state.metrics["uplift"]))
        png = _plot_qini(state.metrics["uplift"], out / "uplift_qini.png")
        if png:
            files["uplift_png"] = png
    crm = dict(crm or {})
    files["crm"], calls = write_export(
        [scores],
        out / "crm",
        crm.get("formats") or ("csv", "jsonl"),
        crm.get("split_by") or ("queue", "team"),
        cfg.get("decisions"),
    )
    policy = truth_evaluation(scores, calls, state, cfg, tables)
    if policy is not None:
        frames["policy_value"], frames["uplift_vs_truth"] = policy
    for name, frame in frames.items():
        files[name] = out / f"{name}.csv"
        frame.to_csv(files[name], index=False)
    summary = {
        "customers": len(scores),
        "cutoff": str(scores["cutoff"].iloc[0]) if "cutoff" in scores and len(scores) else None,
        "mean_churn_probability": float(scores["churn_probability"].mean()),
        "observed_churn_rate": float(scores[label].mean()) if label else None,
        "at_risk": int(scores["at_risk"].sum()),
        "value_at_risk": float(scores["value_at_risk"].sum()),
        "actions": int(len(calls)),
        "expected_saved_value": float(calls["expected_saved_value"].sum()),
        "uplift": "on" if state.uplift else "off (no offer log: no saving claimed)",
        "supported_actions": [r["action"] for r in state.metrics.get("uplift", []) if r.get("supported")],
        **_policy_summary(frames.get("policy_value")),
        "segments": int(state.segments.get("k", 0)) if state.segments else 0,
        "segment_criterion": state.segments.get("criterion") if state.segments else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    files["summary"] = out / "summary.json"
    images = [p for k, p in files.items() if k.endswith("_png")]
    files["html"] = write_page(
        out / "report.html", summary, scores, calls, frames, images, page or {}, f"crm/{CALL_LIST}.csv"
    )
    return files


def uplift_evidence(rows: list[dict]) -> pd.DataFrame:
    """The held-out evidence per action: learner, Qini with its interval, the random line, AUUC, sizes."""
    keep = ["action", "design", "learner", *EVIDENCE]
    frame = pd.DataFrame(rows)
    return frame[[c for c in keep if c in frame]]


def uplift_details(rows: list[dict]) -> dict[str, pd.DataFrame]:
    """`uplift_relative_effects` (per action, the relative-risk learner's share of the risk an offer removes, in
    common and per reason, with the risk calibration a, b) and `uplift_policy_evidence` (the held-out value of the
    model's choice of action vs the playbook's on the offer log), when the fit has them."""
    out = {}
    effects = [{"action": r["action"], **r["relative_effects"]} for r in rows if r.get("relative_effects")]
    if effects:
        out["uplift_relative_effects"] = pd.DataFrame(effects)
    policy = next((r["policy"] for r in rows if r.get("policy")), None)
    if policy:
        out["uplift_policy_evidence"] = pd.DataFrame([policy])
    return out


def truth_evaluation(
    scores: pd.DataFrame,
    calls: pd.DataFrame,
    state: InsightsState,
    cfg: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame | None],
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Policy value and predicted-vs-true uplift against the simulator's truth at the scores' cutoff, from the
    served per-action predictions (`expected_uplift_<action>`, at-risk customers); None when there is no truth for
    that date or the scores carry no predictions (no uplift model)."""
    truth = tables.get("uplift_truth")
    cols = [c for c in scores.columns if c.startswith(UPLIFT_PREFIX)]
    if truth is None or not cols or "cutoff" not in scores or scores.empty:
        return None
    cutoff = pd.Timestamp(scores["cutoff"].iloc[0])
    truth = truth[pd.to_datetime(truth["cutoff"]) == cutoff]
    if truth.empty:
        log.warning("report: the uplift truth has no rows for cutoff %s: no policy evaluation", cutoff.date())
        return None
    predicted = scores.set_index("customer_id")[cols].rename(columns=lambda c: c[len(UPLIFT_PREFIX) :])
    predicted = predicted.astype(float).dropna(how="all")
    costs = {a: float(v.get("cost", 0.0)) for a, v in (cfg.get("actions") or {}).items()}
    table = policy_table(scores, predicted, truth, calls, cfg.get("playbook") or {}, costs)
    rho = uplift_spearman(predicted, truth)
    mean_true = truth.set_index("customer_id").reindex(predicted.index)
    model = uplift_model(state)
    vs = pd.DataFrame(
        {
            "action": list(rho),
            "customers": len(predicted),
            "spearman": list(rho.values()),
            "mean_predicted": [float(predicted[a].mean()) for a in rho],
            "mean_true": [float(mean_true[f"uplift_{a}"].mean()) for a in rho],
            "supported": [bool(model is not None and model.supported.get(a, False)) for a in rho],
        }
    )
    return table, vs


def _policy_summary(table: pd.DataFrame | None) -> dict[str, float]:
    if table is None or table.empty:
        return {}
    row = table.set_index("policy")
    ours, ranked = row.iloc[0], row.loc["ranked by predicted uplift"]
    out = {
        "policy_budget_customers": float(ranked["customers"]),
        "policy_uplift_vs_risk": float(ranked["vs_churn_risk"]),
        "policy_uplift_share_of_oracle": float(ranked["share_of_oracle"]),
        "policy_decisions_vs_risk": float(ours["vs_churn_risk"]),
        "policy_decisions_share_of_oracle": float(ours["share_of_oracle"]),
    }
    if ours["true_churners_prevented"] > 0:
        out["saved_churners_predicted_over_true"] = float(
            ours["predicted_churners_prevented"] / ours["true_churners_prevented"]
        )
    return out


def _read(path: str | None) -> pd.DataFrame | None:
    """A file written by churnsense itself (scores, ground truth), read with its types."""
    if not path:
        return None
    return read_table(str(path), typed=True, text_columns=["customer_id"])


def _read_inputs(cfg, release_dir: Path) -> dict[str, pd.DataFrame | None]:
    """The raw customers / events / feedback files mapped to canonical columns with the release's data contract
    (invalid rows are left out here and counted in a warning; `serve.py task=churn` lists them as rejects)."""
    config = release_dir / "config.yaml"
    spec = DataSpec.from_config(read_yaml(config)["data"]) if config.is_file() else None
    out: dict[str, pd.DataFrame | None] = {}
    for kind in ("customers", "events", "feedback"):
        path = cfg.input.get(kind)
        table = spec.table(kind) if spec is not None else None
        if not path or table is None:
            out[kind] = _read(path) if path and spec is None else None
            continue
        raw = read_table(str(path), read_options=table.read_options)
        valid, rejects = split_valid_rows(raw, table, kind, str(path))
        if len(rejects):
            log.warning("report: %d invalid %s rows left out", len(rejects), kind)
        out[kind] = valid
    out["ground_truth"] = _read(cfg.input.get("ground_truth"))
    out["uplift_truth"] = _read(cfg.input.get("uplift_truth"))
    return out


def serve_report(cfg) -> dict[str, Path]:
    """Composition root of `serve.py task=report` (see conf/serve/task/report.yaml)."""
    state = load_state(cfg.model) if Path(str(cfg.model)).exists() else InsightsState()
    icfg = (load_config(cfg.model) if Path(str(cfg.model)).exists() else None) or {}
    scores = _read(cfg.input.scores)
    for col in ("cutoff",):
        if col in scores:
            scores[col] = pd.to_datetime(scores[col])
    tables = _read_inputs(cfg, Path(str(cfg.model)))
    files = write_report(scores, cfg.output_dir, state, icfg, tables, int(cfg.horizon_days), cfg.page, cfg.crm_export)
    run = TrackedRun.start(
        serving_logger(cfg.mlflow, cfg.tracking_uri),
        cfg.mlflow.run_name or run_name("report", Path(str(cfg.input.scores)).stem),
        {"task": "report", "release": str(cfg.model)},
    )
    if run is not None:
        run.log_artifacts({"report": Path(str(cfg.output_dir))})
        summary = json.loads(files["summary"].read_text())
        run.log_metrics(
            {
                f"report/{k}": float(v)
                for k, v in summary.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            }
        )
        run.end()
    print(
        f"report: {len(scores):,} customers -> {cfg.output_dir} ({', '.join(sorted(p.name for p in files.values()))})"
    )
    return files
