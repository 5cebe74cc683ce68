"""Reasons: customer facts, group attributions -> ranked reason codes -> texts with the customer's own numbers.

Reason codes are the attribution groups (`insights.reasons.groups`, plus automatic `events:<type>` /
`attr:<column>`); their texts live in the language files (`texts/<lang>.yaml`, rendered by `reason_texts`), the
vocabulary (`insights.reasons.vocabulary`) keeps the ground-truth mechanism each code stands for (`driver`, for
hit rates). Facts come from `customer_facts` (raw tables at the cutoff) joined with the customer attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from churnsense.insights.reason_texts import reason_texts
from churnsense.insights.wording import load_language

DAY = pd.Timedelta(days=1)


def _cut(frame: pd.DataFrame, cutoff: pd.Timestamp | pd.Series) -> pd.Timestamp | pd.Series:
    """A scalar cutoff, or per-row cutoffs from a customer_id -> cutoff Series (e.g. the offer dates)."""
    return frame["customer_id"].map(cutoff) if isinstance(cutoff, pd.Series) else cutoff


def _window(events: pd.DataFrame, cutoff: pd.Timestamp | pd.Series, start_days: int, end_days: int) -> pd.DataFrame:
    age = (_cut(events, cutoff) - events["ts"]) / DAY
    return events[(age >= start_days) & (age < end_days)]


EVENT_FACTS = ("n_30d", "n_90d", "sum_recent", "sum_prev", "last", "days_since", "change_pct", "drop_pct")


def event_facts(
    events: pd.DataFrame | None,
    cutoff: pd.Timestamp | pd.Series,
    recent_days: int = 60,
    short_days: int = 30,
    event_types: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per customer and event type: counts (last `short_days`, last 90 days), value sums over the last
    `recent_days` and the `recent_days` before, their change in % (`_change_pct`, `_drop_pct` = -change), the last
    value and days since the last event. Columns `<type>_<fact>`; index `customer_id` (customers with events).

    `event_types` (e.g. the release's, from training): exactly these types, every column present even when no
    customer of this batch has the type, so a customer's facts do not depend on the other customers of its batch;
    None: the types present."""
    ev = events[events["ts"] < _cut(events, cutoff)] if events is not None else None
    if event_types is not None and ev is not None:
        ev = ev[ev["event_type"].isin(list(event_types))]
    types = sorted(ev["event_type"].unique()) if event_types is None else list(event_types)
    columns = sorted(f"{t}_{f}" for t in types for f in EVENT_FACTS)
    if ev is None or ev.empty:
        return pd.DataFrame(index=pd.Index([], name="customer_id"), columns=columns, dtype="float64")
    keys = ["customer_id", "event_type"]
    parts = {
        "n_30d": _window(ev, cutoff, 0, short_days).groupby(keys).size(),
        "n_90d": _window(ev, cutoff, 0, 90).groupby(keys).size(),
        "sum_recent": _window(ev, cutoff, 0, recent_days).groupby(keys)["value"].sum(),
        "sum_prev": _window(ev, cutoff, recent_days, 2 * recent_days).groupby(keys)["value"].sum(),
    }
    last = ev.sort_values("ts", kind="stable").groupby(keys).last()
    parts["last"] = last["value"]
    last_cut = (
        pd.Series(last.index.get_level_values(0).map(cutoff), index=last.index)
        if isinstance(cutoff, pd.Series)
        else cutoff
    )
    parts["days_since"] = (last_cut - last["ts"]) / DAY
    wide = pd.DataFrame(parts).unstack("event_type")
    wide.columns = [f"{t}_{f}" for f, t in wide.columns]
    for t in types:
        for f in ("n_30d", "n_90d", "sum_recent", "sum_prev"):
            wide[f"{t}_{f}"] = wide.get(f"{t}_{f}", pd.Series(0.0, index=wide.index)).astype("float64").fillna(0.0)
        prev = wide[f"{t}_sum_prev"].where(wide[f"{t}_sum_prev"] > 0)
        wide[f"{t}_change_pct"] = 100.0 * (wide[f"{t}_sum_recent"] / prev - 1.0)
        wide[f"{t}_drop_pct"] = -wide[f"{t}_change_pct"]
    return wide.reindex(columns=columns).astype("float64")


