"""Task dispatch for the thin `train.py` / `serve.py` entry points (imports are lazy: serving needs no Lightning)."""
from __future__ import annotations

from omegaconf import DictConfig


def run_training(cfg: DictConfig) -> float | None:
    """Run the training job named by `cfg.task`; returns the validation metric a sweeper would optimise."""
    if cfg.task == "churn":
        from churnsense.training.churn import train_churn

        return train_churn(cfg).get("val/auroc")
    if cfg.task == "feedback":
        from churnsense.text.training import train_feedback

        return train_feedback(cfg).get("val/macro_f1")
    raise ValueError(f"unknown task {cfg.task!r}: expected 'churn' or 'feedback'")


def run_serving(cfg: DictConfig) -> None:
    """Run the batch-scoring job named by `cfg.task_name`."""
    if cfg.task_name == "churn":
        from churnsense.serving.churn import serve_churn

        serve_churn(cfg)
    elif cfg.task_name == "feedback":
        from churnsense.text.serving import serve_feedback

        serve_feedback(cfg)
    elif cfg.task_name == "report":
        from churnsense.insights.report import serve_report

        serve_report(cfg)
    else:
        raise ValueError(f"unknown task {cfg.task_name!r}: expected churn, feedback or report")
