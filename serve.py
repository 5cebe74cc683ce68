"""Batch-score files with ONNX Runtime: `python serve.py task=churn|feedback|report input...=FILE output=FILE`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import churnsense  # noqa: F401  (registers the ${churnsense.*} resolvers of conf/, also for --cfg job --resolve)


@hydra.main(version_base="1.3", config_path="conf/serve", config_name="serve")
def main(cfg: DictConfig) -> None:
    """Dispatch to the task's batch scorer; it prints rows in = scored + rejected and throughput."""
    from churnsense.cli import run_serving

    run_serving(cfg)


if __name__ == "__main__":
    main()
