"""Uplift learners on LightGBM: how much one retention action lowers a customer's churn probability.

One learner per action, fitted on the rows of that action's contrast: treated (`t` = 1) against untreated
(`t` = 0; the randomised control arm, or declined offers in logs without one). Outcome `y` = churned (1/0); every
learner returns the churn reduction tau(x) = P(churn | x, untreated) - P(churn | x, treated) (> 0 = helps).

- `t`: T-learner, one outcome model per arm, tau = mu0 - mu1.
- `x`: X-learner (Kunzel et al. 2019): effects imputed with the other arm's model, one effect model per arm,
  combined with the propensity e(x): tau = e * tau0 + (1 - e) * tau1.
- `dr`: DR-learner (Kennedy 2020): cross-fitted mu0, mu1, e give the doubly robust pseudo-outcome
  mu0 - mu1 + (1 - t)(y - mu0) / (1 - e) - t (y - mu1) / e, regressed on x.
- `ct`: class transformation (Jaskowski & Jaroszewicz 2012): z = 1 when a treated customer stays or an untreated
  one churns; with rows weighted to balance the arms, tau = 2 P(z | x) - 1.

- `rr`: the relative-risk learner on the churn model's own risk and reasons (`uplift_relative`).

Propensity e(x) = P(t = 1 | x) within the contrast: the design's share when the assignment was randomised
(`propensity="design"`), else a cross-fitted LightGBM classifier, clipped to [clip, 1 - clip].
State is plain JSON (boosters as LightGBM model strings), no pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnsense.insights.uplift_relative import RelativeRiskLearner

if TYPE_CHECKING:  # LightGBM (and the scikit-learn it pulls in) is imported where a learner is fitted or loaded
    import lightgbm as lgb

KINDS = ("t", "x", "dr", "ct")
PARAMS = {
    "learning_rate": 0.05,
    "num_leaves": 8,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "verbose": -1,
    "num_threads": 1,
    "seed": 0,
    "deterministic": True,
}


class Features:
    """Numeric facts as they are and categorical facts one-hot (levels seen at fit time), as one float matrix."""

    def __init__(self, numeric: Sequence[str], levels: Mapping[str, Sequence[str]]) -> None:
        self.numeric, self.levels = list(numeric), {k: list(v) for k, v in levels.items()}

    @classmethod
    def fit(
        cls, facts: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], min_count: int = 20
    ) -> Features:
        levels = {}
        for c in categorical:
            if c in facts:
                counts = facts[c].astype("string").value_counts()
                levels[c] = sorted(str(v) for v in counts[counts >= min_count].index)
        return cls(numeric, levels)

    @property
    def names(self) -> list[str]:
        return self.numeric + [f"{c}={v}" for c, vs in self.levels.items() for v in vs]

    def matrix(self, facts: pd.DataFrame) -> np.ndarray:
        parts = [facts.reindex(columns=self.numeric).to_numpy(dtype=np.float64)]
        for c, vs in self.levels.items():
            col = facts[c].astype("string").to_numpy() if c in facts else np.full(len(facts), None)
            parts.append(
                np.stack([col == v for v in vs], axis=1).astype(np.float64) if vs else np.zeros((len(facts), 0))
            )
        return np.concatenate(parts, axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"numeric": self.numeric, "levels": self.levels}


def _train(
    x: np.ndarray,
    y: np.ndarray,
    objective: str,
    params: Mapping[str, Any],
    rounds: int,
    weight: np.ndarray | None = None,
) -> lgb.Booster:
    import lightgbm as lgb

    data = lgb.Dataset(x, y, weight=weight, feature_name=[f"f{i}" for i in range(x.shape[1])], free_raw_data=True)
    return lgb.train({**params, "objective": objective}, data, num_boost_round=rounds)


def _folds(n: int, k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % k


class UpliftLearner:
    """One action's effect model of kind `kind` (see module doc)."""

    def __init__(
        self,
        kind: str,
        params: Mapping[str, Any] | None = None,
        rounds: int = 150,
        folds: int = 3,
        clip: float = 0.05,
        seed: int = 0,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"uplift learner {kind!r}: expected one of {list(KINDS)}")
        self.kind, self.rounds, self.folds, self.clip, self.seed = kind, int(rounds), int(folds), float(clip), seed
        self.params = {**PARAMS, **dict(params or {}), "seed": seed}
        self.models: dict[str, lgb.Booster] = {}
        self.share: float | None = None  # design propensity; None: the `e` model

    def _propensity_oof(self, x, t, design: bool) -> np.ndarray:
        if design:
            return np.full(len(t), t.mean())
        e = np.empty(len(t))
        fold = _folds(len(t), self.folds, self.seed)
        for k in range(self.folds):
            m = _train(x[fold != k], t[fold != k].astype(float), "binary", self.params, self.rounds)
            e[fold == k] = m.predict(x[fold == k])
        return np.clip(e, self.clip, 1 - self.clip)

    def fit(self, x: np.ndarray, t: np.ndarray, y: np.ndarray, design_propensity: bool = True) -> UpliftLearner:
        """Fit on rows `x` with treatment flags `t` and churn outcomes `y`; `design_propensity`: the assignment
        was randomised (the propensity is the treated share), else it is estimated."""
        t, y = np.asarray(t, bool), np.asarray(y, np.float64)
        if t.all() or not t.any():
            raise ValueError("uplift: a contrast needs treated and untreated rows")
        self.share = float(t.mean()) if design_propensity else None
        if not design_propensity and self.kind == "x":
            self.models["e"] = _train(x, t.astype(float), "binary", self.params, self.rounds)
        getattr(self, f"_fit_{self.kind}")(x, t, y, design_propensity)
        return self

    def _fit_t(self, x, t, y, design) -> None:
        self.models["mu0"] = _train(x[~t], y[~t], "binary", self.params, self.rounds)
        self.models["mu1"] = _train(x[t], y[t], "binary", self.params, self.rounds)

    def _fit_x(self, x, t, y, design) -> None:
        self._fit_t(x, t, y, design)
        d1 = self.models["mu0"].predict(x[t]) - y[t]  # treated: churn they would have had - churn they had
        d0 = y[~t] - self.models["mu1"].predict(x[~t])
        self.models["tau1"] = _train(x[t], d1, "regression", self.params, self.rounds)
        self.models["tau0"] = _train(x[~t], d0, "regression", self.params, self.rounds)

    def _fit_dr(self, x, t, y, design) -> None:
        mu0, mu1 = np.empty(len(t)), np.empty(len(t))
        fold = _folds(len(t), self.folds, self.seed)
        for k in range(self.folds):
            fit, out = fold != k, fold == k
            mu0[out] = _train(x[fit & ~t], y[fit & ~t], "binary", self.params, self.rounds).predict(x[out])
            mu1[out] = _train(x[fit & t], y[fit & t], "binary", self.params, self.rounds).predict(x[out])
        e = self._propensity_oof(x, t, design)
        psi = mu0 - mu1 + (~t) * (y - mu0) / (1 - e) - t * (y - mu1) / e
        self.models["tau"] = _train(x, psi, "regression", self.params, self.rounds)

    def _fit_ct(self, x, t, y, design) -> None:
        e = self._propensity_oof(x, t, design)
        z = (t & (y == 0)) | (~t & (y == 1))
        w = np.where(t, 1 / e, 1 / (1 - e))
        self.models["z"] = _train(x, z.astype(float), "binary", self.params, self.rounds, w / w.mean())

    def propensity(self, x: np.ndarray) -> np.ndarray:
        if self.share is not None or "e" not in self.models:
            return np.full(len(x), self.share if self.share is not None else 0.5)
        return np.clip(self.models["e"].predict(x), self.clip, 1 - self.clip)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Churn reduction tau(x) per row."""
        m = self.models
        if self.kind == "t":
            return m["mu0"].predict(x) - m["mu1"].predict(x)
        if self.kind == "x":
            e = self.propensity(x)
            return e * m["tau0"].predict(x) + (1 - e) * m["tau1"].predict(x)
        if self.kind == "dr":
            return m["tau"].predict(x)
        return 2.0 * m["z"].predict(x) - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rounds": self.rounds,
            "folds": self.folds,
            "clip": self.clip,
            "seed": self.seed,
            "params": self.params,
            "share": self.share,
            "models": {k: b.model_to_string() for k, b in self.models.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UpliftLearner:
        out = cls(d["kind"], d["params"], d["rounds"], d["folds"], d["clip"], d["seed"])
        out.share = d.get("share")
        import lightgbm as lgb

        out.models = {k: lgb.Booster(model_str=s) for k, s in d["models"].items()}
        return out


def learner_from_dict(d: Mapping[str, Any]) -> Any:
    """A fitted learner from its `to_dict()`: the relative-risk learner or a LightGBM one."""
    from_dict = RelativeRiskLearner.from_dict if d["kind"] == RelativeRiskLearner.kind else UpliftLearner.from_dict
    return from_dict(d)


class UpliftModel:
    """The fitted learners of every supported action over shared features; `scale[a]` turns a learner's effect
    into the effect of making the offer (1, or the acceptance rate when the contrast is accepted vs declined);
    `supported[a]`: held-out evidence that the predicted effect varies by customer; `average[a]`: the average effect
    of offering `a`, for actions whose average effect in a randomised log is above zero; `average_learners[a]`: for
    those actions, when the log carries the model's risk, the same evidence on the relative scale (a relative-risk
    learner without reasons: offering `a` removes the same share of everyone's recalibrated risk), which applies
    the average to each customer's own risk (`predict_average`); `chooses`: held-out evidence that picking each
    customer's action by predicted uplift beats the playbook's answer to its reasons (`uplift_policy`; without it,
    decisions keep the playbook's action and the model values it)."""

    def __init__(
        self,
        features: Features,
        learners: Mapping[str, UpliftLearner | RelativeRiskLearner],
        scale: Mapping[str, float] | None = None,
        design: str = "randomised",
        supported: Mapping[str, bool] | None = None,
        average: Mapping[str, float] | None = None,
        average_learners: Mapping[str, RelativeRiskLearner] | None = None,
        chooses: bool = True,
    ) -> None:
        self.features, self.learners = features, dict(learners)
        self.scale = {a: float((scale or {}).get(a, 1.0)) for a in self.learners}
        self.design = design
        self.supported = {a: bool((supported or {}).get(a, False)) for a in self.learners}  # held-out evidence
        self.average = {a: float(v) for a, v in (average or {}).items() if a in self.learners}
        self.average_learners = {a: lr for a, lr in (average_learners or {}).items() if a in self.average}
        self.chooses = bool(chooses)  # held-out evidence that its choice of action beats the playbook's

    @property
    def actions(self) -> list[str]:
        return list(self.learners)

    def predict_uplift(self, facts: pd.DataFrame) -> pd.DataFrame:
        """Churn reduction per action (columns = actions), index = facts' index."""
        x = self.features.matrix(facts)
        return pd.DataFrame({a: self.scale[a] * lr.predict(x) for a, lr in self.learners.items()}, index=facts.index)

    def predict_average(self, facts: pd.DataFrame) -> pd.DataFrame:
        """Per action supported on average (columns), its average effect applied to each row: the relative average
        effect times the row's recalibrated risk where there is a relative learner, else the average itself."""
        x = self.features.matrix(facts) if self.average_learners else None
        return pd.DataFrame(
            {
                a: self.average_learners[a].predict(x) if a in self.average_learners else np.full(len(facts), v)
                for a, v in self.average.items()
            },
            index=facts.index,
            columns=list(self.average),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "uplift_model",
            "design": self.design,
            "features": self.features.to_dict(),
            "scale": self.scale,
            "supported": self.supported,
            "average": self.average,
            "average_learners": {a: lr.to_dict() for a, lr in self.average_learners.items()},
            "chooses": self.chooses,
            "learners": {a: lr.to_dict() for a, lr in self.learners.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UpliftModel:
        f = d["features"]
        return cls(
            Features(f["numeric"], f["levels"]),
            {a: learner_from_dict(v) for a, v in d["learners"].items()},
            d.get("scale"),
            str(d.get("design", "randomised")),
            d.get("supported"),
            d.get("average"),
            {a: RelativeRiskLearner.from_dict(v) for a, v in (d.get("average_learners") or {}).items()},
            bool(d.get("chooses", True)),
        )
