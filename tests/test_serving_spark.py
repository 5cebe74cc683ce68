"""The Spark engine (embedded, local mode) gives the same rows as the local engine: scores with every insight
column, and the same rejects (file, row, customer, column, reason) for the same bad input rows."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
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


def test_spark_engine_gives_the_local_rows(release_dir, tmp_path, capsys):
    from churnsense.churn.serve import serve_churn
    from churnsense.churn.spark_serve import serve_churn_spark

    paths = write_inputs(tmp_path)
    local = serve_churn(serve_cfg(release_dir, paths, tmp_path / "local" / "scores.parquet", "partitions=2"))
    spark = serve_churn_spark(serve_cfg(release_dir, paths, tmp_path / "spark" / "scores.parquet", *SPARK))
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
