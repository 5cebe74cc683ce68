"""Task dispatch for the thin `train.py` / `serve.py` entry points, and their one error style.

Each task's module is imported only when that task runs, so `serve.py` never loads torch or Lightning.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

# Problems with what the user gave us (files, columns, values, config, where outputs go): reported as one clear
# line, exit code 2. ValueError covers DataValidationError (file, column, rows, reason) and pyarrow's ArrowInvalid.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    UnicodeError,
    MissingMandatoryValue,
)
DEBUG_ENV = "CHURNSENSE_DEBUG"


def debug_enabled() -> bool:
    """`CHURNSENSE_DEBUG` set to 1 / true / yes / on (any case): show tracebacks instead of one-line errors."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def error_line(err: BaseException) -> str:
    """The error as one line (`churnsense: error: …`): whitespace runs, newlines included, become one space."""
    return "churnsense: error: " + " ".join(str(err).split())


def report_user_errors(job: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run `job(cfg)`; a user-input error becomes `churnsense: error: …` (one line) on stderr and exit code 2
    instead of a traceback (set CHURNSENSE_DEBUG=1 to see the traceback)."""
    try:
        return job(cfg)
    except USER_ERRORS as err:
        if debug_enabled():
            raise
        print(error_line(err), file=sys.stderr)
        raise SystemExit(2) from None


def run_training(cfg: DictConfig) -> float | None:
    """Run the training job named by `cfg.task_name`; returns the validation metric a sweeper would optimise."""
    return report_user_errors(_train, cfg)


def run_serving(cfg: DictConfig) -> None:
    """Run the batch-scoring job named by `cfg.task_name`."""
    report_user_errors(_serve, cfg)


def _train(cfg: DictConfig) -> float | None:
    if cfg.task_name == "churn":
        from churnsense.churn.train import train_churn

        return train_churn(cfg).get("val/auroc")
    if cfg.task_name == "feedback":
        from churnsense.feedback.train import train_feedback

        return train_feedback(cfg).get("val/macro_f1")
    raise ValueError(f"unknown task {cfg.task_name!r}: expected 'churn' or 'feedback'")


def _serve(cfg: DictConfig) -> None:
    engine = str(cfg.get("engine") or "local")
    if engine not in ("local", "spark"):
        raise ValueError(f"unknown engine {engine!r}: expected 'local' or 'spark'")
    if engine == "spark" and cfg.task_name != "churn":
        raise ValueError(f"engine=spark scores task=churn; run task={cfg.task_name} with engine=local")
    if engine == "spark":
        _require_spark()
    if cfg.task_name == "churn" and engine == "spark":
        from churnsense.churn.spark_serve import serve_churn_spark

        serve_churn_spark(cfg)
    elif cfg.task_name == "churn":
        from churnsense.churn.serve import serve_churn

        serve_churn(cfg)
    elif cfg.task_name == "feedback":
        from churnsense.feedback.serve import serve_feedback

        serve_feedback(cfg)
    elif cfg.task_name == "evaluate":
        from churnsense.churn.evaluate import serve_evaluate

        serve_evaluate(cfg)
    elif cfg.task_name == "report":
        from churnsense.insights.report import serve_report

        serve_report(cfg)
    elif cfg.task_name == "impact":
        from churnsense.insights.impact import serve_impact

        serve_impact(cfg)
    else:
        raise ValueError(f"unknown task {cfg.task_name!r}: expected churn, feedback, evaluate, report or impact")


def _require_spark() -> None:
    """A clear error when the optional Spark extra is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ValueError("engine=spark needs PySpark: pip install 'churnsense[spark]' (and Java 17+)") from None
