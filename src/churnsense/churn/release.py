"""A churn release (ONNX + pipeline JSON + resolved config + metadata) loaded for scoring, from disk or MLflow.

Needs neither Lightning nor Hydra's training configs: `config.yaml` is read with OmegaConf only for its `data`
section (the column mapping and framing the pipeline was fit with) and the model's hazard horizons.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from omegaconf import OmegaConf

from churnsense.data.contract import DataSpec
from churnsense.churn.features import FeaturePipeline

MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")
PROBABILITY_OUTPUTS = ("p_churn", "churn_probability", "probability")  # calibrated already
LOGIT_OUTPUTS = ("logit", "churn_logit", "logits")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def find_release_dir(root: Path) -> Path:
    """The directory under `root` (itself first) holding both `model.onnx` and `pipeline.json`."""
    for candidate in [root, *sorted(p.parent for p in root.rglob("pipeline.json"))]:
        if (candidate / "model.onnx").is_file() and (candidate / "pipeline.json").is_file():
            return candidate
    raise FileNotFoundError(f"{root}: no directory with model.onnx and pipeline.json (not a churn release)")


def fetch_release(path_or_uri: str | os.PathLike, dst: str | os.PathLike | None = None) -> Path:
    """A local release directory for a path or an MLflow URI (`runs:/<id>/<path>`, `models:/<name>/<version>`)."""
    text = str(path_or_uri)
    if text.startswith(MLFLOW_SCHEMES):
        import mlflow.artifacts

        dst = dst or tempfile.mkdtemp(prefix="churnsense-release-")
        return find_release_dir(Path(mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=str(dst))))
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"model {text!r}: no such release directory (train one, or pass an MLflow URI)")
    return find_release_dir(path)


@dataclass
class ChurnRelease:
    """What scoring needs: the ONNX session, the fitted feature pipeline, the data mapping and the calibration."""

    path: Path
    session: ort.InferenceSession
    pipeline: FeaturePipeline
    spec: DataSpec
    metadata: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    horizons: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, path_or_uri: str | os.PathLike, num_threads: int = 0) -> ChurnRelease:
        """Load a release directory or MLflow URI; `num_threads` = onnxruntime intra-op threads (0 = default)."""
        path = fetch_release(path_or_uri)
        config = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=True) \
            if (path / "config.yaml").is_file() else {}
        if "data" not in config:
            raise ValueError(f"{path}/config.yaml: no `data` section; the release does not describe its inputs")
        metadata = json.loads((path / "metadata.json").read_text()) if (path / "metadata.json").is_file() else {}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads or 0)
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path / "model.onnx"), options, providers=["CPUExecutionProvider"])
        key = next((k for k in ("hazard_horizons", "horizons") if k in metadata), None)
        horizons = metadata[key] if key else (config.get("model") or {}).get("hazard_horizons") or []
        return cls(path=path, session=session, pipeline=FeaturePipeline.load(path / "pipeline.json"),
                   spec=DataSpec.from_config(config["data"]), metadata=metadata,
                   temperature=float(metadata.get("temperature") or 1.0), horizons=[int(h) for h in horizons])

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def run(self, batch: dict[str, np.ndarray], batch_size: int = 1024) -> dict[str, np.ndarray]:
        """Feed the inputs the session declares, in slices of `batch_size`; returns calibrated probabilities:
        `churn_probability` [B] and, with a hazard head, `p_churn_<h>d` [B] per horizon."""
        names = self.input_names
        missing = [n for n in names if n not in batch]
        if missing:
            raise KeyError(f"feature pipeline produced no {missing} (model inputs: {names})")
        n = len(next(iter(batch.values()))) if batch else 0
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, n, batch_size):
            feed = {k: batch[k][start:start + batch_size] for k in names}
            outputs = self.session.run(None, feed)
            parts.append(dict(zip([o.name for o in self.session.get_outputs()], outputs)))
        if not parts:
            return {"churn_probability": np.zeros(0, np.float32)}
        raw = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return self._probabilities(raw)

    def _probabilities(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        prob = next((raw[k] for k in PROBABILITY_OUTPUTS if k in raw), None)
        if prob is None:
            logit = next((raw[k] for k in LOGIT_OUTPUTS if k in raw), None)
            if logit is None:
                raise KeyError(f"ONNX outputs {list(raw)} hold no churn probability or logit")
            prob = _sigmoid(logit.astype(np.float64) / self.temperature)
        out["churn_probability"] = np.asarray(prob, np.float64).reshape(len(prob), -1)[:, 0]
        hazard = raw.get("p_horizon", raw.get("hazard_probs"))
        if hazard is None and "hazard_logits" in raw:  # cumulative P(churn within h) = 1 - prod(1 - hazard)
            hazard = 1.0 - np.cumprod(1.0 - _sigmoid(raw["hazard_logits"].astype(np.float64)), axis=1)
        if hazard is not None:
            horizons = self.horizons or list(range(1, hazard.shape[1] + 1))
            for k, h in enumerate(horizons):
                out[f"p_churn_{h}d"] = hazard[:, k]
        out.update({k: v for k, v in raw.items() if k.startswith("p_churn_") and k not in out})
        return out
