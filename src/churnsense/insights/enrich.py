"""One function adding the insight columns to a scored frame (used by `serve_churn` per partition).

Added columns (documented in README): at_risk, reason_codes, top_reasons (primary language), top_reasons_local
(the customer's language), reason_1..3(_text), segment, segment_name, cltv, value_at_risk, recommended_action,
action_reason, talking_points, action_cost, expected_uplift, expected_saved_value, why, queue, team, script_language,
call_script, the feedback tonality feedback_last_sentiment, feedback_last_topic, feedback_negative_90d, and with an
uplift model expected_uplift_<action> per action (its predicted churn reduction; at-risk customers only).

Every output row is a function of that customer's rows and the release only (never of the other customers in the
batch), so partitioning, batch size and row order do not change it: the at-risk threshold, monthly retention, the
event types of the facts and the attribution background are fixed at training time (`InsightsState`), and each
customer's attribution draws are seeded by its id. Releases without them fall back to per-batch values, with a
warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from churnsense.data.framing import make_scoring_snapshot
from churnsense.data.loading import Tables
from churnsense.insights import playbook as pb
from churnsense.insights import value as val
from churnsense.insights.amortised import AMORTISED, AmortisedExplainer
from churnsense.insights.attribution import (
    INPUT_KEYS,
    BatchLayout,
    GroupIndex,
    attribute_groups,
    build_group_index,
    groups_from_config,
    logit_from_probability,
)
from churnsense.insights.decisions import DECISION_COLUMNS, recommend_actions
from churnsense.insights.reason_texts import typical_facts
from churnsense.insights.reasons import customer_facts, reasons_frame
from churnsense.insights.risk_direction import cached_directions, static_group_eligibility
from churnsense.insights.scripts import call_scripts
from churnsense.insights.segments import assign_segments
from churnsense.insights.state import InsightsState, setting
from churnsense.insights.uplift import UpliftModel
from churnsense.insights.uplift_modifiers import effect_modifiers

INSIGHT_COLUMNS = [
    "at_risk",
    "reason_codes",
    "top_reasons",
    "top_reasons_local",
    "reason_1",
    "reason_1_text",
    "reason_2",
    "reason_2_text",
    "reason_3",
    "reason_3_text",
    "segment",
    "segment_name",
    "cltv",
    "value_at_risk",
    *DECISION_COLUMNS,
    "queue",
    "team",
    "script_language",
    "call_script",
    "feedback_last_sentiment",
    "feedback_last_topic",
    "feedback_negative_90d",
]
INSIGHT_DTYPES = {
    "at_risk": "bool",
    "segment": "int64",
    "cltv": "float64",
    "value_at_risk": "float64",
    "action_cost": "float64",
    "expected_uplift": "float64",
    "expected_saved_value": "float64",
    "feedback_negative_90d": "float64",
}
REASON_COLUMNS = {
    "reason_codes",
    "top_reasons",
    "top_reasons_local",
    *(f"reason_{k}{t}" for k in (1, 2, 3) for t in ("", "_text")),
}
UPLIFT_PREFIX = "expected_uplift_"  # + action: predicted churn reduction of that action (at-risk customers)
TONALITY = {
    "feedback_last_sentiment": "feedback_last_sentiment",
    "feedback_last_topic": "feedback_last_topic",
    "feedback_negative_90d": "neg_feedback_n_90d",
}  # output column -> customer fact
log = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def _batch_fallback(what: str) -> None:
    """Warn (once per process and `what`) that a per-batch value stands in for a missing fitted one."""
    _warn_once(
        f"insights: the release has no fitted {what} (no insights state, or one from an older version): "
        "using this batch's, so insight columns depend on how customers are batched; retrain the release "
        "to fix"
    )


def risk_threshold(p: np.ndarray, cfg: Mapping[str, Any]) -> float:
    """At risk: p >= `at_risk`, or within the top `at_risk_share` of `p` by risk (whichever admits more).
    Applied once at training time to the validation predictions (`InsightsState.at_risk_threshold`)."""
    threshold = float(setting(cfg, "at_risk"))
    share = setting(cfg, "at_risk_share")
    if share and len(p):
        threshold = min(threshold, float(np.quantile(p, 1.0 - float(share))))
    return threshold


def at_risk_threshold(state: InsightsState, p: np.ndarray, cfg: Mapping[str, Any]) -> float:
    """The release's fitted threshold; without one, `risk_threshold` of this batch's `p` (with a warning)."""
    if state.at_risk_threshold is not None:
        return float(state.at_risk_threshold)
    _batch_fallback("at-risk threshold")
    return risk_threshold(p, cfg)


def reason_groups(layout: BatchLayout, rcfg: Mapping[str, Any]) -> GroupIndex:
    """The reason groups of `insights.reasons` (`groups`, `auto_groups`) over the batch axes of `layout`."""
    return build_group_index(
        layout,
        groups_from_config(setting(rcfg, "groups", "insights.reasons") or {}),
        auto=bool(setting(rcfg, "auto_groups", "insights.reasons")),
    )


def attribute_rows(
    batch: dict[str, np.ndarray],
    ids: np.ndarray,
    rows: np.ndarray,
    prob_fn,
    layout: BatchLayout,
    rcfg: Mapping[str, Any],
    seed: int = 0,
    background: Mapping[str, np.ndarray] | None = None,
    explainer: AmortisedExplainer | None = None,
) -> tuple[np.ndarray, GroupIndex, dict[str, np.ndarray]]:
    """Reason-group attributions [len(rows), groups] (logit units) of the batch rows `rows`, with the group index and
    the reference population (`background`, the release's sample of training customers; None: the whole batch, for
    older releases). `reasons.method: amortised` predicts them with the release's `explainer`; a release without
    one falls back (with a warning) to the sampled estimator it would have learned from (`amortised.teacher`).
    Sampled estimators run `reasons.max_rows` rows at a time; each customer's reference draws and permutations are
    seeded by `seed` and its id."""
    index = reason_groups(layout, rcfg)
    ref = dict(background) if background else {k: v for k, v in batch.items() if k in INPUT_KEYS}
    if str(setting(rcfg, "method", "insights.reasons")) == AMORTISED:
        if explainer is not None:
            explainer.check(index)
            return explainer.attribute(batch, rows), index, ref
        _warn_once(
            "insights: the release has no amortised reason explainer (trained before it existed, or with another "
            "reasons.method): reasons use the sampled estimator it learns from (slower); retrain to get it"
        )
        rcfg = {**rcfg, **setting(setting(rcfg, "amortised", "insights.reasons"), "teacher", "insights.reasons")}
    step = max(1, int(setting(rcfg, "max_rows", "insights.reasons")))
    parts = [np.zeros((0, len(index.names)))]
    for lo in range(0, len(rows), step):
        chunk = rows[lo : lo + step]
        sub = {k: v[chunk] for k, v in batch.items() if k in ref}
        parts.append(
            attribute_groups(
                logit_from_probability(prob_fn),
                sub,
                index,
                ref,
                method=str(setting(rcfg, "method", "insights.reasons")),
                n_samples=int(setting(rcfg, "n_samples", "insights.reasons")),
                n_background=int(setting(rcfg, "n_background", "insights.reasons")),
                seed=seed,
                keys=ids[chunk],
            )
        )
    return np.concatenate(parts), index, ref


def explain(
    batch: dict[str, np.ndarray],
    ids: np.ndarray,
    rows: np.ndarray,
    prob_fn,
    layout: BatchLayout,
    facts: pd.DataFrame,
    rcfg: Mapping[str, Any],
    seed: int = 0,
    background: Mapping[str, np.ndarray] | None = None,
    language_of: Mapping | None = None,
    typical: Mapping[str, float] | None = None,
    texts_dir: str | None = None,
    cat_cardinalities: Sequence[int] = (),
    explainer: AmortisedExplainer | None = None,
) -> pd.DataFrame:
    """Reasons for the batch rows `rows` (attributions by `attribute_rows`). `language_of`: customer id -> the
    language of `top_reasons_local`; `typical`: `reason_texts.typical_facts` of the release. Static attributes are
    reasons only on their risk-raising side (`risk_direction`; `cat_cardinalities` of the pipeline); `explainer`:
    the release's amortised explainer (`attribute_rows`)."""
    attr, index, ref = attribute_rows(batch, ids, rows, prob_fn, layout, rcfg, seed, background, explainer)
    directions = cached_directions(prob_fn, ref, cat_cardinalities, fixed=bool(background))
    own = {k: v[rows] for k, v in batch.items() if k in ("cat", "num")}
    eligible = static_group_eligibility(
        own,
        index.cat,
        index.num,
        index.event_type,
        len(index.names),
        directions,
        float(setting(rcfg, "min_deviation", "insights.reasons")),
        layout.num_names,
    )
    return reasons_frame(
        list(ids[rows]),
        attr,
        index.names,
        facts,
        int(setting(rcfg, "top_k", "insights.reasons")),
        float(setting(rcfg, "min_logit", "insights.reasons")),
        setting(rcfg, "not_reasons", "insights.reasons") or (),
        float(setting(rcfg, "min_share", "insights.reasons")),
        language_of,
        typical,
        str(setting(rcfg, "language", "insights.reasons")),
        texts_dir,
        eligible,
    )


