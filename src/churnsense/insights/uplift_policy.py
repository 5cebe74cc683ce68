"""Evidence that the uplift model's choice of action beats the playbook's, from the offer log itself.

A per-action Qini says whether a learner ranks customers for *that* action better than random; it says nothing
about whether choosing, per customer, the action with the largest predicted uplift beats answering the customer's
reasons with the playbook. That comparison is an off-policy evaluation on the logged, randomised offers: for a
policy pi (an action per logged customer), the churn it would leave is estimated by inverse propensity weighting,
sum over the customers who received pi's action of churned / P(that action) divided by all customers, and the
churn it prevents per customer is the control arm's churn rate minus that. Every customer's predicted uplifts are
held out (nested cross-fitting for the actions whose contrast holds the customer; the other actions' learners never
saw it), the playbook answers each customer's main reason at its offer date (the largest reason share), and the
difference model - playbook gets a bootstrap interval (customers resampled). The model chooses actions only when
the lower end is above zero; otherwise decisions answer the customer's reasons with the playbook, valued by the
uplift model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from churnsense.insights.decisions import _playbook_choice
from churnsense.insights.reasons import rank_reasons
from churnsense.insights.uplift_modifiers import SHARE


def playbook_actions(
    x: pd.DataFrame, playbook: Mapping[str, Mapping], exclude: Sequence[str] = (), min_share: float = 0.0
) -> np.ndarray:
    """The playbook's action for each row's main reason: reason groups ranked by their `reason_share_*` column (a
    share of at least `min_share` of the row's risk-raising shares; groups in `exclude` never are reasons); rows
    without shares get the playbook's default."""
    cols = [c for c in x.columns if c.startswith(SHARE)]
    shares = np.nan_to_num(x[cols].to_numpy(dtype=np.float64)) if cols else np.zeros((len(x), 0))
    codes = rank_reasons(shares, [c[len(SHARE) :] for c in cols], None, 0.0, exclude, min_share)
    return np.array([_playbook_choice(c, playbook)[0] for c in codes], dtype=object)


def prevented_per_customer(
    choice: np.ndarray, action: np.ndarray, control: np.ndarray, churned: np.ndarray, propensity: np.ndarray, w=None
) -> float:
    """IPW estimate of the churn a policy (`choice` per logged customer) prevents per customer vs no offer;
    `w`: row weights (bootstrap counts)."""
    w = np.ones(len(choice)) if w is None else w
    got = ~control & (action == choice)
    left = np.sum(w * churned * got / propensity) / np.sum(w)
    return float(np.sum(w * churned * control) / np.sum(w * control) - left)


def policy_evidence(
    held_out: pd.DataFrame,
    offers: pd.DataFrame,
    control: np.ndarray,
    playbook_choice: np.ndarray,
    cfg: Mapping[str, Any],
    seed: int = 0,
) -> dict[str, Any]:
    """Held-out policy value of the model's choice (largest predicted uplift among `held_out`'s actions) vs the
    playbook's (`playbook_choice`), on the offers' rows (see module doc). Needs the logged `propensity`."""
    action = offers["action"].astype("string").fillna("").to_numpy()
    churned = offers["churned"].astype(float).to_numpy()
    propensity = offers["propensity"].astype(float).to_numpy()
    ok = control | (np.isfinite(propensity) & (propensity > 0))
    model = held_out.columns.to_numpy()[np.nanargmax(held_out.fillna(-np.inf).to_numpy(), axis=1)]
    args = (action[ok], control[ok], churned[ok], np.where(ok, propensity, 1.0)[ok])
    mine, theirs = model[ok], np.asarray(playbook_choice, dtype=object)[ok]
    rng = np.random.default_rng(seed)
    gains = np.empty(int(cfg["bootstrap"]))
    for b in range(len(gains)):
        w = np.bincount(rng.integers(0, len(mine), len(mine)), minlength=len(mine)).astype(float)
        gains[b] = prevented_per_customer(mine, *args, w) - prevented_per_customer(theirs, *args, w)
    level = float(cfg["level"])
    lo, hi = np.quantile(gains, [(1 - level) / 2, 1 - (1 - level) / 2])
    value_model, value_playbook = prevented_per_customer(mine, *args), prevented_per_customer(theirs, *args)
    return {
        "customers": int(ok.sum()),
        "prevented_model": value_model,
        "prevented_playbook": value_playbook,
        "gain": value_model - value_playbook,
        "gain_low": float(lo),
        "gain_high": float(hi),
        "model_chooses": bool(lo > 0),
    }
