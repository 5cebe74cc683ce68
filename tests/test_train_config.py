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
    cfg = _compose("model.seq_encoder=transformer", "model.d_model=16", "model.heads=2", "trainer.max_epochs=20",
                   "model.numeric_embedding=linear")
    assert cfg.trainer.max_epochs == 20
    seq = instantiate(cfg.model.sequence)(n_event_types=5)
    assert isinstance(seq, SequenceEncoder) and seq.kind == "transformer" and seq.output_dim == 32
    tab = instantiate(cfg.model.tabular)(cat_cardinalities=[3], n_numeric=2)
    assert isinstance(tab, TabularEncoder) and type(tab.num).__name__ == "LinearEmbedding"
    net = instantiate(cfg.model.net)(tabular=tab, sequence=seq, hazard_horizons=list(cfg.model.hazard_horizons))
    module = instantiate(cfg.model.module)(net=net, optimizer=instantiate(cfg.model.optimizer),
                                           scheduler=instantiate(cfg.model.scheduler), pos_weight=3.0)
    optimizer = module.optimizer_factory(net.parameters())
    assert optimizer.defaults["lr"] == cfg.model.lr and module.net.hazard.horizons == [30, 60, 90]
    assert module.scheduler_factory(optimizer, T_max=20).eta_min == cfg.model.lr * 0.05
    callbacks = {k: instantiate(v) for k, v in cfg.callbacks.items()}
    assert callbacks["early_stopping"].monitor == "val/auroc" and callbacks["checkpoint"].mode == "max"


@pytest.mark.parametrize("name,data", [("synth_transformer", "synth"), ("synth_gru", "synth"),
                                       ("telco", "telco"), ("cdnow", "cdnow")])
def test_experiments_compose(name, data):
    cfg = _compose(f"experiment={name}")
    assert cfg.data.name == data and cfg.model.seq_encoder in ("gru", "transformer")
    assert cfg.export.atol == 1e-4 and list(cfg.export.parity_batch_sizes)[0] == 1


def test_precision_and_pos_weight():
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "gpu") == "bf16-mixed"
    labels = np.array([1, 0, 0, 0, 0, 1, 0, 0], dtype=np.float32)
    assert resolve_pos_weight("auto", labels) == 3.0
    assert resolve_pos_weight(1, labels) == 1.0
    assert resolve_pos_weight("auto", np.ones(4)) == 1.0
