"""Insights: why a customer is at risk (reasons), which group (segments), what to do and who does it (playbook,
routing, uplift), what is at stake (value), and the scoring-run report."""
