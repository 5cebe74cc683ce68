"""Fit the uplift model on the offer log with evidence: per action, learners compared by cross-fitted Qini, the
selection judged on held-out customers by nested cross-fitting (Qini / AUUC, bootstrap interval, random line),
then the best learner refitted on all rows.

Designs (`design_of`): `randomised` (a control arm held out at random: the propensity is the design's share),
`observational` (a control arm that was not randomised: propensities estimated and rows weighted by their inverse),
`accepted_vs_declined` (no control arm at all: offers accepted vs declined, propensity-weighted, effect scaled by
the acceptance rate; it assumes acceptance depends on the features only). An action is *supported* when the lower
end of its held-out Qini interval is above the random line (its effect varies by customer as predicted); it is
*supported on average* when, in a randomised log, the interval of its average effect (treated minus control
retention, Newcombe) is above zero: offering it helps on average even if who it helps most is not known.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnsense.insights.segments import _select
from churnsense.insights.uplift import KINDS, Features, UpliftLearner, UpliftModel, _folds, _train
from churnsense.insights.uplift_metrics import (
    bootstrap_interval,
    curve_points,
    difference_interval,
    qini_above_random,
    uplift_metrics,
)
from churnsense.insights.uplift_modifiers import PROBABILITY, modifier_columns
from churnsense.insights.uplift_policy import playbook_actions, policy_evidence
from churnsense.insights.uplift_relative import RelativeRiskLearner

log = logging.getLogger(__name__)
EVIDENCE = (  # what `fit_action` reports of an action: held-out Qini / AUUC with the random line, effects, verdicts
    "n",
    "n_treated",
    "qini",
    "qini_low",
    "qini_high",
    "qini_random",
    "auuc",
    "auuc_random",
    "predicted_ate",
    "observed_ate",
    "ate_low",
    "ate_high",
    "supported",
    "supported_on_average",
)
NOTICES = {
    "observational": "uplift: the offer log's control arm was not randomised: effects are propensity-weighted "
    "(estimated propensities; assumes no unmeasured confounding)",
    "accepted_vs_declined": "uplift: the offer log has no control arm: effects compare accepted with declined "
    "offers, propensity-weighted and scaled by the acceptance rate (assumes acceptance "
    "depends on the features only)",
}


def observed_outcomes(
    offers: pd.DataFrame, cutoff: pd.Timestamp, days: int, customers: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Offers whose outcome window (`days` after the offer) ended before `cutoff`, one row per customer (the
    last), with `churned`: from the log when it has it, else from customers.churn_date."""
    o = offers[offers["ts"] + pd.Timedelta(days=days) <= cutoff]
    o = o.sort_values("ts", kind="stable").drop_duplicates("customer_id", keep="last").reset_index(drop=True)
    if "churned" not in o or o["churned"].isna().all():
        if customers is None or "churn_date" not in customers:
            raise ValueError("uplift: the offer log has no outcome column and customers have no churn_date")
        churn = o["customer_id"].map(customers.set_index("customer_id")["churn_date"])
        o["churned"] = (churn > o["ts"]) & (churn <= o["ts"] + pd.Timedelta(days=days))
    return o[o["churned"].notna()].reset_index(drop=True)


def _is_control(o: pd.DataFrame) -> pd.Series:
    if "treated" in o and o["treated"].notna().any():
        return ~o["treated"].fillna(True).astype(bool)
    return o["action"].isna() | o["action"].astype("string").str.lower().isin(["none", "control"]).fillna(True)


def design_of(o: pd.DataFrame, assignment: str = "auto") -> str:
    """randomised | observational | accepted_vs_declined (see module doc)."""
    control = _is_control(o)
    if not control.any():
        if "accepted" not in o or o["accepted"].isna().all():
            raise ValueError("uplift: the offer log has neither control rows nor an accepted column")
        return "accepted_vs_declined"
    if assignment in ("randomised", "observational"):
        return assignment
    if "propensity" in o and o["propensity"].notna().all():
        arm = o["action"].astype("string").fillna("").where(~control, "")
        return "randomised" if (o.groupby(arm)["propensity"].nunique() <= 1).all() else "observational"
    return "observational"


def contrasts(o: pd.DataFrame, design: str) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """action -> (row mask, treated flag per row, effect scale)."""
    control = _is_control(o).to_numpy()
    action = o["action"].astype("string").fillna("").to_numpy()
    out = {}
    for a in sorted(set(action[~control]) - {""}):
        if design == "accepted_vs_declined":
            rows = action == a
            acc = o["accepted"].fillna(False).astype(bool).to_numpy()
            out[a] = (rows, acc, float(acc[rows].mean()))
        else:
            rows = (~control & (action == a)) | (control & np.isin(action, ["", a]))
            out[a] = (rows, ~control, 1.0)
    return out


