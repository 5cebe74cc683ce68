"""Uplift of retention actions from past offers: a multi-arm T-learner + Qini / AUUC against random targeting.

T-learner: one outcome model P(churn | x, arm) per arm (LightGBM, saved with its native `model_to_string`),
uplift(x, a) = P(churn | x, control) - P(churn | x, a): the drop in churn probability the action buys (> 0 = helps).
Logged offers are targeted, so an offered-vs-control contrast needs the control arm's propensities (`ipw_weights`);
the accepted-vs-declined contrast assumes acceptance is as good as random given the features (true in the
synthetic demo; in production logs use a randomised hold-out as the control arm).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

PARAMS = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 8, "min_data_in_leaf": 40,
          "feature_fraction": 0.9, "lambda_l2": 1.0, "verbose": -1, "num_threads": 1, "seed": 0}


class TLearner:
    """Per-arm churn models over numeric features, and per-action contrasts between arms.

    `contrasts`: action -> (treated arm, control arm, scale); uplift(a) = scale * (P(churn|control) - P(churn|treated)).
    Offered-vs-control logs: arms = actions + "none", contrast (a, "none", 1). Logs without a control group but with
    random acceptance (the synthetic demo): arms "<a>:accepted" / "<a>:declined", scale = acceptance rate of a, so the
    uplift is that of *making* the offer (intent to treat).
    """

    def __init__(self, features: Sequence[str], num_rounds: int = 150, params: Mapping[str, Any] | None = None) -> None:
        self.features, self.num_rounds = list(features), int(num_rounds)
        self.params = {**PARAMS, **dict(params or {})}
        self.models: dict[str, lgb.Booster] = {}
        self.base_rates: dict[str, float] = {}
        self.contrasts: dict[str, tuple[str, str, float]] = {}

    @property
    def actions(self) -> list[str]:
        return list(self.contrasts)

    def _x(self, x: pd.DataFrame) -> np.ndarray:
        return x.reindex(columns=self.features).to_numpy(dtype=np.float64)

    def _names(self) -> list[str]:
        return [f"f{i}" for i in range(len(self.features))]  # LightGBM-safe names; real names kept in state

    def fit(self, x: pd.DataFrame, arm: pd.Series, churned: pd.Series, contrasts: Mapping[str, tuple],
            weight: pd.Series | None = None, min_rows: int = 30) -> TLearner:
        """One model per arm with at least `min_rows` rows; keeps the contrasts whose two arms were fitted."""
        arm = arm.astype(str).to_numpy()
        y = churned.to_numpy(dtype=np.float64)
        w = np.ones(len(y)) if weight is None else weight.to_numpy(dtype=np.float64)
        xs = self._x(x)
        for a in sorted(set(arm)):
            m = arm == a
            if m.sum() < min_rows:
                continue
            data = lgb.Dataset(xs[m], y[m], weight=w[m], feature_name=self._names(), free_raw_data=True)
            self.models[a] = lgb.train(self.params, data, num_boost_round=self.num_rounds)
            self.base_rates[a] = float(np.average(y[m], weights=w[m]))
        self.contrasts = {a: (str(t), str(c), float(k)) for a, (t, c, k) in contrasts.items()
                          if t in self.models and c in self.models}
        if not self.contrasts:
            raise ValueError(f"uplift: no action with enough rows in both arms (arms: {sorted(set(arm))})")
        return self

    def predict_churn(self, x: pd.DataFrame) -> pd.DataFrame:
        """P(churn) under each arm: columns = arms."""
        xs = self._x(x)
        return pd.DataFrame({a: m.predict(xs) for a, m in self.models.items()}, index=x.index)

    def predict_uplift(self, x: pd.DataFrame) -> pd.DataFrame:
        """Churn reduction per action (columns = actions)."""
        p = self.predict_churn(x)
        return pd.DataFrame({a: k * (p[c] - p[t]) for a, (t, c, k) in self.contrasts.items()}, index=x.index)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "t_learner", "features": self.features, "num_rounds": self.num_rounds, "params": self.params,
                "base_rates": self.base_rates, "contrasts": {a: list(v) for a, v in self.contrasts.items()},
                "models": {a: m.model_to_string() for a, m in self.models.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TLearner:
        t = cls(d["features"], d["num_rounds"], d["params"])
        t.base_rates = dict(d.get("base_rates") or {})
        t.contrasts = {a: (v[0], v[1], float(v[2])) for a, v in d["contrasts"].items()}
        t.models = {a: lgb.Booster(model_str=s) for a, s in d["models"].items()}
        return t


def offer_arms(offers: pd.DataFrame, mode: str = "accepted_vs_declined",
               control: str = "none") -> tuple[pd.Series, dict[str, tuple[str, str, float]]]:
    """Arm label per offer row and the contrasts (see `TLearner`). mode: accepted_vs_declined | offered_vs_control."""
    action = offers["action"].fillna(control).astype(str)
    if mode == "offered_vs_control":
        return action, {a: (a, control, 1.0) for a in sorted(set(action) - {control})}
    if mode != "accepted_vs_declined":
        raise ValueError(f"uplift mode {mode!r}: expected accepted_vs_declined or offered_vs_control")
    acc = offers["accepted"].astype(bool)
    arm = action + np.where(acc, ":accepted", ":declined")
    rate = acc.groupby(action).mean()
    return arm, {a: (f"{a}:accepted", f"{a}:declined", float(rate[a])) for a in sorted(set(action) - {control})}


def ipw_weights(propensity: pd.Series | None, n: int, clip: float = 0.05) -> pd.Series:
    """1 / propensity of the arm received (clipped to [clip, 1]); ones when there is no propensity."""
    if propensity is None:
        return pd.Series(np.ones(n))
    return 1.0 / propensity.astype(float).fillna(1.0).clip(lower=clip, upper=1.0)


def qini_curve(score: np.ndarray, treated: np.ndarray, retained: np.ndarray,
               weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve: targeting the top fraction x by `score`, gain(x) = R_t - R_c * N_t / N_c (weighted counts of
    retained customers in treatment / control among the targeted), as a fraction of the population."""
    w = np.ones(len(score)) if weight is None else np.asarray(weight, dtype=np.float64)
    order = np.argsort(-np.asarray(score), kind="stable")
    t, r, w = np.asarray(treated, bool)[order], np.asarray(retained, np.float64)[order], w[order]
    n_t, n_c = np.cumsum(w * t), np.cumsum(w * ~t)
    r_t, r_c = np.cumsum(w * t * r), np.cumsum(w * ~t * r)
    gain = r_t - r_c * np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c > 0)
    x = np.concatenate([[0.0], np.arange(1, len(score) + 1) / len(score)])
    return x, np.concatenate([[0.0], gain / w.sum()])


