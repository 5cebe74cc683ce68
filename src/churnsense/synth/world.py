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
(reduced by an accepted retention offer that suits it, when the offer comes before the churn it would cause).
Churn date = earliest firing; drivers = the fired mechanisms that started before it.

Offers (`campaign_offers`): a retention campaign each month contacts a share of the active customers, weighted
towards those with a live mechanism (the business targets risk); of the customers it picks, a random
`control_share` is held out (the randomised control arm) and the others get one action drawn at random, so within
the log the assignment is randomised with known probabilities (`propensity`). Each customer is picked at most once.
The true uplift of an offer depends on when it is made: `truth.uplift_at` gives it for any date and window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MECHANISMS = (
    "usage_decline",
    "outages",
    "unresolved_support",
    "price_increase",
    "late_payments",
    "short_contract",
    "negative_feedback",
    "need_met",
)
ACTIONS = ("discount", "plan_upgrade", "call")
TEAMS = ("retention_a", "retention_b", "care")
# delay (days) from a mechanism's onset to churn: (min, max)
DELAY = {
    "usage_decline": (45, 90),
    "outages": (24, 50),
    "unresolved_support": (25, 50),
    "price_increase": (14, 60),
    "late_payments": (65, 90),
    "short_contract": (0, 1),
    "negative_feedback": (17, 45),
    "need_met": (20, 45),
}
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
    offer: pd.DataFrame  # logged customers: idx, day, action ("" = control), treated, team, propensity, accepted
    uplift: dict[str, np.ndarray]
    p_churn: np.ndarray
    latent_day: dict[str, np.ndarray]  # day a mechanism would cause churn if it fired (drawn for everyone)
    fire_prob: dict[str, np.ndarray]  # P(mechanism fires) after the logged offer's effect (0 if not exposed)
    base_fire_prob: dict[str, np.ndarray]  # the same without any offer
    offer_day: np.ndarray  # day of the logged offer (nan: none)


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
    exposed, onset, latent = {}, {}, {}
    for m in MECHANISMS:
        onset[m] = _onsets(rng, m, a, horizon)
        if m == "short_contract":
            tenure_at_onset = onset[m] - cust["signup_day"].to_numpy()
            exposed[m] = (cust["contract"].to_numpy() == "month_to_month") & (tenure_at_onset < 365)
        else:
            exposed[m] = rng.random(n) < float(mech[m]["exposure"])
        latent[m] = onset[m] + rng.uniform(*DELAY[m], n)
    bg = rng.random(n) < float(cfg["background_churn"])
    bg_day = np.where(bg, rng.uniform(a + 10, np.maximum(a + 11, horizon)), np.inf)
    fire_draw = {m: rng.random(n) for m in MECHANISMS}
    base_first = _first_churn(
        {m: fire_draw[m] < float(mech[m]["churn_prob"]) * exposed[m] for m in MECHANISMS}, latent, bg_day
    )
    offer, reduce = campaign_offers(rng, a, base_first, exposed, onset, latent, cfg["offers"], mech, horizon)
    offer_day = np.full(n, np.nan)
    offer_day[offer["idx"].to_numpy()] = offer["day"].to_numpy()
    base_prob = {m: float(mech[m]["churn_prob"]) * exposed[m] for m in MECHANISMS}
    fire_prob = {m: base_prob[m] * (1 - reduce[m]) for m in MECHANISMS}
    fired = {m: fire_draw[m] < fire_prob[m] for m in MECHANISMS}
    first = _first_churn(fired, latent, bg_day)
    churn_day = np.where(first < horizon, first, np.inf)
    codes = np.full(n, "", dtype=object)
    for m in MECHANISMS:
        hit = fired[m] & (onset[m] < churn_day) & np.isfinite(churn_day)
        codes = np.where(hit, np.where(codes == "", m, codes + ";" + m), codes)
    codes = np.where(np.isfinite(churn_day) & (codes == ""), "other", codes)
    uplift, p_churn = _true_uplift(exposed, mech, float(cfg["background_churn"]), cfg["offers"])
    return World(
        n,
        horizon,
        cust,
        a,
        rng.lognormal(0, 1.0, n),
        rng.lognormal(0, 0.4, n),
        exposed,
        onset,
        fired,
        churn_day,
        codes,
        offer,
        uplift,
        p_churn,
        latent,
        fire_prob,
        base_prob,
        offer_day,
    )


