"""CRM export: the rows written (CSV and JSON Lines) validate against the committed JSON Schemas, per queue/team
files add up to the call list, the folder appears in one step (or not at all), and the report page leads with
segments and the call list, right-to-left scripts marked as such."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pandas as pd
import pytest

from churnsense.insights import crm_export
from churnsense.insights.crm_export import CALL_LIST, SEGMENTS, CrmExport, columns, load_schema, write_export
from churnsense.insights.enrich import add_insights
from churnsense.insights.state import InsightsState
from helpers import default_insights_config

CUTOFF = pd.Timestamp("2025-06-01")


def enriched(n: int = 12) -> pd.DataFrame:
    """Scored customers in three languages with reasons, facts and feedback tonality (some without feedback)."""
    rng = np.random.default_rng(0)
    ids = [f"C{i:02d}" for i in range(n)]
    langs = np.array(["he", "ru", "en", "uk"])[np.arange(n) % 4]
    facts = pd.DataFrame(
        {
            "monthly_charge": rng.uniform(20, 90, n),
            "language": langs,
            "contract": "month_to_month",
            "tenure_months": rng.uniform(1, 30, n),
            "outage_n_30d": rng.integers(0, 4, n).astype(float),
            "neg_feedback_n_90d": np.where(np.arange(n) % 3 == 0, np.nan, 1.0),
            "feedback_last_sentiment": np.where(np.arange(n) % 3 == 0, None, "negative"),
            "feedback_last_topic": np.where(np.arange(n) % 3 == 0, None, "billing"),
        },
        index=ids,
    )
    codes = np.where(facts["outage_n_30d"] > 0, "outages", "short_contract")
    reasons = pd.DataFrame(
        {
            "customer_id": ids,
            "reason_codes": codes,
            "top_reasons": "x",
            "top_reasons_local": "y",
            "reason_1": codes,
            "reason_1_text": "x",
            "reason_2": "",
            "reason_2_text": "",
            "reason_3": "",
            "reason_3_text": "",
        }
    )
    scored = pd.DataFrame(
        {"customer_id": ids, "churn_probability": rng.uniform(0.05, 0.95, n), "risk_band": "high", "cutoff": CUTOFF}
    )
    return add_insights(scored, facts, reasons, InsightsState(monthly_retention=0.97), default_insights_config())


def csv_rows(path, name: str) -> list[dict]:
    """CSV rows typed as the schema says (empty = null, true/false, numbers)."""
    props = load_schema(name)["properties"]
    out = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            typed = {}
            for key, value in row.items():
                types = props[key]["type"] if isinstance(props[key]["type"], list) else [props[key]["type"]]
                if value == "" and "null" in types:
                    typed[key] = None
                elif "integer" in types:
                    typed[key] = int(value)
                elif "number" in types:
                    typed[key] = float(value)
                elif "boolean" in types:
                    typed[key] = {"true": True, "false": False}[value]
                else:
                    typed[key] = value
            out.append(typed)
    return out


def test_written_rows_validate_against_the_schemas(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    frame = enriched()
    target, _calls = write_export([frame.iloc[:5], frame.iloc[5:]], tmp_path / "crm")  # two partitions
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["files"][f"{SEGMENTS}.csv"] == len(frame)
    for name in (CALL_LIST, SEGMENTS):
        schema = load_schema(name)
        assert json.loads((target / f"{name}.schema.json").read_text()) == schema  # shipped with the data
        validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
        jsonl = [json.loads(line) for line in (target / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        rows = csv_rows(target / f"{name}.csv", name)
        assert len(jsonl) == len(rows) == manifest["files"][f"{name}.jsonl"] > 0
        for row in jsonl + rows:
            errors = sorted(validator.iter_errors(row), key=str)
            assert not errors, (name, row.get("customer_id"), [e.message for e in errors])
            assert list(row) == columns(name)  # columns in the documented order
        assert rows == jsonl  # the two formats hold the same values
    calls_rows = [json.loads(x) for x in (target / f"{CALL_LIST}.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["rank"] for r in calls_rows] == list(range(1, len(calls_rows) + 1))
    assert all(r["call_script"] for r in calls_rows)
    langs = {r["queue"].split("-")[0]: r["script_language"] for r in calls_rows}
    assert all(q == s for q, s in langs.items()) and {"he", "ru"} <= set(langs)
    members = [json.loads(x) for x in (target / f"{SEGMENTS}.jsonl").read_text(encoding="utf-8").splitlines()]
    by_id = {r["customer_id"]: r for r in members}
    assert by_id["C00"]["feedback_negative_90d"] == 0 and by_id["C00"]["feedback_last_sentiment"] is None
    assert by_id["C01"]["feedback_negative_90d"] == 1 and by_id["C01"]["feedback_last_topic"] == "billing"


def test_queue_files_add_up_to_the_call_list(tmp_path):
    target, calls = write_export([enriched()], tmp_path / "crm", formats=["csv"])
    parts = [pd.read_csv(p) for p in sorted((target / "queues").glob(f"*.{CALL_LIST}.csv"))]
    assert len(parts) == calls.groupby(["queue", "team"]).ngroups
    merged = pd.concat(parts).sort_values("rank")
    assert merged["customer_id"].tolist() == calls["customer_id"].tolist()
    assert all(p["queue"].nunique() == 1 and p["team"].nunique() == 1 for p in parts)
    assert not list(target.glob("*.jsonl"))


def test_call_list_written_in_slices_from_spilled_candidates_is_the_same(tmp_path, monkeypatch):
    frames = [enriched(12), enriched(12).assign(customer_id=lambda f: "D" + f["customer_id"])]
    whole, calls = write_export(frames, tmp_path / "whole")
    monkeypatch.setattr(crm_export, "WRITE_ROWS", 5)  # several slices per list and per queue
    with CrmExport(tmp_path / "sliced") as export:  # as serving runs it: added frame by frame, calls not kept
        for frame in frames:
            export.add(frame)
    for path in sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file()):
        assert (tmp_path / "sliced" / path).read_bytes() == (whole / path).read_bytes(), path
    assert len(calls) > 5 and not list((tmp_path / "sliced").glob(".candidates*"))
    assert export.calls["customer_id"].tolist() == calls["customer_id"].tolist()  # ranking columns only
    assert "call_script" in calls and "call_script" not in export.calls


def test_export_appears_in_one_step_or_not_at_all(tmp_path):
    target = tmp_path / "crm"
    write_export([enriched()], target)
    before = (target / f"{CALL_LIST}.csv").read_text(encoding="utf-8")
    with pytest.raises(RuntimeError):
        with CrmExport(target) as export:
            export.add(enriched(4))
            raise RuntimeError("scoring failed")
    assert (target / f"{CALL_LIST}.csv").read_text(encoding="utf-8") == before  # the old export is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm"]  # no temp folder left behind
    write_export([enriched(4)], target)
    assert (target / f"{CALL_LIST}.csv").read_text(encoding="utf-8") != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm"]


def test_report_page_leads_with_segments_and_the_call_list(tmp_path):
    from churnsense.insights.report import write_report

    frame = enriched(24).assign(
        segment=lambda f: np.arange(len(f)) % 2, segment_name=lambda f: "seg " + f["segment"].astype(str)
    )
    files = write_report(frame, tmp_path, InsightsState(), default_insights_config(), {}, page={"rows_per_queue": 1})
    page = files["html"].read_text(encoding="utf-8")
    order = [page.index(h) for h in ("<h2>Segments", "<h2>Top reasons", "<h2>Call list by queue")]
    assert order == sorted(order)
    assert "dir='rtl' lang='he'" in page and '<bdi dir="ltr">' in page  # Hebrew right-to-left, numbers isolated
    assert "\u2066" not in page and "\u2069" not in page  # isolates became <bdi> elements
    assert re.search(r"1 of \d+ shown; the whole list is in crm/call_list.v1.csv", page)  # long queues are cut
    assert (files["crm"] / f"{CALL_LIST}.csv").is_file()
