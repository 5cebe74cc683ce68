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


def feedback_config(encoder: Path, tmp_path: Path, *overrides: str):
    """The real `task=feedback` config, shrunk: a tiny encoder, tiny data, no tracking, releases under `tmp_path`,
    the plain export served (no int8 / fused candidates to gate)."""
    return train_config(
        "task=feedback",
        "logger=none",
        f"paths.artifacts_dir={tmp_path}",
        f"paths.output_dir={tmp_path / 'out'}",
        f"model.encoder_path={encoder}",
        "model.max_length=32",
        "model.trainable_layers=1",
        "corpus.n_corpus=64",
        "corpus.holdout.n=0",
        "corpus.drugreview_rows=0",
        "corpus.feedback_table=null",
        f"export.release_dir={tmp_path / 'rel'}",
        "export.int8=false",
        "export.fused_fp32=false",
        *overrides,
    )
