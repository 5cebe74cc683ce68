"""Reason codes -> reason texts in a language, from the language files (`texts/<lang>.yaml`, see `wording`).

Rules: a reason is shown only when one of its variants is true for the customer (its `when` conditions hold and
its facts are known), so a favourable value is never worded as a risk; a fact is stated once per customer (each
reason takes a variant that leaves the facts of the others to them, or is dropped when all it could say is said).
The reason codes kept are decided in the primary language (the first given, English by default); the customer's
language then words the same codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from churnsense.insights.wording import Language, Rendered, as_number, render

AUTO_EVENTS, AUTO_ATTR = "events:", "attr:"
EVENT_ALIASES = ("n_30d", "n_90d", "days_since", "sum_recent", "change_pct", "drop_pct", "last")


def typical_facts(num_stats: Mapping[str, Mapping[str, Any]], min_deviation: float) -> dict[str, float]:
    """Per numeric model input `c` (a feature pipeline's `num_stats`: training median and scale, in log1p space
    when `log`): `c_typical` (the median), `c_low` / `c_high` (median -/+ `min_deviation` scales): values between
    them are "near typical" and never worded as higher or lower."""
    out: dict[str, float] = {}
    for col, s in num_stats.items():
        med, scale = float(s.get("median", np.nan)), float(s.get("scale", np.nan))
        back = np.expm1 if s.get("log") else (lambda v: v)
        out[f"{col}_typical"] = float(back(med))
        out[f"{col}_low"] = float(back(med - min_deviation * scale))
        out[f"{col}_high"] = float(back(med + min_deviation * scale))
    return out


@dataclass(frozen=True)
class ReasonEntry:
    """What renders one reason code: its variants, extra facts (automatic reasons) and their aliases."""

    variants: list
    facts: dict[str, Any]
    alias: dict[str, str]


def reason_entry(code: str, language: Language, facts: Mapping[str, Any]) -> ReasonEntry:
    """The variants for `code`: its own entry in `reasons`; an automatic code without one gets the generic `auto`
    variants (an own entry for an automatic code, e.g. `attr:payment_method`, replaces them: its values without a
    variant are then never worded as reasons)."""
    own = language.section("reasons").get(code) or []
    own = own if isinstance(own, list) else [own]
    auto = language.section("auto") if not own else {}
    _kind, _, name = code.partition(":")
    if code.startswith(AUTO_EVENTS):
        alias = {a: f"{name}_{a}" for a in EVENT_ALIASES}
        extra = {a: facts.get(f) for a, f in alias.items()}
        return ReasonEntry(own + list(auto.get("events") or []), {**extra, "label": language.label(name)}, alias)
    if code.startswith(AUTO_ATTR):
        value = facts.get(name)
        numeric = f"{name}_typical" in facts and as_number(value) is not None
        alias = {"value": name}
        extra: dict[str, Any] = {"value": value, "label": language.label(name)}
        if numeric:
            alias.update({"typical": f"{name}_typical", "low": f"{name}_low", "high": f"{name}_high"})
            extra.update({k: facts.get(v) for k, v in alias.items() if k != "value"})
        generic = auto.get("attr_number" if numeric else "attr_category") or []
        return ReasonEntry(own + list(generic), extra, alias)
    return ReasonEntry(own, {}, {})


def render_reason(
    code: str, facts: Mapping[str, Any], language: Language, avoid: set[str] | frozenset[str] = frozenset()
) -> Rendered | None:
    """`code` worded for this customer in `language`, stating none of the facts in `avoid`; None if no variant
    is true for the customer."""
    entry = reason_entry(code, language, facts)
    return render(entry.variants, {**facts, **entry.facts}, language, avoid, entry.alias)


def _word(codes: Sequence[str], facts: Mapping[str, Any], language: Language, top_k: int) -> list[tuple[str, Rendered]]:
    """Word `codes` in order, each fact stated once: a reason avoids the facts stated before it and, where it has
    a variant that can, the facts the later candidates would state alone (so "tenure 3 months" stays with the
    tenure reason instead of being folded into the contract one and leaving tenure with nothing to say)."""
    alone = {c: render_reason(c, facts, language) for c in codes}
    out: list[tuple[str, Rendered]] = []
    stated: set[str] = set()
    for i, code in enumerate(codes):
        if len(out) >= top_k:
            break
        if alone[code] is None:
            continue
        later = set().union(*(alone[c].stated for c in codes[i + 1 :] if alone[c] is not None))
        got = render_reason(code, facts, language, stated | later) or render_reason(code, facts, language, stated)
        if got is not None:
            out.append((code, got))
            stated |= got.stated
    return out


def reason_texts(
    codes: Sequence[str], facts: Mapping[str, Any], languages: Sequence[Language], top_k: int
) -> tuple[list[str], dict[str, list[str]]]:
    """(the codes shown, at most `top_k`; their texts per language code). The primary language
    (`languages[0]`) decides which codes are shown (`_word`); every other language words the same codes (its own
    text, or the primary one when its file has no fitting variant)."""
    primary = _word(codes, facts, languages[0], top_k)
    kept = [c for c, _ in primary]
    texts = {languages[0].code: [r.text for _, r in primary]}
    for lang in languages[1:]:
        if lang.code in texts:
            continue
        local = dict(_word(kept, facts, lang, top_k))
        texts[lang.code] = [(local.get(c) or r).text for c, r in primary]
    return kept, texts
