"""Shared test helpers: the real configs, composed as training composes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"


def train_config(*overrides: str):
    """`conf/train.yaml` composed with overrides (no Hydra run)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def default_insights_config() -> dict[str, Any]:
    """The insights section a default churn training run saves in its release (resolved, plain dict)."""
    return OmegaConf.to_container(train_config().insights, resolve=True)


def feedback_config(encoder: Path, tmp_path: Path, *overrides: str):
    """The real `task=feedback` config, shrunk: a tiny encoder, tiny data, no tracking, releases under `tmp_path`,
    the plain export served (no int8 / fused candidates to gate)."""
    return train_config(
        "task=feedback",
        "logger=none",
        f"paths.artifacts_dir={tmp_path}",
        f"paths.output_dir={tmp_path / 'out'}",
        f"model.encoder_path={encoder}",
        "model.max_length=32",
        "model.trainable_layers=1",
        "corpus.n_corpus=64",
        "corpus.holdout.n=0",
        "corpus.drugreview_rows=0",
        "corpus.feedback_table=null",
        f"export.release_dir={tmp_path / 'rel'}",
        "export.int8=false",
        "export.fused_fp32=false",
        *overrides,
    )


def serve_config(*overrides: str):
    """`conf/serve/serve.yaml` composed with overrides (no Hydra run)."""
    with initialize_config_dir(config_dir=str(CONF / "serve"), version_base="1.3"):
        return compose("serve", overrides=list(overrides))


def run_serving_captured(cfg, capsys=None) -> tuple[int, str, str]:
    """`serve.py` in-process through the CLI's error handling: (exit code, stdout, stderr of this run)."""
    from churnsense.cli import run_serving

    if capsys is not None:
        capsys.readouterr()
    try:
        run_serving(cfg)
        code = 0
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr() if capsys is not None else None
    return code, (out.out if out else ""), (out.err if out else "")


def tiny_churn_overrides(root: Path, artifacts: str = "artifacts", trainer: str = "cpu", epochs: int = 1) -> list[str]:
    """`train.py task=churn` shrunk to a tiny net on the data under `root/data`, outputs under `root`."""
    return [
        f"paths.data_dir={root / 'data'}",
        f"paths.output_dir={root / 'out'}",
        f"paths.artifacts_dir={root / artifacts}",
        f"trainer={trainer}",
        f"trainer.max_epochs={epochs}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "data.framing.horizon_days=60",
        "data.framing.n_train_cutoffs=1",
        "model.d_model=8",
        "model.d_token=4",
        "model.hidden_dim=8",
        "model.n_frequencies=4",
        "model.batch_size=64",
        "export.parity_batch_sizes=[1,16]",
    ]


def untrained_feedback_release(encoder: Path, root: Path, cfg=None) -> Path:
    """A feedback release (`root/rel`) of an untrained net on the tiny encoder: the serving contract, not quality.
    `cfg`: a `feedback_config` to build it with (default: the plain one for `root`)."""
    from churnsense.feedback.data import dev_set
    from churnsense.feedback.tokenize import TextTokenizer
    from churnsense.feedback.train import build_net, write_feedback_release

    cfg = cfg if cfg is not None else feedback_config(encoder, root)
    (root / "rel").mkdir()
    write_feedback_release(
        root / "rel",
        build_net(cfg.model).eval(),
        cfg,
        dev_set().head(4),
        TextTokenizer.from_file(encoder / "tokenizer.json", 32),
        {},
    )
    return root / "rel"
