"""One chunk of the synthetic subscription base: attributes, churn mechanisms, offers (all vectorised).

Mechanisms (code: how it shows, where the signal lives):
- usage_decline: usage and app sessions fade out over 45-90 days before churn (sequence: trend).
- outages: a burst of 3-6 outages within three weeks, churn 1-5 weeks later (sequence: burst/recency).
- unresolved_support: 2-4 support contacts with value 0 (= unresolved) within three weeks (sequence).
- price_increase: a price_change event of +10..30 %, churn 2-8 weeks later (sequence).
- late_payments: 2-3 late payments a month apart (sequence).
- short_contract: month-to-month contract and tenure under a year; churn at a renewal (static only).
- negative_feedback: 1-2 negative feedback messages, churn 1-6 weeks later (feedback).
- need_met: a burst of heavy usage, then silence; churn 3-6 weeks after going quiet (sequence: recency).
- other: background churn without a driver.
An exposed customer shows the mechanism's events whether or not it fires; it fires with `churn_prob`
(reduced by an accepted retention offer that suits it). Churn date = earliest firing; drivers = the fired
mechanisms that started before it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MECHANISMS = ("usage_decline", "outages", "unresolved_support", "price_increase", "late_payments",
              "short_contract", "negative_feedback", "need_met")
ACTIONS = ("discount", "plan_upgrade", "call")
TEAMS = ("retention_a", "retention_b", "care")
# delay (days) from a mechanism's onset to churn: (min, max)
DELAY = {"usage_decline": (45, 90), "outages": (24, 50), "unresolved_support": (25, 50),
         "price_increase": (14, 60), "late_payments": (65, 90), "short_contract": (0, 1),
         "negative_feedback": (17, 45), "need_met": (20, 45)}
# share of a mechanism's churn probability removed by an accepted offer of each action (true uplift source)
EFFECT = {"discount": {"price_increase": 0.6, "late_payments": 0.3, "short_contract": 0.4, "usage_decline": 0.1},
          "plan_upgrade": {"usage_decline": 0.4, "outages": 0.2, "short_contract": 0.3, "price_increase": 0.2},
          "call": {"unresolved_support": 0.6, "negative_feedback": 0.5, "outages": 0.3, "late_payments": 0.2}}
ATTRS = {
    "plan": (("basic", "standard", "premium", "unlimited"), (0.3, 0.35, 0.2, 0.15)),
    "contract": (("month_to_month", "one_year", "two_year"), (0.55, 0.22, 0.23)),
    "payment_method": (("card_auto", "bank_transfer", "e_check", "mailed_check"), (0.3, 0.25, 0.3, 0.15)),
    "region": (("north", "south", "east", "west", "central", "coast"), (0.2, 0.2, 0.15, 0.15, 0.2, 0.1)),
    "language": (("en", "ru", "uk", "he"), (0.55, 0.2, 0.15, 0.1)),
    "age_band": (("18-24", "25-34", "35-44", "45-54", "55-64", "65+"), (0.12, 0.22, 0.22, 0.18, 0.14, 0.12)),
}
PLAN_PRICE = {"basic": 25.0, "standard": 45.0, "premium": 70.0, "unlimited": 95.0}


@dataclass
class World:
    """A chunk: customer attributes (days relative to the window start) and their fate."""

    n: int
    horizon: float  # window length in days
    cust: pd.DataFrame  # attributes + signup_day
    start_day: np.ndarray  # first day inside the window (signup or window start)
    usage_scale: np.ndarray
    activity: np.ndarray
    exposed: dict[str, np.ndarray]
    onset: dict[str, np.ndarray]
    fired: dict[str, np.ndarray]
    churn_day: np.ndarray  # inf if no churn inside the window
    drivers: np.ndarray  # object: ";"-joined codes
    offer: pd.DataFrame  # rows of customers given an offer: idx, day, action, team, propensity, accepted
    uplift: dict[str, np.ndarray]
    p_churn: np.ndarray


def _choice(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    values, probs = ATTRS[name]
    return np.asarray(values, dtype=object)[rng.choice(len(values), size=n, p=np.asarray(probs) / sum(probs))]


def make_customers(rng: np.random.Generator, n: int, horizon: float) -> tuple[pd.DataFrame, np.ndarray]:
    """Static attributes; signup day relative to the window start (negative = before)."""
    new = rng.random(n) < 0.2
    tenure = np.where(rng.random(n) < 0.4, rng.exponential(240, n), rng.uniform(0, 72 * 30.44, n))
    signup = np.where(new, rng.uniform(0, max(horizon - 30, 1), n), -tenure - 1)
    cust = pd.DataFrame({k: _choice(rng, k, n) for k in ATTRS})
    long = (signup < -365) & (rng.random(n) < 0.35)  # long-tenured customers hold longer contracts
    cust.loc[long, "contract"] = np.where(rng.random(long.sum()) < 0.5, "one_year", "two_year")
    base = cust["plan"].map(PLAN_PRICE).to_numpy(dtype=float)
    cust["n_lines"] = 1 + rng.poisson(0.5, n)
    cust["monthly_charge"] = np.round(base * rng.lognormal(0, 0.12, n) + 8 * (cust["n_lines"] - 1), 2)
    cust["signup_day"] = signup
    return cust, np.maximum(signup, 0.0)


def _onsets(rng, name: str, a: np.ndarray, horizon: float) -> np.ndarray:
    lo = a + 21
    hi = np.maximum(lo + 1, horizon - DELAY[name][1])
    return rng.uniform(lo, hi)


def make_world(rng: np.random.Generator, n: int, horizon: float, cfg: dict) -> World:
    cust, a = make_customers(rng, n, horizon)
    mech = cfg["mechanisms"]
    exposed, onset = {}, {}
    for m in MECHANISMS:
        onset[m] = _onsets(rng, m, a, horizon)
        if m == "short_contract":
            tenure_at_onset = onset[m] - cust["signup_day"].to_numpy()
            exposed[m] = (cust["contract"].to_numpy() == "month_to_month") & (tenure_at_onset < 365)
        else:
            exposed[m] = rng.random(n) < float(mech[m]["exposure"])
    offer, reduce = _offers(rng, n, exposed, onset, cfg["offers"], mech)
    fired, first, p_keep = {}, np.full(n, np.inf), np.ones(n)
    for m in MECHANISMS:
        p = float(mech[m]["churn_prob"]) * exposed[m] * (1 - reduce[m])
        fired[m] = rng.random(n) < p
        day = onset[m] + rng.uniform(*DELAY[m], n)
        first = np.where(fired[m], np.minimum(first, day), first)
        p_keep *= 1 - p
    bg = rng.random(n) < float(cfg["background_churn"])
    first = np.where(bg, np.minimum(first, rng.uniform(a + 10, np.maximum(a + 11, horizon))), first)
    churn_day = np.where(first < horizon, first, np.inf)
    codes = np.full(n, "", dtype=object)
    for m in MECHANISMS:
        hit = fired[m] & (onset[m] < churn_day) & np.isfinite(churn_day)
        codes = np.where(hit, np.where(codes == "", m, codes + ";" + m), codes)
    codes = np.where(np.isfinite(churn_day) & (codes == ""), "other", codes)
    uplift, p_churn = _true_uplift(exposed, mech, float(cfg["background_churn"]), cfg["offers"])
    return World(n, horizon, cust, a, rng.lognormal(0, 1.0, n), rng.lognormal(0, 0.4, n), exposed, onset,
                 fired, churn_day, codes, offer, uplift, p_churn)


def _offers(rng, n, exposed, onset, ocfg, mech) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Retention offers to at-risk customers, partly at random; returns offers and per-mechanism reductions."""
    risk = sum(exposed[m] * float(mech[m]["churn_prob"]) for m in MECHANISMS)
    at_risk = risk > 0
    risk_n = np.clip(risk / 0.8, 0, 1)
    share = float(ocfg["random_share"])
    propensity = np.where(at_risk, float(ocfg["rate"]) * (share + (1 - share) * risk_n), 0.0)
    treated = rng.random(n) < propensity
    action = rng.integers(0, len(ACTIONS), n)
    accept_p = np.array([float(ocfg["accept"][a]) for a in ACTIONS])[action]
    accepted = treated & (rng.random(n) < accept_p)
    first_onset = np.min([np.where(exposed[m], onset[m], np.inf) for m in MECHANISMS], axis=0)
    day = first_onset + rng.uniform(3, 14, n)
    reduce = {m: np.where(accepted, np.array([EFFECT[a].get(m, 0.0) for a in ACTIONS])[action], 0.0)
              for m in MECHANISMS}
    idx = np.flatnonzero(treated)
    offer = pd.DataFrame({"idx": idx, "day": day[idx], "action": np.asarray(ACTIONS, dtype=object)[action[idx]],
                          "team": np.asarray(TEAMS, dtype=object)[rng.integers(0, len(TEAMS), idx.size)],
                          "propensity": propensity[idx], "accepted": accepted[idx]})
    return offer, reduce


def _true_uplift(exposed, mech, bg: float, ocfg) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """P(churn | no offer) - P(churn | offer of each action), accounting for acceptance (ignores censoring)."""
    def p_churn(eff: dict[str, float], acc: float) -> np.ndarray:
        keep = np.full(len(next(iter(exposed.values()))), 1 - bg)
        for m in MECHANISMS:
            p = float(mech[m]["churn_prob"]) * exposed[m]
            keep *= acc * (1 - p * (1 - eff.get(m, 0.0))) + (1 - acc) * (1 - p)
        return 1 - keep
    base = p_churn({}, 0.0)
    return {a: base - p_churn(EFFECT[a], float(ocfg["accept"][a])) for a in ACTIONS}, base
