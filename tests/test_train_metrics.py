"""Metrics, temperature scaling and figures on synthetic predictions."""

from __future__ import annotations

import math

import torch

from churnsense.churn.calibration import calibrated_probs, fit_temperature
from churnsense.churn.metrics import evaluate_probabilities
from churnsense.churn.plots import save_evaluation_plots


def test_metrics_keys_and_lift():
    probs = torch.tensor([0.9, 0.8, 0.1, 0.2, 0.3, 0.05, 0.4, 0.15, 0.25, 0.35])
    labels = torch.tensor([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    m = evaluate_probabilities(probs, labels, "test/")
    assert set(m) == {
        f"test/{k}" for k in ("auroc", "pr_auc", "brier", "log_loss", "ece", "recall_top10", "lift_top10")
    }
    assert m["test/recall_top10"] == 0.5  # top 1 of 10 is a churner, 2 churners in all
    assert math.isclose(m["test/lift_top10"], 5.0)  # churn rate 1.0 in the top vs 0.2 overall
    assert math.isclose(m["test/brier"], float(((probs - labels) ** 2).mean()), rel_tol=1e-5)


def test_temperature_recovers_overconfidence():
    torch.manual_seed(0)
    true_logit = torch.randn(4000) * 1.5
    labels = torch.bernoulli(torch.sigmoid(true_logit))
    temperature = fit_temperature(true_logit * 3.0 + 0.7, labels, offset=0.7)  # 3x overconfident, shifted
    assert 2.5 < temperature < 3.5
    before = evaluate_probabilities(calibrated_probs(true_logit * 3 + 0.7, 1.0, 0.7), labels, "")["ece"]
    after = evaluate_probabilities(calibrated_probs(true_logit * 3 + 0.7, temperature, 0.7), labels, "")["ece"]
    assert after < before
    assert fit_temperature(torch.randn(5), torch.zeros(5)) == 1.0  # one class: nothing to fit


def test_plots_written(tmp_path):
    probs = torch.rand(50).numpy()
    labels = (torch.rand(50) < 0.3).long().numpy()
    paths = save_evaluation_plots(probs, labels, tmp_path, "test", raw_probs=probs**2)
    assert [p.name for p in paths] == ["test_roc.png", "test_pr.png", "test_calibration.png", "test_risk_hist.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
