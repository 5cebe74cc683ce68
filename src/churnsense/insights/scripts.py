"""Call scripts: (customer facts, reasons, recommended action, language) -> the script an agent reads.

Pure functions over the language files (`texts/<lang>.yaml`, `scripts` and `script` sections; see `wording`).
A script has a situation line (the customer's reasons in their language), an opening that names the customer's own
facts (first variant of the (reason, action) pair that is true for them; the `_default` opening of the action when
none is), the offer with its terms (config
`insights.scripts.terms`, per action, overridden per reason by `terms_by_reason`), two likely objections with
answers and a close. Pairs without a script of their own use the `_default` script of the action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnsense.insights.playbook import NONE
from churnsense.insights.reason_texts import render_reason
from churnsense.insights.wording import Language, LanguageFileError, available_languages, load_language, render

DEFAULT = "_default"
SECTIONS = ("opening", "offer", "objections", "close")


@dataclass(frozen=True)
class CallScript:
    """A rendered script: its text (lines from the language's `script.layout`) and the facts it quotes."""

    text: str
    quoted: frozenset[str]


def script_entry(reason: str, action: str, language: Language) -> Mapping[str, Any]:
    """The script of (reason, action) in `language`, else its `_default` script for the action."""
    scripts = language.section("scripts")
    entry = (scripts.get(reason) or {}).get(action) or (scripts.get(DEFAULT) or {}).get(action)
    if not isinstance(entry, Mapping):
        raise LanguageFileError(
            f"{language.source}: no script for reason {reason!r} and action {action!r} "
            f"(add scripts.{reason}.{action} or scripts.{DEFAULT}.{action})"
        )
    return entry


def offer_terms(reason: str, action: str, scripts_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The offer terms quoted in the script: `terms[action]` updated by `terms_by_reason[reason]`."""
    terms = dict((scripts_cfg.get("terms") or {}).get(action) or {})
    terms.update((scripts_cfg.get("terms_by_reason") or {}).get(reason) or {})
    return terms


def _section(
    entry: Mapping[str, Any], key: str, facts: Mapping[str, Any], language: Language, reason: str, action: str
) -> tuple[str, frozenset[str]]:
    rendered = render(entry.get(key), facts, language)
    if rendered is None:
        raise LanguageFileError(
            f"{language.source}: scripts.{reason}.{action}.{key} has no variant that fits "
            f"(give a last variant without `when` that needs only the offer terms)"
        )
    return rendered.text, rendered.quoted


def render_script(
    reason: str,
    action: str,
    facts: Mapping[str, Any],
    language: Language,
    terms: Mapping[str, Any],
    reason_text: str = "",
    reasons_text: str = "",
) -> CallScript:
    """The call script for one customer. `facts`: the customer's facts; `terms`: the offer terms
    (`offer_terms`); `reason_text` / `reasons_text`: the pair's reason / all reasons in `language` (the
    situation line, and `{reason}` / `{reasons}` in the templates)."""
    entry = script_entry(reason, action, language)
    values = {**facts, **terms, "reason": reason_text, "reasons": reasons_text}
    layout = language.section("script").get("layout") or {}
    quoted: set[str] = set()
    lines: list[str] = []
    if reasons_text:
        lines.append(_fill(layout.get("situation", "{situation}"), situation=reasons_text))
        quoted.add("reasons")
    if render(entry.get("opening"), values, language) is None:  # no opening fits this customer's facts: the
        entry = {**entry, "opening": script_entry(DEFAULT, action, language).get("opening")}  # action's default
    opening, used = _section(entry, "opening", values, language, reason, action)
    quoted |= used
    greeting = str(language.section("script").get("greeting") or "")
    lines.append(_fill(layout.get("opening", "{greeting} {opening}"), greeting=greeting, opening=opening))
    offer, used = _section(entry, "offer", values, language, reason, action)
    lines.append(_fill(layout.get("offer", "{offer}"), offer=offer))
    for item in entry.get("objections") or []:
        objection, _ = _section(item, "objection", values, language, reason, action)
        answer, _ = _section(item, "answer", values, language, reason, action)
        lines.append(_fill(layout.get("objection", "{objection} {answer}"), objection=objection, answer=answer))
    close, _ = _section(entry, "close", values, language, reason, action)
    lines.append(_fill(layout.get("close", "{close}"), close=close))
    customer_facts = {q for q in quoted if q in facts or q == "reasons"} - set(terms)
    return CallScript("\n".join(lines), frozenset(customer_facts))


def _fill(line: object, **parts: str) -> str:
    """A layout line with its `{part}` names replaced (plain replacement: no fact formatting)."""
    text = str(line)
    for key, value in parts.items():
        text = text.replace("{" + key + "}", value)
    return " ".join(text.split())


def call_scripts(
    frame: pd.DataFrame,
    facts: pd.DataFrame,
    language: pd.Series,
    scripts_cfg: Mapping[str, Any],
    typical: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """`script_language` and `call_script` per row of `frame` (needs customer_id, recommended_action,
    action_reason, top_reasons_local); `facts`: indexed by customer_id; `language`: the row's service language
    (aligned with `frame`). Rows without an action get an empty script; a language without a texts file
    (`scripts_cfg.texts_dir`, default the bundled texts) is served in `scripts_cfg.fallback_language`."""
    directory = scripts_cfg.get("texts_dir")
    have = set(available_languages(directory))
    fallback = str(scripts_cfg.get("fallback_language", "en"))
    lang = language.where(language.isin(have), fallback).astype(str)
    texts = [""] * len(frame)
    act = frame["recommended_action"].fillna(NONE).astype(str).to_numpy()
    todo = np.flatnonzero(act != NONE)
    rows = facts.reindex(frame["customer_id"].to_numpy()[todo]).to_dict("records") if len(todo) else []
    codes, reasons = lang.to_numpy(), frame["action_reason"].to_numpy(dtype=object)
    situations = frame["top_reasons_local"].to_numpy(dtype=object)
    loaded = {code: load_language(code, directory) for code in set(codes[todo])}  # each file looked up once
    for i, f in zip(todo, rows):
        language_file = loaded[codes[i]]
        reason = str(reasons[i] or DEFAULT)
        f = {**(typical or {}), **f}
        own = render_reason(reason, f, language_file) if reason != DEFAULT else None
        situation = situations[i]
        texts[i] = render_script(
            reason,
            act[i],
            f,
            language_file,
            offer_terms(reason, act[i], scripts_cfg),
            own.text if own else "",
            situation if isinstance(situation, str) else "",
        ).text
    out = pd.DataFrame({"script_language": lang.to_numpy(), "call_script": texts}, index=frame.index)
    out.loc[act == NONE, "script_language"] = ""
    return out