def service_languages(facts: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.Series:
    """Per customer (facts' index): the language of their queue and call script (`routing` rule)."""
    rcfg = setting(cfg, "routing") or {}
    return pb.service_language(
        facts,
        setting(rcfg, "language_columns", "insights.routing"),
        setting(rcfg, "languages", "insights.routing"),
        str(setting(rcfg, "default_language", "insights.routing")),
    )


def add_insights(
    scored: pd.DataFrame,
    facts: pd.DataFrame,
    reasons: pd.DataFrame | None,
    state: InsightsState,
    cfg: Mapping[str, Any],
    threshold: float | None = None,
    typical: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Pure part: scored (customer_id, churn_probability) + facts + reasons + fitted state -> enriched frame.
    `threshold`: the at-risk probability (default: `at_risk_threshold(state, ...)`); `typical`: constant facts
    for the texts (`reason_texts.typical_facts`)."""
    out = scored.copy()
    ids = out["customer_id"]
    p = out["churn_probability"].astype(float)
    threshold = threshold if threshold is not None else at_risk_threshold(state, p.to_numpy(), cfg)
    out["at_risk"] = p >= threshold
    rcols = [c for c in INSIGHT_COLUMNS if c.startswith(("reason", "top_")) and c in REASON_COLUMNS]
    r = reasons.set_index("customer_id")[rcols] if reasons is not None and len(reasons) else pd.DataFrame(columns=rcols)
    for c in rcols:
        out[c] = ids.map(r[c]).fillna("").to_numpy() if len(r) else ""
    f = facts.reindex(ids.to_numpy())
    if state.segments:
        seg = assign_segments(f, state.segments)
        out["segment"] = seg.to_numpy()
        out["segment_name"] = [state.segments["names"][s] for s in seg]
    else:
        out["segment"], out["segment_name"] = -1, ""
    vcfg = setting(cfg, "value") or {}
    revenue = val.monthly_revenue(
        f, setting(vcfg, "revenue_column", "insights.value"), setting(vcfg, "revenue_events", "insights.value") or ()
    )
    retention = setting(vcfg, "monthly_retention", "insights.value") or state.monthly_retention
    if not retention:
        _batch_fallback("monthly retention")
        retention = val.monthly_retention(p, 30)
    out["cltv"] = val.cltv(
        revenue,
        float(retention),
        int(setting(vcfg, "horizon_months", "insights.value")),
        float(setting(vcfg, "discount_rate", "insights.value")),
    ).to_numpy()
    out["value_at_risk"] = val.value_at_risk(out["cltv"], p).to_numpy()
    model = uplift_model(state)
    uplift, average = predicted_uplift(model, out, f, reasons, cfg) if model is not None else (None, None)
    dcfg = setting(cfg, "decisions") or {}
    rec = recommend_actions(
        out,
        setting(cfg, "playbook") or {},
        setting(cfg, "actions") or {},
        uplift,
        model.supported if model is not None else None,
        out["at_risk"],
        float(setting(dcfg, "min_uplift", "insights.decisions")),
        average if setting(dcfg, "average_effect", "insights.decisions") else None,
        model.chooses if model is not None else True,
    )
    out = pd.concat([out, rec], axis=1)
    if uplift is not None:
        out = pd.concat([out, uplift.add_prefix(UPLIFT_PREFIX)], axis=1)
    rcfg = setting(cfg, "routing") or {}
    lang = service_languages(f, cfg).set_axis(out.index)
    out["queue"] = pb.route(
        lang,
        p,
        out["recommended_action"],
        setting(rcfg, "languages", "insights.routing"),
        setting(rcfg, "tiers", "insights.routing"),
        str(setting(rcfg, "default_language", "insights.routing")),
    )
    teams = pd.DataFrame(state.teams) if state.teams else None
    team = pb.best_team(
        out["segment"], out["recommended_action"], teams, str(setting(rcfg, "default_team", "insights.routing"))
    )
    out["team"] = team.where(out["recommended_action"].ne(pb.NONE), "")
    scfg = {
        "fallback_language": str(setting(rcfg, "default_language", "insights.routing")),
        **(setting(cfg, "scripts") or {}),
    }
    out = pd.concat([out, call_scripts(out, facts, lang, scfg, typical)], axis=1)
    for col, fact in TONALITY.items():  # typed the same whatever the batch holds
        values = f[fact].to_numpy() if fact in f else np.full(len(out), np.nan)
        out[col] = pd.array(values, dtype=INSIGHT_DTYPES.get(col, "str"))
    if "neg_feedback_n_90d" in f:  # a feedback table was given: no message in 90 days = 0 negative
        out["feedback_negative_90d"] = out["feedback_negative_90d"].fillna(0.0)
    return out


def predicted_uplift(
    model: UpliftModel, out: pd.DataFrame, facts: pd.DataFrame, reasons: pd.DataFrame | None, cfg: Mapping[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predicted churn reduction per action, average effect per action supported on average), for the at-risk
    rows of `out` (NaN for the others: they are not acted on, and the model's reasons are computed for at-risk
    customers only), from their facts (`facts`, aligned with `out`) and the model's risk and reasons
    (`uplift_modifiers`)."""
    days = int(setting(setting(cfg, "uplift"), "outcome_days", "insights.uplift"))
    modifiers = effect_modifiers(out, reasons, days)
    x = facts.assign(**{c: modifiers[c].to_numpy() for c in modifiers.columns})
    risky = out["at_risk"].to_numpy(dtype=bool)
    personal = pd.DataFrame(np.nan, index=out.index, columns=model.actions)
    average = pd.DataFrame(np.nan, index=out.index, columns=list(model.average))
    if risky.any():
        personal.loc[risky] = model.predict_uplift(x[risky]).to_numpy()
        average.loc[risky] = model.predict_average(x[risky]).to_numpy()
    return personal, average


def uplift_columns(state: InsightsState) -> list[str]:
    """The per-action predicted uplift columns a release adds (none without an uplift model)."""
    model = uplift_model(state)
    return [UPLIFT_PREFIX + a for a in model.actions] if model is not None else []


def amortised_explainer(state: InsightsState) -> AmortisedExplainer | None:
    """The release's amortised reason explainer (built once per loaded release); None when it has none."""
    if not state.explainer:
        return None
    return state.build_once("explainer", lambda: AmortisedExplainer.from_dict(state.explainer))


def uplift_model(state: InsightsState) -> UpliftModel | None:
    """The release's uplift model; None when it has none (no offer log: uplift off) or one from an older layout
    (with a warning: retrain to get evidence-backed actions)."""
    if not state.uplift:
        return None
    if state.uplift.get("kind") != "uplift_model":
        _warn_once("insights: the release's uplift model predates held-out evidence: uplift is off; retrain")
        return None
    return state.build_once("uplift_model", lambda: UpliftModel.from_dict(state.uplift))


def _customers_from_history(scored: pd.DataFrame, events: pd.DataFrame | None, cutoff) -> pd.DataFrame:
    """Events-only data: the scored customers with their first event before the cutoff as signup (for tenure)."""
    cust = pd.DataFrame({"customer_id": scored["customer_id"].unique()})
    if events is None or events.empty:
        return cust
    before = events[events["ts"] < pd.Timestamp(cutoff)]
    return cust.assign(signup_date=cust["customer_id"].map(before.groupby("customer_id")["ts"].min()))


def enrich(
    scored: pd.DataFrame,
    customers: pd.DataFrame | None,
    events: pd.DataFrame | None,
    feedback: pd.DataFrame | None,
    release,
    cutoff,
    cfg: Mapping[str, Any] | None = None,
    state: InsightsState | None = None,
    snapshot=None,
    batch: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Serving hook: the scored partition + its validated input frames + the loaded `ChurnRelease` -> enriched.

    `cfg`: the insights config (default: the release's, `release.insights_config`); `state`: the fitted insights
    (default: `release.insights_state`, empty when the release has none: then no segments / uplift / teams).
    `snapshot` / `batch`: the scoring snapshot and its model inputs when the caller has them (saves recomputing).
    A release trained without an insights config gets the insight columns empty (with a warning)."""
    cfg = cfg if cfg is not None else release.insights_config
    state = state if state is not None else release.insights_state
    if cfg is None:
        _warn_once(
            "insights: the release has no insights config (trained with insights disabled): insight "
            "columns are left empty"
        )
    if len(scored) == 0 or cfg is None:
        empty = {c: pd.Series(dtype=INSIGHT_DTYPES.get(c, object)) for c in INSIGHT_COLUMNS}
        if cfg is not None:
            empty.update({c: pd.Series(dtype="float64") for c in uplift_columns(state)})
        return scored.assign(**empty)
    cutoff = pd.Timestamp(scored["cutoff"].iloc[0]) if "cutoff" in scored else pd.Timestamp(cutoff)
    cust = customers if customers is not None else _customers_from_history(scored, events, cutoff)
    if state.event_types is None:
        _batch_fallback("event types for customer facts")
    facts = customer_facts(cust, events, feedback, cutoff, setting(cfg, "reasons")["languages"], state.event_types)
    snap = (
        snapshot
        if snapshot is not None
        else make_scoring_snapshot(Tables(customers, events, feedback), release.spec, cutoff)
    )
    batch = batch if batch is not None else release.pipeline.transform(snap)
    ids = snap.static["customer_id"].to_numpy()
    p = pd.Series(ids).map(scored.set_index("customer_id")["churn_probability"]).to_numpy(dtype=float)
    rcfg = setting(cfg, "reasons") or {}
    threshold = at_risk_threshold(state, p, cfg)
    rows = np.flatnonzero(p >= threshold)  # every at-risk customer: a cap per batch would depend on the batch
    typical = typical_facts(
        getattr(release.pipeline, "num_stats", {}) or {}, float(setting(rcfg, "min_deviation", "insights.reasons"))
    )
    reasons = None
    if len(rows) and (setting(rcfg, "groups", "insights.reasons") or setting(rcfg, "auto_groups", "insights.reasons")):
        if not state.background:
            _batch_fallback("attribution background")
        prob_fn = lambda b: release.run(b)["churn_probability"]  # noqa: E731
        reasons = explain(
            batch,
            ids,
            rows,
            prob_fn,
            release.pipeline.batch_layout(),
            facts,
            rcfg,
            int(setting(cfg, "seed")),
            state.background or None,
            service_languages(facts, cfg).to_dict(),
            typical,
            setting(cfg, "scripts")["texts_dir"],
            list(release.pipeline.cat_cardinalities),
            amortised_explainer(state),
        )
    return add_insights(scored, facts, reasons, state, cfg, threshold, typical)
