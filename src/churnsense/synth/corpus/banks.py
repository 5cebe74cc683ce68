"""Phrase banks of the feedback corpus: loading, validation and the held-out split by construction.

Every list in the banks (topic clauses, frames, openers, slang, code-switch pairs) is split into a `train` part and
a `holdout` part by a stable hash of (language, list path, item): the same items are held out on every machine and
for every seed, so a check generated from the `holdout` part measures generalisation to phrases and frames the
model never saw. Lists of one item are never held out; frames made only of slots and punctuation ("{ask}?") are
in both parts; a held-out item that occurs inside any training phrase or mixing word (of any language) is dropped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from churnsense.data.contract import DOMAINS, LANGUAGES, SENTIMENTS, TOPICS

BANK_DIR = Path(__file__).with_name("banks")
SPLITS = ("train", "holdout", "all")
TOPIC_SLOTS = ("issue", "good", "no_problem", "unmet", "ask", "loaded", "aspect")
SHORT_SLOTS = ("short_neg", "short_pos", "short_neu")
WORD_SLOTS = (
    "open_neg",
    "open_neu",
    "open_pos",
    "close_neg",
    "close_neu",
    "close_pos",
    "threat",
    "stay",
    "praise",
    "context",
    "slang_neg",
    "slang_pos",
    "slang_intens",
    "mock_open",
    "mock_close",
    "claim",
    "gripe_open",
    "gripe_close",
)
FRAME_SLOTS = (
    *TOPIC_SLOTS,
    *SHORT_SLOTS,
    *WORD_SLOTS,
    "issue2",
    "good2",
    "threat_lc",
    "stay_lc",
    "n",
    "n_few",
    "nth",
    "amt",
)
SLOT = re.compile(r"\{(\w+)\}")


class BankError(ValueError):
    """A phrase bank file is malformed (the message names the file and the path inside it)."""


def _rank(key: str, item: str) -> str:
    return hashlib.md5(f"{key}\x1f{item}".encode()).hexdigest()


def split_items(items: list[str], key: str, share: float) -> tuple[list[str], list[str]]:
    """(train, holdout) parts of `items`: round(share * n) items (at least 1 when n >= 2, never all) are held out,
    chosen by a stable hash of `key` and the item, so the split is the same everywhere."""
    n = len(items)
    k = 0 if n < 2 or share <= 0 else min(n - 1, max(1, round(share * n)))
    held = set(sorted(items, key=lambda s: _rank(key, s))[:k])
    return [s for s in items if s not in held], [s for s in items if s in held]


def _pick_split(items: list[str], key: str, split: str, share: float) -> list[str]:
    if split == "all":
        return list(items)
    train, held = split_items(items, key, share)
    return train if split == "train" else held


@cache
def _read(name: str) -> dict:
    path = BANK_DIR / f"{name}.yaml"
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise BankError(f"{path}: not valid YAML ({exc})") from exc


def _strings(value, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and s.strip() for s in value):
        raise BankError(f"{where}: expected a non-empty list of non-empty strings, got {value!r:.80}")
    return value


def validate_language_bank(raw: dict, lang: str) -> None:
    """Raise BankError naming `banks/<lang>.yaml` and the path of the first structural problem."""
    where = f"{BANK_DIR / lang}.yaml"
    if raw.get("language") != lang:
        raise BankError(f"{where}: `language` must be {lang!r}")
    topics = raw.get("topics") or {}
    if set(topics) != set(TOPICS):
        raise BankError(f"{where}: topics must be exactly {TOPICS}, got {sorted(topics)}")
    for topic, by_domain in topics.items():
        unknown = set(by_domain) - {"any", *DOMAINS}
        if unknown or "any" not in by_domain:
            raise BankError(f"{where}: topics.{topic} needs `any` and only known domains {DOMAINS}; got {unknown}")
        for domain, slots in by_domain.items():
            for slot, items in slots.items():
                if slot not in TOPIC_SLOTS + SHORT_SLOTS:
                    raise BankError(f"{where}: topics.{topic}.{domain}: unknown slot {slot!r}")
                _strings(items, f"{where}: topics.{topic}.{domain}.{slot}")
        for slot in TOPIC_SLOTS + SHORT_SLOTS:
            if len(by_domain["any"].get(slot) or []) < 2:
                raise BankError(f"{where}: topics.{topic}.any.{slot} needs at least 2 items")
    for slot in WORD_SLOTS:
        if len(_strings((raw.get("words") or {}).get(slot), f"{where}: words.{slot}")) < 3:
            raise BankError(f"{where}: words.{slot} needs at least 3 items")
    for family, by_sent in (raw.get("frames") or {}).items():
        for sent, frames in by_sent.items():
            if sent not in SENTIMENTS:
                raise BankError(f"{where}: frames.{family}.{sent}: unknown sentiment")
            for frame in _strings(frames, f"{where}: frames.{family}.{sent}"):
                bad = set(SLOT.findall(frame)) - set(FRAME_SLOTS)
                if bad:
                    raise BankError(f"{where}: frames.{family}.{sent}: unknown slot(s) {sorted(bad)} in {frame!r}")


def is_structural(frame: str) -> bool:
    """A frame with no letters outside its slots ("{ask}?", "{aspect} 👍") holds no phrase to memorise: it is in
    both splits."""
    return not re.search(r"[^\W\d_]", SLOT.sub("", frame))


@dataclass(frozen=True)
class LanguageBank:
    """One language's phrases for one split: `topics[topic][domain][slot]`, `words[slot]`, `frames[family][sent]`."""

    language: str
    money: tuple[str, ...]
    topics: dict
    words: dict
    frames: dict

    def pool(self, topic: str, domain: str, slot: str) -> list[str]:
        """Items of `slot` for a topic in a domain: the domain's own items plus those valid in any domain."""
        by_domain = self.topics[topic]
        return by_domain["any"].get(slot, []) + by_domain.get(domain, {}).get(slot, [])


