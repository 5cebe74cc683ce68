"""ChurnDataModule batches dict-of-arrays splits: trimmed sequence axis, seeded shuffling, all rows seen."""

from __future__ import annotations

import torch

from churnsense.churn.datamodule import ArrayBatches, ChurnDataModule
from churnsense.churn.examples import random_arrays


def test_batches_trim_sequence_axis_but_keep_one_slot():
    arrays = random_arrays(n=10, max_events=12)
    arrays["seq_mask"][:, 5:] = False
    ds = ArrayBatches(arrays)
    batch = ds[[0, 1, 2]]
    assert batch["seq_mask"].dtype == torch.bool and batch["cat"].dtype == torch.int64
    assert batch["seq_type"].shape[1] == int(batch["seq_mask"].sum(1).max()) <= 5
    arrays["seq_mask"][:] = False
    assert ArrayBatches(arrays)[[0, 1]]["seq_mask"].shape == (2, 1)


def test_loaders_are_seeded_and_complete():
    splits = {name: random_arrays(n=50, seed=i) for i, name in enumerate(("train", "val", "test"))}
    first = [b["label"] for b in ChurnDataModule(splits, batch_size=16, seed=3).train_dataloader()]
    again = [b["label"] for b in ChurnDataModule(splits, batch_size=16, seed=3).train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and len(first) == 3  # drop_last in training
    val = list(ChurnDataModule(splits, batch_size=16).val_dataloader())
    assert sum(len(b["label"]) for b in val) == 50
