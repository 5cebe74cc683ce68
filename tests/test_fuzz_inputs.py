"""Property-based fuzzing of churn batch scoring: random mixes of valid and malformed rows in the customers, events
and feedback files, and random file-level damage. Whatever comes in, a run ends one of two ways:

- exit 0: every customers row is in exactly one output (scored under its own id, or in the rejects file), rows in =
  scored + rejected, every rejected event/feedback row is listed once, every score is a finite number; or
- exit 2: one line `churnsense: error: <one of the input files>: ...`, and no output file at all.

Never a traceback, never a partial output. The scorer runs in-process (`run_serving`, catching SystemExit); one
case runs `serve.py` as a subprocess to check the entry point's error style end to end. Examples are bounded and
derandomized (the same inputs on every run)."""

from __future__ import annotations

import csv
import io as text_io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz suite needs hypothesis (dev extra)")
from hypothesis import HealthCheck, Phase, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from churnsense.core import io  # noqa: E402
from helpers import run_serving_captured, serve_config, untrained_feedback_release  # noqa: E402
from test_serving_bad_inputs import serve  # noqa: E402
from test_serving_churn import tiny_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BAD_BYTES = "\udce9"  # a lone surrogate: written as the raw byte 0xE9 (Latin-1 é), undecodable as UTF-8
HEADERS = {
    "customers": ["id", "plan", "charge", "signup"],
    "events": ["id", "kind", "amount", "when"],
    "feedback": ["id", "when", "comment", "sentiment"],
}
SIZES = {"customers": 8, "events": 20, "feedback": 6}

# Row-level damage: (name, column or None for the whole record, replacement). A row marked "must reject" can never
# be scored; the others may be used or rejected, but must be accounted for.
ROW_DAMAGE = {
    "customers": [
        ("valid", None, None),
        ("valid", None, None),
        ("no_id", "id", ""),
        ("latin1_id", "id", "c" + BAD_BYTES + "x"),
        ("unicode_id", "id", "ĉüś-Ω"),
        ("dup_id", "id", "c000"),
        ("inf", "charge", "inf"),
        ("overflow", "charge", "1e309"),
        ("huge", "charge", "1e300"),
        ("neg_inf", "charge", "-Infinity"),
        ("text_number", "charge", "twelve"),
        ("blank_number", "charge", ""),
        ("nan", "charge", "NaN"),
        ("bad_date", "signup", "31/31/2023"),
        ("future_signup", "signup", "2031-01-01"),
        ("new_plan", "plan", "платина"),
        ("quoted", "plan", 'a,"b"\nc'),
        ("extra_fields", "+", "x,SECRET"),
        ("few_fields", "-", None),
    ],
    "events": [
        ("valid", None, None),
        ("valid", None, None),
        ("valid", None, None),
        ("unknown_id", "id", "nobody"),
        ("latin1_id", "id", "c00" + BAD_BYTES),
        ("no_id", "id", ""),
        ("inf", "amount", "inf"),
        ("overflow", "amount", "-1e400"),
        ("huge", "amount", "1e200"),
        ("text_number", "amount", "n/a"),
        ("bad_ts", "when", "yesterday"),
        ("no_ts", "when", ""),
        ("far_future", "when", "2030-06-01"),
        ("tz_ts", "when", "2023-11-02T10:00:00+05:00"),
        ("new_kind", "kind", "refund"),
        ("no_kind", "kind", ""),
        ("extra_fields", "+", "1,2,3"),
        ("few_fields", "-", None),
    ],
    "feedback": [
        ("valid", None, None),
        ("valid", None, None),
        ("unknown_id", "id", "nobody"),
        ("bad_ts", "when", "2023-13-45"),
        ("far_future", "when", "2099-01-01"),
        ("rtl_text", "comment", "השירות איטי מאוד 😡"),
        ("multiline", "comment", 'line one\n"two", three'),
        ("empty_text", "comment", ""),
        ("bad_sentiment", "sentiment", "furious"),
        ("no_sentiment", "sentiment", ""),
        ("latin1_text", "comment", "caf" + BAD_BYTES),
        ("extra_fields", "+", "x"),
        ("few_fields", "-", None),
    ],
}
MUST_REJECT = {"no_id", "latin1_id", "inf", "overflow", "neg_inf", "extra_fields", "few_fields"}