def feedback_facts(feedback: pd.DataFrame | None, cutoff: pd.Timestamp | pd.Series, days: int = 90) -> pd.DataFrame:
    """Per customer, over the last `days`: negative / all feedback counts; `feedback_<x>` (x = language, topic,
    sentiment, days_since) of the message a call is about (the latest negative one, else the latest) and
    `feedback_last_<x>` of the latest message (its tonality). Needs `sentiment` (from the data or the feedback
    model) for the negative count."""
    if feedback is None or feedback.empty:  # the count columns still exist: a customer's row never depends on
        return pd.DataFrame(
            index=pd.Index([], name="customer_id"),  # whether its batch holds feedback
            columns=["feedback_n_90d", "neg_feedback_n_90d"],
            dtype="float64",
        )
    fb = _window(feedback, cutoff, 0, days).sort_values("ts", kind="stable")
    neg = fb["sentiment"].eq("negative") if "sentiment" in fb else pd.Series(False, index=fb.index)
    fb = fb.assign(days_since=(_cut(fb, cutoff) - fb["ts"]) / DAY)
    out = pd.DataFrame(
        {"feedback_n_90d": fb.groupby("customer_id").size(), "neg_feedback_n_90d": neg.groupby(fb["customer_id"]).sum()}
    )
    latest = fb.groupby("customer_id").last()
    about = pd.concat([fb, fb[neg]]).groupby("customer_id").last()  # the negative one wins when there is one
    for col in ("language", "topic", "sentiment", "days_since"):
        if col in fb:
            out[f"feedback_{col}"] = about[col]
            out[f"feedback_last_{col}"] = latest[col]
    return out


