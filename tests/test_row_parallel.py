"""Row-parallel ONNX Runtime: the same rows, in the same order, as one plain call."""

from __future__ import annotations

import numpy as np
import pytest

from churnsense.core.runtime import RowParallelRunner


def _feed(names_types, rows: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {}
    for name, typ, shape in names_types:
        full = [rows if not isinstance(d, int) else d for d in shape]
        if len(full) == 2 and not isinstance(shape[1], int):
            full[1] = seq
        if "int64" in typ:
            feed[name] = rng.integers(0, 3, full).astype(np.int64)
        elif "bool" in typ:
            feed[name] = rng.random(full) < 0.7
        else:
            feed[name] = rng.standard_normal(full).astype(np.float32)
    return feed


@pytest.mark.parametrize("rows", [1, 2, 7, 64, 301])
def test_row_parallel_runner_matches_one_call(tiny_churn_release, rows):
    model = tiny_churn_release / "model.onnx"
    plain = RowParallelRunner(model, workers=1)
    split = RowParallelRunner(model, workers=2, slice_rows=16)
    inputs = [(i.name, i.type, i.shape) for i in plain.session.get_inputs()]
    feed = _feed(inputs, rows, seq=12)
    outputs = plain.output_names
    want, got = plain.run(outputs, feed), split.run(outputs, feed)
    assert [g.shape for g in got] == [w.shape for w in want] and got[0].shape[0] == rows
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)  # row order kept; only float noise may differ


def test_row_parallel_runner_uses_every_worker_on_small_batches(tiny_churn_release, monkeypatch):
    runner = RowParallelRunner(tiny_churn_release / "model.onnx", workers=2, slice_rows=128)
    inputs = [(i.name, i.type, i.shape) for i in runner.session.get_inputs()]
    sizes: list[int] = []
    real = runner.session.run
    monkeypatch.setattr(runner.session, "run", lambda out, feed: sizes.append(len(feed["cat"])) or real(out, feed))
    runner.run(runner.output_names, _feed(inputs, 64, seq=8))
    assert sorted(sizes) == [32, 32]  # 64 rows over 2 workers, not one slice of 64
    sizes.clear()
    runner.run(runner.output_names, _feed(inputs, 300, seq=8))
    assert sorted(sizes) == [44, 128, 128]  # large batches: slices of at most slice_rows


def test_partitions_shrink_with_workers_so_memory_held_at_once_stays_the_same(tmp_path, monkeypatch):
    from churnsense.churn.partition_scoring import worker_count
    from churnsense.core import partition

    monkeypatch.setattr(partition, "TARGET_PARTITION_BYTES", 1000)
    path = tmp_path / "events.csv"
    path.write_bytes(b"x" * 4500)
    assert partition.choose_partitions([path]) == 5
    assert partition.choose_partitions([path], workers=2) == 9  # two partitions held at once, each half the size
    assert partition.choose_partitions([path], requested=3, workers=2) == 3  # an explicit count is kept
    assert worker_count(4, 3) == 3 and worker_count(1, 9) == 1 and worker_count(0, 1) == 1
