"""The model card of a churn release (Markdown, in the release and as the registered version's description)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    from churnsense.churn.train import PreparedData

HEADLINE = (
    ("ROC-AUC", "auroc"),
    ("PR-AUC", "pr_auc"),
    ("Brier", "calibrated_brier"),
    ("ECE", "calibrated_ece"),
    ("lift@10%", "calibrated_lift_top10"),
)


def _rows(data: PreparedData) -> dict[str, Any]:
    return {
        name: (
            len(s.static),
            float(s.static["label"].mean()) if len(s.static) else float("nan"),
            ", ".join(sorted({str(c.date()) for c in s.static["cutoff"].unique()})),
        )
        for name, s in data.snapshots.items()
    }


def model_card(cfg: DictConfig, metrics: dict[str, float], data: PreparedData) -> str:
    """What the model predicts, on which data, how well per split, and its limits."""
    framing = cfg.data.framing
    what = {
        "churn_date": "churn within {h} days after the scoring date",
        "inactivity": "no activity within {h} days after the scoring date",
        "label": "the static churn label",
    }[str(framing.label_mode)].format(h=framing.horizon_days)
    lines = [
        f"# churnsense churn model — data `{cfg.data.name}`",
        "",
        f"**Predicts** the calibrated probability of {what}, per customer, from the customer's attributes and "
        "the time-ordered history of events and feedback before the scoring date.",
        "",
        f"**Model**: ChurnNet ({cfg.model.seq_encoder} sequence encoder, d_model {cfg.model.d_model}), "
        f"temperature-calibrated on validation (T = {metrics.get('calibration/temperature', 1.0):.3f}).",
        "",
        "## Data",
        "",
        "| split | rows | churn rate | cutoffs |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {n:,} | {rate:.3f} | {cutoffs} |" for name, (n, rate, cutoffs) in _rows(data).items()]
    lines += [
        "",
        "Splits hold disjoint customers and later cutoffs (no label window crosses the next split's cutoff).",
        "",
        "## Metrics",
        "",
        "| split | " + " | ".join(n for n, _ in HEADLINE) + " |",
        "|---|" + "---|" * len(HEADLINE),
    ]
    for split in ("val", "test"):
        cells = [f"{metrics[f'{split}/{k}']:.4f}" if f"{split}/{k}" in metrics else "—" for _, k in HEADLINE]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Intended use and limits",
        "",
        "- Rank customers for retention work and explain each score (reasons, segments, actions); not for "
        "decisions about credit, pricing or anything a customer has not agreed to.",
        "- Attributes are taken as known at signup; a table holding *current* values can leak the future.",
        "- Scores are calibrated for the training population: re-check calibration (`serve.py "
        "task=report`) and drift when the customer base changes.",
        "",
    ]
    return "\n".join(lines)
