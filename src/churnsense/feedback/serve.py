"""`python serve.py task=feedback input=FILE output=FILE [text_column=text]`: batch scoring of feedback texts.

Reads CSV/Parquet in chunks (churnsense.core.io), scores with the release's ONNX model, writes the scored rows
and a rejects file atomically, prints rows in = scored + rejected, truncated texts and throughput.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from churnsense.core import io
from churnsense.core.rejects import RejectsWriter, rejects_path_for
from churnsense.core.runs import RunSummary, progress
from churnsense.feedback.release import load_release
from churnsense.feedback.score import score_feedback_batch


def serve_feedback(cfg: DictConfig) -> RunSummary:
    """Composition root of feedback serving; returns the run summary."""
    release = load_release(cfg.model, threads=int(cfg.num_threads), batch_size=int(cfg.text_batch_size),
                           tracking_uri=cfg.tracking_uri)
    output = Path(cfg.output)
    rejects_path = Path(cfg.rejects) if cfg.rejects else rejects_path_for(output)
    summary, truncated = RunSummary(task="feedback"), 0
    bar = progress(io.count_rows(cfg.input), "feedback", bool(cfg.progress))
    source = Path(cfg.input).name
    with io.AtomicTableWriter(output) as writer, RejectsWriter(rejects_path) as rejects_writer:
        for first_row, chunk in io.iter_chunks(cfg.input, int(cfg.chunk_size)):
            scored, rejects = score_feedback_batch(chunk, release, cfg.text_column, first_row=first_row,
                                                   source=source)
            writer.write(scored)
            rejects_writer.write(rejects)
            summary.rows_in += len(chunk)
            summary.scored += len(scored)
            summary.rejected += len(rejects)
            truncated += scored.attrs.get("truncated", 0)
            bar.update(len(chunk))
    bar.close()
    summary.finish()
    print(summary.line() + f" | truncated texts {truncated:,} (max {release.tokenizer.max_length} tokens)")
    print(f"scores -> {output} | rejects -> {rejects_path}")
    return summary
