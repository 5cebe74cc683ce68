"""Training-time fit of the insights saved with a release: segments, uplift learner, team table, base retention,
at-risk threshold, attribution background.

Hook for `train_churn` (`fit_release_insights`): after the model is trained and the release directory written,
    state = fit_insights(tables.customers, tables.events, tables.feedback, offers, cutoff, p_churn, cfg_insights,
                         horizon_days=spec.framing.horizon_days, model_inputs=arrays["train"])
    state.save(release_dir)
`offers` = the offer log (or None: no uplift / teams), `p_churn` = churn probabilities of the customers at `cutoff`
(customer_id-indexed Series, e.g. the validation predictions), `model_inputs` = the training split's model inputs
(a seeded sample of them is the attribution background). `customers` None (events-only data): no segments / uplift.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnsense.insights.attribution import INPUT_KEYS
from churnsense.insights.enrich import risk_threshold
from churnsense.insights.playbook import team_scores
from churnsense.insights.reasons import customer_facts
from churnsense.insights.segments import _select, assign_segments, fit_segments
from churnsense.insights.state import InsightsState
from churnsense.insights.uplift import TLearner, evaluate_uplift, offer_arms
from churnsense.insights.value import monthly_retention

log = logging.getLogger(__name__)


def offer_facts(customers: pd.DataFrame, events: pd.DataFrame | None, feedback: pd.DataFrame | None,
                offers: pd.DataFrame, languages: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Facts of each offered customer as of its (last) offer date; index customer_id."""
    last = offers.sort_values("ts").groupby("customer_id")["ts"].last()
    cust = customers[customers["customer_id"].isin(last.index)]
    ev = events[events["customer_id"].isin(last.index)] if events is not None else None
    fb = feedback[feedback["customer_id"].isin(last.index)] if feedback is not None else None
    return customer_facts(cust, ev, fb, last, languages)


def fit_uplift(facts: pd.DataFrame, offers: pd.DataFrame, ucfg: Mapping[str, Any],
               seed: int = 0) -> tuple[TLearner, pd.DataFrame]:
    """T-learner on a customer split of the offer log; Qini / AUUC per action on the held-out customers."""
    offers = offers.drop_duplicates("customer_id", keep="last").reset_index(drop=True)
    arm, contrasts = offer_arms(offers, str(ucfg.get("mode", "accepted_vs_declined")), str(ucfg.get("control", "none")))
    x = facts.reindex(offers["customer_id"].to_numpy()).reset_index(drop=True)
    features = _select(x, list(ucfg.get("features") or []))
    y = offers["churned_within_90d"].astype(float)
    test = np.random.default_rng(seed).random(len(offers)) < float(ucfg.get("test_fraction", 0.3))
    learner = TLearner(features, int(ucfg.get("num_rounds", 150)))
    learner.fit(x[~test], arm[~test], y[~test], contrasts)
    return learner, evaluate_uplift(learner, x[test], arm[test], y[test])


def sample_background(model_inputs: Mapping[str, np.ndarray], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded sample of `n` rows (all if fewer) of the model inputs: the attribution reference population."""
    keys = [k for k in INPUT_KEYS if k in model_inputs]
    total = len(model_inputs[keys[0]]) if keys else 0
    if not total:
        return {}
    rows = np.sort(np.random.default_rng(seed).choice(total, size=min(int(n), total), replace=False))
    return {k: np.ascontiguousarray(np.asarray(model_inputs[k])[rows]) for k in keys}


def fit_insights(customers: pd.DataFrame | None, events: pd.DataFrame | None, feedback: pd.DataFrame | None,
                 offers: pd.DataFrame | None, cutoff: pd.Timestamp, p_churn: pd.Series, cfg: Mapping[str, Any],
                 horizon_days: float = 30.0,
                 model_inputs: Mapping[str, np.ndarray] | None = None) -> InsightsState:
    """Fit everything in `InsightsState` (see module doc)."""
    langs = (cfg.get("reasons") or {}).get("languages")
    seed = int(cfg.get("seed", 0))
    n_background = int((cfg.get("reasons") or {}).get("background_rows", 64))
    state = InsightsState(monthly_retention=monthly_retention(p_churn, horizon_days),
                          at_risk_threshold=risk_threshold(p_churn.to_numpy(dtype=float), cfg),
                          event_types=sorted(events["event_type"].astype(str).unique()) if events is not None else [],
                          background=sample_background(model_inputs or {}, n_background, seed))
    state.metrics["at_risk"] = {"threshold": state.at_risk_threshold, "background_rows": n_background}
    if customers is None:
        return state
    active = customers[customers["customer_id"].isin(p_churn.index)]
    facts = customer_facts(active, events, feedback, pd.Timestamp(cutoff), langs, state.event_types)
    scfg = cfg.get("segments") or {}
    try:
        seg = fit_segments(facts, list(scfg.get("features") or []), list(scfg.get("k_range") or (2, 8)),
                           scfg.get("labels"), int(scfg.get("sample", 4000)), seed)
    except ValueError as err:  # e.g. no numeric facts at all: no segments, the rest still works
        log.warning("insights: no segments (%s)", err)
        seg = {}
    else:
        state.segments = seg
        state.metrics["segments"] = {"k": seg["k"], "criterion": seg["criterion"], "silhouette": seg["silhouette"]}
    if offers is not None and len(offers):
        of = offer_facts(customers, events, feedback, offers, langs)
        try:
            learner, qini = fit_uplift(of, offers, cfg.get("uplift") or {}, seed)
        except ValueError as err:  # too few offers in some arm: no uplift model, actions fall back to priors
            log.warning("insights: uplift not fitted (%s)", err)
        else:
            state.uplift = learner.to_dict()
            state.metrics["uplift"] = qini.to_dict("records")
        segment_of = assign_segments(of, seg) if seg else None
        rcfg = cfg.get("routing") or {}
        state.teams = team_scores(offers, segment_of, float(rcfg.get("prior_strength", 20))).to_dict("records")
    return state
