"""Synthetic multilingual customer feedback (en/ru/uk/he) for the generated customer base.

The texts come from the feedback corpus generator (`churnsense.synth.corpus`, training phrase banks only):
sarcasm, negation, polite complaints, mixed stance, loaded questions, slang, code-switching, transliteration,
typos, emoji and shouting, with the eight-topic scheme.
"""

from __future__ import annotations

from churnsense.data.contract import LANGUAGES, SENTIMENTS, TOPICS
from churnsense.synth.corpus.generate import make_feedback_texts

__all__ = ["LANGUAGES", "SENTIMENTS", "TOPICS", "make_feedback_texts"]
