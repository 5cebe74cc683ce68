"""`python serve.py task=feedback input=FILE output=FILE [text_column=text]`: batch scoring of feedback texts.

Reads CSV/Parquet in chunks (churnsense.serving.io), scores with the release's ONNX model, writes the scored rows
and a rejects file atomically, prints rows in = scored + rejected, truncated texts and throughput.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from churnsense.monitoring.feedback import feedback_scoring_values
from churnsense.monitoring.run import open_monitor
from churnsense.serving import io
from churnsense.text.release import load_release, score_feedback_batch


def serve_feedback(cfg: DictConfig) -> io.RunSummary:
    """Composition root of feedback serving; returns the run summary."""
    release = load_release(cfg.model, threads=int(cfg.get("num_threads", 0) or 0),
                           batch_size=int(cfg.get("text_batch_size", 64)))
    output = Path(cfg.output)
    rejects_path = Path(cfg.rejects) if cfg.get("rejects") else io.rejects_path_for(output)
    summary, truncated = io.RunSummary(task="feedback"), 0
    bar = io.progress(io.count_rows(cfg.input), "feedback", bool(cfg.get("progress", True)))
    source = Path(cfg.input).name
    monitor = open_monitor(release.path, cfg.get("drift"))  # drift of this run vs the release's reference
    with io.AtomicTableWriter(output) as writer, io.RejectsWriter(rejects_path) as rejects_writer:
        for first_row, chunk in io.iter_chunks(cfg.input, int(cfg.get("chunk_size", 50_000))):
            scored, rejects = score_feedback_batch(chunk, release, cfg.text_column, first_row=first_row,
                                                   source=source)
            writer.write(scored)
            rejects_writer.write(rejects)
            if monitor is not None:
                monitor.add(feedback_scoring_values(scored, cfg.text_column))
            summary.rows_in += len(chunk)
            summary.scored += len(scored)
            summary.rejected += len(rejects)
            truncated += scored.attrs.get("truncated", 0)
            bar.update(len(chunk))
    bar.close()
    summary.finish()
    print(summary.line() + f" | truncated texts {truncated:,} (max {release.tokenizer.max_length} tokens)")
    print(f"scores -> {output} | rejects -> {rejects_path}")
    if monitor is not None:
        monitor.finish(output, "feedback", {"release": str(release.path)})
    return summary
