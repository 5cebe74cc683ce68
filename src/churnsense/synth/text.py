"""Synthetic multilingual customer feedback (en/ru/uk/he) composed from phrase banks.

`make_feedback_texts` builds each message from independent random parts: an optional opener, one or two
topic clauses that carry sentiment, an optional intensity sentence, an optional closer, emoji, and noise
(lower case, typos, missing punctuation, shouting). A `mixed_rate` share of messages code-switch: English
product words inside Russian/Ukrainian/Hebrew text, an English clause inside a native frame, or a native
greeting/thanks around an English message. Phrase banks live in `text_phrases.json` beside this file.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from churnsense.data.contract import LANGUAGES, SENTIMENTS, TOPICS

_BANK_PATH = Path(__file__).with_name("text_phrases.json")
_CURRENCY = {"en": ("${}", "{} dollars", "£{}"), "ru": ("{}", "{}"), "uk": ("{}", "{}"), "he": ("{}", "{}")}
_PARTNER = {"en": ("ru", "he", "uk"), "ru": ("en",), "uk": ("en",), "he": ("en",)}


@lru_cache(maxsize=1)
def phrase_bank() -> dict:
    """The phrase banks (loaded once)."""
    with _BANK_PATH.open(encoding="utf-8") as fh:
        return json.load(fh)


def _pick(bank: list[str], u: float) -> str:
    return bank[min(int(u * len(bank)), len(bank) - 1)]


def _fill(text: str, n: int, amt: int, lang: str, u: float) -> str:
    if "{" not in text:
        return text
    fmt = _pick(list(_CURRENCY[lang]), u)
    return text.replace("{n}", str(n)).replace("{amt}", fmt.format(amt))


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _typo(text: str, u: float) -> str:
    """Swap two adjacent letters (a realistic fat-finger typo)."""
    idx = [i for i in range(len(text) - 1) if text[i].isalpha() and text[i + 1].isalpha()]
    if not idx:
        return text
    i = idx[min(int(u * len(idx)), len(idx) - 1)]
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def _english_terms(text: str, lang: str) -> tuple[str, bool]:
    """Replace native product words with their English equivalents; report whether anything changed."""
    changed = False
    for native, english in phrase_bank()["english_terms"].get(lang, {}).items():
        if native in text:
            text = text.replace(native, english)
            changed = True
    return text, changed


def _clause(lang: str, topic: str, sent: str, u: float) -> str:
    return _pick(phrase_bank()[lang]["topic"][topic][sent], u)


def _compose(lang: str, sent: str, topic: str, mixed: bool, r: np.ndarray, n: int, amt: int) -> str:
    """One message from the random draws in `r` (a row of uniforms, see `make_feedback_texts`)."""
    bank = phrase_bank()
    lb = bank[lang]
    parts: list[str] = []
    frame_lang = lang
    clause_lang = lang
    mix_mode = int(r[12] * 3) if mixed else -1
    if mix_mode == 0 and lang == "en":
        frame_lang = _PARTNER["en"][int(r[13] * 3)]  # native greeting / thanks around English text
    elif mix_mode == 1 and lang != "en":
        clause_lang = _PARTNER[lang][int(r[13] * len(_PARTNER[lang]))]  # an English (or Russian) clause inside
    if r[0] < 0.55:
        parts.append(_pick(bank[frame_lang]["open"][sent], r[1]))
    clause = _fill(_clause(clause_lang, topic, sent, r[2]), n, amt, clause_lang, r[14])
    parts.append(clause)
    if r[3] < 0.25:  # a second clause on the same topic and feeling
        second = _fill(_clause(lang, topic, sent, r[4]), n + 1, amt, lang, r[14])
        if second != clause:
            parts.append(second)
    if r[5] < 0.3:
        parts.append(_pick(lb["extra"][sent], r[6]))
    if r[7] < 0.45:
        parts.append(_pick(bank[frame_lang]["close"][sent], r[8]))
    text = _join(parts, sent, r)
    if mixed and (mix_mode == 2 or (mix_mode == 0 and lang != "en") or (mix_mode == 1 and lang == "en")):
        text, changed = _english_terms(text, lang)
        if not changed and lang != "en":
            text = f"{text} {_pick(bank['en']['close'][sent], r[13])}"
        elif lang == "en":
            text = f"{_pick(bank[_PARTNER['en'][int(r[13] * 3)]]['open'][sent], r[1])} {text}"
    return _noise(text, sent, r)


def _join(parts: list[str], sent: str, r: np.ndarray) -> str:
    out = []
    for i, part in enumerate(parts):
        ends = part[-1:] in ".!?,:-"
        prev_open = i > 0 and out[-1][-1:] in ".!?"
        if i == 0 or prev_open:
            part = _capitalise(part)
        if i < len(parts) - 1 and not ends:
            part += "!" if (sent != "neutral" and r[9] < 0.3) else ("." if r[9] < 0.7 else ",")
        out.append(part)
    return " ".join(out)


def _noise(text: str, sent: str, r: np.ndarray) -> str:
    if r[10] < 0.25:
        text = text.lower()
    elif sent == "negative" and r[10] > 0.96:
        text = text.upper()
    if r[11] < 0.12:
        text = _typo(text, r[15])
    if r[16] < 0.3:
        text = text.rstrip(".")
    elif sent == "negative" and r[16] > 0.85:
        text = text.rstrip(".!") + "!!!"
    if r[17] < 0.35:
        emo = _pick(phrase_bank()["emoji"][sent], r[18])
        text = f"{emo} {text}" if r[19] < 0.2 else f"{text} {emo}"
    return text


def make_feedback_texts(
    rng: np.random.Generator,
    sentiment: np.ndarray,
    topic: np.ndarray,
    language: np.ndarray,
    mixed_rate: float,
) -> list[str]:
    """Realistic customer messages, one per row of the three label arrays (equal length).

    sentiment in {negative, neutral, positive}; topic in {billing, network, support, app, contract, other};
    language in {en, ru, uk, he}. A `mixed_rate` share (0..1) of messages mixes two languages. All randomness
    comes from `rng` (drawn in bulk), so the same generator state gives the same texts.
    """
    sentiment, topic, language = (np.asarray(a).astype(str) for a in (sentiment, topic, language))
    if not (len(sentiment) == len(topic) == len(language)):
        raise ValueError("sentiment, topic and language must have the same length")
    for name, arr, allowed in (("sentiment", sentiment, SENTIMENTS), ("topic", topic, TOPICS),
                               ("language", language, LANGUAGES)):
        bad = set(np.unique(arr)) - set(allowed)
        if bad:
            raise ValueError(f"unknown {name} values {sorted(bad)}; expected {allowed}")
    size = len(sentiment)
    draws = rng.random((size, 20))
    mixed = rng.random(size) < mixed_rate
    nums = rng.integers(2, 60, size)
    amts = np.round(rng.lognormal(3.5, 0.8, size)).astype(int) + 1
    return [
        _compose(lang, sent, top, bool(mx), r, int(n), int(a))
        for lang, sent, top, mx, r, n, a in zip(language, sentiment, topic, mixed, draws, nums, amts)
    ]
