"""The real Hydra config: overrides reach the instantiated pieces, experiments compose, precision/pos_weight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from churnsense.churn.sequence import SequenceEncoder
from churnsense.churn.tabular import TabularEncoder
from churnsense.churn.train import resolve_pos_weight
from churnsense.core.lightning import resolve_precision

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_overrides_reach_components():
    cfg = _compose(
        "model.seq_encoder=transformer",
        "model.d_model=16",
        "model.heads=2",
        "trainer.max_epochs=20",
        "model.numeric_embedding=linear",
    )
    assert cfg.trainer.max_epochs == 20
    seq = instantiate(cfg.model.sequence)(n_event_types=5)
    assert isinstance(seq, SequenceEncoder) and seq.kind == "transformer" and seq.output_dim == 32
    tab = instantiate(cfg.model.tabular)(cat_cardinalities=[3], n_numeric=2)
    assert isinstance(tab, TabularEncoder) and type(tab.num).__name__ == "LinearEmbedding"
    net = instantiate(cfg.model.net)(tabular=tab, sequence=seq, hazard_horizons=list(cfg.model.hazard_horizons))
    module = instantiate(cfg.model.module)(
        net=net, optimizer=instantiate(cfg.model.optimizer), scheduler=instantiate(cfg.model.scheduler), pos_weight=3.0
    )
    optimizer = module.optimizer_factory(net.parameters())
    assert optimizer.defaults["lr"] == cfg.model.lr and module.net.hazard.horizons == [30, 60, 90]
    assert module.scheduler_factory(optimizer, T_max=20).eta_min == cfg.model.lr * 0.05
    callbacks = {k: instantiate(v) for k, v in cfg.callbacks.items()}
    assert callbacks["early_stopping"].monitor == "val/auroc" and callbacks["checkpoint"].mode == "max"


@pytest.mark.parametrize(
    "name,data", [("synth_transformer", "synth"), ("synth_gru", "synth"), ("telco", "telco"), ("cdnow", "cdnow")]
)
def test_experiments_compose(name, data):
    cfg = _compose(f"experiment={name}")
    assert cfg.data.name == data and cfg.model.seq_encoder in ("gru", "transformer")
    assert cfg.export.atol == 1e-4 and next(iter(cfg.export.parity_batch_sizes)) == 1


def test_precision_and_pos_weight():
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "gpu") == "bf16-mixed"
    labels = np.array([1, 0, 0, 0, 0, 1, 0, 0], dtype=np.float32)
    assert resolve_pos_weight("auto", labels) == 3.0
    assert resolve_pos_weight(1, labels) == 1.0
    assert resolve_pos_weight("auto", np.ones(4)) == 1.0


def test_auto_batch_size_follows_the_data_size():
    from churnsense.churn.train import auto_batch_size, resolve_auto_sizes

    assert auto_batch_size(3_500, 64, 64, 512) == 64 and auto_batch_size(12_000, 64, 64, 512) == 256
    assert auto_batch_size(400_000, 64, 64, 512) == 512 and auto_batch_size(10, 64, 64, 512) == 64
    cfg = _compose()
    assert cfg.model.batch_size == "auto"
    resolve_auto_sizes(cfg, 12_000)
    assert cfg.model.batch_size == 256 and cfg.model.datamodule.batch_size == 256  # what ran is what is logged
    fixed = _compose("model.batch_size=32")
    resolve_auto_sizes(fixed, 12_000)
    assert fixed.model.batch_size == 32


def test_run_names_and_test_summary():
    from churnsense.churn.evaluation import summary_line
    from churnsense.churn.train import net_description
    from churnsense.core.tracking import run_name

    cfg = _compose("data=cdnow", "model.ensemble_size=4")
    spec = {"tabular": False, "sequence": True}
    assert run_name("churn", "cdnow", net_description(spec, cfg), "s3") == "churn-cdnow-gru-k4-s3"
    metrics = {
        f"test/calibrated_{k}": v
        for k, v in {"auroc": 0.91234, "pr_auc": 0.5, "brier": 0.07, "ece": 0.012, "lift_top10": 5.123}.items()
    }
    line = summary_line({**metrics, "val/auroc": 0.9})
    assert line == (
        "[churn] test: ROC-AUC 0.9123 | PR-AUC 0.5000 | Brier 0.0700 | ECE 0.0120 | lift@10% 5.1230 "
        "(val ROC-AUC 0.9000)"
    )


def test_optuna_search_config_composes():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=churn_optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "maximize" and "model.lr" in sweeper.params and cfg.export.enabled is False
