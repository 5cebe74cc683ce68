"""Multilingual customer-feedback training corpus: phrase banks, held-out split, message generator."""
