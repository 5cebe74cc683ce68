"""The generated feedback corpus: native phrase banks in en/ru/uk/he, a held-out share of every bank by
construction, and a seeded generator composing labelled messages (sentiment, topic, language, domain, phenomena)."""
