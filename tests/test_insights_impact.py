"""Campaign impact: the interval covers a planted effect in repeated simulations; the command end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnsense.insights.impact import incremental_retention
from churnsense.insights.uplift_metrics import difference_interval


def campaign(rng: np.random.Generator, n: int, effect: float, base: float = 0.7) -> pd.DataFrame:
    control = rng.random(n) < 0.3
    retained = rng.random(n) < np.where(control, base, base + effect)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "action": np.where(control, None, "call"),
            "treated": ~control,
            "churned": ~retained,
            "plan": rng.choice(["basic", "premium"], n),
        }
    )


def test_interval_covers_a_planted_effect_in_repeated_simulations():
    """A statistical check with a fixed seed: 400 small campaigns (300 customers), planted +8 points."""
    rng = np.random.default_rng(20250101)
    effect, covered = 0.08, []
    for _ in range(400):
        row = incremental_retention(campaign(rng, 300, effect)).iloc[0]
        covered.append(row["ci_low"] <= effect <= row["ci_high"])
    assert np.mean(covered) >= 0.90, np.mean(covered)


def test_rows_per_action_and_segment():
    rng = np.random.default_rng(3)
    table = incremental_retention(campaign(rng, 4000, 0.15), ["plan"])
    assert table["segment"].tolist() == ["all", "basic", "premium"]
    all_row = table.iloc[0]
    assert all_row["significant"] and all_row["ci_low"] < 0.15 < all_row["ci_high"]
    assert all_row["customers_retained"] == all_row["incremental_retention"] * all_row["n_treated"]
    d, lo, hi = difference_interval(0, 20, 0, 20)  # degenerate arms still give a finite interval
    assert d == 0 and -1 <= lo < 0 < hi <= 1


def test_impact_command(tmp_path, capsys):
    from omegaconf import OmegaConf

    from churnsense.insights.impact import serve_impact

    rng = np.random.default_rng(5)
    path = tmp_path / "campaign.csv"
    campaign(rng, 2000, 0.1).rename(columns={"churned": "lost"}).assign(ts="2025-03-01").to_csv(path, index=False)
    cfg = OmegaConf.create(
        {
            "model": str(tmp_path / "none"),
            "input": {"offers": str(path), "customers": None},
            "columns": {"churned": "lost"},
            "outcome_days": 90,
            "segment_by": ["plan"],
            "assignment": "auto",
            "level": 0.95,
            "output_dir": str(tmp_path / "out"),
        }
    )
    out = serve_impact(cfg)
    table = pd.read_csv(out / "impact.csv")
    assert set(table["segment"]) == {"all", "basic", "premium"} and "impact call:" in capsys.readouterr().out
