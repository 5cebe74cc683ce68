"""Row operations on text keys (`core.frames`) give exactly what pandas gives: order (ties kept, missing last,
non-ASCII text), membership and positions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnsense.core.frames import is_in, positions_in, stable_sort


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ids = np.array(["c10", "c2", "ä1", "Z", "c2 ", "é", "日本", "a"], dtype=object)[rng.integers(0, 8, 500)]
    ids[rng.random(500) < 0.05] = None
    ts = pd.Series(pd.to_datetime("2025-01-01") + pd.to_timedelta(rng.integers(0, 5, 500), unit="D"))
    ts[rng.random(500) < 0.05] = pd.NaT
    return pd.DataFrame({"customer_id": pd.Series(ids, dtype="str"), "ts": ts, "n": np.arange(500)})


@pytest.mark.parametrize("by", [["customer_id", "ts"], ["ts", "customer_id"], ["customer_id"]])
def test_stable_sort_is_pandas_stable_sort(frame, by):
    want = frame.sort_values(by, kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(stable_sort(frame, by), want)
    obj = frame.astype({"customer_id": object})
    pd.testing.assert_frame_equal(stable_sort(obj, by), obj.sort_values(by, kind="stable", ignore_index=True))
    rows = np.flatnonzero(np.random.default_rng(1).random(len(frame)) < 0.6)  # a subset, sorted without a copy
    want = frame.iloc[rows].sort_values(by, kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(stable_sort(frame, by, rows=rows), want)
    assert stable_sort(frame, by, rows=rows[:0]).empty


def test_membership_and_positions_are_pandas(frame):
    ids = frame["customer_id"]
    members = {"c2", "日本", "missing"}
    assert (is_in(ids, members) == ids.isin(list(members)).to_numpy()).all()
    index = pd.Series(["a", "c10", "ä1", "zz"], dtype="str")
    assert (positions_in(ids, index) == pd.Index(index).get_indexer(ids)).all()
    numbers = pd.Series([1, 2, 3])  # not text: pandas does it
    assert is_in(numbers, {2}).tolist() == [False, True, False]
    assert positions_in(numbers, pd.Series([3, 1])).tolist() == [1, -1, 0]
