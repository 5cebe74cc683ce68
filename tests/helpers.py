"""Shared test helpers: the real configs, composed as training composes them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"


def train_config(*overrides: str):
    """`conf/train.yaml` composed with overrides (no Hydra run)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def default_insights_config() -> dict[str, Any]:
    """The insights section a default churn training run saves in its release (resolved, plain dict)."""
    return OmegaConf.to_container(train_config().insights, resolve=True)