def _first_churn(fired: dict[str, np.ndarray], latent: dict[str, np.ndarray], bg_day: np.ndarray) -> np.ndarray:
    first = bg_day.copy()
    for m, f in fired.items():
        first = np.where(f, np.minimum(first, latent[m]), first)
    return first


def live_risk(day: float, exposed, onset, latent, mech) -> np.ndarray:
    """The business's view of risk on `day`: summed churn probability of the mechanisms under way (started, and
    their churn window not over yet)."""
    return sum(
        exposed[m] * float(mech[m]["churn_prob"]) * ((onset[m] <= day) & (day < onset[m] + DELAY[m][1]))
        for m in MECHANISMS
    )


def campaign_offers(
    rng, a, base_first, exposed, onset, latent, ocfg, mech, horizon: float
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Monthly campaigns (see module doc); returns the offer log and per-mechanism churn reductions (an accepted
    offer removes `offers.effect[action][mechanism]` of a mechanism's churn probability when it comes before that
    mechanism's churn day)."""
    n = len(a)
    share, floor = float(ocfg["campaign_share"]), float(ocfg["random_share"])
    logged = np.zeros(n, bool)
    day = np.full(n, np.nan)
    for start in np.arange(30.44, horizon - 7, 30.44):  # one campaign a month, from the second month on
        t = start + rng.uniform(0, 7, n)  # contact day within the campaign week
        free = (a <= start) & (base_first > t) & ~logged
        weight = np.where(
            free, floor + (1 - floor) * np.clip(live_risk(start, exposed, onset, latent, mech) / 0.5, 0, 1), 0.0
        )
        k = min(int(round(share * free.sum())), int((weight > 0).sum()))
        if k == 0:
            continue
        pick = rng.choice(n, size=k, replace=False, p=weight / weight.sum())
        logged[pick], day[pick] = True, t[pick]
    control_share = float(ocfg["control_share"])
    control = logged & (rng.random(n) < control_share)
    treated = logged & ~control
    action = rng.integers(0, len(ACTIONS), n)
    accept_p = np.array([float(ocfg["accept"][x]) for x in ACTIONS])[action]
    accepted = treated & (rng.random(n) < accept_p)
    effect = {m: np.array([float(ocfg["effect"][x].get(m, 0.0)) for x in ACTIONS])[action] for m in MECHANISMS}
    reduce = {m: np.where(accepted & (latent[m] > day), effect[m], 0.0) for m in MECHANISMS}
    idx = np.flatnonzero(logged)
    names = np.where(treated, np.asarray(ACTIONS, dtype=object)[action], "")
    propensity = np.where(control, control_share, (1 - control_share) / len(ACTIONS))
    offer = pd.DataFrame(
        {
            "idx": idx,
            "day": day[idx],
            "action": names[idx],
            "treated": treated[idx],
            "team": np.where(treated[idx], np.asarray(TEAMS, dtype=object)[rng.integers(0, len(TEAMS), idx.size)], ""),
            "propensity": propensity[idx],
            "accepted": accepted[idx],
        }
    )
    return offer.sort_values("day", kind="stable", ignore_index=True), reduce


def _true_uplift(exposed, mech, bg: float, ocfg) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """P(churn | no offer) - P(churn | offer of each action), accounting for acceptance (ignores censoring)."""

    def p_churn(eff: dict[str, float], acc: float) -> np.ndarray:
        keep = np.full(len(next(iter(exposed.values()))), 1 - bg)
        for m in MECHANISMS:
            p = float(mech[m]["churn_prob"]) * exposed[m]
            keep *= acc * (1 - p * (1 - eff.get(m, 0.0))) + (1 - acc) * (1 - p)
        return 1 - keep

    base = p_churn({}, 0.0)
    return {a: base - p_churn(ocfg["effect"][a], float(ocfg["accept"][a])) for a in ACTIONS}, base
