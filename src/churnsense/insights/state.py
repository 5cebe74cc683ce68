"""The fitted insights of a release (`insights.json`: plain JSON, and `insights_background.npz`: the attribution
background as plain arrays; no pickle) and the insights config it was fit with."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

STATE_FILE = "insights.json"
BACKGROUND_FILE = "insights_background.npz"
DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "conf" / "insights" / "default.yaml"


@dataclass
class InsightsState:
    """segments: `fit_segments` state; uplift: `TLearner.to_dict()`; teams: `team_scores` records;
    monthly_retention: base retention for CLTV; at_risk_threshold: churn probability from which a customer is at
    risk (fixed at training time from the validation predictions); event_types: the event types customer facts are
    computed for; background: model inputs of a sample of training customers (the attribution reference
    population; saved beside insights.json); metrics: fit-time numbers (silhouette, Qini, ...).

    The last four make every served row a function of that customer's rows and the release only (`None` / empty in
    releases fitted before they existed: serving then falls back to per-batch values and says so)."""

    segments: dict[str, Any] = field(default_factory=dict)
    uplift: dict[str, Any] = field(default_factory=dict)
    teams: list[dict[str, Any]] = field(default_factory=list)
    monthly_retention: float | None = None
    at_risk_threshold: float | None = None
    event_types: list[str] | None = None
    background: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    metrics: dict[str, Any] = field(default_factory=dict)

    def save(self, release_dir: str | Path) -> Path:
        path = Path(release_dir) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "background"}
        path.write_text(json.dumps(plain, default=_plain, ensure_ascii=False), encoding="utf-8")
        if self.background:
            np.savez(path.parent / BACKGROUND_FILE, **{k: np.asarray(v) for k, v in self.background.items()})
        return path


def _plain(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def load_state(release_dir: str | Path) -> InsightsState:
    """The release's fitted insights; an empty state when the release has none (reasons and value still work)."""
    path = Path(release_dir) / STATE_FILE
    if not path.is_file():
        return InsightsState()
    d = json.loads(path.read_text(encoding="utf-8"))
    if d.get("segments", {}).get("silhouette"):
        d["segments"]["silhouette"] = {int(k): v for k, v in d["segments"]["silhouette"].items()}
    background = Path(release_dir) / BACKGROUND_FILE
    if background.is_file():
        with np.load(background, allow_pickle=False) as arrays:
            d["background"] = {k: arrays[k] for k in arrays.files}
    return InsightsState(**d)


FILLED_SECTIONS = ("reasons", "routing", "scripts")  # sections whose missing knobs come from the default


def load_config(release_dir: str | Path | None = None) -> dict[str, Any]:
    """The `insights` section of the release's resolved `config.yaml`, else the repository default. Knobs a
    release predates (a missing top-level section, or a missing key of `reasons` / `routing` / `scripts`) are
    taken from the repository default; what the release has is never changed."""
    from omegaconf import OmegaConf

    default = OmegaConf.to_container(OmegaConf.load(DEFAULT_CONFIG), resolve=True)
    if release_dir is not None and (Path(release_dir) / "config.yaml").is_file():
        cfg = OmegaConf.load(Path(release_dir) / "config.yaml")
        if cfg.get("insights") is not None:
            return with_defaults(OmegaConf.to_container(cfg.insights, resolve=True), default)
    return default


def with_defaults(cfg: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    """`cfg` with missing top-level sections, and missing keys of `FILLED_SECTIONS`, taken from `default`."""
    out = dict(cfg)
    for key, value in default.items():
        if key not in out or out[key] is None:
            out[key] = value
        elif key in FILLED_SECTIONS and isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = {**{k: v for k, v in value.items() if k not in out[key]}, **out[key]}
    return out
