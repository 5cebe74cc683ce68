"""churnsense.core.io: chunked reads with stable row numbers, atomic writers, rejects, run summary."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from churnsense.core import io, runs
from churnsense.core import rejects as rej


def _csv(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('customer_id,x,when\n1,2.5,2024-01-01\n2,abc,\n,3,2024-02-30\n"4,x",NA,2024-01-01\n05,1,\n')
    return path


def test_csv_chunks_are_strings_with_row_numbers(tmp_path):
    chunks = list(io.iter_chunks(_csv(tmp_path), chunk_size=2))
    assert [first for first, _ in chunks] == [1, 3, 5]
    whole = pd.concat([frame for _, frame in chunks], ignore_index=True)
    assert whole["customer_id"].tolist()[4] == "05"  # no numeric coercion: leading zeros kept
    assert whole["x"].tolist()[1] == "abc" and pd.isna(whole["customer_id"][2]) and whole["customer_id"][3] == "4,x"
    assert io.table_columns(tmp_path / "in.csv") == ["customer_id", "x", "when"]


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_round_trip_and_schema_of_first_chunk(tmp_path, suffix):
    path = tmp_path / f"out.{suffix}"
    with io.AtomicTableWriter(path) as writer:
        writer.write(pd.DataFrame({"a": [1, 2], "b": [None, None]}))
        writer.write(pd.DataFrame({"b": ["x", "y,z"], "a": [3, 4]}))  # reordered columns, typed later
    back = io.read_table(path)
    assert back.columns.tolist() == ["a", "b"] and len(back) == 4
    assert back["b"].tolist()[2:] == ["x", "y,z"]
    assert [first for first, _ in io.iter_chunks(path, chunk_size=3)] == [1, 4]
    if suffix == "parquet":
        assert io.count_rows(path) == 4


def test_crash_leaves_no_output_and_no_temp(tmp_path):
    (tmp_path / "old.csv").write_text("a\n1\n")
    with pytest.raises(RuntimeError):
        with io.AtomicTableWriter(tmp_path / "old.csv") as writer:
            writer.write(pd.DataFrame({"a": [2, 3]}))
            raise RuntimeError("simulated crash")
    with pytest.raises(RuntimeError):
        with io.AtomicTableWriter(tmp_path / "new.parquet") as writer:
            writer.write(pd.DataFrame({"a": [2, 3]}))
            raise RuntimeError("simulated crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.csv"]  # old output intact, no temp files
    assert (tmp_path / "old.csv").read_text() == "a\n1\n"


def test_empty_output_and_rejects(tmp_path):
    with io.AtomicTableWriter(tmp_path / "empty.parquet", schema=rej.RejectsWriter.SCHEMA):
        pass
    assert io.read_table(tmp_path / "empty.parquet").columns.tolist() == rej.REJECT_COLUMNS
    rejects_path = rej.rejects_path_for(tmp_path / "scores.parquet")
    assert rejects_path.name == "scores.rejects.csv"
    with rej.RejectsWriter(rejects_path) as writer:
        writer.write(rej.make_rejects("a.csv", [3, 7], [None, "c7"], "customer_id", "missing value"))
        writer.write(rej.make_rejects("b.csv", [], [], "x", "none"))
    back = io.read_table(rejects_path)
    assert back.columns.tolist() == rej.REJECT_COLUMNS and back["row"].tolist() == ["3", "7"]
    assert writer.by_source == {"a.csv": 2}


def test_errors_and_summary(tmp_path):
    with pytest.raises(ValueError, match="unsupported file type"):
        io.table_format(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="not found"):
        list(io.iter_chunks(tmp_path / "missing.csv"))
    summary = runs.RunSummary("churn", rows_in=10, scored=8, rejected=2, other_rejected={"events": 1}).finish()
    assert summary.balanced and "rows in 10 = scored 8 + rejected 2" in summary.line() and "rows/s" in summary.line()
    assert "MISMATCH" in runs.RunSummary("churn", rows_in=3, scored=1).line()


@pytest.mark.parametrize(
    "source",
    [
        ["a.csv", "x", "", None, "עברית", " lead"],  # nothing to quote: written by Arrow
        ["a,b", 'q"', "m\nl", None, "", "z"],  # quotes needed: written by pandas
    ],
)
def test_csv_lines_are_what_pandas_writes(source):
    table = pa.table(
        {"source": source, "row": pa.array([1, 2, None, 4, 5, 6], pa.int64()), "n": pa.array(range(6), pa.int32())}
    )
    want = table.to_pandas().astype({"row": "Int64", "n": "Int32"}).to_csv(header=False, index=False)
    assert io.csv_lines(table) == want
    assert "1.0" not in io.csv_lines(table)  # row numbers stay integers where some are missing