def uplift_curve(score: np.ndarray, treated: np.ndarray, retained: np.ndarray,
                 weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve: (retention rate treated - control among the targeted) x share targeted."""
    w = np.ones(len(score)) if weight is None else np.asarray(weight, dtype=np.float64)
    order = np.argsort(-np.asarray(score), kind="stable")
    t, r, w = np.asarray(treated, bool)[order], np.asarray(retained, np.float64)[order], w[order]
    n_t, n_c = np.cumsum(w * t), np.cumsum(w * ~t)
    rate_t = np.divide(np.cumsum(w * t * r), n_t, out=np.zeros_like(n_t), where=n_t > 0)
    rate_c = np.divide(np.cumsum(w * ~t * r), n_c, out=np.zeros_like(n_c), where=n_c > 0)
    x = np.concatenate([[0.0], np.arange(1, len(score) + 1) / len(score)])
    return x, np.concatenate([[0.0], (rate_t - rate_c) * (n_t + n_c) / w.sum()])


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def uplift_metrics(score: np.ndarray, treated: np.ndarray, retained: np.ndarray,
                   weight: np.ndarray | None = None) -> dict[str, float]:
    """Qini and AUUC of a ranking vs random targeting (the straight line to the same end point).
    `qini` = area between the Qini curve and random; `auuc` / `auuc_random` = areas under the uplift curves."""
    xq, q = qini_curve(score, treated, retained, weight)
    xu, u = uplift_curve(score, treated, retained, weight)
    return {"qini_area": _area(xq, q), "qini_random": q[-1] / 2.0, "qini": _area(xq, q) - q[-1] / 2.0,
            "auuc": _area(xu, u), "auuc_random": u[-1] / 2.0, "ate_retention": float(u[-1]), "n": int(len(score))}


def evaluate_uplift(learner: TLearner, x: pd.DataFrame, arm: pd.Series, churned: pd.Series,
                    weight: pd.Series | None = None, points: int = 51) -> pd.DataFrame:
    """Held-out Qini / AUUC per action, on the rows of that action's two arms (treated vs control), with the Qini
    curve at `points` points (`curve_x`, `curve_qini`) for plots."""
    up = learner.predict_uplift(x)
    arm = arm.astype(str).to_numpy()
    rows = []
    for a, (t, c, _) in learner.contrasts.items():
        m = (arm == t) | (arm == c)
        w = None if weight is None else weight.to_numpy()[m]
        args = (up[a].to_numpy()[m], arm[m] == t, 1.0 - churned.to_numpy(dtype=float)[m], w)
        x, q = qini_curve(*args)
        pick = np.linspace(0, len(x) - 1, min(points, len(x))).astype(int)
        rows.append({"action": a, **uplift_metrics(*args), "curve_x": x[pick].round(4).tolist(),
                     "curve_qini": q[pick].round(5).tolist()})
    return pd.DataFrame(rows)
