"""The Spark engine (embedded, local mode) gives the same rows as the local engine: scores with every insight
column, and the same rejects (file, row, customer, column, reason) for the same bad input rows."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pyspark")

from churnsense.core import io
from churnsense.insights.enrich import INSIGHT_COLUMNS
from test_serving_churn import build_release, serve_cfg, write_inputs

pytestmark = pytest.mark.slow  # starts a JVM: run with `make test-all`
SPARK = (
    "engine=spark",
    "spark.master='local[2]'",
    "spark.partitions=3",
    "+spark.conf.spark.sql.execution.arrow.maxRecordsPerBatch=7",
)


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory) -> Path:
    return build_release(tmp_path_factory.mktemp("release"))


def _rows(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.sort_values(by, ignore_index=True)


def _rejects(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype(dict.fromkeys(frame.columns, str))  # the local CSV reads text, the Parquet dataset types
    return _rows(frame, ["source", "row", "column"])


@pytest.mark.parametrize("read", ["auto", "spark"])  # Parquet row groups read by the Python workers / by Spark
def test_spark_engine_gives_the_local_rows(release_dir, tmp_path, capsys, read):
    from churnsense.churn.serve import serve_churn
    from churnsense.churn.spark_serve import serve_churn_spark

    paths = write_inputs(tmp_path)
    pq.write_table(pq.read_table(paths["events"]), paths["events"], row_group_size=5)  # several row groups
    local = serve_churn(serve_cfg(release_dir, paths, tmp_path / "local" / "scores.parquet", "partitions=2"))
    spark = serve_churn_spark(
        serve_cfg(release_dir, paths, tmp_path / "spark" / "scores.parquet", *SPARK, f"spark.read={read}")
    )
    assert "engine spark (local[2]" in capsys.readouterr().out
    assert (spark.rows_in, spark.scored, spark.rejected, spark.other_rejected) == (
        local.rows_in,
        local.scored,
        local.rejected,
        local.other_rejected,
    )
    want = _rows(io.read_table(tmp_path / "local" / "scores.parquet"), ["customer_id"])
    got = _rows(pd.read_parquet(tmp_path / "spark" / "scores.parquet"), ["customer_id"])
    assert (tmp_path / "spark" / "scores.parquet").is_dir() and set(INSIGHT_COLUMNS) <= set(got.columns)
    assert list(got.columns) == list(want.columns) and got["reason_1"].ne("").any()
    for col in want.columns:
        if pd.api.types.is_float_dtype(want[col]):
            pd.testing.assert_series_equal(got[col], want[col], check_dtype=False, rtol=1e-6)
        else:
            assert got[col].astype(str).tolist() == want[col].astype(str).tolist(), col
    want_rej = _rejects(io.read_table(tmp_path / "local" / "scores.rejects.csv"))
    got_rej = _rejects(pd.read_parquet(tmp_path / "spark" / "scores.rejects.parquet"))
    pd.testing.assert_frame_equal(got_rej, want_rej)
    by_source = got_rej.astype({"rows": int}).groupby("source")["rows"].sum().to_dict()
    source = {k: os.path.relpath(p, tmp_path / "spark") for k, p in paths.items()}  # relative to the rejects
    assert by_source[source["customers"]] == 5 and by_source[source["feedback"]] == 4
    assert {"unparseable timestamp", "not a number"} <= set(
        got_rej.loc[got_rej["source"] == source["events"], "reason"]
    )


def test_parquet_inputs_are_read_by_the_workers_only_where_they_can_see_them(tmp_path):
    from types import SimpleNamespace

    from churnsense.churn.spark_serve import reads_in_workers

    parquet, csv = tmp_path / "events.parquet", tmp_path / "customers.csv"
    pd.DataFrame({"a": [1]}).to_parquet(parquet)
    csv.write_text("a\n1\n")

    def session(master: str):
        return SimpleNamespace(sparkContext=SimpleNamespace(master=master))

    assert reads_in_workers(session("local[2]"), str(parquet), "auto")
    assert not reads_in_workers(session("spark://host:7077"), str(parquet), "auto")  # a cluster: Spark's reader
    assert reads_in_workers(session("spark://host:7077"), str(parquet), "workers")  # the user says it is shared
    assert not reads_in_workers(session("local[2]"), str(parquet), "spark")
    assert not reads_in_workers(session("local[2]"), str(csv), "workers")  # CSV: always Spark's reader
    assert not reads_in_workers(session("local[2]"), str(tmp_path), "workers")  # a folder (dataset): Spark's
    with pytest.raises(ValueError, match=r"spark\.read='jvm'"):
        reads_in_workers(session("local[2]"), str(parquet), "jvm")


def test_spark_settings_from_the_command_line_are_joined_back():
    from churnsense.core.spark import spark_settings

    nested = {"spark.ui.enabled": False, "spark": {"executor": {"memory": "4g"}, "sql": {"shuffle.partitions": 8}}}
    assert spark_settings(nested) == {
        "spark.ui.enabled": False,
        "spark.executor.memory": "4g",
        "spark.sql.shuffle.partitions": 8,
    }
