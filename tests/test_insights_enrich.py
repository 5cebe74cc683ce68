"""Insight columns are a function of a customer's own rows and the release: scored alone, or inside a larger batch
in shuffled order, a customer's enriched row is the same (a planted numpy model stands in for the ONNX graph)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from churnsense.churn.features import FeaturePipeline
from churnsense.churn.score import score_churn_batch
from churnsense.data.contract import DataSpec
from churnsense.data.framing import make_snapshot
from churnsense.data.loading import Tables
from churnsense.data.validation import validate_chunk
from churnsense.insights import enrich as enrich_module
from churnsense.insights.enrich import INSIGHT_COLUMNS
from churnsense.insights.fit import fit_insights
from churnsense.insights.state import InsightsState, load_config, load_state
from helpers import default_insights_config

CUTOFF = pd.Timestamp("2024-01-01")
DATA = {
    "name": "planted",
    "customers": {
        "path": "unused.csv",
        "columns": {"customer_id": "customer_id", "signup_date": "signup_date"},
        "categorical": ["plan"],
        "numeric": ["charge"],
    },
    "events": {
        "path": "unused.csv",
        "columns": {"customer_id": "customer_id", "ts": "ts", "event_type": "event_type", "value": "value"},
    },
    "feedback": {
        "path": "unused.csv",
        "columns": {"customer_id": "customer_id", "ts": "ts", "text": "text", "sentiment": "sentiment"},
    },
    "framing": {"label_mode": "churn_date", "horizon_days": 30, "max_events": 8},
}
GROUPS = {
    "plan_fit": {"cat": ["plan"]},
    "price_increase": {"num": ["charge*"]},
    "unresolved_support": {"events": ["ticket"]},
    "usage_decline": {"events": ["login"]},
    "negative_feedback": {"events": ["feedback"]},
}


def inputs(n: int = 40, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = [f"p{i:03d}" for i in range(n)]
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "plan": rng.choice(["basic", "pro"], n),
            "charge": rng.uniform(10, 90, n).round(2),
            "signup_date": CUTOFF - pd.to_timedelta(rng.integers(30, 400, n), "D"),
        }
    )
    m = 6 * n
    events = pd.DataFrame(
        {
            "customer_id": rng.choice(ids[:-3], m),  # the last 3 customers have no events
            "ts": CUTOFF - pd.to_timedelta(rng.integers(1, 150, m), "D"),
            "event_type": rng.choice(["login", "ticket", "payment"], m, p=[0.5, 0.2, 0.3]),
            "value": rng.exponential(5, m).round(2),
        }
    )
    feedback = pd.DataFrame(
        {
            "customer_id": ids[:8],
            "ts": CUTOFF - pd.Timedelta(days=10),
            "text": "slow support",
            "sentiment": ["negative", "neutral", "positive", "negative"] * 2,
        }
    )
    return {"customers": customers, "events": events, "feedback": feedback}


@dataclass
class PlantedRelease:
    """What `score_churn_batch` / `enrich` use of a `ChurnRelease`, with a known model: churn rises with tickets,
    charge and the basic plan."""

    path: Path
    spec: DataSpec
    pipeline: FeaturePipeline
    horizons: list[int] = field(default_factory=list)

    @property
    def insights_config(self) -> dict | None:
        return load_config(self.path)

    @property
    def insights_state(self) -> InsightsState:
        return load_state(self.path)

    def run(self, batch: dict[str, np.ndarray], batch_size: int = 1024) -> dict[str, np.ndarray]:
        ticket = self.pipeline.event_type_names.index("ticket")
        tickets = ((batch["seq_type"] == ticket) & batch["seq_mask"]).sum(axis=1)
        basic = batch["cat"][:, 0] == self.pipeline.vocab["plan"].index("basic") + 1
        logit = -2.5 + 0.7 * tickets + 0.8 * batch["num"][:, 0] + 1.0 * basic
        return {"churn_probability": 1.0 / (1.0 + np.exp(-logit))}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> PlantedRelease:
    """Pipeline fit on the data, insights fit as at training time (threshold, background, event types, segments)."""
    path = tmp_path_factory.mktemp("planted")
    spec = DataSpec.from_config(DATA)
    raw = inputs()
    tables = Tables(
        *(
            validate_chunk(raw[k], spec.table(k), k, k)[0].drop(columns="_row")
            for k in ("customers", "events", "feedback")
        )
    )
    snap = make_snapshot(tables, spec, [CUTOFF], with_labels=False)
    rel = PlantedRelease(path, spec, FeaturePipeline.from_spec(spec).fit(snap))
    cfg = default_insights_config()
    cfg["reasons"] = {
        **cfg["reasons"],
        "groups": GROUPS,
        "n_samples": 3,
        "n_background": 2,
        "background_rows": 16,
        "max_rows": 7,
        "min_logit": 0.0,
    }  # max_rows 7: the batch is explained in several chunks
    cfg["segments"] = {
        **cfg["segments"],
        "features": ["tenure_months", "login_n_90d", "ticket_n_90d"],
        "k_range": [2, 3],
    }
    cfg["value"] = {**cfg["value"], "revenue_column": None, "revenue_events": ["payment"]}
    (path / "config.yaml").write_text(yaml.safe_dump({"data": DATA, "insights": cfg}))
    arrays = rel.pipeline.transform(snap)
    p = pd.Series(rel.run(arrays)["churn_probability"], index=snap.static["customer_id"])
    fit_insights(tables.customers, tables.events, tables.feedback, None, CUTOFF, p, cfg, 30, model_inputs=arrays).save(
        path
    )
    return rel


def score(frames: dict[str, pd.DataFrame], release: PlantedRelease) -> pd.DataFrame:
    scored, rejects = score_churn_batch(
        frames["customers"], frames["events"], frames["feedback"], release, CUTOFF, insights=True
    )
    assert rejects.empty
    return scored.set_index("customer_id")


def test_state_fixed_at_training_time(release):
    state = load_state(release.path)
    assert state.at_risk_threshold is not None and state.monthly_retention is not None
    assert state.event_types == ["login", "payment", "ticket"] and state.segments
    assert set(state.background) == {"cat", "num", "seq_type", "seq_value", "seq_dt", "seq_mask"}
    assert len(state.background["cat"]) == 16 and state.background["seq_type"].shape[1] == 8


def test_customer_row_same_alone_and_in_shuffled_batch(release):
    raw = inputs()
    shuffled = {k: v.sample(frac=1.0, random_state=3).reset_index(drop=True) for k, v in raw.items()}
    full = score(shuffled, release)
    assert set(INSIGHT_COLUMNS) <= set(full.columns)
    assert 0 < full["at_risk"].sum() < len(full) and full["reason_1"].ne("").sum() >= 3
    at_risk = full.index[full["at_risk"]]
    some = [*at_risk[:3], *full.index[~full["at_risk"]][:1], "p039"]  # p039: no events
    for cid in some:
        alone = score({k: v[v["customer_id"] == cid] for k, v in raw.items()}, release)
        pd.testing.assert_frame_equal(alone, full.loc[[cid]], check_exact=True)
    half = set(at_risk[::2]) | {c for c in full.index if c.endswith(("1", "4", "7"))}  # another batch, reversed
    part = score({k: v[v["customer_id"].isin(half)].iloc[::-1] for k, v in raw.items()}, release)
    pd.testing.assert_frame_equal(part.sort_index(), full.loc[sorted(part.index)], check_exact=True)


def test_release_without_state_warns(release, caplog):
    raw = inputs(12)
    scored = score_churn_batch(raw["customers"], raw["events"], raw["feedback"], release, CUTOFF)[0]
    enrich_module._warned.clear()
    with caplog.at_level(logging.WARNING, logger="churnsense.insights.enrich"):
        out = enrich_module.enrich(
            scored,
            *(raw[k] for k in ("customers", "events", "feedback")),
            release,
            CUTOFF,
            cfg=load_config(release.path),
            state=InsightsState(),
        )
    assert len(out) == 12 and set(INSIGHT_COLUMNS) <= set(out.columns)
    text = caplog.text
    assert "at-risk threshold" in text and "attribution background" in text and "monthly retention" in text


def test_automatic_groups_alone_give_reasons(release):
    """A data set with no configured reason groups (another customer table) still gets reasons: one per input."""
    raw = inputs()
    scored = score_churn_batch(raw["customers"], raw["events"], raw["feedback"], release, CUTOFF)[0]
    cfg = load_config(release.path)
    cfg["reasons"] = {**cfg["reasons"], "groups": {}, "vocabulary": {}, "auto_groups": True}
    out = enrich_module.enrich(scored, *(raw[k] for k in ("customers", "events", "feedback")), release, CUTOFF, cfg=cfg)
    explained = out[out["at_risk"] & out["reason_1"].ne("")]
    assert len(explained) >= 3  # reasons exist although no group was configured
    assert explained["reason_1"].str.startswith(("events:", "attr:")).all()
    assert explained["reason_1_text"].ne("").all()
