"""Batch scoring: chunked table IO, atomic writers, rejects, churn scoring (`score_churn_batch`, `serve_churn`)."""
