"""The feedback label scheme: sentiment, the eight topics, languages, business domains and writing phenomena."""
from __future__ import annotations

SENTIMENTS = ("negative", "neutral", "positive")
TOPICS = ("billing", "price", "outage", "support", "app", "contract", "delivery", "other")
LANGUAGES = ("en", "ru", "uk", "he")
DOMAINS = ("telecom", "banking", "saas", "streaming", "ecommerce", "utilities")
PHENOMENA = ("plain", "sarcasm", "negation", "polite_complaint", "mixed_stance", "loaded_neutral", "code_switch",
             "translit", "slang", "typos", "emoji", "caps", "long", "short")
