"""Reasons in words: group attributions -> ranked reason codes -> text filled with the customer's own numbers.

Reason codes are the attribution groups (`insights.reasons.groups`); each has an entry in the vocabulary
(`insights.reasons.vocabulary`: `driver` = the ground-truth mechanism it stands for, `text` = a template over the
customer's facts, `fallback` = text when a fact is missing). Facts come from `customer_facts` (raw tables at the
cutoff) joined with the customer attributes.
"""
from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence

from typing import Any

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)


def _cut(frame: pd.DataFrame, cutoff: pd.Timestamp | pd.Series) -> pd.Timestamp | pd.Series:
    """A scalar cutoff, or per-row cutoffs from a customer_id -> cutoff Series (e.g. the offer dates)."""
    return frame["customer_id"].map(cutoff) if isinstance(cutoff, pd.Series) else cutoff


def _window(events: pd.DataFrame, cutoff: pd.Timestamp | pd.Series, start_days: int, end_days: int) -> pd.DataFrame:
    age = (_cut(events, cutoff) - events["ts"]) / DAY
    return events[(age >= start_days) & (age < end_days)]


EVENT_FACTS = ("n_30d", "n_90d", "sum_recent", "sum_prev", "last", "days_since", "change_pct", "drop_pct")


def event_facts(events: pd.DataFrame | None, cutoff: pd.Timestamp | pd.Series, recent_days: int = 60,
                short_days: int = 30, event_types: Sequence[str] | None = None) -> pd.DataFrame:
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
    last_cut = pd.Series(last.index.get_level_values(0).map(cutoff), index=last.index) \
        if isinstance(cutoff, pd.Series) else cutoff
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
    """Per customer: negative / all feedback counts in the last `days`, and language, topic of the latest
    (negative first) message. Needs `sentiment` (from the data or the feedback model) for the negative count."""
    if feedback is None or feedback.empty:
        return pd.DataFrame(index=pd.Index([], name="customer_id"))
    fb = _window(feedback, cutoff, 0, days).sort_values("ts", kind="stable")
    neg = fb["sentiment"].eq("negative") if "sentiment" in fb else pd.Series(False, index=fb.index)
    out = pd.DataFrame({"feedback_n_90d": fb.groupby("customer_id").size(),
                        "neg_feedback_n_90d": neg.groupby(fb["customer_id"]).sum()})
    latest = pd.concat([fb, fb[neg]]).groupby("customer_id").last()  # the negative one wins when there is one
    for col in ("language", "topic"):
        if col in latest:
            out[f"feedback_{col}"] = latest[col]
    return out


def customer_facts(customers: pd.DataFrame, events: pd.DataFrame | None, feedback: pd.DataFrame | None,
                   cutoff: pd.Timestamp | pd.Series, language_names: Mapping[str, str] | None = None,
                   event_types: Sequence[str] | None = None) -> pd.DataFrame:
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
    if feedback is not None and not feedback.empty:
        facts = facts.join(feedback_facts(feedback, cutoff))
    if "feedback_language" in facts and language_names:
        facts["feedback_language_name"] = facts["feedback_language"].map(dict(language_names))
    return facts


class _Formatter(string.Formatter):
    def convert_field(self, value, conversion):  # noqa: D102 - `!n`: a number to 4 significant digits, else text
        if conversion == "n":
            return f"{value:.4g}" if isinstance(value, (int, float, np.number)) else str(value)
        return super().convert_field(value, conversion)

    def get_value(self, key, args, kwargs):  # noqa: D102 - missing and NaN facts make the template fail
        value = kwargs[key]
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            raise KeyError(key)
        return value


def _positive(value: object) -> bool:
    try:
        return float(value) > 0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def generic_vocabulary(code: str) -> dict[str, Any]:
    """Text for an automatic reason group (`events:<type>` / `attr:<column>`, see attribution.auto_groups)."""
    kind, _, name = code.partition(":")
    label = name.replace("_", " ")
    if kind == "events":
        return {"text": f"{{{name}_n_30d:.0f}} {label} events in the last 30 days", "requires": [f"{name}_n_30d"],
                "otherwise": f"no {label} in the last {{{name}_days_since:.0f}} days",
                "fallback": f"{label} history"}
    if kind == "attr":
        return {"text": f"{label} = {{{name}!n}}", "fallback": label}
    return {}


