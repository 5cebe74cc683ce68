"""Surface transformations of a composed message: code-switching, transliteration, shouting, typos, emoji, case.

Each function is pure: it takes the text and the uniform draws it needs (from the generator's bulk draws), so the
same draws always give the same output.
"""

from __future__ import annotations

import re
from functools import lru_cache

_SENTENCE_START = re.compile(r"(^|[.!?…]\s+)(\w)")


def pick(items: list[str] | tuple[str, ...], u: float) -> str:
    """The item at quantile `u` in [0, 1) of `items`."""
    return items[min(int(u * len(items)), len(items) - 1)]


def lower_first(text: str) -> str:
    """First letter lower-cased unless it starts a contraction such as "I'm"."""
    if len(text) > 1 and text[1] == "'":
        return text
    return text[:1].lower() + text[1:]


def sentence_case(text: str) -> str:
    """Capitalise the first letter of every sentence (scripts without case are left as they are)."""
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


@lru_cache(maxsize=64)
def _word_pattern(words: tuple[str, ...]) -> re.Pattern:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)({alternatives})(?!\w)", re.IGNORECASE)


def swap_words(text: str, pairs: dict[str, str], u: float) -> tuple[str, int]:
    """Replace whole words found in `pairs` (case-insensitive); with several matches about 70% of them (at least
    one), chosen by `u`. Returns the text and the number of replacements."""
    if not pairs:
        return text, 0
    lookup = {k.lower(): v for k, v in pairs.items()}
    matches = list(_word_pattern(tuple(pairs)).finditer(text))
    if not matches:
        return text, 0
    keep = {i for i in range(len(matches)) if (u + 0.618034 * i) % 1.0 < 0.7} or {0}
    out, last = [], 0
    for i, m in enumerate(matches):
        if i in keep:
            out.append(text[last : m.start()] + lookup[m.group(1).lower()])
            last = m.end()
    return "".join(out) + text[last:], len(keep)


def transliterate(text: str, table: dict[str, list[str]], u: float) -> str:
    """Cyrillic -> Latin with one consistent variant per letter for the whole message (as one person types)."""
    out = []
    for ch in text:
        low = ch.lower()
        variants = table.get(low)
        if variants is None:
            out.append(ch)
            continue
        latin = variants[int(u * 7 * (1 + len(variants))) % len(variants)]
        out.append(latin.capitalize() if ch != low else latin)
    return "".join(out)


def shout(text: str, u: float) -> str:
    """Whole message in capitals (u < 0.5) or only its longest word."""
    if u < 0.5:
        return text.upper()
    words = text.split(" ")
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    words[longest] = words[longest].upper()
    return " ".join(words)


def typo(text: str, u: float, v: float) -> str:
    """One slip at a letter chosen by `u`: swap with the next letter, drop it, or double it (chosen by `v`)."""
    idx = [i for i in range(len(text) - 1) if text[i].isalpha() and text[i + 1].isalpha()]
    if not idx:
        return text
    i = idx[min(int(u * len(idx)), len(idx) - 1)]
    if v < 0.5:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if v < 0.75:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]


def end_punctuation(text: str, sentiment: str, u: float) -> str:
    """Finish a message that has no final mark: '.', nothing, '!' or (negative) '!!!'."""
    if text[-1:] in ".!?…:)" or not text:
        return text
    if u < 0.4:
        return text + "."
    if u < 0.75 or sentiment == "neutral":
        return text
    return text + ("!!!" if sentiment == "negative" and u > 0.93 else "!")


def add_emoji(text: str, pool: list[str], u: float, v: float) -> str:
    """One emoji (sometimes repeated) from `pool` at the end, or at the start when `v` < 0.15."""
    emo = pick(pool, u)
    emo = emo * 2 if v > 0.8 else emo
    return f"{emo} {text}" if v < 0.15 else f"{text} {emo}"