# File-level damage: fatal ones must end in exit 2 naming that file; benign ones must not stop the run.
FATAL = {"zero_bytes", "missing_column", "duplicate_header"}
BENIGN = {"none", "bom", "crlf", "header_only", "trailing_blank_lines"}


def render(kind: str, damage: list[int], file_damage: str) -> tuple[bytes, dict]:
    """The bytes of one input file (tiny rows with `damage[i]` applied to row i) and what was done to each row."""
    frame = tiny_inputs()[kind].head(SIZES[kind]).astype(str)
    header = list(HEADERS[kind])
    if file_damage == "missing_column":  # the id column, required by every table
        header = header[1:]
    elif file_damage == "duplicate_header":
        header = header[:1] + header
    rows, kinds = [], []
    for i, record in enumerate(frame[HEADERS[kind]].to_numpy().tolist()):
        name, column, value = ROW_DAMAGE[kind][damage[i] % len(ROW_DAMAGE[kind])]
        if column == "+":
            record = record + value.split(",")
        elif column == "-":
            record = record[:1]
        elif column is not None:
            record[HEADERS[kind].index(column)] = value
        if file_damage == "missing_column":
            record = record[1:]
        elif file_damage == "duplicate_header":
            record = record[:1] + record
        rows.append(record)
        kinds.append(name)
    if file_damage == "header_only":
        rows, kinds = [], []
    buffer = text_io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if file_damage == "crlf" else "\n")
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue() + ("\n\n" if file_damage == "trailing_blank_lines" else "")
    data = text.encode("utf-8", errors="surrogateescape")
    if file_damage == "bom":
        data = b"\xef\xbb\xbf" + data
    elif file_damage == "zero_bytes":
        data = b""
    return data, {"records": rows, "kinds": kinds}


def file_case(kind: str) -> st.SearchStrategy:
    """(row damage indices, file damage) for one file: mostly intact files, some broken as a whole."""
    damage = st.lists(st.integers(0, len(ROW_DAMAGE[kind]) - 1), min_size=SIZES[kind], max_size=SIZES[kind])
    whole = st.one_of(st.just("none"), st.sampled_from(sorted(BENIGN | FATAL)))
    return st.tuples(damage, whole)


def check_balanced(out: str, folder: Path, written: dict) -> None:
    """Exit 0: each customers row in exactly one output; history rejects listed once each; finite scores."""
    scores = io.read_table(folder / "scores.csv")
    rejects = io.read_table(folder / "scores.rejects.csv")
    rejects = rejects.astype({"row": int, "rows": int}).assign(file=rejects["source"].map(lambda s: Path(s).name))
    customers = written["customers"]
    n = len(customers["records"])
    mine = rejects[rejects["file"] == "customers.csv"]
    rejected_rows = set(mine["row"])
    assert f"rows in {n} = scored {len(scores)} + rejected {len(rejected_rows)}" in out, out
    assert len(mine) == len(rejected_rows) and rejected_rows <= set(range(1, n + 1))  # each rejected row once
    kept = [r for r in range(1, n + 1) if r not in rejected_rows]
    for row in rejected_rows:
        assert (mine[mine["row"] == row]["rows"] == 1).all()
    for r in range(1, n + 1):
        if customers["kinds"][r - 1] in MUST_REJECT:
            assert r in rejected_rows, (r, customers["kinds"][r - 1])
    kept_ids = [str(customers["records"][r - 1][0]).strip() for r in kept]
    assert sorted(scores["customer_id"].astype(str)) == sorted(kept_ids)  # scored under their own id, once
    assert "\ufffd" not in "".join(scores["customer_id"].astype(str))
    for kind in ("events", "feedback"):
        lines = rejects[rejects["file"] == f"{kind}.csv"]
        if len(lines):
            assert lines["row"].is_unique and lines["row"].between(1, len(written[kind]["records"])).all()
            assert (lines["rows"] == 1).all()  # rejects_detail: one line per row
        assert f"{kind} rows rejected {len(lines)}" in out
    probability = pd.to_numeric(scores["churn_probability"], errors="raise").to_numpy()
    assert np.isfinite(probability).all() and ((probability >= 0) & (probability <= 1)).all()
    assert sorted(p.name for p in folder.iterdir()) == ["scores.csv", "scores.rejects.csv"]  # no temp files


