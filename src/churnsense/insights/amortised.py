"""Amortised reason attributions: the sampled Shapley estimate learned once, at training time, then predicted.

Sampled Shapley values (`attribution.attribute_groups`) cost tens of model evaluations per explained customer. The
amortised explainer (FastSHAP's idea, with gradient-boosted trees as the explainer) fits one LightGBM regressor per
reason group on the sampled values of training customers (the `teacher` estimator, run on the riskiest training
rows: the customers reasons are served for) and predicts a customer's group attributions from its tabular model
inputs: the attributes and the history aggregates the pipeline computes from the events (`cat`, `num`). One pass
of the trees replaces the model evaluations. The regression also averages out the teacher's sampling noise; its
fit on held-out training rows (R^2 per group, agreement of the top group with the teacher's) is kept with the
release and logged. The explainer belongs to the release: it was fit for that model, those inputs and those groups,
and serving checks the group names before it predicts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from churnsense.insights.attribution import Batch, GroupIndex, attribute_groups, logit_from_probability

log = logging.getLogger(__name__)
KIND = "amortised_explainer"
AMORTISED = "amortised"  # insights.reasons.method that serves this explainer


def explainer_inputs(batch: Batch, rows: np.ndarray | None = None) -> np.ndarray:
    """[rows, cat + num] float matrix the explainer reads (categorical codes first, as LightGBM categories)."""
    parts = [
        np.asarray(batch[k] if rows is None else batch[k][rows], dtype=np.float64) for k in ("cat", "num") if k in batch
    ]
    if parts:
        return np.concatenate(parts, axis=1)
    return np.zeros((len(next(iter(batch.values()))) if rows is None else len(rows), 0))


@dataclass
class AmortisedExplainer:
    """One booster per reason group (`models`: group -> booster; a group absent from it is always 0)."""

    groups: list[str]
    n_cat: int
    n_features: int
    models: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    predict_threads: int = 1

    def check(self, index: GroupIndex) -> None:
        """Raise when the configured reason groups are not those the explainer was fit for."""
        if list(index.names) != list(self.groups):
            raise ValueError(
                f"the release's amortised reason explainer was fit for the groups {self.groups}, but the insights "
                f"config now gives {list(index.names)}: retrain, or set insights.reasons.method to a sampled "
                "estimator (antithetic, shapley, ablation)"
            )

    def attribute(self, batch: Batch, rows: np.ndarray) -> np.ndarray:
        """Group attributions [len(rows), groups] in logit units."""
        x = explainer_inputs(batch, rows)
        if x.shape[1] != self.n_features:
            raise ValueError(
                f"the amortised reason explainer reads {self.n_features} model inputs, the batch has {x.shape[1]}"
            )
        out = np.zeros((len(x), len(self.groups)))
        if not len(x):
            return out
        for g, name in enumerate(self.groups):
            if name in self.models:
                out[:, g] = self.models[name].predict(x, num_threads=self.predict_threads)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "groups": list(self.groups),
            "n_cat": self.n_cat,
            "n_features": self.n_features,
            "models": {g: m.model_to_string() for g, m in self.models.items()},
            "metrics": self.metrics,
            "predict_threads": self.predict_threads,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AmortisedExplainer:
        import lightgbm as lgb

        return cls(
            list(d["groups"]),
            int(d["n_cat"]),
            int(d["n_features"]),
            {g: lgb.Booster(model_str=s) for g, s in d["models"].items()},
            dict(d.get("metrics") or {}),
            int(d.get("predict_threads", 1)),
        )


def training_rows(p: np.ndarray, n_rows: int, risk_share: float, seed: int) -> np.ndarray:
    """Sorted positions of up to `n_rows` rows drawn (seeded) from the top `risk_share` of `p`: the customers at
    risk, whom reasons are served for."""
    if not len(p):
        return np.zeros(0, dtype=np.int64)
    top = np.argsort(-p, kind="stable")[: max(1, int(np.ceil(len(p) * float(risk_share))))]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(top, size=min(int(n_rows), len(top)), replace=False))


def _fit_metrics(pred: np.ndarray, target: np.ndarray, groups: list[str]) -> dict[str, Any]:
    """Held-out fit: R^2 per group (against the teacher's noisy values: a lower bound) and how often both name the
    same top group (among rows where the teacher's top attribution is positive)."""
    r2 = {}
    for g, name in enumerate(groups):
        var = float(np.var(target[:, g]))
        if var > 0:
            r2[name] = float(1 - np.mean((pred[:, g] - target[:, g]) ** 2) / var)
    positive = target.max(axis=1) > 0
    agree = float(np.mean(pred[positive].argmax(axis=1) == target[positive].argmax(axis=1))) if positive.any() else 0
    return {"rows": int(len(target)), "r2": r2, "top1_agreement": agree}


def fit_amortised_explainer(
    batch: Batch,
    prob_fn: Callable[[Batch], np.ndarray],
    index: GroupIndex,
    background: Batch,
    cfg: Mapping[str, Any],
    seed: int = 0,
) -> AmortisedExplainer:
    """Fit the explainer on the training rows `batch` (model inputs) of the model `prob_fn` (see module doc).
    `cfg`: `insights.reasons.amortised` (teacher, candidates, rows, risk_share, holdout, num_rounds, lightgbm,
    predict_threads);
    `background`: the release's attribution reference population, which the teacher swaps groups against."""
    import lightgbm as lgb

    t0 = time.process_time()
    n = len(next(iter(batch.values())))
    pool = np.arange(n)
    if n > int(cfg["candidates"]):  # large data: the riskiest are found among a seeded sample
        pool = np.sort(np.random.default_rng(seed + 2).choice(n, size=int(cfg["candidates"]), replace=False))
    p = np.asarray(prob_fn({k: v[pool] for k, v in batch.items()}), dtype=np.float64).reshape(-1)
    rows = pool[training_rows(p, int(cfg["rows"]), float(cfg["risk_share"]), seed)]
    if len(rows) < 2:
        raise ValueError(f"{len(rows)} training rows to fit the amortised reason explainer on")
    own = {k: v[rows] for k, v in batch.items() if k in background}
    teacher = dict(cfg["teacher"])
    target = attribute_groups(
        logit_from_probability(prob_fn),
        own,
        index,
        background,
        method=str(teacher["method"]),
        n_samples=int(teacher["n_samples"]),
        n_background=int(teacher["n_background"]),
        seed=seed,
        keys=rows,
    )
    x = explainer_inputs(batch, rows)
    n_cat = batch["cat"].shape[1] if "cat" in batch else 0
    held = np.random.default_rng(seed + 1).random(len(rows)) < float(cfg["holdout"])
    if held.all() or not held.any():
        held = np.zeros(len(rows), bool)
    params = {**dict(cfg["lightgbm"]), "objective": "regression", "seed": seed}
    names = [f"f{i}" for i in range(x.shape[1])]
    explainer = AmortisedExplainer(
        list(index.names), n_cat, x.shape[1], predict_threads=int(cfg.get("predict_threads", 1))
    )
    for g, name in enumerate(index.names):
        y = target[~held, g]
        if np.ptp(y) == 0:  # the group never moves the score on these rows (e.g. `other` with no inputs)
            continue
        data = lgb.Dataset(x[~held], y, feature_name=names, categorical_feature=list(range(n_cat)), free_raw_data=True)
        explainer.models[name] = lgb.train(params, data, num_boost_round=int(cfg["num_rounds"]))
    if held.any():
        explainer.metrics = _fit_metrics(explainer.attribute(batch, rows[held]), target[held], list(index.names))
    explainer.metrics.update(teacher=teacher, training_rows=int((~held).sum()), cpu_s=time.process_time() - t0)
    log.info(
        "reasons: amortised explainer fitted on %d training rows (teacher %s %dx%d; held-out top-group agreement "
        "%.2f; %.0f CPU s)",
        int((~held).sum()),
        teacher["method"],
        int(teacher["n_samples"]),
        int(teacher["n_background"]),
        float(explainer.metrics.get("top1_agreement", float("nan"))),
        explainer.metrics["cpu_s"],
    )
    return explainer
