"""Generated multilingual feedback: shape, determinism, native scripts, code-switching."""

from __future__ import annotations

import re

import numpy as np
import pytest

from churnsense.data.contract import LANGUAGES, SENTIMENTS, TOPICS
from churnsense.synth.text import make_feedback_texts


def _labels(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.choice(SENTIMENTS, n), rng.choice(TOPICS, n), rng.choice(LANGUAGES, n))


def test_one_varied_text_per_row_and_deterministic():
    s, t, lang = _labels(2000)
    a = make_feedback_texts(np.random.default_rng(1), s, t, lang, 0.1)
    b = make_feedback_texts(np.random.default_rng(1), s, t, lang, 0.1)
    assert a == b and len(a) == 2000 and all(isinstance(x, str) and x.strip() for x in a)
    assert len(set(a)) > 1500


def test_native_scripts_without_mixing():
    s, t, lang = _labels(3000)
    texts = np.array(make_feedback_texts(np.random.default_rng(2), s, t, lang, 0.0))
    assert all(re.search("[\u0590-\u05ff]", x) for x in texts[lang == "he"])
    assert all(re.search("[А-Яа-яЁёІіЇїЄєҐґ]", x) for x in texts[(lang == "ru") | (lang == "uk")])
    uk = " ".join(texts[lang == "uk"])
    assert all(ch in uk for ch in "іїєґ")
    assert not any(re.search("[\u0400-\u05ff]", x) for x in texts[lang == "en"])


def test_mixed_rate_mixes_scripts():
    s, t, lang = _labels(3000)
    texts = np.array(make_feedback_texts(np.random.default_rng(3), s, t, lang, 1.0))
    he = texts[lang == "he"]
    assert np.mean([bool(re.search("[A-Za-z]", x)) for x in he]) > 0.5


def test_rejects_unknown_labels():
    with pytest.raises(ValueError):
        make_feedback_texts(np.random.default_rng(0), np.array(["angry"]), np.array(["app"]), np.array(["en"]), 0)
