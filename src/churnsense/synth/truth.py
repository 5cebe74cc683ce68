"""The simulator's true effect of a retention offer made on a given day: what an oracle knows.

For a customer active on `day`, a mechanism causes churn inside [day, day + window) when it fires (its
probability, after the logged offer when that came before `day`) and its latent churn day falls in that window;
mechanisms whose latent day is already past did not fire (the customer is still here). An offer of action `a` made on
`day` is accepted with `accept[a]` and then removes `effect[a][m]` of each such mechanism's probability. Background
churn is independent of offers. `uplift_at` returns P(churn in the window | no offer) and, per action, that minus
P(churn | offer): the churners one offer prevents in expectation."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from churnsense.synth.world import ACTIONS, MECHANISMS, World


def _background_in_window(w: World, rate: float, day: float, window: float) -> np.ndarray:
    """P(background churn in [day, day + window) | none before day): uniform over [start + 10, horizon)."""
    lo, hi = w.start_day + 10, np.maximum(w.start_day + 11, w.horizon)
    length = hi - lo
    before = np.clip(np.minimum(day, hi) - lo, 0, None) / length
    inside = np.clip(np.minimum(day + window, hi) - np.maximum(day, lo), 0, None) / length
    return rate * inside / np.clip(1 - rate * before, 1e-9, None)


def uplift_at(
    w: World,
    day: float,
    window: float,
    background_churn: float,
    accept: Mapping[str, float],
    effect: Mapping[str, Mapping[str, float]],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(P(churn in window | no offer), {action: true uplift}) for every customer of `w` (meaningful for those
    active on `day`)."""
    keep_no, keep = np.ones(w.n), {a: np.ones(w.n) for a in ACTIONS}
    offered_before = w.offer_day < day
    for m in MECHANISMS:
        d = w.latent_day[m]
        p = np.where(offered_before, w.fire_prob[m], w.base_fire_prob[m]) * ((d >= day) & (d < day + window))
        keep_no *= 1 - p
        for a in ACTIONS:
            acc = float(accept[a])
            keep[a] *= acc * (1 - p * (1 - float(effect[a].get(m, 0.0)))) + (1 - acc) * (1 - p)
    stay_bg = 1 - _background_in_window(w, background_churn, day, window)
    p0 = 1 - stay_bg * keep_no
    return p0, {a: stay_bg * (keep[a] - keep_no) for a in ACTIONS}


def truth_table(
    w: World,
    ids: np.ndarray,
    start: pd.Timestamp,
    cutoffs: list[pd.Timestamp],
    window: float,
    background_churn: float,
    ocfg: Mapping,
) -> pd.DataFrame:
    """Rows (customer_id, cutoff, window_days, p_churn_no_offer, uplift_<action>) for the customers active on each
    cutoff (signed up before it, not churned before it)."""
    parts = []
    for cutoff in cutoffs:
        day = (cutoff - start) / pd.Timedelta(days=1)
        active = (w.cust["signup_day"].to_numpy() < day) & (w.churn_day >= day)
        p0, up = uplift_at(w, day, window, background_churn, ocfg["accept"], ocfg["effect"])
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": ids[active],
                    "cutoff": np.full(active.sum(), cutoff.to_datetime64()),
                    "window_days": float(window),
                    "p_churn_no_offer": p0[active],
                    **{f"uplift_{a}": up[a][active] for a in ACTIONS},
                }
            )
        )
    return pd.concat(parts, ignore_index=True)
