"""Bad input never goes out quietly: each rule of the contract on a small file, through `serve.py`'s composition
root (`run_serving`: the one error style). A row-level problem becomes a reject with its reason and the run goes on;
a file-level problem is one line `churnsense: error: <file>: ...`, exit code 2, no traceback and no output."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnsense.cli import debug_enabled
from churnsense.core import io
from helpers import run_serving_captured, serve_config
from test_serving_churn import tiny_inputs


def write_csvs(folder: Path, **frames: pd.DataFrame) -> dict[str, Path]:
    """The tiny inputs (customers, events; feedback on request) as CSV, with `frames` replacing some of them."""
    raw = {**{k: v for k, v in tiny_inputs().items() if k != "feedback"}, **frames}
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, frame in raw.items():
        paths[kind] = folder / f"{kind}.csv"
        frame.to_csv(paths[kind], index=False)
    return paths


def serve(release: Path, paths: dict[str, Path], output: Path, *extra: str, capsys=None):
    """Run `serve.py task=churn` in-process; (exit code, stdout, stderr)."""
    inputs = [f"input.{kind}={path}" for kind, path in paths.items()]
    cfg = serve_config(
        "task=churn",
        f"model={release}",
        *inputs,
        f"output={output}",
        "progress=false",
        "feedback_model=null",
        "insights=false",
        *extra,
    )
    return run_serving_captured(cfg, capsys)


def rejects_of(output: Path) -> pd.DataFrame:
    frame = io.read_table(output.with_name(f"{output.stem}.rejects.csv"))
    return frame.astype({"rows": int, "row": int})


def test_a_far_future_event_does_not_move_the_scoring_date(tiny_churn_release, tmp_path, capsys):
    events = tiny_inputs()["events"]
    base = write_csvs(tmp_path / "base")
    future = write_csvs(
        tmp_path / "future",
        events=pd.concat(
            [events, pd.DataFrame({"id": ["c003"], "kind": ["login"], "amount": ["1.0"], "when": ["2030-06-01"]})]
        ),
    )
    code, out_base, _ = serve(tiny_churn_release, base, tmp_path / "base.csv", capsys=capsys)
    code_f, out_future, _ = serve(tiny_churn_release, future, tmp_path / "future.csv", capsys=capsys)
    assert code == code_f == 0
    cutoff = next(line for line in out_base.splitlines() if line.startswith("cutoff")).split(" ")[1]
    assert f"cutoff {cutoff} (day after the history's end)" in out_future and cutoff == "2023-12-30"
    a, b = io.read_table(tmp_path / "base.csv"), io.read_table(tmp_path / "future.csv")
    pd.testing.assert_frame_equal(a, b)  # the same scores for every customer
    rejects = rejects_of(tmp_path / "future.csv")
    (line,) = rejects[rejects["reason"].str.startswith("timestamp in the future")].itertuples()
    assert line.row == len(events) + 1 and line.customer_id == "c003" and line.column == "when"


def test_a_mistyped_year_after_a_long_gap_does_not_move_the_scoring_date(tiny_churn_release, tmp_path, capsys):
    events = tiny_inputs()["events"]
    typo = pd.DataFrame({"id": ["c004"], "kind": ["payment"], "amount": ["9.5"], "when": ["2025-06-01"]})
    paths = write_csvs(tmp_path, events=pd.concat([events, typo]))
    code, out, _ = serve(tiny_churn_release, paths, tmp_path / "scores.csv", capsys=capsys)
    assert code == 0 and "cutoff 2023-12-30 (day after the history's end)" in out
    assert "notice: 1 row(s) dated 2025-06-01" in out and "set cutoff=" in out
    rejects = rejects_of(tmp_path / "scores.csv")
    line = rejects[rejects["customer_id"] == "c004"].iloc[0]
    assert line["reason"].startswith("dated on or after the scoring date 2023-12-30") and line["row"] == len(events) + 1


@pytest.mark.parametrize("detail", [False, True])
def test_history_after_an_explicit_cutoff_is_counted_in_rejects(tiny_churn_release, tmp_path, capsys, detail):
    paths = write_csvs(tmp_path)
    events = pd.read_csv(paths["events"], dtype=str)
    after = events[pd.to_datetime(events["when"]) >= "2023-12-01"]
    code, out, _ = serve(
        tiny_churn_release,
        paths,
        tmp_path / "scores.csv",
        "cutoff=2023-12-01",
        f"rejects_detail={str(detail).lower()}",
        capsys=capsys,
    )
    assert code == 0
    rejects = rejects_of(tmp_path / "scores.csv")
    dated = rejects[rejects["reason"].str.startswith("dated on or after the scoring date 2023-12-01")]
    assert dated["rows"].sum() == len(after) > 0 and f"events rows rejected {len(after)}" in out
    if detail:  # every row on its own line
        assert sorted(dated["row"]) == sorted(after.index + 1) and (dated["rows"] == 1).all()
    else:  # one line per customer: the first row and the count
        assert dated["customer_id"].is_unique and len(dated) == after["id"].nunique()
        firsts = after.reset_index().groupby("id")["index"].min() + 1
        assert dated.set_index("customer_id")["row"].to_dict() == firsts.to_dict()


def test_header_only_history_scores_without_history_and_a_zero_byte_file_is_one_error(
    tiny_churn_release, tmp_path, capsys
):
    paths = write_csvs(tmp_path)
    paths["events"].write_text("id,kind,amount,when\n")
    paths["feedback"] = tmp_path / "feedback.csv"
    paths["feedback"].write_text("id,when,comment,sentiment\n")
    code, out, err = serve(tiny_churn_release, paths, tmp_path / "scores.csv", capsys=capsys)
    assert code == 0 and "rows in 24 = scored 24 + rejected 0" in out and "(today: no history given)" in out
    assert "_row" not in out + err
    paths["events"].write_text("")
    code, out, err = serve(tiny_churn_release, paths, tmp_path / "again.csv", capsys=capsys)
    assert (
        code == 2
        and err == f"churnsense: error: {paths['events']}: empty file (0 bytes): expected at least a header row\n"
    )
    assert not (tmp_path / "again.csv").exists()


def test_undecodable_ids_are_rejected_not_scored(tiny_churn_release, tmp_path, capsys):
    paths = write_csvs(tmp_path)
    text = paths["customers"].read_text(encoding="utf-8").replace("c002,", "cé02,").replace("c005,", "c005é,")
    paths["customers"].write_bytes(text.encode("latin-1"))  # a Latin-1 export: é is one byte, not UTF-8
    code, out, _ = serve(tiny_churn_release, paths, tmp_path / "scores.csv", capsys=capsys)
    assert code == 0 and "rows in 24 = scored 22 + rejected 2" in out
    scores = io.read_table(tmp_path / "scores.csv")
    assert not scores["customer_id"].str.contains("\ufffd").any()
    bad = rejects_of(tmp_path / "scores.csv").query("column == 'id' and row in [3, 6]")
    assert len(bad) == 2 and bad["reason"].str.startswith("undecodable text").all()
    paths["customers"].write_text(text, encoding="utf-8")  # the same ids in UTF-8 are fine
    code, out, _ = serve(tiny_churn_release, paths, tmp_path / "utf8.csv", capsys=capsys)
    assert code == 0 and "rows in 24 = scored 24 + rejected 0" in out


def test_non_finite_and_absurd_numbers_are_rejected(tiny_churn_release, tmp_path, capsys):
    raw = tiny_inputs()
    raw["customers"].loc[[1, 2, 3, 4], "charge"] = ["inf", "1e308", "1e309", "-Infinity"]
    raw["events"].loc[[0, 1], "amount"] = ["1e400", "-1e13"]
    paths = write_csvs(tmp_path, customers=raw["customers"], events=raw["events"])
    code, out, _ = serve(tiny_churn_release, paths, tmp_path / "scores.csv", "insights=true", capsys=capsys)
    assert code == 0 and "rows in 24 = scored 20 + rejected 4" in out
    rejects = rejects_of(tmp_path / "scores.csv")
    by_row = rejects[rejects["source"] == "customers.csv"].set_index("row")["reason"]
    assert by_row[2] == by_row[4] == by_row[5] == "not a finite number" and by_row[3].startswith("implausible")
    events = rejects[(rejects["source"] == "events.csv") & rejects["row"].isin([1, 2])]
    assert set(events["reason"].str.split(" ").str[0]) == {"not", "implausible"}
    scores = io.read_table(tmp_path / "scores.csv", typed=True)
    for column in ("cltv", "value_at_risk", "expected_saved_value", "churn_probability"):
        values = pd.to_numeric(scores[column], errors="coerce").dropna()
        assert np.isfinite(values).all() and (values.abs() < 1e9).all(), column
    assert not scores["top_reasons"].fillna("").str.contains(r"\d{15}").any()


@pytest.mark.parametrize(
    "problem", ["zero_bytes", "folder", "missing", "not_parquet", "duplicate_header", "blank_header", "unclosed_quote"]
)
def test_a_broken_file_is_one_line_naming_it(tiny_churn_release, tmp_path, capsys, monkeypatch, problem):
    monkeypatch.delenv("CHURNSENSE_DEBUG", raising=False)
    paths = write_csvs(tmp_path)
    bad = paths["customers"]
    if problem == "zero_bytes":
        bad.write_bytes(b"")
    elif problem == "folder":
        bad = tmp_path / "folder.csv"
        bad.mkdir()
    elif problem == "missing":
        bad = tmp_path / "nothere.csv"
    elif problem == "not_parquet":
        bad = tmp_path / "customers.parquet"
        bad.write_bytes(b"id,plan\nc1,x\n" * 10)
    elif problem == "duplicate_header":
        bad.write_text("id,plan,plan,charge,signup\nc1,a,b,1,2023-01-01\n")
    elif problem == "blank_header":
        bad.write_text("\nid,plan,charge,signup\nc1,a,1,2023-01-01\n")
    elif problem == "unclosed_quote":
        bad.write_text("id,plan,charge,signup\n" + 'c1,"x' + ",1," * 60_000 + "\n")
    paths["customers"] = bad
    code, out, err = serve(tiny_churn_release, paths, tmp_path / "out" / "scores.csv", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"churnsense: error: {bad}")
    assert "Traceback" not in err + out and not any((tmp_path / "out").rglob("*"))  # no output, no temp file


def test_a_malformed_record_is_a_reject_and_its_content_is_never_echoed(tiny_churn_release, tmp_path, capsys):
    paths = write_csvs(tmp_path)
    lines = paths["customers"].read_text().splitlines()
    lines[5] += ",extra,SECRET-PII-4711"  # data row 5 has two fields too many
    lines[9] = lines[9].split(",")[0]  # data row 9 has one field
    paths["customers"].write_text("\n".join(lines) + "\n")
    code, out, err = serve(tiny_churn_release, paths, tmp_path / "scores.csv", capsys=capsys)
    assert code == 0 and "rows in 24 = scored 22 + rejected 2" in out
    rejects = rejects_of(tmp_path / "scores.csv")
    malformed = rejects[rejects["reason"].str.startswith("malformed CSV record")].set_index("row")["reason"]
    assert malformed.to_dict() == {
        5: "malformed CSV record: 6 field(s), the header has 4",
        9: "malformed CSV record: 1 field(s), the header has 4",
    }
    everything = out + err + (tmp_path / "scores.rejects.csv").read_text() + (tmp_path / "scores.csv").read_text()
    assert "SECRET" not in everything
    scores = io.read_table(tmp_path / "scores.csv")
    assert "c010" in set(scores["customer_id"])  # rows after the malformed ones keep their numbers and ids


def test_model_registry_uri_without_a_store_is_one_line_and_creates_no_store(
    tiny_churn_release, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = write_csvs(tmp_path)
    code, _, err = serve("models:/churnsense-churn@champion", paths, tmp_path / "scores.csv", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "does not exist (no file mlflow.db)" in err
    assert "tracking_uri=" in err and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("value,shown", [("0", False), ("", False), ("false", False), ("1", True), ("yes", True)])
def test_debug_variable_is_read_as_a_flag(monkeypatch, value, shown):
    monkeypatch.setenv("CHURNSENSE_DEBUG", value)
    assert debug_enabled() is shown


def test_customer_ids_from_row_numbers(tiny_churn_release):
    from churnsense.data.contract import DataSpec, TableSpec
    from churnsense.data.validation import validate_chunk

    table = TableSpec(path=None, id_from_row=True, numeric=["charge"])
    frame = pd.DataFrame({"charge": ["1", "x", "3"]})
    valid, rejects = validate_chunk(frame, table, "customers", "c.csv", first_row=101)
    assert valid["customer_id"].tolist() == ["101", "103"] and rejects["customer_id"].tolist() == ["102"]
    for bad, said in (
        ({"customers": {"path": "c.csv", "constants": {"customer_id": "x"}}}, "same customer"),
        (
            {"customers": {"path": "c.csv", "id_from_row": True}, "events": {"path": "e.csv"}},
            "cannot name their customer",
        ),
    ):
        with pytest.raises(ValueError, match=said):
            DataSpec.from_config({"name": "t", **bad})


def test_scratch_files_of_killed_runs_are_removed(tiny_churn_release, tmp_path, capsys):
    from churnsense.core.scratch import clean_stale

    dead = 2**22 + 12345  # above the usual pid_max: no such process
    parts, out = tmp_path / "parts", tmp_path / "out"
    parts.mkdir(), out.mkdir()
    (parts / f"churnsense-parts-{dead}-abc").mkdir()
    (parts / f"churnsense-parts-{os.getpid()}-live").mkdir()  # a running process's: kept
    (out / f".scores.csv.{dead}-xyz.tmp").write_text("partial")
    paths = write_csvs(tmp_path)
    code, _, _ = serve(tiny_churn_release, paths, out / "scores.csv", f"tmp_dir={parts}", capsys=capsys)
    assert code == 0
    assert sorted(p.name for p in parts.iterdir()) == [f"churnsense-parts-{os.getpid()}-live"]
    assert sorted(p.name for p in out.iterdir()) == ["scores.csv", "scores.rejects.csv"]
    assert clean_stale(parts, "churnsense-parts-") == []


def test_timestamps_with_and_without_offsets_mix_in_one_column():
    from churnsense.data.contract import TableSpec
    from churnsense.data.validation import validate_chunk

    table = TableSpec(path=None, columns={"ts": "when"})
    raw = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "event_type": "login",
            "value": "1",
            "when": ["2023-11-02", "2023-11-02T10:00:00+05:00", "2023-11-03 08:00", "never"],
        }
    )
    valid, rejects = validate_chunk(raw, table, "events", "e.csv")
    assert valid["ts"].tolist() == [
        pd.Timestamp("2023-11-02"),
        pd.Timestamp("2023-11-02 05:00"),
        pd.Timestamp("2023-11-03 08:00"),
    ]  # an offset is converted to UTC
    assert rejects["row"].tolist() == [4]
