"""Labelled customer messages composed from the phrase banks, the way people write them.

A message is a *frame* of one writing family (plain, sarcasm, negation, polite_complaint, mixed_stance,
loaded_neutral, slang, short; `banks/<lang>.yaml` `frames`) filled with topic clauses of its language, topic and
domain (`topics.<topic>.<domain>`), then surface transformations (`transforms`): a backstory for long messages,
code-switching or surzhyk, transliteration, shouting, lower case, typos, final punctuation and emoji. The frame
decides the sentiment (irony around a complaint is negative, a negated complaint is positive, the final stance of a
mixed message wins, questions with loaded words are neutral), the clauses decide the topic.

All randomness is drawn in bulk from one seeded numpy generator, so a seed gives the same corpus everywhere;
`split="holdout"` composes only from the held-out share of every bank (see `banks`), `split="train"` never uses it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from churnsense.data.contract import DOMAINS, LANGUAGES, SENTIMENTS, TOPICS
from churnsense.synth.corpus import transforms as tf
from churnsense.synth.corpus.banks import SLOT, TOPIC_SLOTS, LanguageBank, language_bank, mixing

STYLE_PATH = Path(__file__).with_name("style.yaml")
COLUMNS = ("text", "sentiment", "topic", "language", "domain", "phenomena")
_N_DRAWS = 33  # uniforms per message: 0 family, 1 frame, 2-11 slots, 12+ transformations (see `_Row`)
_ORDINAL = {1: "st", 2: "nd", 3: "rd"}
_NATIVE = {"ru": re.compile("[А-Яа-яЁё]"), "uk": re.compile("[А-Яа-яІіЇїЄєҐґ]"), "he": re.compile("[\u0590-\u05ff]")}
_NUMERIC = ("n", "n_few", "nth", "amt")  # filled after the phrase slots: a count 5-20, a count 2-4, "7th", money


@dataclass(frozen=True)
class Style:
    """P(family | sentiment) and the rates of the surface transformations (style.yaml)."""

    families: dict[str, dict[str, float]]
    rates: dict[str, float]

    @classmethod
    def load(cls, path: str | Path = STYLE_PATH, **rates: float) -> Style:
        """Read `path`; keyword arguments override single rates (e.g. code_switch=0.0)."""
        with Path(path).open(encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
        unknown = set(rates) - set(raw["rates"])
        if unknown:
            raise ValueError(f"unknown style rates {sorted(unknown)}; known: {sorted(raw['rates'])}")
        return cls(raw["families"], {**raw["rates"], **rates})


@lru_cache(maxsize=1)
def default_style() -> Style:
    """style.yaml as shipped."""
    return Style.load()


def balanced_labels(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """`n` label rows cycling through every sentiment x topic x language x domain cell in random order: every cell
    occurs once before any occurs twice, so marginals are balanced and n >= 576 covers every cell."""
    grid = np.array(list(itertools.product(SENTIMENTS, TOPICS, LANGUAGES, DOMAINS)), dtype=object)
    reps = max(1, -(-n // len(grid)))
    order = np.concatenate([rng.permutation(len(grid)) for _ in range(reps)])[:n]
    rows = grid[order[rng.permutation(n)]]
    return {name: rows[:, i].astype(str) for i, name in enumerate(("sentiment", "topic", "language", "domain"))}


def _families(rng_u: np.ndarray, sentiment: np.ndarray, style: Style) -> np.ndarray:
    """Writing family per message, drawn from P(family | sentiment) (vectorised per sentiment)."""
    out = np.empty(len(sentiment), dtype=object)
    for sent in SENTIMENTS:
        rows = np.flatnonzero(sentiment == sent)
        names = list(style.families[sent])
        cum = np.cumsum([style.families[sent][f] for f in names])
        out[rows] = np.asarray(names, dtype=object)[
            np.minimum(np.searchsorted(cum / cum[-1], rng_u[rows]), len(names) - 1)
        ]
    return out


class _Row:
    """Composes one message from its labels and its row of uniforms `u`."""

    def __init__(
        self,
        bank: LanguageBank,
        mix: dict,
        style: Style,
        labels: tuple[str, str, str, str],
        u: np.ndarray,
        nums: tuple[int, int, int],
    ) -> None:
        self.bank, self.mix, self.style, self.u, self.nums = bank, mix, style, u, nums
        self.sentiment, self.topic, self.lang, self.domain = labels
        self.sources: list[str] = []
        self.slot_draw = 2

    def _draw(self) -> float:
        """The next slot's uniform: columns 2-11, then golden-ratio steps from column 11."""
        k = self.slot_draw
        self.slot_draw += 1
        return float(self.u[k]) if k <= 11 else float((self.u[11] + 0.618034 * k) % 1.0)

    def _items(self, slot: str) -> list[str]:
        base = slot[:-1] if slot in ("issue2", "good2") else slot.removesuffix("_lc")
        if base in TOPIC_SLOTS or base.startswith("short_"):
            return self.bank.pool(self.topic, self.domain, base)
        return self.bank.words.get(base, [])

    def feasible(self, frame: str) -> bool:
        """Every slot of `frame` has items (two distinct ones for issue2 / good2)."""
        for slot in set(SLOT.findall(frame)) - set(_NUMERIC):
            need = 2 if slot in ("issue2", "good2") else 1
            if len(self._items(slot)) < need:
                return False
        return True

    def fill(self, frame: str) -> str:
        """Frame with its slots filled (then numbers and money)."""
        chosen: dict[str, str] = {}
        for slot in dict.fromkeys(SLOT.findall(frame)):
            if slot in _NUMERIC:
                continue
            items = self._items(slot)
            if slot in ("issue2", "good2"):
                items = [s for s in items if s != chosen.get(slot[:-1])] or items
            item = tf.pick(items, self._draw())
            self.sources.append(item)
            chosen[slot] = tf.lower_first(item) if slot.endswith("_lc") else item
        text = SLOT.sub(lambda m: chosen.get(m.group(1), m.group(0)), frame)
        return self._numbers(text)

    def fresh(self, slot: str) -> str | None:
        """An item of `slot` not used in this message yet (numbers filled), or None."""
        items = [s for s in self._items(slot) if s not in self.sources]
        if not items:
            return None
        item = tf.pick(items, self._draw())
        self.sources.append(item)
        return self._numbers(item)

    def _numbers(self, text: str) -> str:
        n, few, amt = self.nums
        money = tf.pick(self.bank.money, (self.u[31] * 7.0) % 1.0)
        nth = f"{n}{_ORDINAL.get(n % 10, 'th') if n // 10 != 1 else 'th'}"
        return (
            text.replace("{n}", str(n))
            .replace("{n_few}", str(few))
            .replace("{nth}", nth)
            .replace("{amt}", money.replace("{}", str(amt)))
        )

    def frame(self, family: str) -> tuple[str, str]:
        """(family actually used, frame): the drawn family, else the first of the sentiment's families (style
        order) with a frame that can be filled: small held-out banks cannot fill every frame."""
        for fam in (family, *self.style.families[self.sentiment]):
            frames = [f for f in self.bank.frames.get(fam, {}).get(self.sentiment, []) if self.feasible(f)]
            if frames:
                chosen = tf.pick(frames, self.u[1])
                self.sources.append(chosen)
                return fam, chosen
        raise ValueError(f"no frame can be filled for {self.lang}/{self.topic}/{self.domain}/{self.sentiment}")