def _params(cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    return {**dict(cfg.get("lightgbm") or {}), "seed": seed}


Learner = UpliftLearner | RelativeRiskLearner


def available_kinds(cfg: Mapping[str, Any], names: list[str]) -> list[str]:
    """The configured learner kinds that can be fitted on features `names` (`rr` needs the model's risk)."""
    risk, _ = modifier_columns(names)
    return [k for k in cfg["learners"] if k in KINDS or (k == RelativeRiskLearner.kind and risk is not None)]


def _learner(kind: str, cfg: Mapping[str, Any], seed: int, names: list[str]) -> Learner:
    if kind == RelativeRiskLearner.kind:
        risk, shares = modifier_columns(names)
        rcfg = cfg["relative"]
        return RelativeRiskLearner(
            risk, shares, float(rcfg["penalty"]), float(rcfg["lower"]), [names[i] for i in (risk, *shares)]
        )
    return UpliftLearner(
        kind, _params(cfg, seed), int(cfg["num_rounds"]), int(cfg["inner_folds"]), float(cfg["propensity_clip"]), seed
    )


def ipw_weights(x, t, cfg: Mapping[str, Any], seed: int = 0) -> np.ndarray:
    """Inverse of a cross-fitted, clipped propensity of the arm each row received."""
    clip, k = float(cfg["propensity_clip"]), int(cfg["cv_folds"])
    fold, e = _folds(len(t), k, seed + 3), np.empty(len(t))
    for f in range(k):
        model = _train(x[fold != f], t[fold != f].astype(float), "binary", _params(cfg, seed), int(cfg["num_rounds"]))
        e[fold == f] = model.predict(x[fold == f])
    e = np.clip(e, clip, 1 - clip)
    return np.where(t, 1 / e, 1 / (1 - e))


def cross_fitted(
    x, t, y, kind: str, cfg: Mapping[str, Any], randomised: bool, folds: int, seed: int = 0, names=()
) -> np.ndarray:
    """Out-of-fold predictions of one learner kind (`names`: the feature names of x's columns)."""
    fold, pred = _folds(len(t), folds, seed + 1), np.empty(len(t))
    for k in range(folds):
        fit = fold != k
        pred[~fit] = _learner(kind, cfg, seed, list(names)).fit(x[fit], t[fit], y[fit], randomised).predict(x[~fit])
    return pred


def select_kind(
    x, t, y, cfg: Mapping[str, Any], randomised: bool, folds: int, seed: int = 0, names=()
) -> tuple[str, dict[str, float]]:
    """The learner kind with the best cross-fitted Qini, and every kind's Qini."""
    w = None if randomised else ipw_weights(x, t, cfg, seed)
    cv = {
        k: qini_above_random(cross_fitted(x, t, y, k, cfg, randomised, folds, seed, names), t, 1 - y, w)
        for k in available_kinds(cfg, list(names))
    }
    return max(cv, key=cv.get), cv


def fit_action(
    x, t, y, cfg: Mapping[str, Any], randomised: bool, seed: int = 0, names=()
) -> tuple[Learner, dict[str, Any], np.ndarray]:
    """Held-out evidence by nested cross-fitting: in each of `cv_folds` folds the learner is selected (inner
    cross-fitting) and fitted on the other folds only, then predicts this fold; the Qini of these predictions over
    all rows, with its bootstrap interval, judges the whole procedure. The served learner is then selected and
    fitted on all rows. `names`: the feature names of x's columns. Returns (learner, evidence row, the held-out
    predictions)."""
    names = list(names)
    outer, pred, picks = _folds(len(t), int(cfg["cv_folds"]), seed + 2), np.empty(len(t)), []
    for k in range(int(cfg["cv_folds"])):
        fit = outer != k
        kind, _ = select_kind(x[fit], t[fit], y[fit], cfg, randomised, int(cfg["inner_folds"]), seed, names)
        pred[~fit] = _learner(kind, cfg, seed, names).fit(x[fit], t[fit], y[fit], randomised).predict(x[~fit])
        picks.append(kind)
    w = None if randomised else ipw_weights(x, t, cfg, seed)
    args = (pred, t, 1 - y, w)
    lo, hi = bootstrap_interval(*args, reps=int(cfg["bootstrap"]), level=float(cfg["level"]), seed=seed)
    ww = np.ones(len(t)) if w is None else w
    observed = float(np.average(y[~t], weights=ww[~t]) - np.average(y[t], weights=ww[t]))
    if randomised:  # treated minus control retention with its interval: the average effect of the offer
        _, ate_low, ate_high = difference_interval(
            (1 - y[t]).sum(), t.sum(), (1 - y[~t]).sum(), (~t).sum(), float(cfg["level"])
        )
    else:  # a weighted difference has no simple interval here: no claim on average
        ate_low, ate_high = float("nan"), float("nan")
    best, cv = select_kind(x, t, y, cfg, randomised, int(cfg["cv_folds"]), seed, names)
    row = {
        "learner": best,
        "fold_learners": ",".join(picks),
        **{f"cv_qini_{k}": v for k, v in cv.items()},
        **uplift_metrics(*args),
        "qini_low": lo,
        "qini_high": hi,
        "supported": bool(lo > 0),
        "predicted_ate": float(pred.mean()),
        "observed_ate": observed,
        "ate_low": ate_low,
        "ate_high": ate_high,
        "supported_on_average": bool(ate_low > 0),
        **curve_points(*args),
    }
    learner = _learner(best, cfg, seed, names).fit(x, t, y, randomised)
    if isinstance(learner, RelativeRiskLearner):
        row["relative_effects"] = learner.coefficients()
    return learner, row, pred


def fit_uplift(
    facts: pd.DataFrame,
    offers: pd.DataFrame,
    cfg: Mapping[str, Any],
    seed: int = 0,
    playbook: Mapping[str, Mapping] | None = None,
    reasons: Mapping[str, Any] | None = None,
    at_risk: float | None = None,
) -> tuple[UpliftModel, list[dict[str, Any]], str]:
    """The uplift model of the offer log `offers` (one row per customer with `churned`; facts indexed by customer
    id at each offer date); returns (model, one metrics row per action, design). With a `playbook` (and the
    `reasons` settings `not_reasons`, `min_share`), the model chooses actions only with held-out evidence that its
    choices beat the playbook's (`uplift_policy`; the evidence is in the first row's `policy`), judged on the logged
    customers the decisions would act on (`churn_probability` at the offer date >= `at_risk`, when facts have it).
    Raises ValueError when no action has `min_rows` rows in both arms."""
    design = design_of(offers, str(cfg["assignment"]))
    if design in NOTICES:
        log.warning(NOTICES[design])
    x_all = facts.reindex(offers["customer_id"].to_numpy()).reset_index(drop=True)
    features = Features.fit(x_all, _select(x_all, list(cfg.get("features") or [])), cfg.get("categorical") or [])
    xs, y = features.matrix(x_all), offers["churned"].astype(float).to_numpy()
    risk, _ = modifier_columns(features.names)
    learners, scale, rows, relative, held = {}, {}, [], {}, {}
    for action, (mask, treated, k) in contrasts(offers, design).items():
        t = treated[mask]
        if min(t.sum(), (~t).sum()) < int(cfg["min_rows"]):
            log.warning(
                "uplift: %s skipped (%d treated, %d untreated rows; min_rows %s)",
                action,
                t.sum(),
                (~t).sum(),
                cfg["min_rows"],
            )
            continue
        learner, row, pred = fit_action(xs[mask], t, y[mask], cfg, design == "randomised", seed, features.names)
        held[action] = k * np.where(mask, np.nan, learner.predict(xs))  # customers this learner never saw
        held[action][mask] = k * pred
        learners[action], scale[action] = learner, k
        rows.append({"action": action, "design": design, **row})
        if row["supported_on_average"] and risk is not None:  # the average effect on the relative scale
            rcfg = cfg["relative"]
            average = RelativeRiskLearner(
                risk, [], float(rcfg["penalty"]), float(rcfg["lower"]), [features.names[risk]]
            )
            relative[action] = average.fit(xs[mask], t, y[mask])
    if not learners:
        raise ValueError(f"uplift: no action with {cfg['min_rows']} rows in both arms ({len(offers)} offers)")
    supported = {r["action"]: r["supported"] for r in rows}
    average = {r["action"]: scale[r["action"]] * r["observed_ate"] for r in rows if r["supported_on_average"]}
    chooses = True
    if playbook is not None:
        rows_at_risk = _at_risk_rows(x_all, at_risk, int(cfg["min_rows"]))
        policy = _policy(
            pd.DataFrame(held)[rows_at_risk],
            offers[rows_at_risk],
            x_all[rows_at_risk],
            design,
            cfg,
            playbook,
            reasons or {},
            seed,
        )
        rows[0]["policy"], chooses = policy, bool(policy.get("model_chooses"))
    model = UpliftModel(features, learners, scale, design, supported, average, relative, chooses)
    return model, rows, design


def _at_risk_rows(x_all: pd.DataFrame, at_risk: float | None, min_rows: int) -> np.ndarray:
    """The logged customers at risk at their offer date (all when unknown, or when fewer than `min_rows` are)."""
    if at_risk is None or PROBABILITY not in x_all:
        return np.ones(len(x_all), bool)
    rows = (x_all[PROBABILITY] >= at_risk).to_numpy()
    return rows if rows.sum() >= min_rows else np.ones(len(x_all), bool)


def _policy(held, offers, x_all, design, cfg, playbook, reasons, seed) -> dict[str, Any]:
    """`uplift_policy.policy_evidence`, or why there is none (no logged propensity or no control arm)."""
    control = _is_control(offers).to_numpy()
    if design == "accepted_vs_declined" or "propensity" not in offers or offers["propensity"].isna().all():
        return {"model_chooses": False, "why": "no control arm with logged propensities: no policy evidence"}
    choice = playbook_actions(
        x_all, playbook, list(reasons.get("not_reasons") or ()), float(reasons.get("min_share") or 0.0)
    )
    return policy_evidence(held, offers, control, choice, cfg, seed)
