"""The churn model's risk and reasons for customers as of given dates: each logged customer as the model saw it on
the day of its retention offer, what the relative-risk uplift learner is fitted on (`insights.uplift_modifiers`;
serving computes the same columns at the scoring cutoff)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnsense.churn.release import ChurnRelease
from churnsense.data.framing import make_dated_snapshot
from churnsense.data.loading import Tables
from churnsense.insights.amortised import AmortisedExplainer
from churnsense.insights.enrich import amortised_explainer, attribute_rows
from churnsense.insights.state import InsightsState, setting
from churnsense.insights.uplift_modifiers import ATTR, effect_modifiers

log = logging.getLogger(__name__)
OfferContext = Callable[[pd.Series, InsightsState], pd.DataFrame]


def risk_and_reasons_at(
    release: ChurnRelease,
    tables: Tables,
    dates: pd.Series,
    insights: Mapping[str, Any],
    background: Mapping[str, np.ndarray] | None = None,
    explainer: AmortisedExplainer | None = None,
) -> pd.DataFrame:
    """`effect_modifiers` (index customer_id) of the customers of `dates` (customer id -> date), each scored and
    explained by `release` on its own date; `background`: the attribution reference population; `explainer`: the
    amortised reason explainer (`insights.enrich.attribute_rows`)."""
    t0 = time.process_time()
    snap = make_dated_snapshot(tables, release.spec, dates)
    batch = release.pipeline.transform(snap)
    ids = snap.static["customer_id"].to_numpy()
    scored = pd.DataFrame({"customer_id": ids, **release.run(batch)})
    attr, index, _ = attribute_rows(
        batch,
        ids,
        np.arange(len(ids)),
        lambda b: release.run(b)["churn_probability"],
        release.pipeline.batch_layout(),
        setting(insights, "reasons"),
        int(setting(insights, "seed")),
        background or None,
        explainer,
    )
    attributions = pd.DataFrame(attr, columns=[ATTR + g for g in index.names]).assign(customer_id=ids)
    out = effect_modifiers(scored, attributions, int(setting(setting(insights, "uplift"), "outcome_days")))
    log.info(
        "uplift: risk and reasons of %d logged customers at their offer dates (%.0f CPU s)",
        len(out),
        time.process_time() - t0,
    )
    return out


def offer_context(release: ChurnRelease, tables: Tables, insights: Mapping[str, Any]) -> OfferContext:
    """`risk_and_reasons_at` bound to a release and its tables: (dates, insights state so far) -> effect modifiers."""
    return lambda dates, state: risk_and_reasons_at(
        release, tables, dates, insights, state.background, amortised_explainer(state)
    )
