"""`python serve.py task=feedback input=FILE output=FILE [text_column=text]`: batch scoring of feedback texts.

Reads CSV/Parquet in chunks (churnsense.core.io), scores with the release's ONNX model, publishes the scored rows
and the rejects file together (both or neither; never over the input), prints rows in = scored + rejected,
truncated texts and throughput.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from churnsense.core import io
from churnsense.core.rejects import RejectsWriter, rejects_path_for
from churnsense.core.runs import RunSummary, progress
from churnsense.feedback.release import load_release
from churnsense.feedback.score import score_feedback_batch
from churnsense.monitoring.feedback import feedback_scoring_values
from churnsense.monitoring.run import open_monitor


def serve_feedback(cfg: DictConfig) -> RunSummary:
    """Composition root of feedback serving; returns the run summary."""
    release = load_release(
        cfg.model, threads=int(cfg.num_threads), batch_size=int(cfg.text_batch_size), tracking_uri=cfg.tracking_uri
    )
    output = Path(cfg.output)
    rejects_path = Path(cfg.rejects) if cfg.rejects else rejects_path_for(output)
    io.check_outputs_apart({"output": output, "rejects": rejects_path}, {"input": cfg.input})
    columns = io.table_columns(cfg.input)
    if cfg.text_column not in columns:
        raise ValueError(f"{cfg.input}: no text column {cfg.text_column!r} (have {columns[:30]}); set text_column=")
    summary, truncated = RunSummary(task="feedback"), 0
    bar = progress(io.count_rows(cfg.input), "feedback", bool(cfg.progress))
    source = str(cfg.input)
    monitor = open_monitor(release.path, cfg.drift, cfg.tracking_uri)  # drift of this run vs the release's reference
    with io.publish_together(io.AtomicTableWriter(output), RejectsWriter(rejects_path)) as (writer, rejects_writer):
        for first_row, chunk in io.iter_chunks(cfg.input, int(cfg.chunk_size)):
            scored, rejects = score_feedback_batch(chunk, release, cfg.text_column, first_row=first_row, source=source)
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
