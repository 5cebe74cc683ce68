"""Random batches that follow the batch contract (tests, export smoke checks, docs)."""

from __future__ import annotations

import numpy as np


def random_arrays(
    n: int = 32,
    cat_cardinalities: tuple[int, ...] = (3, 5),
    n_numeric: int = 4,
    n_event_types: int = 6,
    max_events: int = 12,
    empty_fraction: float = 0.25,
    with_times: bool = True,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Dict of numpy arrays (model inputs + label/ttc_days/followup_days); some rows have no events."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_events + 1, size=n)
    lengths[rng.random(n) < empty_fraction] = 0
    mask = np.arange(max_events)[None, :] < lengths[:, None]
    if n_event_types <= 0:  # no event table: one all-padding slot
        mask = np.zeros((n, 1), dtype=bool)
    n_slots = mask.shape[1]
    cat = (
        np.stack([rng.integers(0, c, size=n) for c in cat_cardinalities], 1)
        if cat_cardinalities
        else np.zeros((n, 0), dtype=np.int64)
    )
    seq_type = np.where(mask, rng.integers(1, max(n_event_types, 2), size=(n, n_slots)), 0)
    label = (rng.random(n) < 0.3).astype(np.float32)
    ttc = np.where(label == 1, rng.uniform(0, 120, size=n), np.nan).astype(np.float32)
    follow = rng.uniform(20, 150, size=n).astype(np.float32)
    return {
        "cat": cat.astype(np.int64),
        "num": rng.normal(size=(n, n_numeric)).astype(np.float32),
        "seq_type": seq_type.astype(np.int64),
        "seq_value": np.where(mask, rng.normal(size=(n, n_slots)), 0).astype(np.float32),
        "seq_dt": np.where(mask, rng.uniform(0, 5, size=(n, n_slots)), 0).astype(np.float32),
        "seq_mask": mask,
        "label": label,
        "ttc_days": ttc if with_times else np.full(n, np.nan, np.float32),
        "followup_days": follow if with_times else np.full(n, np.nan, np.float32),
    }