def _long_prefix(row: _Row, family: str) -> str:
    """A backstory sentence and a clause that keeps the final stance (a praise before a mixed complaint), each
    only if the bank has one not used in the message yet; '' when neither."""
    parts = [row.fresh("context")]
    if row.sentiment != "neutral":
        parts.append(row.fresh("good" if (row.sentiment == "positive") != (family == "mixed_stance") else "issue"))
    return " ".join(f"{tf.sentence_case(p)}." for p in parts if p)


def _code_switch(text: str, row: _Row, tags: list[str]) -> str:
    u = row.u
    if row.lang == "en":
        if u[13] >= row.style.rates["english_frame"] or not all(row.mix["english_frame"].values()):
            return text
        tags.append("code_switch")
        if u[14] < 0.6:
            return f"{tf.pick(row.mix['english_frame']['open'], u[15])} {tf.lower_first(text)}"
        return f"{text}. {tf.pick(row.mix['english_frame']['close'], u[15])}"
    if u[13] >= row.style.rates["code_switch"]:
        return text
    surzhyk = row.lang == "uk" and u[14] < 0.5
    pairs = row.mix["surzhyk"] if surzhyk else row.mix["code_switch"].get(row.lang, {})
    out, count = tf.swap_words(text, pairs, u[15])
    if count and not _NATIVE[row.lang].search(out):
        return text  # nothing of the matrix language would be left ("приложение 👎" -> "app 👎")
    if not count:
        tags_pool = row.mix["english_tags"][row.sentiment]
        if surzhyk or not tags_pool:
            return text
        tag = tf.pick(tags_pool, u[16])
        out = f"{text} {tag}" if text[-1:] in ".!?…" else f"{text}, {tag}"
    tags.append("code_switch")
    return out


