"""What every Lightning training job shares: its output folder, the Trainer from `cfg.trainer` + `cfg.callbacks`,
mixed precision by device, and rank-zero checks (MLflow runs and releases are made by rank zero only)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from lightning_fabric.utilities.rank_zero import _get_rank
from omegaconf import DictConfig


def is_rank_zero() -> bool:
    """True in the launching process (and in rank 0 of a distributed job)."""
    return (_get_rank() or 0) == 0


def run_dir(cfg: DictConfig) -> Path:
    """This run's output folder: Hydra's job dir under @hydra.main, else a fresh one under `paths.output_dir`."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    path = Path(cfg.paths.output_dir) / str(cfg.task_name) / f"{stamp}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_precision(precision: Any, accelerator: str) -> Any:
    """`auto` -> bf16-mixed on a bf16-capable GPU, 16-mixed on other GPUs, 32-true on CPU."""
    if str(precision) != "auto":
        return precision
    if accelerator == "cpu" or not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def make_trainer(cfg: DictConfig, out_dir: Path, logger: Any, **overrides: Any) -> tuple[pl.Trainer, dict]:
    """Trainer from `cfg.trainer` with the callbacks of `cfg.callbacks` (a `checkpoint` writes under `out_dir`);
    returns the trainer and the callbacks by name."""
    callbacks = {name: instantiate(c) for name, c in cfg.callbacks.items()}
    if "checkpoint" in callbacks:
        callbacks["checkpoint"].dirpath = str(out_dir / "checkpoints")
    precision = resolve_precision(cfg.trainer.precision, str(cfg.trainer.accelerator))
    trainer = instantiate(
        cfg.trainer,
        precision=precision,
        callbacks=list(callbacks.values()),
        logger=logger if logger is not None else False,
        default_root_dir=str(out_dir),
        **overrides,
    )
    return trainer, callbacks


def end_distributed(trainer: pl.Trainer) -> bool:
    """After a distributed fit: wait for every process, close the process group (so rank zero's evaluation and
    export run alone, without collectives) and return True in rank zero only; a single-process fit returns True."""
    if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        trainer.strategy.barrier("fit done")
        torch.distributed.destroy_process_group()
    return bool(trainer.is_global_zero)