def reason_text(code: str, facts: Mapping, vocabulary: Mapping[str, Mapping]) -> str:
    """The vocabulary template for `code` filled with `facts`; the fallback text if a fact is missing.

    An entry may list `requires` (facts that must be > 0 for `text` to be true, e.g. a count of outages); when one
    is not, its `otherwise` text is used, so a reason never reads "0 outages in the last 30 days"."""
    entry = vocabulary.get(code) or generic_vocabulary(code)
    template = entry.get("text")
    if template and not all(_positive(facts.get(f)) for f in entry.get("requires") or ()):
        template = entry.get("otherwise")
    for candidate in (template, entry.get("fallback")):  # the fallback may use facts too ("{contract} contract")
        if candidate:
            try:
                return _Formatter().format(str(candidate), **facts)
            except (KeyError, ValueError, TypeError, IndexError):
                pass
    fallback = str(entry.get("fallback") or "")
    return fallback if fallback and "{" not in fallback else code.replace("_", " ")


def rank_reasons(attributions: np.ndarray, groups: Sequence[str], top_k: int = 3, min_logit: float = 0.0,
                 exclude: Sequence[str] = ()) -> list[list[str]]:
    """Per row, the groups with the largest positive attribution (> `min_logit`), best first, at most `top_k`;
    groups in `exclude` (e.g. `other`) are never reasons."""
    shown = np.array([g not in set(exclude) for g in groups])
    order = np.argsort(-np.where(shown, attributions, -np.inf), axis=1, kind="stable")[:, :top_k]
    return [[groups[j] for j in idx if shown[j] and row[j] > min_logit] for row, idx in zip(attributions, order)]


def reasons_frame(customer_ids: Sequence, attributions: np.ndarray, groups: Sequence[str], facts: pd.DataFrame,
                  vocabulary: Mapping[str, Mapping], top_k: int = 3, min_logit: float = 0.0,
                  exclude: Sequence[str] = ()) -> pd.DataFrame:
    """`customer_id`, `reason_codes` (";"-joined, best first), `top_reasons` (texts, "; "-joined),
    `reason_1..k` + `reason_1..k_text`, and `attr_<group>` (logit contributions)."""
    ranked = rank_reasons(attributions, groups, top_k, min_logit, exclude)
    fact_rows = facts.reindex(pd.Index(customer_ids)).to_dict("index") if len(facts.columns) else {}
    rows = []
    for cid, codes in zip(customer_ids, ranked):
        f = fact_rows.get(cid, {})
        texts = [reason_text(c, f, vocabulary) for c in codes]
        row = {"customer_id": cid, "reason_codes": ";".join(codes), "top_reasons": "; ".join(texts)}
        for k in range(top_k):
            row[f"reason_{k + 1}"] = codes[k] if k < len(codes) else ""
            row[f"reason_{k + 1}_text"] = texts[k] if k < len(codes) else ""
        rows.append(row)
    out = pd.DataFrame(rows, columns=_columns(top_k))
    attr = pd.DataFrame(attributions, columns=[f"attr_{g}" for g in groups])
    return pd.concat([out, attr], axis=1)


def _columns(top_k: int) -> list[str]:
    cols = ["customer_id", "reason_codes", "top_reasons"]
    for k in range(1, top_k + 1):
        cols += [f"reason_{k}", f"reason_{k}_text"]
    return cols


def global_ranking(attributions: np.ndarray, groups: Sequence[str]) -> list[str]:
    """Baseline: groups ranked by mean positive attribution over all customers (a global importance)."""
    score = np.clip(attributions, 0, None).mean(axis=0)
    return [groups[j] for j in np.argsort(-score, kind="stable")]


def _split(codes: object) -> list[str]:
    return [c for c in str(codes).split(";") if c] if isinstance(codes, str) else []


def hit_rates(reason_codes: pd.Series, truth: pd.Series, driver_of: Mapping[str, str],
              baseline: Sequence[str] | None = None, ks: Sequence[int] = (1, 3)) -> pd.DataFrame:
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
        mask = truth.map(lambda ms: mech in ms) if mech != "all" else pd.Series(True, index=truth.index)
        row: dict[str, object] = {"mechanism": mech, "n": int(mask.sum())}
        for k in ks:
            def hit(d: list[str], ms: list[str], _k: int = k) -> bool:
                want = [mech] if mech != "all" else ms
                return any(x in want for x in d[:_k])
            row[f"top{k}"] = float(np.mean([hit(d, ms) for d, ms in zip(drivers[mask], truth[mask])])) if mask.any() else np.nan
            row[f"baseline_top{k}"] = float(np.mean([hit(base, ms) for ms in truth[mask]])) if mask.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