def _surface(text: str, row: _Row, family: str, tags: list[str]) -> str:
    """Transformations after composition (order matters: script before case before typos before emoji)."""
    u, rates = row.u, row.style.rates
    text = _code_switch(text, row, tags)
    if row.lang in ("ru", "uk") and u[17] < rates["translit"]:
        text = tf.transliterate(text, row.mix["translit"][row.lang], u[18])
        text = text.lower() if u[19] < 0.6 else text
        tags.append("translit")
    caps_rate = rates["caps"] * (0.5 if row.sentiment == "neutral" else 1.0)  # praise is shouted too
    if u[20] < caps_rate:
        text = tf.shout(text, u[21])
        tags.append("caps")
    elif u[22] < rates["lower"]:
        text = text.lower()
    if u[23] < rates["typos"]:
        text = tf.typo(text, u[24], u[25])
        text = tf.typo(text, u[26], u[25]) if u[26] < 0.3 else text
        tags.append("typos")
    if text.endswith("?") and not text.endswith("??") and u[32] < rates["no_question_mark"]:
        text = text[:-1]  # questions typed without their mark
    text = tf.end_punctuation(text, row.sentiment, u[27])
    if u[28] < rates["emoji"]:
        pool = row.mix["emoji"]["ironic" if family == "sarcasm" else row.sentiment]
        text = tf.add_emoji(text, pool, u[29], u[30])
        tags.append("emoji")
    return text


def compose_row(
    bank: LanguageBank,
    mix: dict,
    style: Style,
    labels: tuple[str, str, str, str],
    family: str,
    u: np.ndarray,
    nums: tuple[int, int, int],
) -> tuple[str, list[str], list[str]]:
    """(text, phenomena tags, bank items used) of one message."""
    row = _Row(bank, mix, style, labels, u, nums)
    family, frame = row.frame(family)
    text = tf.sentence_case(row.fill(frame))
    tags = [family]  # family names are phenomenon tags
    if "{slang_" in frame and "slang" not in tags:
        tags.append("slang")
    prefix = _long_prefix(row, family) if family != "short" and u[12] < style.rates["long"] else ""
    if prefix:
        text = f"{prefix} {text}"
        tags.append("long")
    text = _surface(text, row, family, tags)
    if family != "short" and len(text.split()) <= 4:
        tags.append("short")
    return text, tags, row.sources


def compose(
    rng: np.random.Generator,
    labels: dict[str, np.ndarray],
    split: str = "train",
    share: float = 0.2,
    style: Style | None = None,
) -> pd.DataFrame:
    """Messages for given label arrays (`sentiment`, `topic`, `language`, `domain`, equal length)."""
    style = style or default_style()
    n = len(labels["sentiment"])
    u = rng.random((n, _N_DRAWS))
    families = _families(u[:, 0], labels["sentiment"], style)
    nums = np.stack(
        [rng.integers(5, 21, n), rng.integers(2, 5, n), np.round(rng.lognormal(3.6, 0.9, n)).astype(int) + 1], axis=1
    )
    mix = mixing(split, share)
    banks = {lang: language_bank(lang, split, share) for lang in LANGUAGES}
    rows = [
        compose_row(banks[lang], mix, style, (s, t, lang, d), fam, u[i], tuple(int(x) for x in nums[i]))
        for i, (s, t, lang, d, fam) in enumerate(
            zip(labels["sentiment"], labels["topic"], labels["language"], labels["domain"], families)
        )
    ]
    out = pd.DataFrame({k: labels[k] for k in ("sentiment", "topic", "language", "domain")})
    out.insert(0, "text", [r[0] for r in rows])
    out["phenomena"] = [";".join(r[1]) for r in rows]
    out["sources"] = [r[2] for r in rows]
    return out


def generate_corpus(
    n: int, seed: int, split: str = "train", share: float = 0.2, style: Style | None = None
) -> pd.DataFrame:
    """`n` balanced labelled messages (columns COLUMNS + `sources`, the bank items each message was built from)."""
    rng = np.random.default_rng(seed)
    return compose(rng, balanced_labels(rng, n), split, share, style)


def make_feedback_texts(
    rng: np.random.Generator,
    sentiment: np.ndarray,
    topic: np.ndarray,
    language: np.ndarray,
    mixed_rate: float,
    domain: str | np.ndarray = "telecom",
) -> list[str]:
    """Texts for given labels (the synthetic customer base's feedback), from the training banks only.

    `mixed_rate` (0..1) is the share of messages that mix languages or scripts (code-switching, surzhyk,
    transliteration, a native greeting around English); 0 keeps every message in its own script.
    """
    sentiment, topic, language = (np.asarray(a).astype(str) for a in (sentiment, topic, language))
    if not (len(sentiment) == len(topic) == len(language)):
        raise ValueError("sentiment, topic and language must have the same length")
    domain = np.broadcast_to(np.asarray(domain).astype(str), sentiment.shape)
    for name, arr, allowed in (
        ("sentiment", sentiment, SENTIMENTS),
        ("topic", topic, TOPICS),
        ("language", language, LANGUAGES),
        ("domain", domain, DOMAINS),
    ):
        bad = set(np.unique(arr)) - set(allowed)
        if bad:
            raise ValueError(f"unknown {name} values {sorted(bad)}; expected {allowed}")
    rate = float(mixed_rate)
    style = Style.load(code_switch=rate, english_frame=rate / 2, translit=rate / 2)
    labels = {"sentiment": sentiment, "topic": topic, "language": language, "domain": domain}
    return compose(rng, labels, "train", style=style)["text"].tolist()
