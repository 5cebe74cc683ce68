"""Retention playbook routing: language/risk queue, best team per (segment, action), the service language.

The action choice itself (uplift x CLTV - cost, evidence, budget and capacity) is in `decisions`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

NONE = "none"


def _codes(text: object) -> list[str]:
    return [c for c in str(text).split(";") if c] if isinstance(text, str) else []


def team_scores(
    offers: pd.DataFrame, segment_of: pd.Series | None = None, prior_strength: float = 20.0
) -> pd.DataFrame:
    """Retention rate of each (segment, action, team) in the offer history, shrunk towards the action's overall rate
    (beta prior with `prior_strength` pseudo-offers). Segment -1 = all customers. Columns: segment, action, team,
    n, retained, retention, score."""
    df = offers.assign(retained=1.0 - offers["churned"].astype(float))
    df["segment"] = df["customer_id"].map(segment_of).fillna(-1).astype(int) if segment_of is not None else -1
    both = pd.concat([df, df.assign(segment=-1)]) if segment_of is not None else df
    g = both.groupby(["segment", "action", "team"])["retained"].agg(n="size", retained="sum").reset_index()
    overall = df.groupby("action")["retained"].mean()
    prior = g["action"].map(overall).fillna(df["retained"].mean())
    g["retention"] = g["retained"] / g["n"]
    g["score"] = (g["retained"] + prior_strength * prior) / (g["n"] + prior_strength)
    return g


def best_team(segment: pd.Series, action: pd.Series, scores: pd.DataFrame, default: str = "retention") -> pd.Series:
    """The team with the highest shrunk retention for the customer's (segment, action); falls back to all
    segments, then to the best team for any action, then `default`."""
    if scores is None or scores.empty:
        return pd.Series(default, index=segment.index)
    top = scores.sort_values("score", ascending=False, kind="stable").drop_duplicates(["segment", "action"])
    by_seg = top.set_index(["segment", "action"])["team"].to_dict()
    overall = scores[scores["segment"] == -1].groupby("team")["score"].mean()
    fallback = str(overall.idxmax()) if len(overall) else default
    out = [by_seg.get((int(s), a)) or by_seg.get((-1, a)) or fallback for s, a in zip(segment, action)]
    return pd.Series(out, index=segment.index)


def route(
    language: pd.Series,
    p_churn: pd.Series,
    action: pd.Series,
    languages: Sequence[str],
    tiers: Mapping[str, float],
    default_language: str = "en",
) -> pd.Series:
    """Agent queue `<language>-<tier>`: the customer's language if a queue speaks it (else the default) and the
    highest risk tier whose lower edge p_churn reaches. Customers with no recommended action get no queue ("")."""
    lang = language.fillna(default_language).astype(str).str.lower().str[:2]
    lang = lang.where(lang.isin(list(languages)), default_language)
    edges = sorted(tiers.items(), key=lambda kv: kv[1])
    tier = pd.Series(edges[0][0], index=p_churn.index)
    for name, lo in edges:
        tier = tier.mask(p_churn >= lo, name)
    queue = lang + "-" + tier
    return queue.where(action.ne(NONE), "")


def language_code(value: object) -> str | None:
    """A language tag, code or English name as a lower-case ISO 639-1 code ("ru-RU", "RU", "Russian" -> "ru";
    the old code "iw" -> "he"); None when it is not one."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip().lower().replace("_", "-")
    if not text:
        return None
    code = text.split("-")[0]
    code = _ALIASES.get(code, code)
    if len(code) in (2, 3) and code.isalpha():
        return code
    return _english_names().get(text)


_ALIASES = {"iw": "he", "ua": "uk", "ji": "yi", "in": "id"}


@functools.lru_cache(maxsize=1)
def _english_names() -> dict[str, str]:
    from babel import Locale

    return {name.lower(): code for code, name in Locale("en").languages.items() if "_" not in code}


def service_language(
    facts: pd.DataFrame, columns: Sequence[str], languages: Sequence[str], default: str = "en"
) -> pd.Series:
    """The language a customer is served in (queue and call script): the first of `columns` (e.g. the
    customer's language attribute, then the language of their feedback) that holds one of `languages`, else
    `default`."""
    out = pd.Series(None, index=facts.index, dtype=object)
    wanted = {str(x).lower() for x in languages}
    for c in columns:
        if c in facts:
            codes = facts[c].map(language_code)
            out = out.fillna(codes.where(codes.isin(wanted)))
    return out.fillna(default).astype(str)
