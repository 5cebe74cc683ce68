"""ChurnDataModule: batches already-transformed splits (dict of arrays from FeaturePipeline.transform).

It only splits into batches: whole batches are gathered by index (no per-row collate) and the sequence axis is
trimmed to the longest history in the batch (at least one slot, as the batch contract requires).
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

SEQ_KEYS = ("seq_type", "seq_value", "seq_dt", "seq_mask")


class ArrayBatches(Dataset):
    """Dataset over a dict of equal-length arrays; `ds[indices]` returns a batch dict of tensors."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.tensors = {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in arrays.items()}
        self.tensors["seq_mask"] = self.tensors["seq_mask"].bool()
        lengths = {len(v) for v in self.tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"arrays have different lengths: {lengths}")
        self.n = lengths.pop()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: list[int]) -> dict[str, torch.Tensor]:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        batch = {k: v[idx_t] for k, v in self.tensors.items()}
        n_seq = int(batch["seq_mask"].sum(1).max().clamp(min=1)) if len(idx_t) else 1
        for key in SEQ_KEYS:
            batch[key] = batch[key][:, :n_seq]
        return batch


class EpochBatches(BatchSampler):
    """BatchSampler that passes `set_epoch` on to its sampler (a DistributedSampler reshuffles per epoch)."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


class ChurnDataModule(pl.LightningDataModule):
    """Train/val/test loaders over transformed splits; `num_workers` from config, seeded shuffling.

    `batch_size` is the global training batch: in a distributed fit each of the W processes takes batches of
    ceil(batch_size / W) rows from its shard, so the optimizer steps per epoch (and the averaged gradient's batch)
    are the single-process fit's."""

    def __init__(
        self,
        splits: dict[str, dict[str, np.ndarray]],
        batch_size: int = 256,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.splits = splits
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.eval_batch_size = int(eval_batch_size or 4 * batch_size)
        self.datasets: dict[str, ArrayBatches] = {}

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self.datasets = {name: ArrayBatches(arrays) for name, arrays in self.splits.items()}

    def world(self) -> tuple[int, int]:
        """(rank, processes) of the distributed fit this module feeds; (0, 1) outside one."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size <= 1:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _loader(self, name: str, train: bool, sharded: bool = True) -> DataLoader:
        """Batches of split `name`; in a distributed fit (`sharded`) each process gets its own shard (train:
        reshuffled per epoch from `seed`; evaluation: padded to equal shards, metrics synced by the module)."""
        self.setup()
        ds = self.datasets[name]
        rank, world = self.world() if sharded else (0, 1)
        if world > 1:
            sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=train, seed=self.seed)
        elif train:
            sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(self.seed))
        else:
            sampler = SequentialSampler(ds)
        size = self.batch_size if train else self.eval_batch_size
        if train and world > 1:  # `batch_size` is the global batch: each process takes its share, so a distributed
            size = max(1, -(-self.batch_size // world))  # fit makes the single-process fit's steps per epoch
        rows = len(sampler) if world > 1 else len(ds)
        return DataLoader(
            ds,
            sampler=EpochBatches(sampler, size, drop_last=train and rows > size),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_loader(self, name: str) -> DataLoader:
        """All rows of split `name` in order, never sharded (calibration and evaluation on rank zero)."""
        return self._loader(name, train=False, sharded=False)