@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(customers=file_case("customers"), events=file_case("events"), feedback=file_case("feedback"))
def test_any_mix_of_rows_and_files_is_scored_and_balanced_or_one_error(
    tiny_churn_release, capsys, monkeypatch, customers, events, feedback
):
    monkeypatch.delenv("CHURNSENSE_DEBUG", raising=False)
    cases = {"customers": customers, "events": events, "feedback": feedback}
    with tempfile.TemporaryDirectory() as tmp:
        folder, outputs = Path(tmp), Path(tmp) / "out"
        outputs.mkdir()
        paths, written = {}, {}
        for kind, (damage, whole) in cases.items():
            data, written[kind] = render(kind, damage, whole)
            paths[kind] = folder / f"{kind}.csv"
            paths[kind].write_bytes(data)
        code, out, err = serve(
            tiny_churn_release,
            paths,
            outputs / "scores.csv",
            "rejects_detail=true",
            "drift.enabled=false",
            capsys=capsys,
        )
        assert "Traceback" not in out + err
        event(f"exit {code}")
        fatal = [paths[kind] for kind, (_, whole) in cases.items() if whole in FATAL]
        if code == 2:
            assert err.count("\n") == 1 and err.startswith("churnsense: error: "), err
            named = err[len("churnsense: error: ") :].split(": ")[0]
            assert named in {str(p) for p in fatal}, (err, cases)  # only a file broken as a whole stops the run
            assert not any(outputs.iterdir())  # no partial output
        else:
            assert code == 0 and not fatal, (code, err, cases)
            check_balanced(out, outputs, written)


def test_entry_point_reports_a_broken_file_in_one_line(tiny_churn_release, tmp_path):
    """`python serve.py` itself (a subprocess): a CSV whose header repeats a column is one line, exit 2."""
    release = tiny_churn_release
    raw = tiny_inputs()
    raw["customers"].to_csv(tmp_path / "customers.csv", index=False)
    (tmp_path / "events.csv").write_text("id,id,kind,amount,when\nc001,c001,login,1,2023-12-01\n")
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "serve.py"),
            "task=churn",
            f"model={release}",
            f"input.customers={tmp_path / 'customers.csv'}",
            f"input.events={tmp_path / 'events.csv'}",
            f"output={tmp_path / 'out' / 'scores.csv'}",
            "feedback_model=null",
            "progress=false",
            "insights=false",
            "drift.enabled=false",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "CHURNSENSE_DEBUG": "0"},
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"churnsense: error: {tmp_path / 'events.csv'}: ") and run.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# The feedback task (`serve.py task=feedback`) on its own input file: customer_id = the row number, so every row
# can be found in exactly one output.
TEXT_DAMAGE = [
    ("valid", "The app crashes every time"),
    ("valid", "Интернет пропадает каждый вечер"),
    ("valid", "האינטרנט נופל כל ערב 😡"),
    ("empty", ""),
    ("blank", "   "),
    ("undecodable", "caf" + BAD_BYTES + " slow"),
    ("multiline", 'one\n"two", three'),
    ("long", "slow support " * 400),
    ("control", "a\x01b\tc"),
    ("extra_fields", None),
    ("few_fields", None),
]
TEXT_MUST_REJECT = {"empty", "blank", "undecodable", "extra_fields", "few_fields"}
TEXT_FILE_DAMAGE = ["none", "none", "bom", "crlf", "header_only", "zero_bytes", "no_text_column", "duplicate_header"]
TEXT_FATAL = {"zero_bytes", "no_text_column", "duplicate_header"}


