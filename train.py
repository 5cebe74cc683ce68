"""Train a churnsense model: `python train.py [task=churn|feedback] [overrides...]` (Hydra, multirun with -m)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import churnsense  # noqa: F401  (registers the ${churnsense.*} resolvers of conf/, also for --cfg job --resolve)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Dispatch to the task's training function; returns the selection metric for sweepers."""
    from churnsense.cli import run_training

    return run_training(cfg)


if __name__ == "__main__":
    main()
