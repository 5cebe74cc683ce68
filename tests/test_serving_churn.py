"""Churn serving end to end on a tiny release built here (with fitted insights): bad rows are rejected with reasons,
nothing is dropped, outputs appear atomically; every output column (insights included) is the same whatever the
partitioning; the pure batch scorer and the MLflow pyfunc give the same scores."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from churnsense.churn.features import FeaturePipeline
from churnsense.churn.release import ChurnRelease
from churnsense.churn.score import score_churn_batch
from churnsense.core import io
from churnsense.data.contract import DataSpec
from churnsense.data.framing import make_snapshot
from churnsense.data.validation import validate_chunk
from churnsense.insights.enrich import INSIGHT_COLUMNS
from churnsense.insights.fit import fit_insights
from helpers import default_insights_config, serve_config

DATA = {  # source column names differ from canonical ones: the release's mapping is exercised
    "name": "tiny",
    "customers": {
        "path": "unused.csv",
        "columns": {"customer_id": "id", "signup_date": "signup", "churn_date": "churned"},
        "categorical": ["plan"],
        "numeric": ["charge"],
    },
    "events": {
        "path": "unused.csv",
        "columns": {"customer_id": "id", "ts": "when", "event_type": "kind", "value": "amount"},
    },
    "feedback": {
        "path": "unused.csv",
        "columns": {"customer_id": "id", "ts": "when", "text": "comment", "sentiment": "sentiment"},
    },
    "framing": {"label_mode": "churn_date", "horizon_days": 30, "max_events": 6},
}
TINY_INSIGHTS = {  # the repository's insights config, with reason groups and segment features of the tiny data;
    "at_risk": 1.0,
    "at_risk_share": 0.4,  # at risk: the top 40% of the fit-time predictions (an untrained model)
    "reasons": {
        "groups": {
            "plan_fit": {"cat": ["plan"]},
            "price_increase": {"num": ["charge*"]},
            "unresolved_support": {"events": ["ticket"]},
            "usage_decline": {"events": ["login"]},
            "late_payments": {"events": ["payment"]},
            "negative_feedback": {"events": ["feedback"]},
        },
        "n_samples": 3,
        "n_background": 2,
        "background_rows": 16,
        "min_logit": 0.0,
    },
    "segments": {"features": ["tenure_months", "login_n_90d", "ticket_n_90d", "payment_sum_recent"], "k_range": [2, 3]},
    "value": {"revenue_column": "charge"},
}


def tiny_insights_config() -> dict:
    cfg = default_insights_config()
    for key, part in TINY_INSIGHTS.items():
        cfg[key] = {**cfg.get(key, {}), **part} if isinstance(part, dict) else part
    return cfg


def tiny_inputs(n: int = 24, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = [f"c{i:03d}" for i in range(n)]
    customers = pd.DataFrame(
        {
            "id": ids,
            "plan": rng.choice(["basic", "pro"], n),
            "charge": rng.uniform(10, 90, n).round(2).astype(str),
            "signup": pd.Timestamp("2024-01-01") - pd.to_timedelta(rng.integers(30, 400, n), "D"),
        }
    )
    m = 5 * n
    events = pd.DataFrame(
        {
            "id": rng.choice(ids, m),
            "kind": rng.choice(["login", "ticket", "payment"], m),
            "amount": rng.exponential(5, m).round(2).astype(str),
            "when": pd.Timestamp("2024-01-01") - pd.to_timedelta(rng.integers(1, 200, m), "D"),
        }
    )
    feedback = pd.DataFrame(
        {
            "id": ids[:6],
            "when": pd.Timestamp("2023-12-20"),
            "comment": "slow support",
            "sentiment": ["negative", "neutral", "positive"] * 2,
        }
    )
    for frame in (customers, events, feedback):
        for col in ("signup", "when"):
            if col in frame:
                frame[col] = frame[col].dt.strftime("%Y-%m-%d")
    return {"customers": customers, "events": events, "feedback": feedback}


def build_release(path: Path) -> Path:
    """Fit the data layer's pipeline on tiny data, an untrained tiny ChurnNet with a hazard head, export it, fit the
    insights as training does, and publish the release in one step."""
    from churnsense.churn.export import ScoringGraph, export_onnx
    from churnsense.churn.net import ChurnNet
    from churnsense.churn.release import write_churn_release
    from churnsense.churn.sequence import SequenceEncoder
    from churnsense.churn.tabular import TabularEncoder
    from churnsense.core.release import staged_release
    from churnsense.core.runtime import onnx_session
    from churnsense.data.loading import Tables

    spec = DataSpec.from_config(DATA)
    raw = tiny_inputs()
    tables = Tables(
        *(
            validate_chunk(raw[k], spec.table(k), k, k)[0].drop(columns="_row")
            for k in ("customers", "events", "feedback")
        )
    )
    snap = make_snapshot(tables, spec, [pd.Timestamp("2024-01-01")], with_labels=False)
    pipeline = FeaturePipeline.from_spec(spec).fit(snap)
    torch.manual_seed(0)
    net = ChurnNet(
        TabularEncoder(pipeline.cat_cardinalities, pipeline.n_numeric, d_token=4, hidden_dim=8),
        SequenceEncoder(pipeline.n_event_types, d_model=8),
        hidden_dim=8,
        hazard_horizons=[30, 60],
    )
    graph = ScoringGraph(net.eval(), temperature=1.0)
    example = {k: torch.as_tensor(v[:4]) for k, v in pipeline.transform(snap).items()}
    onnx_path = export_onnx(graph, example, path / "tmp" / "model.onnx")
    cfg = tiny_insights_config()
    # as training does (fit_release_insights): threshold from the model's predictions, background from its inputs
    arrays = pipeline.transform(snap)
    session = onnx_session(onnx_path)
    (p_churn, _) = session.run(None, {i.name: arrays[i.name] for i in session.get_inputs()})
    p = pd.Series(p_churn, index=snap.static["customer_id"])
    state = fit_insights(
        tables.customers,
        tables.events,
        tables.feedback,
        None,
        pd.Timestamp("2024-01-01"),
        p,
        cfg,
        DATA["framing"]["horizon_days"],
        model_inputs=arrays,
    )
    with staged_release(path / "churn") as staging:
        write_churn_release(
            staging,
            onnx_path,
            pipeline,
            {"data": DATA, "seed": 0, "insights": cfg},
            {"hazard_horizons": [30, 60], "temperature": 1.0},
            state,
        )
    return path / "churn"


@pytest.fixture(scope="module")
def release_dir(tiny_churn_release) -> Path:
    return tiny_churn_release  # built once per session (conftest.py)


def write_inputs(tmp_path: Path) -> dict[str, Path]:
    """Inputs with known bad rows: 4 bad customers (+1 good row sharing a bad id), 3 bad events, 1 bad feedback."""
    raw = tiny_inputs()
    cust = raw["customers"]
    cust.loc[2, "id"] = None  # row 3: missing id
    cust.loc[5, "charge"] = "lots"  # row 6: not a number
    cust.loc[7, "signup"] = "2024-13-45"  # row 8: unparseable timestamp
    cust = pd.concat([cust, cust.iloc[[0]]], ignore_index=True)  # row 25 duplicates row 1 (c000): both out
    ev = raw["events"]
    ev.loc[0, "when"] = "not a date"
    ev.loc[1, "id"] = "nobody"  # unknown customer
    ev.loc[2, "amount"] = "n/a!"
    paths = {
        "customers": tmp_path / "customers.csv",
        "events": tmp_path / "events.parquet",
        "feedback": tmp_path / "feedback.csv",
    }
    cust.to_csv(paths["customers"], index=False)
    ev.to_parquet(paths["events"], index=False)
    fb = raw["feedback"]
    fb.loc[3, "when"] = ""  # missing timestamp
    fb.to_csv(paths["feedback"], index=False)
    return paths


def serve_cfg(release_dir: Path, paths: dict[str, Path], output: Path, *extra: str):
    return serve_config(
        "task=churn",
        f"model={release_dir}",
        f"input.customers={paths['customers']}",
        f"input.events={paths['events']}",
        f"input.feedback={paths['feedback']}",
        f"output={output}",
        "chunk_size=7",
        "progress=false",
        "feedback_model=null",
        *extra,
    )


def test_parquet_row_groups_read_by_the_workers_give_the_rows_of_one_reader(release_dir, tmp_path):
    """Parquet files of several row groups are read by the worker processes one row group each; rows, rejects
    and row numbers are those of the same tables read here, chunk by chunk (CSV)."""
    import pyarrow.parquet as pq

    from churnsense.churn.serve import serve_churn

    csv_paths = write_inputs(tmp_path)
    csv_paths["events"] = tmp_path / "events.csv"
    io.read_table(tmp_path / "events.parquet").to_csv(csv_paths["events"], index=False)
    groups = tmp_path / "groups"
    groups.mkdir()
    pq_paths = {}
    for kind, path in csv_paths.items():
        pq_paths[kind] = groups / f"{kind}.parquet"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), pq_paths[kind], row_group_size=4)
        assert len(io.parquet_row_groups(pq_paths[kind])) >= 2
    outs = {}
    for name, paths in (("csv", csv_paths), ("parquet", pq_paths)):
        out = tmp_path / name / "scores.parquet"
        serve_churn(serve_cfg(release_dir, paths, out, "partitions=3", "workers=2", "chunk_size=3"))
        rejects = io.read_table(out.parent / "scores.rejects.csv")
        rejects["source"] = rejects["source"].map(lambda s: Path(s).stem)
        outs[name] = (io.read_table(out), rejects)
    pd.testing.assert_frame_equal(outs["csv"][0], outs["parquet"][0], check_exact=True)
    pd.testing.assert_frame_equal(outs["csv"][1], outs["parquet"][1], check_exact=True)
    assert len(outs["csv"][1]) > 5  # the bad rows are there, with their row numbers


@pytest.mark.parametrize("suffix,partitions", [("csv", 3), ("parquet", 1)])
def test_serve_rejects_bad_rows_and_drops_nothing(release_dir, tmp_path, capsys, suffix, partitions):
    from churnsense.churn.serve import serve_churn

    paths = write_inputs(tmp_path)
    output = tmp_path / "out" / f"scores.{suffix}"
    summary = serve_churn(serve_cfg(release_dir, paths, output, f"partitions={partitions}"))
    scores, rejects = io.read_table(output), io.read_table(tmp_path / "out" / "scores.rejects.csv")
    assert summary.rows_in == 25 and summary.rejected == 5 and summary.scored == 20 == len(scores)
    assert "rows in 25 = scored 20 + rejected 5" in capsys.readouterr().out
    source = {kind: os.path.relpath(path, output.parent) for kind, path in paths.items()}  # relative to rejects
    by_source = rejects.groupby("source").size().to_dict()
    assert by_source[source["customers"]] == 5 and by_source[source["feedback"]] == 4
    fb = rejects[rejects["source"] == source["feedback"]].set_index("row")["reason"].to_dict()
    assert fb["4"] == "missing value" and fb["3"].startswith("unknown customer")  # c002 lost its id in customers
    assert fb["1"] == fb["6"] == "customer row rejected (see the customers rejects)"  # c000 duplicate, c005 bad
    assert rejects["reason"].notna().all() and rejects["row"].notna().all()
    cust = rejects[rejects["source"] == source["customers"]].set_index("row")
    assert cust.loc["3", "reason"] == "missing value" and cust.loc["6", "reason"] == "not a number"
    assert "timestamp" in cust.loc["8", "reason"] and cust.loc["6", "column"] == "charge"
    assert set(cust.loc[["1", "25"], "reason"]) == {"duplicate customer id"}
    ev = rejects[rejects["source"] == source["events"]]
    assert {"unparseable timestamp", "not a number", "unknown customer id (not in the customers table)"} <= set(
        ev["reason"]
    )
    assert (ev.loc[ev["customer_id"] == "c000", "reason"] == "customer row rejected (see the customers rejects)").all()
    assert set(scores.columns) == {
        "customer_id",
        "churn_probability",
        "risk_band",
        "p_churn_30d",
        "p_churn_60d",
        "cutoff",
        *INSIGHT_COLUMNS,
    }
    prob = scores["churn_probability"].astype(float)
    assert prob.between(0, 1).all() and scores["customer_id"].is_unique
    assert set(scores["risk_band"]) <= {"low", "medium", "high"}
    assert sorted(p.name for p in output.parent.iterdir()) == sorted([output.name, "scores.rejects.csv", "scores.crm"])
    crm = output.parent / "scores.crm"
    manifest = json.loads((crm / "manifest.json").read_text())
    assert manifest["files"]["segment_membership.v1.csv"] == len(scores)  # every scored customer, once
    calls = pd.read_csv(crm / "call_list.v1.csv")
    assert len(calls) == (scores["recommended_action"] != "none").sum()
    assert calls["call_script"].str.len().gt(0).all() and calls["rank"].is_monotonic_increasing


def test_pure_batch_scorer_matches_serve(release_dir, tmp_path, capsys):
    """score_churn_batch on raw frames (as in Spark) = serve.py partitioned output; partition count and worker
    processes are irrelevant for every column, insights (at risk, reasons, segment, action, routing, value) and
    rejects included."""
    from churnsense.churn.serve import serve_churn

    paths = write_inputs(tmp_path)
    outs, rejected = [], []
    for k, workers in ((1, 1), (4, 2)):  # 4 partitions over 2 spawned worker processes
        out = tmp_path / f"k{k}.parquet"
        serve_churn(serve_cfg(release_dir, paths, out, f"partitions={k}", f"workers={workers}"))
        assert f"{k} partition(s), {workers} worker(s)" in capsys.readouterr().out
        outs.append(io.read_table(out).sort_values("customer_id", ignore_index=True))
        table = io.read_table(tmp_path / f"k{k}.rejects.csv")
        rejected.append(table.sort_values(list(table.columns), ignore_index=True))
    assert set(INSIGHT_COLUMNS) <= set(outs[0].columns)
    assert 0 < outs[0]["at_risk"].sum() < len(outs[0]) and outs[0]["reason_1"].ne("").any()  # the real path ran
    assert outs[0]["segment"].ge(0).all()  # fitted segments were used
    pd.testing.assert_frame_equal(outs[0], outs[1], check_exact=True)
    pd.testing.assert_frame_equal(rejected[0], rejected[1], check_exact=True)
    release = ChurnRelease.load(release_dir)
    raw = {k: io.read_table(p) for k, p in paths.items()}
    scored, rejects = score_churn_batch(
        raw["customers"], raw["events"], raw["feedback"], release, outs[0]["cutoff"][0], insights=True
    )
    scored = scored.sort_values("customer_id", ignore_index=True)
    assert len(scored) + (rejects["source"] == "customers").sum() == len(raw["customers"])
    np.testing.assert_allclose(scored["churn_probability"], outs[0]["churn_probability"], rtol=1e-6)
    plain = lambda s: [None if pd.isna(v) else v for v in s.tolist()]  # noqa: E731  (NaN == NaN here)
    for col in INSIGHT_COLUMNS:
        assert plain(scored[col]) == plain(outs[0][col]), col


def test_scores_do_not_depend_on_the_order_of_the_history_rows(release_dir):
    """The scorer orders each customer's history itself: history rows given newest first (rows of one customer
    and day keep their order, which is the tie-break) score exactly as when given in their original order."""
    release = ChurnRelease.load(release_dir)
    raw = tiny_inputs()
    cutoff = pd.Timestamp("2024-01-01")
    scored = []
    for reverse in (False, True):
        frames = dict(raw)
        if reverse:
            for kind in ("events", "feedback"):
                frames[kind] = raw[kind].sort_values("when", ascending=False, kind="stable", ignore_index=True)
            assert not frames["events"]["when"].equals(raw["events"]["when"])  # the order did change
        out, _ = score_churn_batch(
            frames["customers"], frames["events"], frames["feedback"], release, cutoff, insights=True
        )
        scored.append(out.sort_values("customer_id", ignore_index=True))
    pd.testing.assert_frame_equal(scored[0], scored[1], check_exact=True)


def test_crash_mid_run_publishes_nothing(release_dir, tmp_path, monkeypatch):
    import churnsense.churn.partition_scoring as scoring
    import churnsense.churn.serve as churn

    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash in partition 2")
        return score_churn_batch(*args, **kwargs)

    monkeypatch.setattr(scoring, "score_churn_batch", failing)
    paths = write_inputs(tmp_path)
    output = tmp_path / "out" / "scores.csv"
    with pytest.raises(RuntimeError, match="simulated crash"):
        churn.serve_churn(serve_cfg(release_dir, paths, output, "partitions=3", "workers=1"))
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_pyfunc_and_mlflow_uri(release_dir, tmp_path):
    import mlflow

    from churnsense.churn.pyfunc import ChurnPyfunc

    raw = tiny_inputs()
    raw["customers"].loc[3, "charge"] = "bad"
    mlflow.pyfunc.save_model(tmp_path / "pyfunc", python_model=ChurnPyfunc(), artifacts={"release": str(release_dir)})
    model = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc"))
    out = model.predict({"customers": raw["customers"], "events": raw["events"]}, params={"cutoff": "2024-01-01"})
    assert len(out) == len(raw["customers"]) and out["reject_reason"].notna().sum() == 1
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("serving", artifact_location=(tmp_path / "mlartifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(release_dir), artifact_path="release")
    release = ChurnRelease.load(f"runs:/{run.info.run_id}/release")
    mlflow.set_tracking_uri(None)
    assert release.input_names and (release.path / "pipeline.json").is_file()
