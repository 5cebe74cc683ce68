"""Training-time fit of the insights saved with a release: segments, uplift learner, team table, base retention,
at-risk threshold, attribution background.

Hook for `train_churn` (`fit_release_insights`): after the model is trained and the release directory written,
    state = fit_insights(tables.customers, tables.events, tables.feedback, offers, cutoff, p_churn, cfg_insights,
                         horizon_days=spec.framing.horizon_days, model_inputs=arrays["train"])
    state.save(release_dir)
`offers` = the contract's offer log (or None: uplift off, no teams; only offers whose outcome window ended
before `cutoff` are used), `p_churn` = churn probabilities of the customers at `cutoff`
(customer_id-indexed Series, e.g. the validation predictions), `model_inputs` = the training split's model inputs
(a seeded sample of them is the attribution background; with `prob_fn` and `layout`, the riskiest of them train
the amortised reason explainer when `reasons.method` is `amortised`), `offer_context` = the churn model's risk and
reasons of the logged customers on their offer dates (`churn.offer_context`; None: the uplift learners see facts
only).
`customers` None (events-only data): no segments / uplift.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnsense.insights.amortised import AMORTISED, fit_amortised_explainer
from churnsense.insights.attribution import INPUT_KEYS, BatchLayout
from churnsense.insights.enrich import reason_groups, risk_threshold
from churnsense.insights.playbook import team_scores
from churnsense.insights.reasons import customer_facts
from churnsense.insights.segments import assign_segments, fit_segments
from churnsense.insights.state import InsightsState, setting
from churnsense.insights.uplift_fit import fit_uplift, observed_outcomes
from churnsense.insights.value import monthly_retention

log = logging.getLogger(__name__)


def offer_facts(
    customers: pd.DataFrame,
    events: pd.DataFrame | None,
    feedback: pd.DataFrame | None,
    offers: pd.DataFrame,
    languages: Mapping[str, str] | None = None,
    event_types: list[str] | None = None,
) -> pd.DataFrame:
    """Facts of each logged customer as of its (last) offer date; index customer_id."""
    last = offers.sort_values("ts").groupby("customer_id")["ts"].last()
    cust = customers[customers["customer_id"].isin(last.index)]
    ev = events[events["customer_id"].isin(last.index)] if events is not None else None
    fb = feedback[feedback["customer_id"].isin(last.index)] if feedback is not None else None
    return customer_facts(cust, ev, fb, last, languages, event_types)


def fit_offer_uplift(
    customers: pd.DataFrame,
    events: pd.DataFrame | None,
    feedback: pd.DataFrame | None,
    offers: pd.DataFrame,
    cutoff: pd.Timestamp,
    cfg: Mapping[str, Any],
    state: InsightsState,
    seed: int = 0,
    offer_context: Callable[[pd.Series, InsightsState], pd.DataFrame] | None = None,
) -> pd.DataFrame | None:
    """Fit the uplift model on the offers whose outcome was known at `cutoff` into `state` (uplift, metrics);
    returns those offers (None when there are none). No model (too few rows, or no log): a one-line notice.
    `offer_context`: (customer id -> offer date, the state so far: attribution background and explainer) -> the
    churn model's risk and reasons of those customers on those dates (`uplift_modifiers` columns), joined to their
    facts (None: facts only)."""
    ucfg = setting(cfg, "uplift")
    known = observed_outcomes(offers, cutoff, int(ucfg["outcome_days"]), customers)
    if known.empty:
        log.warning(
            "insights: no offer outcome known before %s: uplift is off (no action claims a saving)", cutoff.date()
        )
        return None
    facts = offer_facts(customers, events, feedback, known, setting(cfg, "reasons")["languages"], state.event_types)
    if offer_context is not None:
        facts = facts.join(offer_context(known.set_index("customer_id")["ts"], state))
    t0 = time.process_time()
    try:
        model, rows, design = fit_uplift(
            facts, known, ucfg, seed, setting(cfg, "playbook"), setting(cfg, "reasons"), state.at_risk_threshold
        )
    except ValueError as err:
        log.warning("insights: uplift is off (%s); no action claims a saving", err)
        return known
    log.info("uplift: learners fitted on %d offers (%.0f CPU s)", len(known), time.process_time() - t0)
    state.uplift = model.to_dict()
    state.metrics["uplift"] = rows
    state.metrics["uplift_log"] = {
        "offers": int(len(known)),
        "design": design,
        "control": int((~known["treated"].fillna(True).astype(bool)).sum()) if "treated" in known else 0,
        "first": str(known["ts"].min().date()),
        "last": str(known["ts"].max().date()),
    }
    return known


def sample_background(model_inputs: Mapping[str, np.ndarray], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded sample of `n` rows (all if fewer) of the model inputs: the attribution reference population."""
    keys = [k for k in INPUT_KEYS if k in model_inputs]
    total = len(model_inputs[keys[0]]) if keys else 0
    if not total:
        return {}
    rows = np.sort(np.random.default_rng(seed).choice(total, size=min(int(n), total), replace=False))
    return {k: np.ascontiguousarray(np.asarray(model_inputs[k])[rows]) for k in keys}


