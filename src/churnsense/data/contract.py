"""The data contract: which file holds which table and which source column is which canonical column.

Built from `cfg.data` (see `conf/data/*.yaml`) by `DataSpec.from_config`; library code takes these typed values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

KINDS = ("customers", "events", "feedback")  # the tables a churn model scores
# The retention-offer log (training only: uplift of each action, team routing). One row per offer or held-out
# customer: `action` (empty for the control arm), `treated` (false = held out), `propensity` (P(the assignment
# the row got), when known), `accepted`, `team`, `churned` (the outcome after the offer, when logged; else derived
# from customers.churn_date).
OFFERS = "offers"
# Canonical columns of each table (attributes of customers come on top, named by `categorical`/`numeric`).
REQUIRED = {
    "customers": ("customer_id",),
    "events": ("customer_id", "ts", "event_type", "value"),
    "feedback": ("customer_id", "ts", "text"),
    OFFERS: ("customer_id", "ts", "action"),
}
OPTIONAL = {
    "customers": ("signup_date", "churn_date", "observed_until", "label"),
    "events": (),
    "feedback": ("channel", "language", "sentiment", "topic"),
    OFFERS: ("treated", "propensity", "accepted", "team", "churned"),
}
BOOLEAN_COLUMNS = ("treated", "accepted", "churned")
DATE_COLUMNS = ("ts", "signup_date", "churn_date", "observed_until")
# Label vocabularies of the feedback table (the feedback model's heads, the generator and validation share them).
SENTIMENTS = ("negative", "neutral", "positive")
TOPICS = ("billing", "price", "outage", "support", "app", "contract", "delivery", "other")
LANGUAGES = ("en", "ru", "uk", "he")
# ... and of the labelled feedback sets (the generated training corpus, the hand-written dev set)
DOMAINS = ("telecom", "banking", "saas", "streaming", "ecommerce", "utilities")
PHENOMENA = (
    "plain",
    "sarcasm",
    "negation",
    "polite_complaint",
    "mixed_stance",
    "loaded_neutral",
    "code_switch",
    "translit",
    "slang",
    "typos",
    "emoji",
    "caps",
    "long",
    "short",
)


@dataclass(frozen=True)
class TableSpec:
    """One input table: where it is and how its columns map to canonical names.

    `columns` maps canonical -> source column; canonical names not listed map to themselves.
    `path` may be a plain path or `pkg://<distribution-or-module>/<relative path>`; `extra_paths` are more files
    with the same layout, concatenated after `path` (e.g. a data set shipped as train.csv + test.csv).
    """

    path: str | None
    columns: Mapping[str, str] = field(default_factory=dict)
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    extra_paths: tuple[str, ...] = ()
    read_options: Mapping[str, Any] = field(default_factory=dict)  # passed to pandas.read_csv (e.g. sep)
    timestamp_format: str | None = None  # strptime format of date columns; None = inferred
    constants: Mapping[str, Any] = field(default_factory=dict)  # canonical column -> constant (e.g. event_type)
    positive_labels: tuple[Any, ...] = ("1", "yes", "true", "churn", "churned")  # static label -> 1 (case-folded)
    id_from_row: bool = False  # no id column: customer_id = the data row number (customers-only data sets)
    max_abs_value: float = 1e12  # numbers beyond +-this (and inf / nan spelled out) are rejected as implausible

    @property
    def paths(self) -> tuple[str, ...]:
        return ((self.path,) if self.path else ()) + tuple(self.extra_paths)

    @property
    def attributes(self) -> list[str]:
        return list(self.categorical) + list(self.numeric)

    def source(self, canonical: str) -> str:
        """Source column name of a canonical column."""
        return self.columns.get(canonical, canonical)

    @classmethod
    def from_config(cls, d: Mapping[str, Any] | None) -> TableSpec | None:
        if not d or not d.get("path"):
            return None
        path = d["path"]
        paths = [path] if isinstance(path, str) else list(path)
        return cls(
            path=str(paths[0]),
            columns={str(k): str(v) for k, v in (d.get("columns") or {}).items()},
            categorical=[str(c) for c in d.get("categorical") or []],
            numeric=[str(c) for c in d.get("numeric") or []],
            extra_paths=tuple(str(p) for p in paths[1:]) + tuple(str(p) for p in d.get("extra_paths") or []),
            read_options=dict(d.get("read_options") or {}),
            timestamp_format=d.get("timestamp_format"),
            constants=dict(d.get("constants") or {}),
            positive_labels=tuple(d.get("positive_labels") or cls.positive_labels),
            id_from_row=bool(d.get("id_from_row") or False),
            max_abs_value=float(d.get("max_abs_value") or cls.max_abs_value),
        )


@dataclass(frozen=True)
class FramingSpec:
    """How snapshots and labels are made: "churns within `horizon_days` after the cutoff".

    label_mode: "churn_date" (customers.churn_date / observed_until), "label" (a static 0/1 column, one snapshot,
    split by customer only), "inactivity" (non-contractual: churn = no event in the horizon).
    Cutoffs: explicit `train_cutoffs`/`val_cutoff`/`test_cutoff`, or derived from the data's last date so that each
    split's label window ends before the next split's cutoff.
    """

    label_mode: Literal["churn_date", "label", "inactivity"] = "churn_date"
    horizon_days: int = 30
    max_events: int = 64
    lookback_days: int | None = None  # history kept before a cutoff; None = all
    train_cutoffs: tuple[str, ...] = ()
    val_cutoff: str | None = None
    test_cutoff: str | None = None
    n_train_cutoffs: int = 3
    cutoff_step_days: int | None = None  # spacing of train cutoffs; None = horizon_days
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    reference_date: str | None = None  # cutoff of label mode "label" data without timestamps
    min_history_events: int = 0  # inactivity mode: customers need this many events before the cutoff
    # The default scoring date is the day after the history's end. Timestamps after a gap of more than
    # `max_history_gap_days` with no history, holding at most `max_outlier_share` of the rows, are outliers
    # (a mistyped year), not the end of the history: they are not used and do not move the scoring date.
    max_history_gap_days: int = 90
    max_outlier_share: float = 0.01
    # Training needs every split (train / val / test) to hold at least this many rows and churners and non-churners.
    min_split_rows: int = 20
    min_split_per_class: int = 2

    @classmethod
    def from_config(cls, d: Mapping[str, Any] | None) -> FramingSpec:
        d = dict(d or {})
        for key in ("train_cutoffs",):
            if d.get(key) is not None:
                d[key] = tuple(str(c) for c in d[key])
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"data.framing: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: v for k, v in d.items() if v is not None})


@dataclass(frozen=True)
class DataSpec:
    """A data set: up to three tables (any may be missing, events or customers must exist), the optional offer
    log and its framing."""

    name: str
    customers: TableSpec | None
    events: TableSpec | None
    feedback: TableSpec | None
    framing: FramingSpec
    features: Mapping[str, Any] = field(default_factory=dict)  # knobs of FeaturePipeline (cfg.data.features)
    offers: TableSpec | None = None

    def table(self, kind: str) -> TableSpec | None:
        return getattr(self, kind)

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> DataSpec:
        """Build from `OmegaConf.to_container(cfg.data, resolve=True)`."""
        tables = {k: TableSpec.from_config(d.get(k)) for k in KINDS}
        if tables["customers"] is None and tables["events"] is None:
            raise ValueError(f"data {d.get('name')!r}: need a customers or an events table (both paths empty)")
        _check_ids(str(d.get("name")), tables)
        return cls(
            name=str(d.get("name", "data")),
            framing=FramingSpec.from_config(d.get("framing")),
            features=dict(d.get("features") or {}),
            offers=_offers_spec(d.get(OFFERS)),
            **tables,
        )


def _offers_spec(d: Any) -> TableSpec | None:
    """The offer log's spec; a bare path (the layout before the log joined the contract) is rejected with how to
    write it."""
    if isinstance(d, str):
        raise ValueError(
            f"data.offers: {d!r} is a bare path; write it as a table spec: "
            "offers: {path: ..., columns: {churned: <outcome column>, ...}}"
        )
    return TableSpec.from_config(d)


def _check_ids(name: str, tables: Mapping[str, TableSpec | None]) -> None:
    """Customer ids must come from a column or, for a customers-only table without one, from the row number."""
    for kind, table in tables.items():
        if table is not None and "customer_id" in table.constants:
            raise ValueError(
                f"data {name!r}: {kind}.constants sets customer_id to one value for every row (every "
                "row would be the same customer); for a table without an id column set "
                "customers.id_from_row: true"
            )
        if table is not None and table.id_from_row and kind != "customers":
            raise ValueError(f"data {name!r}: id_from_row is an option of the customers table only")
    customers = tables.get("customers")
    if customers is not None and customers.id_from_row:
        if "customer_id" in customers.columns:
            raise ValueError(
                f"data {name!r}: customers map customer_id to {customers.columns['customer_id']!r} and "
                "set id_from_row: true; choose one"
            )
        joined = [kind for kind in ("events", "feedback") if tables.get(kind) is not None]
        if joined:
            raise ValueError(
                f"data {name!r}: customers.id_from_row: true numbers the customers by row, so "
                f"{' and '.join(joined)} rows cannot name their customer; set those tables to null "
                "or map a real customer id"
            )
