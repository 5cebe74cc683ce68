"""Reasons name only risk-raising contributions: a static attribute whose value is favourable (a high satisfaction
score where high means loyal) or typical (a noise column near its median) is never a reason, whatever its
attribution; a category is a reason only when its risk is above the reference customers' average."""

from __future__ import annotations

import numpy as np

from churnsense.insights.reasons import rank_reasons
from churnsense.insights.risk_direction import risk_directions, static_group_eligibility

CATEGORY_LOGIT = np.array([0.0, 1.0, -0.5, -1.0])  # contract: code 1 (month-to-month) is the risky one
GROUPS = ["attr:contract", "attr:satisfaction", "attr:noise", "usage_decline"]


def model(batch: dict[str, np.ndarray]) -> np.ndarray:
    """A churn model where a *lower* satisfaction raises the risk, `noise` does nothing, contract 1 raises it."""
    logit = -1.0 * batch["num"][:, 0] + 0.0 * batch["num"][:, 1] + CATEGORY_LOGIT[batch["cat"][:, 0]]
    return 1 / (1 + np.exp(-logit))


def reference(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"num": rng.normal(size=(n, 2)).astype(np.float32), "cat": rng.integers(0, 4, (n, 1))}


def test_directions_are_read_from_the_model():
    directions = risk_directions(model, reference(), [4])
    assert directions.num.tolist() == [-1.0, 0.0]  # lower satisfaction raises the risk; noise is flat
    assert directions.cat[0][1] > 0 and (np.delete(directions.cat[0], 1) < directions.cat[0][1]).all()


def test_favourable_and_typical_values_are_never_reasons():
    directions = risk_directions(model, reference(), [4])
    own = {
        "num": np.array(
            [
                [2.0, 0.1],  # very satisfied (favourable), noise typical, low-risk contract
                [-2.0, 3.0],  # unsatisfied (risky), noise atypical but the model ignores it
                [-0.2, -0.1],
            ],  # satisfaction near its median: typical
            dtype=np.float32,
        ),
        "cat": np.array([[2], [1], [3]]),
    }
    eligible = static_group_eligibility(
        own,
        cat_group=np.array([0]),
        num_group=np.array([1, 2]),
        event_group=np.array([-1, -1, 3]),
        n_groups=4,
        directions=directions,
        min_deviation=0.5,
        num_names=["satisfaction", "noise"],
    )
    assert eligible.tolist() == [
        [False, False, False, True],
        [True, True, False, True],
        [False, False, False, True],
    ]  # event groups are judged by their own facts
    noisy = np.array(
        [
            [0.9, 0.8, 0.7, 0.1],  # large positive attributions for favourable/typical values
            [0.2, 0.9, 0.8, 0.1],
            [0.5, 0.6, 0.4, 0.3],
        ]
    )
    assert rank_reasons(noisy, GROUPS, top_k=3, eligible=eligible) == [
        ["usage_decline"],
        ["attr:satisfaction", "attr:contract", "usage_decline"],
        ["usage_decline"],
    ]
    assert rank_reasons(noisy, GROUPS, top_k=3)[0] == ["attr:contract", "attr:satisfaction", "attr:noise"]
