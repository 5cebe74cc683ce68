"""Which values of a customer's static attributes raise the churn risk, read from the model itself.

A group of static attributes (no events) may be a reason only when the customer's own value is on the risk-raising
side: a numeric input atypical (at least `min_deviation` robust scales from its training median, i.e. |z| in the
model's input scale) in the direction that raises the model's risk, or a category whose risk is above the
reference customers' average. So a favourable value (a high satisfaction score where high means loyal) or a
typical one (a call count near its average) is never cited, whatever its attribution in a noisy model.

Directions are partial dependences of the model over the release's reference customers (the attribution
background): per numeric input, the sign of mean p(z = +1) - mean p(z = -1) (0 = median, +-1 = one robust scale);
per categorical input and category, mean p(with that category) - mean p(as they are). Model-based, so they hold for
any table mapped by config, and computed once per release (a few thousand model rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Batch = dict[str, np.ndarray]
ProbFn = Callable[[Batch], np.ndarray]
STEP = 1.0  # partial dependence at -/+ one robust scale around the median
_cache: dict[int, RiskDirections] = {}


@dataclass(frozen=True)
class RiskDirections:
    """`num[j]`: +1 when a higher value of numeric input j raises the risk, -1 when a lower one does, 0 when flat;
    `cat[j][c]`: the risk of category index c of categorical input j minus the reference average."""

    num: np.ndarray
    cat: list[np.ndarray]


def _repeat(reference: Batch, times: int) -> Batch:
    return {k: np.concatenate([v] * times) for k, v in reference.items()}


def risk_directions(prob_fn: ProbFn, reference: Batch, cat_cardinalities: Sequence[int]) -> RiskDirections:
    """Partial dependences of `prob_fn` over the `reference` rows (see module doc)."""
    n = len(reference["num"]) if "num" in reference else len(next(iter(reference.values())))
    n_num = reference["num"].shape[1] if "num" in reference else 0
    num = np.zeros(n_num)
    if n and n_num:
        batch = _repeat(reference, 2 * n_num)
        values = batch["num"].reshape(2 * n_num, n, n_num).copy()
        for j in range(n_num):
            values[2 * j, :, j], values[2 * j + 1, :, j] = STEP, -STEP
        batch["num"] = values.reshape(-1, n_num).astype(reference["num"].dtype)
        p = np.asarray(prob_fn(batch), dtype=float).reshape(2 * n_num, n).mean(axis=1)
        num = np.sign(p[0::2] - p[1::2])
    cat: list[np.ndarray] = []
    if n and len(cat_cardinalities) and "cat" in reference:
        base = float(np.mean(prob_fn(reference)))
        for j, card in enumerate(cat_cardinalities):
            batch = _repeat(reference, int(card))
            batch["cat"] = batch["cat"].copy()
            batch["cat"][:, j] = np.repeat(np.arange(int(card)), n).astype(reference["cat"].dtype)
            cat.append(np.asarray(prob_fn(batch), dtype=float).reshape(int(card), n).mean(axis=1) - base)
    return RiskDirections(num, cat)


def cached_directions(
    prob_fn: ProbFn, reference: Batch, cat_cardinalities: Sequence[int], fixed: bool
) -> RiskDirections:
    """`risk_directions`, computed once per fixed reference (a release's background) and reused by every batch."""
    key = id(reference.get("num", reference.get("cat")))
    if fixed and key in _cache:
        return _cache[key]
    directions = risk_directions(prob_fn, reference, cat_cardinalities)
    if fixed:
        _cache[key] = directions
    return directions


def static_group_eligibility(
    own: Batch,
    cat_group: np.ndarray,
    num_group: np.ndarray,
    event_group: np.ndarray,
    n_groups: int,
    directions: RiskDirections,
    min_deviation: float,
    num_names: Sequence[str] = (),
) -> np.ndarray:
    """[rows, groups] bool: may group g be a reason for the row? Groups covering event types always may (their
    texts check their own facts); groups of static inputs only when one of their inputs is on the risk-raising
    side for the row (see module doc). `*_group`: the group index of each cat / num column and event type."""
    rows = len(own["num"]) if "num" in own else len(own["cat"])
    static = np.ones(n_groups, dtype=bool)
    static[np.unique(event_group[event_group >= 0])] = False
    ok = np.zeros((rows, n_groups), dtype=bool)
    ok[:, ~static] = True
    for j, g in enumerate(num_group):
        if g < 0 or not static[g] or (j < len(num_names) and str(num_names[j]).endswith("__missing")):
            continue
        z = own["num"][:, j].astype(float)
        ok[:, g] |= (np.abs(z) >= min_deviation) & (np.sign(z) == directions.num[j]) & (directions.num[j] != 0)
    for j, g in enumerate(cat_group):
        if g < 0 or not static[g]:
            continue
        if j >= len(directions.cat):  # no direction known for this input: it does not rule the group out
            ok[:, g] = True
            continue
        codes = own["cat"][:, j].astype(np.int64)
        risk = directions.cat[j]
        ok[:, g] |= risk[np.clip(codes, 0, len(risk) - 1)] > 0
    return ok
