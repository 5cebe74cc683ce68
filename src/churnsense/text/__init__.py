"""Multilingual customer feedback (en/ru/uk/he): e5 encoder conversion, feedback model, export and serving."""
