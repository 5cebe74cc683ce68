"""Bringing your own table, as a new user does: a data config outside the repository (Hydra's `--config-dir`), a
table without an id column, a copied config whose label mode does not fit, too little or one-class data. Each trap
ends in one clear line before anything is trained or published, or in scores keyed by the source row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from churnsense.cli import run_serving, run_training
from churnsense.core import io
from churnsense.insights.value import revenue_notice
from helpers import serve_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {  # a customers-only table without ids, as the public IBM Telco export
    "name": "mine",
    "customers": {
        "path": None,
        "id_from_row": True,
        "columns": {"label": "Churn"},
        "categorical": ["Contract"],
        "numeric": ["tenure", "MonthlyCharges"],
        "positive_labels": ["Yes"],
    },
    "events": None,
    "feedback": None,
    "revenue_column": "MonthlyCharges",
    "framing": {
        "label_mode": "label",
        "reference_date": "2024-01-01",
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        "seed": 0,
        "horizon_days": 30,
        "max_events": 1,
    },
    "features": {"clip": 5.0, "min_category_count": 1, "missing_indicators": True},
}


def telco_like(n: int, seed: int = 0, churn: bool = True) -> pd.DataFrame:
    """A small table shaped like the IBM Telco export (no id column), with churn driven by contract and tenure."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n)
    tenure = rng.integers(1, 72, n)
    logit = -1.5 + 1.8 * (contract == "Month-to-month") - 0.03 * tenure
    frame = pd.DataFrame({"Contract": contract, "tenure": tenure, "MonthlyCharges": rng.uniform(20, 110, n).round(2)})
    if churn:
        frame["Churn"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    return frame


def config_dir(tmp_path: Path, table: pd.DataFrame, **changes) -> Path:
    """A config folder outside the repository holding `data/mine.yaml` for `table`."""
    table.to_csv(tmp_path / "mine.csv", index=False)
    data = yaml.safe_load(yaml.safe_dump(CONFIG))
    data["customers"]["path"] = str(tmp_path / "mine.csv")
    for key, value in changes.items():
        section, _, name = key.partition(".")
        data[section][name] = value
    (tmp_path / "conf" / "data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "conf" / "data" / "mine.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path / "conf"


def train_cfg(conf: Path, root: Path, *extra: str):
    """`train.py --config-dir <conf> data=mine` composed in-process (`hydra.searchpath` is what --config-dir adds)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"hydra.searchpath=[file://{conf}]",
                "data=mine",
                "logger=none",
                "trainer=cpu",
                "trainer.max_epochs=1",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                f"paths.output_dir={root}/out",
                f"paths.artifacts_dir={root}/artifacts",
                "model.batch_size=64",
                "model.d_token=4",
                "model.hidden_dim=8",
                "model.n_frequencies=4",
                "export.parity_batch_sizes=[1,8]",
                *extra,
            ],
        )


def expect_exit_2(job, cfg, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        job(cfg)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_config_dir_outside_the_repo_names_its_own_release_and_model(tmp_path):
    conf = config_dir(tmp_path, telco_like(50))
    out = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--config-dir", str(conf), "data=mine", "--cfg", "job", "--resolve"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)  # the resolved config: churnsense's resolvers and list defaults included
    assert shown["data"]["customers"]["id_from_row"] is True  # found through --config-dir
    assert shown["export"]["release_dir"] == "artifacts/churn-mine"
    cfg = OmegaConf.to_container(
        train_cfg(conf, tmp_path, "paths.artifacts_dir=artifacts", "logger=mlflow"), resolve=True
    )
    assert cfg["export"]["release_dir"] == "artifacts/churn-mine"  # the demo's artifacts/churn stays untouched
    assert cfg["logger"]["registered_model_name"] == "churnsense-churn-mine"
    assert cfg["insights"]["value"]["revenue_column"] == "MonthlyCharges"


def test_table_without_ids_trains_and_scores_by_source_row(tmp_path, capsys):
    conf = config_dir(tmp_path, telco_like(400))
    assert run_training(train_cfg(conf, tmp_path, "insights.enabled=false", "drift.enabled=false")) is not None
    release = tmp_path / "artifacts" / "churn-mine"
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["churn-mine"]
    assert "notice: no revenue" not in capsys.readouterr().out
    scoring = telco_like(30, seed=1, churn=False).astype({"tenure": object})
    scoring.loc[4, "tenure"] = "inf"  # data row 5: rejected, the others keep their row numbers
    scoring.to_csv(tmp_path / "score.csv", index=False)
    cfg = serve_config(
        "task=churn",
        f"model={release}",
        f"input.customers={tmp_path}/score.csv",
        f"output={tmp_path}/scores.csv",
        "progress=false",
        "feedback_model=null",
        "drift.enabled=false",
        "insights=false",
    )
    run_serving(cfg)
    assert "rows in 30 = scored 29 + rejected 1" in capsys.readouterr().out
    scores = io.read_table(tmp_path / "scores.csv")
    assert sorted(scores["customer_id"].astype(int)) == [r for r in range(1, 31) if r != 5]
    assert io.read_table(tmp_path / "scores.rejects.csv")["row"].tolist() == ["5"]


def test_copied_demo_config_says_which_label_mode_to_set(tmp_path, capsys):
    framing = {**CONFIG["framing"], "label_mode": "churn_date"}  # kept from a copy of conf/data/synth.yaml
    conf = config_dir(tmp_path, telco_like(200), **{"framing.label_mode": "churn_date"})
    assert framing["label_mode"] == "churn_date"
    err = expect_exit_2(run_training, train_cfg(conf, tmp_path), capsys)
    assert "label_mode is 'churn_date', but the customers table has no churn date column" in err
    assert "it has a static label ('Churn'): set data.framing.label_mode: label" in err
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize(
    "rows,churners,said",
    [
        (
            400,
            0,
            "all 400 labelled rows are non-churners (one class: nothing to learn); check "
            "data.customers.positive_labels (['Yes']) against the values of column 'Churn'",
        ),
        (400, 3, "split has"),  # a split without churners cannot be measured (AUROC of one class)
        (20, None, "split has"),
    ],
)
def test_degenerate_training_data_stops_before_anything_is_published(tmp_path, capsys, rows, churners, said):
    table = telco_like(rows)
    if churners is not None:
        table["Churn"] = ["Yes"] * churners + ["No"] * (rows - churners)
    conf = config_dir(tmp_path, table)
    err = expect_exit_2(run_training, train_cfg(conf, tmp_path), capsys)
    assert said in err and not (tmp_path / "artifacts").exists() and not (tmp_path / "mlflow.db").exists()


def test_revenue_notice_says_what_to_set():
    cfg = {"value": {"revenue_column": "monthly_charge", "revenue_events": ["payment"]}}
    assert revenue_notice(cfg, ["MonthlyCharges"], ["<pad>", "<unk>"]).startswith(
        "no revenue per customer (revenue_column 'monthly_charge' is not a customer attribute and no revenue event"
    )
    assert revenue_notice(cfg, ["monthly_charge"], []) is None
    assert revenue_notice(cfg, [], ["payment"]) is None
    assert "set `revenue_column:" in revenue_notice({"value": {}}, ["x"], [])