def customer_facts(
    customers: pd.DataFrame,
    events: pd.DataFrame | None,
    feedback: pd.DataFrame | None,
    cutoff: pd.Timestamp | pd.Series,
    language_names: Mapping[str, str] | None = None,
    event_types: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Customer attributes + event facts + feedback facts, one row per customer (index `customer_id`).
    `tenure_months` is added from `signup_date` when present; `feedback_language_name` from `language_names`.
    `event_types`: the event types to compute facts for (see `event_facts`; None: those in `events`)."""
    # training labels are outcomes, never facts about the customer (they would leak into segments and texts)
    facts = customers.drop(columns=[c for c in ("label", "churn_date", "observed_until") if c in customers])
    facts = facts.set_index("customer_id")
    if "signup_date" in facts:
        cut = facts.index.map(cutoff) if isinstance(cutoff, pd.Series) else cutoff
        facts = facts.assign(tenure_months=(cut - facts["signup_date"]) / DAY / 30.44)
    if event_types is not None or (events is not None and not events.empty):
        facts = facts.join(event_facts(events, cutoff, event_types=event_types))
    if feedback is not None:
        facts = facts.join(feedback_facts(feedback, cutoff))
    if "feedback_language" in facts and language_names:
        facts["feedback_language_name"] = facts["feedback_language"].map(dict(language_names))
    return facts


def rank_reasons(
    attributions: np.ndarray,
    groups: Sequence[str],
    top_k: int | None = 3,
    min_logit: float = 0.0,
    exclude: Sequence[str] = (),
    min_share: float = 0.0,
    eligible: np.ndarray | None = None,
) -> list[list[str]]:
    """Per row, the groups that raise the risk, best first, at most `top_k` (None: all): a contribution above
    `min_logit` and at least `min_share` of the row's total positive attribution (over every group, shown or
    not), so noise next to a strong driver is never a reason; groups in `exclude` (e.g. `other`) never are, nor
    groups `eligible` [rows, groups] rules out for a row (static attributes whose value is typical or favourable
    for the customer: `risk_direction.static_group_eligibility`)."""
    attributions = np.asarray(attributions, dtype=float)
    shown = np.array([g not in set(exclude) for g in groups], dtype=bool)
    total = np.clip(attributions, 0, None).sum(axis=1, keepdims=True)
    ok = shown & (attributions > min_logit) & (attributions >= min_share * total)
    if eligible is not None:
        ok &= np.asarray(eligible, dtype=bool)
    order = np.argsort(-np.where(ok, attributions, -np.inf), axis=1, kind="stable")
    order = order[:, :top_k] if top_k is not None else order
    return [[groups[j] for j in idx if row_ok[j]] for row_ok, idx in zip(ok, order)]


def reasons_frame(
    customer_ids: Sequence,
    attributions: np.ndarray,
    groups: Sequence[str],
    facts: pd.DataFrame,
    top_k: int = 3,
    min_logit: float = 0.0,
    exclude: Sequence[str] = (),
    min_share: float = 0.0,
    language_of: Mapping | None = None,
    typical: Mapping[str, float] | None = None,
    primary: str = "en",
    texts_dir: str | None = None,
    eligible: np.ndarray | None = None,
) -> pd.DataFrame:
    """`customer_id`, `reason_codes` (";"-joined, best first), `top_reasons` (texts in the `primary` language,
    "; "-joined), `top_reasons_local` (the same reasons in the customer's language, `language_of[id]`),
    `reason_1..k` + `reason_1..k_text`, and `attr_<group>` (logit contributions).

    Candidates are the risk-raising groups (`rank_reasons` with `min_logit`, `min_share`, `eligible`); the first
    `top_k` that the language files word truthfully for the customer become its reasons
    (`reason_texts.reason_texts`, each fact stated once). `typical`: constant facts added to every customer
    (`reason_texts.typical_facts`)."""
    ranked = rank_reasons(attributions, groups, None, min_logit, exclude, min_share, eligible)
    fact_rows = facts.reindex(pd.Index(customer_ids)).to_dict("index") if len(facts.columns) else {}
    first = load_language(primary, texts_dir)
    loaded = {primary: first}  # each language file looked up once per frame
    rows = []
    for cid, codes in zip(customer_ids, ranked):
        f = {**(typical or {}), **fact_rows.get(cid, {})}
        local = str((language_of or {}).get(cid) or primary)
        if local not in loaded:
            loaded[local] = load_language(local, texts_dir)
        langs = [first] if local == primary else [first, loaded[local]]
        kept, texts = reason_texts(codes, f, langs, top_k)
        row = {
            "customer_id": cid,
            "reason_codes": ";".join(kept),
            "top_reasons": "; ".join(texts[primary]),
            "top_reasons_local": "; ".join(texts[local]),
        }
        for k in range(top_k):
            row[f"reason_{k + 1}"] = kept[k] if k < len(kept) else ""
            row[f"reason_{k + 1}_text"] = texts[primary][k] if k < len(kept) else ""
        rows.append(row)
    out = pd.DataFrame(rows, columns=_columns(top_k))
    attr = pd.DataFrame(attributions, columns=[f"attr_{g}" for g in groups])
    return pd.concat([out, attr], axis=1)


def _columns(top_k: int) -> list[str]:
    cols = ["customer_id", "reason_codes", "top_reasons", "top_reasons_local"]
    for k in range(1, top_k + 1):
        cols += [f"reason_{k}", f"reason_{k}_text"]
    return cols


def global_ranking(attributions: np.ndarray, groups: Sequence[str]) -> list[str]:
    """Baseline: groups ranked by mean positive attribution over all customers (a global importance)."""
    score = np.clip(attributions, 0, None).mean(axis=0)
    return [groups[j] for j in np.argsort(-score, kind="stable")]


def _split(codes: object) -> list[str]:
    return [c for c in str(codes).split(";") if c] if isinstance(codes, str) else []


def hit_rates(
    reason_codes: pd.Series,
    truth: pd.Series,
    driver_of: Mapping[str, str],
    baseline: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 3),
) -> pd.DataFrame:
    """Top-k hit rates of reasons against true drivers, per mechanism and overall (`all`).

    `reason_codes` / `truth`: ";"-joined reason codes / true driver codes, indexed by customer (churners with a
    known driver only are scored). A customer with mechanism m counts a hit@k when m is among the drivers of its
    top-k reasons; `all` counts a hit when any true driver is. `baseline` (one global ranking of reason codes,
    e.g. `global_ranking`) is scored the same way, giving `baseline_top{k}` next to `top{k}`.
    """
    truth = truth.dropna().map(_split)
    truth = truth[truth.map(len) > 0]
    ranked = reason_codes.reindex(truth.index).map(_split)
    drivers = ranked.map(lambda cs: [driver_of.get(c, c) for c in cs])
    base = [driver_of.get(c, c) for c in (baseline or [])]
    rows = []
    mechanisms = sorted({m for ms in truth for m in ms})
    for mech in mechanisms + ["all"]:
        mask = truth.map(lambda ms, m=mech: m in ms) if mech != "all" else pd.Series(True, index=truth.index)
        row: dict[str, object] = {"mechanism": mech, "n": int(mask.sum())}
        for k in ks:

            def hit(d: list[str], ms: list[str], _k: int = k, _m: str = mech) -> bool:
                want = [_m] if _m != "all" else ms
                return any(x in want for x in d[:_k])

            row[f"top{k}"] = (
                float(np.mean([hit(d, ms) for d, ms in zip(drivers[mask], truth[mask])])) if mask.any() else np.nan
            )
            row[f"baseline_top{k}"] = float(np.mean([hit(base, ms) for ms in truth[mask]])) if mask.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
