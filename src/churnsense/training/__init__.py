"""Churn training: `train_churn(cfg)` composition root, metrics, calibration, plots, MLflow tracking."""
