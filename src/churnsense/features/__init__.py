"""Feature pipeline (fit on train, JSON state) and hand-made history aggregates."""
