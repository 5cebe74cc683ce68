"""The fitted insights of a release (`insights.json`: plain JSON, `insights_background.npz`: the attribution
background as plain arrays, `insights_explainer.json`: the amortised reason explainer's trees as text; no pickle)
and the insights config it was fit with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from churnsense.core.release import read_json, write_json

STATE_FILE = "insights.json"
BACKGROUND_FILE = "insights_background.npz"
EXPLAINER_FILE = "insights_explainer.json"
SEPARATE = ("background", "explainer", "built")  # saved in files of their own (or not at all)


@dataclass
class InsightsState:
    """segments: `fit_segments` state; uplift: `TLearner.to_dict()`; teams: `team_scores` records;
    monthly_retention: base retention for CLTV; at_risk_threshold: churn probability from which a customer is at
    risk (fixed at training time from the validation predictions); event_types: the event types customer facts are
    computed for; background: model inputs of a sample of training customers (the attribution reference
    population; saved beside insights.json); explainer: the amortised reason explainer
    (`AmortisedExplainer.to_dict()`, saved beside it); metrics: fit-time numbers (silhouette, Qini, ...).

    at_risk_threshold, monthly_retention, event_types and background make every served row a function of that
    customer's rows and the release only (`None` / empty in releases fitted before they existed: serving then falls
    back to per-batch values and says so)."""

    segments: dict[str, Any] = field(default_factory=dict)
    uplift: dict[str, Any] = field(default_factory=dict)
    teams: list[dict[str, Any]] = field(default_factory=list)
    monthly_retention: float | None = None
    at_risk_threshold: float | None = None
    event_types: list[str] | None = None
    background: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    metrics: dict[str, Any] = field(default_factory=dict)
    explainer: dict[str, Any] = field(default_factory=dict, repr=False)
    built: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # objects built from it (unsaved)

    def build_once(self, name: str, build: Callable[[], Any]) -> Any:
        """`build()` the first time `name` is asked for, the same object after that (e.g. the uplift model, which
        every scored batch uses)."""
        if name not in self.built:
            self.built[name] = build()
        return self.built[name]

    def save(self, release_dir: str | Path) -> Path:
        path = Path(release_dir) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SEPARATE}
        write_json(path, plain)
        if self.explainer:
            write_json(path.parent / EXPLAINER_FILE, self.explainer)
        if self.background:
            np.savez(path.parent / BACKGROUND_FILE, **{k: np.asarray(v) for k, v in self.background.items()})
        return path


def load_state(release_dir: str | Path) -> InsightsState:
    """The release's fitted insights; an empty state when the release has none (reasons and value still work)."""
    path = Path(release_dir) / STATE_FILE
    if not path.is_file():
        return InsightsState()
    d = read_json(path)
    if d.get("segments", {}).get("silhouette"):
        d["segments"]["silhouette"] = {int(k): v for k, v in d["segments"]["silhouette"].items()}
    background = Path(release_dir) / BACKGROUND_FILE
    if background.is_file():
        with np.load(background, allow_pickle=False) as arrays:
            d["background"] = {k: arrays[k] for k in arrays.files}
    explainer = Path(release_dir) / EXPLAINER_FILE
    if explainer.is_file():
        d["explainer"] = read_json(explainer)
    return InsightsState(**d)


def load_config(release_dir: str | Path) -> dict[str, Any] | None:
    """The `insights` section of the release's resolved `config.yaml` (None when the release has none)."""
    path = Path(release_dir) / "config.yaml"
    if not path.is_file():
        return None
    section = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("insights")
    return dict(section) if section else None


def setting(section: Mapping[str, Any], key: str, name: str = "insights") -> Any:
    """`section[key]` of the insights config a release carries (resolved from `conf/insights/` at training, so every
    key is there); a release trained before `key` existed gets one clear error instead of a silent default."""
    try:
        return section[key]
    except KeyError:
        raise ValueError(
            f"the release's insights config has no {name}.{key} (trained by an older version): retrain the release, "
            f"or add {name}.{key} to its config.yaml"
        ) from None
