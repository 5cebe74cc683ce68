"""The hand-written feedback dev set: format, label scheme, balance, coverage and script sanity."""

from __future__ import annotations

import csv
import re

import pandas as pd
import pytest

from churnsense.data.contract import DOMAINS, LANGUAGES, PHENOMENA, SENTIMENTS, TOPICS
from churnsense.feedback.devset import DEVSET, load_devset, readme_is_current

HEADER = ["language", "sentiment", "topic", "domain", "phenomena", "text"]
SCHEME = {
    "language": set(LANGUAGES),
    "sentiment": set(SENTIMENTS),
    "topic": set(TOPICS),
    "domain": set(DOMAINS),
}
TAGS = set(PHENOMENA)
HAND_TAGS = TAGS - {"plain", "typos", "emoji", "caps", "long", "short"}
# Minimum rows per language for the phenomena the set is built to stress (translit only exists for ru/uk).
MIN_PER_LANGUAGE = {
    "sarcasm": 12,
    "negation": 12,
    "polite_complaint": 8,
    "mixed_stance": 8,
    "loaded_neutral": 12,
    "code_switch": 8,
    "slang": 6,
}
HEBREW = re.compile(r"[\u05D0-\u05EA]")
NIQQUD = re.compile(r"[\u0591-\u05C7]")
CYRILLIC = re.compile(r"[\u0400-\u04FF]")
EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf\u2b50]")


@pytest.fixture(scope="module")
def dev() -> pd.DataFrame:
    return pd.read_csv(DEVSET, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False, encoding="utf-8")


@pytest.fixture(scope="module")
def tags(dev: pd.DataFrame) -> pd.Series:
    return dev["phenomena"].str.split(";").map(set)


def test_header_and_label_values(dev, tags):
    assert list(dev.columns) == HEADER
    for column, allowed in SCHEME.items():
        bad = dev.loc[~dev[column].isin(allowed), column]
        assert bad.empty, f"{column}: values outside the scheme {sorted(set(bad))}"
    unknown = set().union(*tags) - TAGS
    assert not unknown, f"unknown phenomena {unknown}"


def test_texts_present_and_unique(dev):
    assert dev["text"].str.strip().ne("").all()
    dups = dev.loc[dev["text"].duplicated(), "text"].tolist()
    assert not dups, f"duplicate texts: {dups[:3]}"


@pytest.mark.parametrize("language", sorted(SCHEME["language"]))
def test_size_balance_and_coverage(dev, language):
    sub = dev[dev["language"] == language]
    assert len(sub) >= 100
    shares = sub["sentiment"].value_counts(normalize=True)
    assert set(shares.index) == SCHEME["sentiment"] and shares.min() >= 0.25, shares.to_dict()
    assert set(sub["topic"]) == SCHEME["topic"]
    assert set(sub["domain"]) == SCHEME["domain"]


@pytest.mark.parametrize("language", sorted(SCHEME["language"]))
def test_hard_phenomena_are_represented(dev, tags, language):
    mine = tags[dev["language"] == language]
    for tag, minimum in MIN_PER_LANGUAGE.items():
        assert mine.map(lambda t, tag=tag: tag in t).sum() >= minimum, (language, tag)
    if language in ("ru", "uk"):
        assert mine.map(lambda t: "translit" in t).sum() >= 6, language


def test_stance_directions(dev, tags):
    """Sarcasm and negation occur with both stances; loaded neutral stays neutral; polite complaints are negative."""
    for tag in ("sarcasm", "negation", "mixed_stance"):
        stances = set(dev.loc[tags.map(lambda t, tag=tag: tag in t), "sentiment"])
        assert {"negative", "positive"} <= stances, (tag, stances)
    assert set(dev.loc[tags.map(lambda t: "loaded_neutral" in t), "sentiment"]) == {"neutral"}
    assert set(dev.loc[tags.map(lambda t: "polite_complaint" in t), "sentiment"]) == {"negative"}


def test_scripts_match_languages(dev, tags):
    he = dev[dev["language"] == "he"]
    assert he["text"].map(lambda s: bool(HEBREW.search(s))).all(), "Hebrew row without Hebrew letters"
    assert not he["text"].map(lambda s: bool(NIQQUD.search(s))).any(), "Hebrew row with niqqud"
    cyr = dev["language"].isin(["ru", "uk"])
    translit = tags.map(lambda t: "translit" in t)
    has_cyr = dev["text"].map(lambda s: bool(CYRILLIC.search(s)))
    assert has_cyr[cyr & ~translit].all(), dev.loc[cyr & ~translit & ~has_cyr, "text"].tolist()
    assert not has_cyr[translit].any(), "a translit row contains Cyrillic"
    assert not translit[~cyr].any(), "translit is only used for ru and uk"
    uk_plain = (dev["language"] == "uk") & ~tags.map(lambda t: "code_switch" in t)
    assert not dev.loc[uk_plain, "text"].str.contains("[ыэъёЫЭЪЁ]").any(), "Russian-only letters in a Ukrainian row"
    ru = (dev["language"] == "ru") & ~translit
    assert not dev.loc[ru, "text"].str.contains("[іїєґІЇЄҐ]").any(), "Ukrainian letters in a Russian row"


def test_derived_tags_follow_the_text(dev, tags):
    words = dev["text"].str.split().str.len()
    assert (tags.map(lambda t: "short" in t) == (words <= 4)).all()
    assert (tags.map(lambda t: "long" in t) == (words >= 40)).all()
    assert (tags.map(lambda t: "emoji" in t) == dev["text"].map(lambda s: bool(EMOJI.search(s)))).all()
    assert (tags.map(lambda t: "plain" in t) == tags.map(lambda t: not (t & HAND_TAGS))).all()


def test_loader_names_the_bad_line(tmp_path):
    bad = tmp_path / "dev.tsv"
    bad.write_text(
        "\t".join(HEADER) + "\nen\tnegative\tbilling\ttelecom\tplain\tok\nen\tangry\tbilling\ttelecom\tplain\tnot ok\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"line 3, column 'sentiment'.*'angry'"):
        load_devset(bad)
    assert len(load_devset()) == len(pd.read_csv(DEVSET, sep="\t", quoting=csv.QUOTE_NONE))


def test_readme_counts_are_current():
    assert readme_is_current(), "run: python -m churnsense.feedback.devset --write-readme"