@pytest.fixture(scope="module")
def tiny_feedback_release(tiny_encoder, tmp_path_factory):
    """A feedback release on the tiny random BERT (conftest) (untrained heads: only the contract counts)."""
    return untrained_feedback_release(tiny_encoder, tmp_path_factory.mktemp("feedback-release"))


def render_feedback(damage: list[int], whole: str) -> tuple[bytes, list[str]]:
    """The bytes of a feedback file (`customer_id,text,channel`) and the damage done to each row."""
    header = {
        "no_text_column": ["customer_id", "comment", "channel"],
        "duplicate_header": ["customer_id", "text", "text"],
    }.get(whole, ["customer_id", "text", "channel"])
    rows, kinds = [], []
    for i, d in enumerate(damage):
        name, text = TEXT_DAMAGE[d]
        record = [str(i + 1), text, "app"]
        if name == "extra_fields":
            record = [str(i + 1), "fine", "app", "x", "SECRET"]
        elif name == "few_fields":
            record = [str(i + 1)]
        rows.append(record)
        kinds.append(name)
    if whole == "header_only":
        rows, kinds = [], []
    buffer = text_io.StringIO()
    csv.writer(buffer, lineterminator="\r\n" if whole == "crlf" else "\n").writerows([header, *rows])
    data = buffer.getvalue().encode("utf-8", errors="surrogateescape")
    data = b"\xef\xbb\xbf" + data if whole == "bom" else b"" if whole == "zero_bytes" else data
    return data, kinds


@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    damage=st.lists(st.integers(0, len(TEXT_DAMAGE) - 1), min_size=1, max_size=12),
    whole=st.sampled_from(TEXT_FILE_DAMAGE),
)
def test_any_feedback_file_is_scored_and_balanced_or_one_error(
    tiny_feedback_release, capsys, monkeypatch, damage, whole
):
    monkeypatch.delenv("CHURNSENSE_DEBUG", raising=False)
    with tempfile.TemporaryDirectory() as tmp:
        source, outputs = Path(tmp) / "feedback.csv", Path(tmp) / "out"
        data, kinds = render_feedback(damage, whole)
        source.write_bytes(data)
        outputs.mkdir()
        cfg = serve_config(
            "task=feedback",
            f"model={tiny_feedback_release}",
            f"input={source}",
            f"output={outputs / 'scores.csv'}",
            "progress=false",
            "drift.enabled=false",
            "chunk_size=5",
        )
        code, out, err = run_serving_captured(cfg, capsys)
        assert "Traceback" not in out + err
        event(f"feedback exit {code}")
        if code == 2:
            assert whole in TEXT_FATAL and err.count("\n") == 1, (whole, err)
            assert err.startswith(f"churnsense: error: {source}") and not any(outputs.iterdir())
            return
        assert code == 0 and whole not in TEXT_FATAL, (whole, code, err)
        scores, rejects = io.read_table(outputs / "scores.csv"), io.read_table(outputs / "scores.rejects.csv")
        rejected = sorted(rejects["row"].astype(int)) if len(rejects) else []
        assert f"rows in {len(kinds)} = scored {len(scores)} + rejected {len(rejected)}" in out
        assert sorted([*scores["customer_id"].astype(int), *rejected]) == list(range(1, len(kinds) + 1))
        assert all(kinds[r - 1] not in TEXT_MUST_REJECT for r in scores["customer_id"].astype(int))
        probabilities = scores[["p_negative", "p_neutral", "p_positive"]].astype(float).to_numpy()
        assert np.isfinite(probabilities).all() and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
        assert "SECRET" not in out + err + (outputs / "scores.rejects.csv").read_text()
