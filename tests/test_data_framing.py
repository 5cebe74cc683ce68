"""Leakage-free framing: time + customer splits; nothing after a cutoff reaches the features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnsense.churn.aggregates import history_aggregates
from churnsense.churn.features import FeaturePipeline
from churnsense.data.contract import DataSpec
from churnsense.data.framing import make_dated_snapshot, make_scoring_snapshot, make_splits, split_cutoffs
from churnsense.data.loading import Tables, load_tables
from churnsense.synth.generate import generate, synth_config


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[DataSpec, Tables]:
    out = tmp_path_factory.mktemp("synth")
    generate(synth_config(n_customers=800, out_dir=str(out), seed=3))
    spec = DataSpec.from_config(
        {
            "name": "t",
            "customers": {
                "path": str(out / "customers.parquet"),
                "categorical": ["plan", "contract", "language"],
                "numeric": ["monthly_charge"],
                "columns": {
                    "signup_date": "signup_date",
                    "churn_date": "churn_date",
                    "observed_until": "observed_until",
                },
            },
            "events": {"path": str(out / "events.parquet")},
            "feedback": {"path": str(out / "feedback.parquet"), "columns": {"sentiment": "sentiment"}},
            "framing": {"horizon_days": 30, "max_events": 16, "lookback_days": 120, "n_train_cutoffs": 2},
        }
    )
    return spec, load_tables(spec)


def test_splits_disjoint_in_customers_and_ordered_in_time(synth):
    spec, tables = synth
    splits = make_splits(tables, spec)
    ids = {k: set(s.static["customer_id"]) for k, s in splits.items()}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    h = pd.Timedelta(days=spec.framing.horizon_days)
    assert splits["train"].static["cutoff"].max() + h <= splits["val"].static["cutoff"].min()
    assert splits["val"].static["cutoff"].max() + h <= splits["test"].static["cutoff"].min()
    for s in splits.values():
        assert (s.history["ts"] < s.history["cutoff"]).all()
        assert s.static[["customer_id", "cutoff"]].duplicated().sum() == 0
        assert s.static["label"].isin([0, 1]).all()


def _plant_future(tables: Tables, cutoff: pd.Timestamp) -> Tables:
    """Add wild events and feedback at and after the cutoff for every customer."""
    ids = tables.customers["customer_id"]
    ts = [cutoff, cutoff + pd.Timedelta(hours=5), cutoff + pd.Timedelta(days=20)]
    ev = pd.DataFrame(
        {"customer_id": np.repeat(ids.to_numpy(), 3), "ts": np.tile(ts, len(ids)), "event_type": "outage", "value": 1e6}
    )
    fb = tables.feedback.sample(len(ids), replace=True, random_state=0).assign(
        customer_id=ids.to_numpy(), ts=cutoff + pd.Timedelta(days=1), sentiment="negative"
    )
    return Tables(
        tables.customers,
        pd.concat([tables.events, ev], ignore_index=True),
        pd.concat([tables.feedback, fb], ignore_index=True),
    )


def test_outcomes_after_the_next_split_cutoff_stay_unseen(synth):
    """Train churn times / follow-up (hazard targets) end at the val cutoff; val's at the test cutoff."""
    spec, tables = synth
    splits = make_splits(tables, spec)
    for name, nxt in (("train", "val"), ("val", "test")):
        st = splits[name].static
        limit = (splits[nxt].static["cutoff"].min() - st["cutoff"]).dt.days.to_numpy()
        assert (st["followup_days"].to_numpy() <= limit + 1e-6).all()
        ttc = st["ttc_days"].to_numpy()
        assert (ttc[np.isfinite(ttc)] <= limit[np.isfinite(ttc)] + 1e-6).all()
    # moving every later churn further into the future changes no train/val target
    late = tables.customers["churn_date"] > splits["test"].static["cutoff"].min()
    moved = tables.customers.assign(
        churn_date=tables.customers["churn_date"].where(~late, tables.customers["churn_date"] + pd.Timedelta(days=365))
    )
    again = make_splits(Tables(moved, tables.events, tables.feedback), spec)
    for name in ("train", "val"):
        cols = ["customer_id", "cutoff", "label", "ttc_days", "followup_days"]
        pd.testing.assert_frame_equal(splits[name].static[cols], again[name].static[cols])


