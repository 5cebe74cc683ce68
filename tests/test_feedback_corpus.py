"""Feedback corpus generator: balanced labels, phenomena, determinism, label rules, held-out banks never leak."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from churnsense.data.contract import DOMAINS, LANGUAGES, PHENOMENA, SENTIMENTS, TOPICS
from churnsense.synth.corpus import banks
from churnsense.synth.corpus.generate import generate_corpus, make_feedback_texts


@pytest.fixture(scope="module")
def train():
    return generate_corpus(2304, seed=3)


@pytest.fixture(scope="module")
def holdout():
    return generate_corpus(1152, seed=4, split="holdout")


def test_labels_balanced_and_every_cell_covered(train):
    for column, values in (("sentiment", SENTIMENTS), ("topic", TOPICS), ("language", LANGUAGES), ("domain", DOMAINS)):
        counts = train[column].value_counts()
        assert set(counts.index) == set(values) and counts.max() - counts.min() <= 1, column
    cells = train.groupby(["language", "topic", "domain"]).size()
    assert len(cells) == len(LANGUAGES) * len(TOPICS) * len(DOMAINS) and cells.min() >= 4


def test_every_phenomenon_present_in_every_language_it_applies_to(train):
    tags = train.assign(tag=train["phenomena"].str.split(";")).explode("tag")
    assert set(tags["tag"]) == set(PHENOMENA)
    per_lang = tags.groupby("tag")["language"].agg(set)
    for tag in PHENOMENA:
        expected = {"ru", "uk"} if tag == "translit" else set(LANGUAGES)
        assert per_lang[tag] == expected, tag
    assert tags["tag"].value_counts().min() >= 40


def test_sentiment_follows_the_writing_rules(train):
    first = train["phenomena"].str.split(";").str[0]
    sarcasm = train.loc[first == "sarcasm", "sentiment"].value_counts()  # irony, and mock complaints that praise
    assert set(sarcasm.index) == {"negative", "positive"} and sarcasm["negative"] > 2 * sarcasm["positive"]
    assert set(train.loc[first == "polite_complaint", "sentiment"]) == {"negative"}
    assert set(train.loc[first == "loaded_neutral", "sentiment"]) == {"neutral"}
    assert set(train.loc[first == "mixed_stance", "sentiment"]) == {"negative", "positive"}
    assert set(train.loc[first == "negation", "sentiment"]) == {"negative", "positive"}
    assert train["text"].nunique() > 0.97 * len(train)


def test_native_scripts(train):
    plain = train[~train["phenomena"].str.contains("translit")]
    assert plain.loc[plain["language"] == "he", "text"].str.contains("[\u0590-\u05ff]").all()
    assert plain.loc[plain["language"].isin(["ru", "uk"]), "text"].str.contains("[А-Яа-яЁёІіЇїЄєҐґ]").all()
    translit = train[train["phenomena"].str.contains("translit")]
    assert not translit["text"].str.contains("[А-Яа-яЁёІіЇїЄєҐґ]").any()


def test_deterministic_for_a_seed():
    a, b = generate_corpus(300, seed=11), generate_corpus(300, seed=11)
    assert a.drop(columns="sources").equals(b.drop(columns="sources"))
    assert not a["text"].equals(generate_corpus(300, seed=12)["text"])


def test_split_is_stable_disjoint_and_never_empties_a_list():
    items = [f"item {i}" for i in range(10)]
    train, held = banks.split_items(items, "k", 0.2)
    assert banks.split_items(list(reversed(items)), "k", 0.2)[1] == sorted(held, key=items[::-1].index)
    assert len(held) == 2 and not set(train) & set(held) and set(train) | set(held) == set(items)
    assert banks.split_items(["only"], "k", 0.5) == (["only"], [])
    assert len(banks.split_items(["a", "b"], "k", 0.9)[0]) == 1


def test_held_out_banks_never_leak_into_training_output(train, holdout):
    held = {s for s in banks.all_phrases("holdout") if not banks.is_structural(s)}
    assert held and not held & banks.all_phrases("train")
    assert not held & set(train["sources"].explode())
    literal = [s.lower() for s in held if "{" not in s and len(s) >= 15]
    texts = " \n ".join(train["text"].str.lower())
    assert len(literal) > 100 and not [s for s in literal if s in texts]
    rng = np.random.default_rng(0)
    labels = [rng.choice(v, 1500) for v in (SENTIMENTS, TOPICS, LANGUAGES)]
    demo = " \n ".join(make_feedback_texts(rng, *labels, mixed_rate=0.1)).lower()
    assert not [s for s in literal if s in demo]
    used = set(holdout["sources"].explode())
    assert used <= banks.all_phrases("holdout") and len(used & held) > 200


def test_make_feedback_texts_keeps_its_contract():
    rng = np.random.default_rng(5)
    s, t, lang = (rng.choice(v, 400) for v in (SENTIMENTS, TOPICS, LANGUAGES))
    texts = make_feedback_texts(np.random.default_rng(1), s, t, lang, 0.0, domain="banking")
    assert texts == make_feedback_texts(np.random.default_rng(1), s, t, lang, 0.0, domain="banking")
    assert not any(re.search("[\u0400-\u05ff]", x) for x, lg in zip(texts, lang) if lg == "en")
    with pytest.raises(ValueError, match="unknown topic"):
        make_feedback_texts(rng, np.array(["negative"]), np.array(["network"]), np.array(["en"]), 0.0)
    with pytest.raises(ValueError, match="same length"):
        make_feedback_texts(rng, np.array(["negative"]), np.array([]), np.array(["en"]), 0.0)


def test_malformed_bank_is_reported_with_file_and_path():
    raw = copy.deepcopy(banks._read("en"))
    raw["topics"]["billing"]["any"]["issue"] = ["only one"]
    with pytest.raises(banks.BankError, match=r"en\.yaml: topics\.billing\.any\.issue needs at least 2"):
        banks.validate_language_bank(raw, "en")
    raw = copy.deepcopy(banks._read("ru"))
    raw["frames"]["sarcasm"]["negative"].append("Ну да, {isue}")
    with pytest.raises(banks.BankError, match=r"ru\.yaml: frames\.sarcasm\.negative: unknown slot.*isue"):
        banks.validate_language_bank(raw, "ru")


def test_phrase_banks_hold_no_dev_set_text():
    """Training phrases are written apart from the dev set: no 6-word run of a dev message occurs in any bank."""
    from churnsense.feedback.data import dev_set

    def runs(text: str, n: int = 6) -> set[str]:
        words = re.findall(r"\w+", text.lower())
        return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}

    dev = set().union(*(runs(t) for t in dev_set()["text"]))
    bank = set().union(*(runs(banks.SLOT.sub(" ", p)) for p in banks.all_phrases("all")))
    assert len(dev) > 3000 and len(bank) > 1000
    assert not dev & bank
