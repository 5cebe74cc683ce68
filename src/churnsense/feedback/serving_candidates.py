"""Which model a feedback release serves.

Candidates built from the exported `model.onnx` (int8 graph, then fused fp32 graph, both with compact embeddings)
are tried in order; the first whose dev-set sentiment macro-F1 drops by no more than `int8_max_f1_drop` in any
language (and overall) serves. Both sides are scored through `load_release`, the path serving uses. Calibration
texts are generated messages, never the dev set. Each candidate's entry records whether its int8 weights are 7-bit
(`reduce_range`, exact on every CPU), and the report whether the gating CPU is one where 8-bit weights saturate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from churnsense.core.runtime import cpu_flags, int8_weights_saturate
from churnsense.feedback.data import synthetic_feedback
from churnsense.feedback.evaluate import evaluate_release, per_language_drop
from churnsense.feedback.quantize import Int8Recipe, build_serving_model, calibration_feeds
from churnsense.feedback.release import FeedbackRelease, load_release

EXPORT_FILE = "model.onnx"


@dataclass(frozen=True)
class Candidate:
    """A serving graph to try: file name in the release, int8 or fp32 compute, token-embedding storage."""

    file: str
    int8: bool
    embeddings: str


def candidates(export: DictConfig) -> list[Candidate]:
    """The candidates `export` asks for, fastest first."""
    out = []
    if export.int8:
        out.append(Candidate("model.int8.onnx", True, str(export.embeddings)))
    if export.fused_fp32:
        out.append(Candidate("model.fp32.onnx", False, str(export.embeddings)))
    return out


def recipe_from(export: DictConfig) -> Int8Recipe:
    """The typed int8 recipe of `export.quantize`."""
    return Int8Recipe(**OmegaConf.to_container(export.quantize, resolve=True))


def calibration_texts(recipe: Int8Recipe) -> list[str]:
    """Generated multilingual messages for activation statistics (seeded; not the dev set)."""
    return synthetic_feedback(int(recipe.calibration_texts), int(recipe.calibration_seed))["text"].tolist()


def _metrics_by_batch_size(release: FeedbackRelease, dev: pd.DataFrame, sizes: list[int]) -> dict[int, dict]:
    return {b: evaluate_release(replace(release, batch_size=b), dev) for b in sizes}


def select_serving_model(out: Path, export: DictConfig, dev: pd.DataFrame, num_heads: int) -> tuple[str, dict]:
    """Build and gate the candidates inside release `out`; returns (served file, report). The drop is the worst
    over `export.gate_batch_sizes` (dynamic int8 ranges depend on what shares a batch). Rejected candidates are
    deleted; the export stays (the caller decides whether to keep it)."""
    sizes = [int(b) for b in export.gate_batch_sizes]
    reference = load_release(out, EXPORT_FILE)  # one session per graph; the gate varies only the batch size
    base = _metrics_by_batch_size(reference, dev, sizes)
    recipe = recipe_from(export)
    feeds = calibration_feeds(reference.tokenizer, calibration_texts(recipe), reference.batch_size)
    limit = float(export.int8_max_f1_drop)
    report: dict = {
        "base_metrics": base[sizes[-1]],
        "max_f1_drop_allowed": limit,
        "candidates": [],
        "gated_on_cpu_saturating_int8": int8_weights_saturate(cpu_flags()),
    }
    for cand in candidates(export):
        build_serving_model(
            out / EXPORT_FILE,
            out / cand.file,
            num_heads=num_heads,
            int8=cand.int8,
            embeddings=cand.embeddings,
            recipe=recipe,
            feeds=feeds,
        )
        metrics = _metrics_by_batch_size(load_release(out, cand.file), dev, sizes)
        drops = {b: per_language_drop(base[b], metrics[b]) for b in sizes}
        accepted = max(drops.values()) <= limit
        report["candidates"].append(
            {
                **asdict(cand),
                "reduce_range": recipe.reduce_range if cand.int8 else None,
                "max_f1_drop": max(drops.values()),
                "accepted": accepted,
                "drop_by_batch_size": drops,
                "size_mb": (out / cand.file).stat().st_size / 1e6,
                "metrics": metrics[sizes[-1]],
            }
        )
        if accepted:
            return cand.file, report
        (out / cand.file).unlink()
    return EXPORT_FILE, report