def test_events_after_cutoff_change_nothing(synth):
    spec, tables = synth
    a = make_splits(tables, spec)
    pipe = FeaturePipeline.from_spec(spec).fit(a["train"])
    for k, cutoffs in split_cutoffs(tables, spec).items():
        b = make_splits(_plant_future(tables, max(cutoffs)), spec)  # at/after the split's (last) cutoff
        if k == "train":
            assert FeaturePipeline.from_spec(spec).fit(b["train"]).to_dict() == pipe.to_dict()
        xa, xb = pipe.transform(a[k]), pipe.transform(b[k])
        for key in ("cat", "num", "seq_type", "seq_value", "seq_dt", "seq_mask", "label"):
            np.testing.assert_array_equal(xa[key], xb[key], err_msg=f"{k}/{key}")
        pd.testing.assert_frame_equal(history_aggregates(a[k]), history_aggregates(b[k]))
    early = make_splits(_plant_future(tables, max(split_cutoffs(tables, spec)["test"]) - pd.Timedelta(days=2)), spec)
    assert not np.array_equal(pipe.transform(early["test"])["seq_type"], pipe.transform(a["test"])["seq_type"])


def test_labels_follow_churn_dates(synth):
    spec, tables = synth
    s = make_splits(tables, spec)["train"].static
    churn = s["customer_id"].map(tables.customers.set_index("customer_id")["churn_date"])
    inside = (churn > s["cutoff"]) & (churn <= s["cutoff"] + pd.Timedelta(days=30))
    assert (s["label"] == inside.astype(float)).all()
    assert (s["tenure_days"] >= 0).all()
    assert "churn_date" not in s and "observed_until" not in s  # label sources never reach the features


def test_sequence_view_keeps_most_recent_chronological(synth):
    spec, tables = synth
    snap = make_scoring_snapshot(tables, spec, pd.Timestamp("2025-09-01"))
    assert snap.static["customer_id"].is_unique and "label" not in snap.static
    x = FeaturePipeline.from_spec(spec).fit(snap).transform(snap)
    n, mask = spec.framing.max_events, x["seq_mask"]
    counts = snap.history.groupby(["customer_id", "cutoff"]).size()
    expect = snap.static.set_index(["customer_id", "cutoff"]).index.map(counts).fillna(0).to_numpy()
    np.testing.assert_array_equal(mask.sum(1), np.minimum(expect, n))
    assert not (mask[:, 1:] & ~mask[:, :-1]).any()  # left-aligned, padding at the end
    dt = np.where(mask, x["seq_dt"], -1.0)
    assert (np.diff(dt, axis=1)[mask[:, 1:]] <= 0).all()  # chronological: time-before-cutoff shrinks
    assert (x["seq_type"][~mask] == 0).all() and (x["seq_type"][mask] >= 1).all()
    last = snap.history.groupby(["customer_id", "cutoff"])["ts"].max()
    row = int(np.argmax(expect))
    key = tuple(snap.static.loc[row, ["customer_id", "cutoff"]])
    k = int(mask[row].sum()) - 1
    days = (key[1] - last.loc[key]) / pd.Timedelta(days=1)
    assert x["seq_dt"][row, k] == pytest.approx(np.log1p(days), rel=1e-5)


def test_dated_snapshot_sees_each_customer_as_of_its_own_day(synth):
    """Each customer on its own date (e.g. the day of its retention offer): only history before the start of that
    day, the same rows as a one-date snapshot of that customer, tenure as of that day."""
    spec, tables = synth
    ids = tables.customers["customer_id"].iloc[:40].to_numpy()
    days = pd.to_datetime("2025-04-01") + pd.to_timedelta(np.arange(40) * 5, unit="D") + pd.Timedelta(hours=13)
    dates = pd.Series(days, index=ids)
    snap = make_dated_snapshot(tables, spec, dates)
    static = snap.static.set_index("customer_id")
    assert set(static.index) == set(ids) and "label" not in static
    assert (static["cutoff"] == dates.dt.normalize().reindex(static.index)).all()
    assert (snap.history["ts"] < snap.history["customer_id"].map(dates.dt.normalize())).all()
    one = ids[7]
    alone = make_scoring_snapshot(
        Tables(tables.customers[tables.customers["customer_id"] == one], tables.events, tables.feedback),
        spec,
        dates[one].normalize(),
    )
    mine = snap.history[snap.history["customer_id"] == one].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, alone.history.reset_index(drop=True))
    assert static.loc[one, "tenure_days"] == alone.static["tenure_days"].iloc[0]
