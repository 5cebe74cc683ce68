"""The fitted insights of a release (`insights.json`: plain JSON, no pickle) and the insights config it was fit with."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "insights.json"
DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "conf" / "insights" / "default.yaml"


@dataclass
class InsightsState:
    """segments: `fit_segments` state; uplift: `TLearner.to_dict()`; teams: `team_scores` records;
    monthly_retention: base retention for CLTV; metrics: fit-time numbers (silhouette, Qini, ...)."""

    segments: dict[str, Any] = field(default_factory=dict)
    uplift: dict[str, Any] = field(default_factory=dict)
    teams: list[dict[str, Any]] = field(default_factory=list)
    monthly_retention: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def save(self, release_dir: str | Path) -> Path:
        path = Path(release_dir) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), default=_plain, ensure_ascii=False), encoding="utf-8")
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
    return InsightsState(**d)


def load_config(release_dir: str | Path | None = None) -> dict[str, Any]:
    """The `insights` section of the release's resolved `config.yaml`, else the repository default."""
    from omegaconf import OmegaConf

    if release_dir is not None and (Path(release_dir) / "config.yaml").is_file():
        cfg = OmegaConf.load(Path(release_dir) / "config.yaml")
        if cfg.get("insights") is not None:
            return OmegaConf.to_container(cfg.insights, resolve=True)
    return OmegaConf.to_container(OmegaConf.load(DEFAULT_CONFIG), resolve=True)