@cache
def language_bank(lang: str, split: str = "train", share: float = 0.2) -> LanguageBank:
    """The bank of `lang` restricted to `split` ('train', 'holdout' or 'all'); cached."""
    if lang not in LANGUAGES or split not in SPLITS:
        raise ValueError(f"language must be one of {LANGUAGES} and split one of {SPLITS}; got {lang!r}, {split!r}")
    raw = _read(lang)
    validate_language_bank(raw, lang)
    seen = _training_text(share) if split == "holdout" else ""

    def part(items: list[str], key: str) -> list[str]:  # held-out items found inside training phrases are dropped
        return [s for s in _pick_split(items, key, split, share) if not _occurs_in(s, seen)]

    topics = {
        t: {
            d: {s: part(items, f"{lang}/topics/{t}/{d}/{s}") for s, items in slots.items()}
            for d, slots in by_domain.items()
        }
        for t, by_domain in raw["topics"].items()
    }
    words = {s: part(raw["words"][s], f"{lang}/words/{s}") for s in WORD_SLOTS}
    frames = {
        f: {
            s: [x for x in items if is_structural(x)]
            + part([x for x in items if not is_structural(x)], f"{lang}/frames/{f}/{s}")
            for s, items in by_sent.items()
        }
        for f, by_sent in raw["frames"].items()
    }
    return LanguageBank(lang, tuple(raw["money"]), topics, words, frames)


def _occurs_in(item: str, text: str) -> bool:
    """Whether `item` (or one of its literal parts of 12+ characters between slots) occurs in `text`."""
    parts = [p.strip().lower() for p in SLOT.split(item)[::2]]
    if "{" not in item:
        return bool(text) and item.strip().lower().rstrip(".!?,:…") in text
    return any(len(p) >= 12 and p in text for p in parts)


@cache
def _training_text(share: float) -> str:
    """Every training phrase and mixing word, lower-cased and joined (for the substring check of held-out items)."""
    mix = mixing("train", share)
    words = [w for pairs in (*mix["code_switch"].values(), mix["surzhyk"]) for w in pairs.values()]
    words += [w for group in ("english_frame", "english_tags") for items in mix[group].values() for w in items]
    return "\n".join(sorted(_strings_of(LANGUAGES, "train", share))).lower() + "\n" + "\n".join(words).lower()


@cache
def _strings_of(langs: tuple[str, ...], split: str, share: float) -> frozenset[str]:
    """Every phrase (clauses, words, frames) of `split` in `langs`."""
    out: set[str] = set()
    for lang in langs:
        bank = language_bank(lang, split, share)
        for by_domain in bank.topics.values():
            for slots in by_domain.values():
                for items in slots.values():
                    out.update(items)
        for group in (bank.words, *bank.frames.values()):
            for items in group.values():
                out.update(items)
    return frozenset(out)


@cache
def mixing(split: str = "train", share: float = 0.2) -> dict:
    """Code-switch and surzhyk word pairs (split by their native word), native frames around English, translit
    tables and emoji (these last two are writing systems, not vocabulary: never split)."""
    raw = _read("mixing")
    out = {"code_switch": {}, "translit": raw["translit"], "emoji": raw["emoji"]}
    for lang, pairs in raw["code_switch"].items():
        keep = _pick_split(list(pairs), f"mixing/code_switch/{lang}", split, share)
        out["code_switch"][lang] = {k: pairs[k] for k in keep}
    keep = _pick_split(list(raw["surzhyk"]), "mixing/surzhyk", split, share)
    out["surzhyk"] = {k: raw["surzhyk"][k] for k in keep}
    for group in ("english_frame", "english_tags"):
        out[group] = {k: _pick_split(v, f"mixing/{group}/{k}", split, share) for k, v in raw[group].items()}
    return out


def all_phrases(split: str, share: float = 0.2) -> frozenset[str]:
    """Every clause, word and frame of `split` in every language (used to check that splits do not leak)."""
    return _strings_of(LANGUAGES, split, share)