def fit_explainer(
    state: InsightsState,
    model_inputs: Mapping[str, np.ndarray],
    prob_fn: Callable[[Mapping[str, np.ndarray]], np.ndarray],
    layout: BatchLayout,
    rcfg: Mapping[str, Any],
    seed: int = 0,
) -> None:
    """The amortised reason explainer into `state` when `reasons.method` is `amortised` (on the training rows'
    model inputs, against the state's background); without training rows or background: a notice, and serving
    falls back to the sampled estimator."""
    if str(setting(rcfg, "method", "insights.reasons")) != AMORTISED:
        return
    keys = [k for k in INPUT_KEYS if k in model_inputs]
    if not keys or not state.background or not len(model_inputs[keys[0]]):
        log.warning("insights: no training rows to fit the amortised reason explainer on: reasons will be sampled")
        return
    index = reason_groups(layout, rcfg)
    batch = {k: np.asarray(model_inputs[k]) for k in keys}
    try:
        explainer = fit_amortised_explainer(
            batch, prob_fn, index, state.background, setting(rcfg, "amortised", "insights.reasons"), seed
        )
    except ValueError as err:  # e.g. too few training rows
        log.warning("insights: no amortised reason explainer (%s): reasons will be sampled", err)
        return
    state.explainer = explainer.to_dict()
    state.metrics["reasons_explainer"] = explainer.metrics


def fit_insights(
    customers: pd.DataFrame | None,
    events: pd.DataFrame | None,
    feedback: pd.DataFrame | None,
    offers: pd.DataFrame | None,
    cutoff: pd.Timestamp,
    p_churn: pd.Series,
    cfg: Mapping[str, Any],
    horizon_days: float = 30.0,
    model_inputs: Mapping[str, np.ndarray] | None = None,
    offer_context: Callable[[pd.Series, InsightsState], pd.DataFrame] | None = None,
    prob_fn: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None,
    layout: BatchLayout | None = None,
) -> InsightsState:
    """Fit everything in `InsightsState` (see module doc; `offer_context`: see `fit_offer_uplift`; `prob_fn`: the
    exported model's churn probability of a batch of model inputs, `layout`: the pipeline's `batch_layout()`)."""
    langs = setting(cfg, "reasons")["languages"]
    seed = int(setting(cfg, "seed"))
    n_background = int(setting(setting(cfg, "reasons"), "background_rows", "insights.reasons"))
    state = InsightsState(
        monthly_retention=monthly_retention(p_churn, horizon_days),
        at_risk_threshold=risk_threshold(p_churn.to_numpy(dtype=float), cfg),
        event_types=sorted(events["event_type"].astype(str).unique()) if events is not None else [],
        background=sample_background(model_inputs or {}, n_background, seed),
    )
    state.metrics["at_risk"] = {"threshold": state.at_risk_threshold, "background_rows": n_background}
    if prob_fn is not None and layout is not None:
        fit_explainer(state, model_inputs or {}, prob_fn, layout, setting(cfg, "reasons"), seed)
    if customers is None:
        return state
    active = customers[customers["customer_id"].isin(p_churn.index)]
    facts = customer_facts(active, events, feedback, pd.Timestamp(cutoff), langs, state.event_types)
    scfg = setting(cfg, "segments")
    try:
        seg = fit_segments(
            facts,
            list(setting(scfg, "features", "insights.segments") or []),
            list(setting(scfg, "k_range", "insights.segments")),
            setting(scfg, "labels", "insights.segments"),
            int(setting(scfg, "sample", "insights.segments")),
            seed,
        )
    except ValueError as err:  # e.g. no numeric facts at all: no segments, the rest still works
        log.warning("insights: no segments (%s)", err)
        seg = {}
    else:
        state.segments = seg
        state.metrics["segments"] = {"k": seg["k"], "criterion": seg["criterion"], "silhouette": seg["silhouette"]}
    if offers is None or not len(offers):
        log.warning("insights: no offer log: uplift is off; actions follow the playbook and claim no saving")
        return state
    known = fit_offer_uplift(customers, events, feedback, offers, pd.Timestamp(cutoff), cfg, state, seed, offer_context)
    treated = (
        known[
            known["action"].notna() & known.get("treated", pd.Series(True, index=known.index)).fillna(True).astype(bool)
        ]
        if known is not None
        else None
    )
    if treated is not None and len(treated) and "team" in treated:
        of = offer_facts(customers, events, feedback, treated, langs, state.event_types)
        segment_of = assign_segments(of, seg) if seg else None
        rcfg = setting(cfg, "routing")
        state.teams = team_scores(
            treated, segment_of, float(setting(rcfg, "prior_strength", "insights.routing"))
        ).to_dict("records")
    return state
