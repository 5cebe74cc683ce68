"""Data-parallel churn training on CPU: every process trains on its own shard, and `trainer=ddp_cpu` (2 gloo
processes) gives the metrics of one process within noise, with one release written by rank zero."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from churnsense.churn.datamodule import ChurnDataModule
from churnsense.churn.examples import random_arrays
from helpers import tiny_churn_overrides

ROOT = Path(__file__).resolve().parents[1]


def _ids(loader) -> set[int]:
    return {int(i) for batch in loader for i in batch["num"][:, 0].mul(1e6).round().long()}


def test_distributed_fit_shards_training_rows_but_evaluates_all():
    splits = {name: random_arrays(n=60, seed=i) for i, name in enumerate(("train", "val", "test"))}
    splits["train"]["num"][:, 0] = torch.arange(60).numpy() / 1e6  # a row id in the first numeric column
    shards, steps = [], []
    for rank in (0, 1):
        dm = ChurnDataModule(splits, batch_size=8, seed=3)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        loader = dm.train_dataloader()
        assert {len(b["label"]) for b in loader} == {4}  # the global batch of 8 split over 2 processes
        shards.append(_ids(loader))
        steps.append(len(loader))
        assert sum(len(b["label"]) for b in dm.predict_loader("val")) == 60  # rank zero evaluates every row
    assert not shards[0] & shards[1] and len(shards[0]) == len(shards[1]) == 28  # 30 each, last batch dropped
    alone = ChurnDataModule(splits, batch_size=8, seed=3)
    assert len(_ids(alone.train_dataloader())) == 56
    assert steps == [len(alone.train_dataloader())] * 2  # the same optimizer steps per epoch as one process


def _train(root: Path, trainer: str, artifacts: str) -> dict[str, float]:
    overrides = [
        "task=churn",
        *tiny_churn_overrides(root, artifacts, trainer, epochs=8),
        "logger=none",
        "insights.enabled=false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    done = subprocess.run(
        [sys.executable, "train.py", *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((root / artifacts / "churn" / "metadata.json").read_text())["metrics"]


@pytest.mark.slow  # three Python processes with torch: ~1.5 min on 2 cores
def test_two_cpu_processes_match_one(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "churnsense.synth", "n_customers=6000", f"out_dir={tmp_path / 'data' / 'demo'}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])},
    )
    one = _train(tmp_path, "cpu", "one")
    two = _train(tmp_path, "ddp_cpu", "two")
    print({k: (round(one[k], 4), round(two[k], 4)) for k in one if k.startswith(("val/", "test/"))})
    assert one["test/churn_rate"] == two["test/churn_rate"]  # rank zero evaluated the whole test split
    for key, tol in (("val/auroc", 0.1), ("test/auroc", 0.1), ("val/log_loss", 0.02), ("test/log_loss", 0.02)):
        assert abs(one[key] - two[key]) <= tol, (key, one[key], two[key])
