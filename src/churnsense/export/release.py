"""Write a churn release directory atomically: model.onnx, pipeline.json, config.yaml, metadata.json (+ extra JSON
documents such as drift_reference.json)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml


def write_release(release_dir: str | Path, onnx_path: str | Path, pipeline: Any, config: dict[str, Any],
                  metadata: dict[str, Any], extra_json: dict[str, Any] | None = None) -> Path:
    """Assemble the release in a temp dir next to `release_dir`, then swap it in (readers never see half).
    `extra_json`: more files of the release, file name -> JSON document."""
    release_dir = Path(release_dir)
    release_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{release_dir.name}-", dir=release_dir.parent))
    shutil.copy2(onnx_path, tmp / "model.onnx")
    pipeline.save(tmp / "pipeline.json")
    (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))
    for name, doc in (extra_json or {}).items():
        (tmp / name).write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    old = None
    if release_dir.exists():
        old = release_dir.with_name(f".{release_dir.name}-old-{tmp.name}")
        release_dir.rename(old)
    tmp.rename(release_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return release_dir
