"""Shared core: table IO and rejects, run summaries, partitioning, releases, ONNX export and runtime, MLflow."""
