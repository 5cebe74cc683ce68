"""A feedback release loaded for scoring (the ONNX model named by metadata.json's `serve_model`, tokenizer.json,
labels.json, config.yaml, metadata.json), from a folder or an MLflow URI — onnxruntime + tokenizers only (no torch,
no Lightning)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort

from churnsense.core.release import fetch_release, read_json
from churnsense.core.runtime import cpu_flags, int8_weights_saturate, onnx_session
from churnsense.feedback.tokenize import TextTokenizer

log = logging.getLogger(__name__)

FILES = ("tokenizer.json", "labels.json", "config.yaml", "metadata.json")  # + the model named by `serve_model`


@dataclass
class FeedbackRelease:
    """A loaded release: ONNX session, tokenizer, label names per head, metadata."""

    path: Path
    session: ort.InferenceSession
    tokenizer: TextTokenizer
    labels: dict[str, list[str]]
    metadata: dict = field(default_factory=dict)
    batch_size: int = 64


def load_release(
    path_or_uri: str | Path,
    model_file: str | None = None,
    threads: int = 0,
    batch_size: int = 64,
    tracking_uri: str | None = None,
) -> FeedbackRelease:
    """Load a release folder or MLflow URI; `model_file` defaults to the metadata's `serve_model`. The onnxruntime
    options recorded in the metadata's `session` apply to every model of the release."""
    path = fetch_release(path_or_uri, FILES, "feedback", tracking_uri)
    labels = read_json(path / "labels.json")
    meta = read_json(path / "metadata.json")
    tok = TextTokenizer.from_file(path / "tokenizer.json", labels["max_length"], labels.get("prefix", "query: "))
    model_file = model_file or meta.get("serve_model", "model.onnx")
    if not (path / model_file).is_file():
        raise FileNotFoundError(
            f"{path}: model file {model_file!r} missing (metadata.json serve_model={meta.get('serve_model')!r})"
        )
    if full_range_int8(meta, model_file) and int8_weights_saturate(cpu_flags()):
        log.warning(
            "%s: %s has 8-bit int8 weights, which saturate on this CPU (no VNNI): scores may differ from the "
            "gated ones; rebuild the release with export.quantize.reduce_range=true",
            path,
            model_file,
        )
    opts = meta.get("session", {})  # releases written before session options were recorded have none
    session = onnx_session(
        path / model_file, threads, opts.get("disabled_optimizers", ()), opts.get("allow_spinning", True)
    )
    return FeedbackRelease(path, session, tok, labels["heads"], meta, batch_size)


def full_range_int8(meta: dict, model_file: str) -> bool:
    """Whether `model_file` is an int8 serving candidate of the release quantised with 8-bit weights (releases
    written before `reduce_range` was recorded all were)."""
    cand = next((c for c in meta.get("serving_candidates", ()) if c.get("file") == model_file), None)
    return bool(cand and cand.get("int8") and not cand.get("reduce_range"))
