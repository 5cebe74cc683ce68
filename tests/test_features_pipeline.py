"""FeaturePipeline: batch contract, unknown/missing handling, JSON round trip with identical features."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from churnsense.churn.aggregates import history_aggregates
from churnsense.churn.features import FeaturePipeline
from churnsense.data.framing import Snapshot

T0 = pd.Timestamp("2024-06-01")


def _snap(n: int = 40, seed: int = 0) -> Snapshot:
    rng = np.random.default_rng(seed)
    ids = [f"c{i}" for i in range(n)]
    static = pd.DataFrame(
        {
            "customer_id": ids,
            "cutoff": T0,
            "plan": rng.choice(["a", "b", None], n),
            "charge": rng.lognormal(3, 1, n),
            "label": (rng.random(n) < 0.3).astype("float32"),
            "ttc_days": np.nan,
            "followup_days": 30.0,
        }
    )
    static.loc[0, "charge"] = np.nan
    k = rng.integers(0, 30, n)
    hist = pd.DataFrame(
        {
            "customer_id": np.repeat(ids, k),
            "cutoff": T0,
            "ts": T0 - pd.to_timedelta(rng.uniform(0.01, 200, k.sum()), unit="D"),
            "event_type": rng.choice(["usage", "outage", "feedback"], k.sum()),
            "value": rng.pareto(1.5, k.sum()) * 10,
        }
    )
    hist = hist.sort_values(["customer_id", "ts"], ignore_index=True)
    return Snapshot(static=static, history=hist)


def _fit() -> tuple[FeaturePipeline, Snapshot]:
    snap = _snap()
    return FeaturePipeline(["plan"], ["charge"], max_events=8, history_features=True).fit(snap), snap


def test_batch_contract_dtypes_and_shapes():
    pipe, snap = _fit()
    x = pipe.transform(snap)
    b, n = len(snap.static), 8
    want = {
        "cat": (np.int64, (b, 1)),
        "num": (np.float32, (b, pipe.n_numeric)),
        "seq_type": (np.int64, (b, n)),
        "seq_value": (np.float32, (b, n)),
        "seq_dt": (np.float32, (b, n)),
        "seq_mask": (np.bool_, (b, n)),
        "label": (np.float32, (b,)),
        "ttc_days": (np.float32, (b,)),
        "followup_days": (np.float32, (b,)),
    }
    assert set(x) == set(want)
    for key, (dtype, shape) in want.items():
        assert x[key].dtype == dtype and x[key].shape == shape, key
    assert np.isfinite(x["num"]).all() and np.isfinite(x["seq_value"]).all()
    assert np.abs(x["num"]).max() <= pipe.clip and np.abs(x["seq_value"]).max() <= pipe.clip
    assert pipe.numeric_names[:2] == ["charge", "charge__missing"] and x["num"][0, 1] == 1.0
    assert all(c.startswith("history:") for c in pipe.numeric_names[2:])
    assert pipe.cat_cardinalities == [3] and pipe.event_type_names[:2] == ["<pad>", "<unk>"]
    assert x["seq_type"].max() < pipe.n_event_types


def test_wide_part_is_the_gbdt_aggregates():
    """`num` carries every varying history aggregate the GBDT baselines get, scaled, with its source event type."""
    pipe, snap = _fit()
    agg = history_aggregates(snap, pipe.event_types)
    varying = [c for c in agg.columns if agg[c].nunique(dropna=False) > 1]
    assert pipe.aggregates == varying and {"n_events", "recency_outage_days", "n_usage_30d"} <= set(varying)
    assert pipe.aggregate_sources["n_outage_90d"] == "outage" and pipe.aggregate_sources["n_events"] == "*"
    x = pipe.transform(snap)["num"]
    col = pipe.numeric_names.index("history:n_usage_30d")
    assert np.corrcoef(x[:, col], np.log1p(agg["n_usage_30d"]))[0, 1] > 0.95  # monotone scaling of the same count
    rec = pipe.numeric_names.index("history:recency_outage_days__missing")
    np.testing.assert_array_equal(x[:, rec], agg["recency_outage_days"].isna().to_numpy())
    assert FeaturePipeline(["plan"], ["charge"], max_events=8).fit(snap).aggregates == varying  # the default
    off = FeaturePipeline(["plan"], ["charge"], max_events=8, history_features=False).fit(snap)
    assert off.numeric_names == ["charge", "charge__missing"]
    unseen = Snapshot(static=snap.static, history=snap.history.assign(event_type="never_seen"))
    assert pipe.transform(unseen)["num"].shape == x.shape  # the fitted columns, whatever the history holds


def test_unknown_and_missing_map_to_zero_bucket():
    pipe, snap = _fit()
    new = Snapshot(
        static=snap.static.assign(plan=["zzz"] * len(snap.static)).drop(columns=["label"]),
        history=snap.history.assign(event_type="never_seen"),
    )
    x = pipe.transform(new)
    assert (x["cat"] == 0).all() and "label" not in x
    assert (x["seq_type"][x["seq_mask"]] == 1).all()
    assert (pipe.transform(snap)["cat"][snap.static["plan"].isna().to_numpy()] == 0).all()


def test_json_round_trip_gives_identical_features(tmp_path):
    pipe, _ = _fit()
    path = tmp_path / "pipeline.json"
    pipe.save(path)
    json.loads(path.read_text())  # plain JSON
    again = FeaturePipeline.load(path)
    assert again.to_dict() == pipe.to_dict()
    other = _snap(seed=1)
    xa, xb = pipe.transform(other), again.transform(other)
    for key in xa:
        np.testing.assert_array_equal(xa[key], xb[key])


def test_transform_preserves_row_order():
    pipe, snap = _fit()
    rev = Snapshot(static=snap.static.iloc[::-1].reset_index(drop=True), history=snap.history)
    a, b = pipe.transform(snap), pipe.transform(rev)
    for key in ("cat", "num", "seq_type", "seq_dt"):
        np.testing.assert_array_equal(a[key][::-1], b[key])


def test_history_aggregates_counts():
    _, snap = _fit()
    agg = history_aggregates(snap)
    assert len(agg) == len(snap.static)
    h = snap.history
    recent = h[(h["cutoff"] - h["ts"]) <= pd.Timedelta(days=30)]
    want = recent[recent["event_type"] == "usage"].groupby("customer_id").size()
    got = pd.Series(agg["n_usage_30d"].to_numpy(), index=snap.static["customer_id"])
    assert (got.reindex(want.index) == want).all() and got.drop(want.index).eq(0).all()


def test_row_time_order_is_the_lexsort():
    """Rows already in time order per row take the fast path, any other order the lexsort; both give lexsort's
    permutation (ties in input order)."""
    from churnsense.churn.features import row_time_order

    rng = np.random.default_rng(0)
    row = np.repeat(rng.permutation(50), rng.integers(1, 9, 50))
    timed = np.concatenate([np.sort(rng.integers(0, 5, (row == r).sum())) for r in dict.fromkeys(row.tolist())])
    for ts in (timed, rng.integers(0, 5, len(row))):  # sorted per row (ties included), then shuffled times
        np.testing.assert_array_equal(row_time_order(row, ts), np.lexsort((ts, row)))
    np.testing.assert_array_equal(row_time_order(row[:0], row[:0]), np.zeros(0, dtype=np.int64))
