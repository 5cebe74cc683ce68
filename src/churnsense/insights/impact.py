"""Impact of a past campaign (`python serve.py task=impact`): incremental retention per action and segment.

Input: the campaign's offer log in the data contract (treated and held-out rows, `churned` = the outcome observed
after the offer, or customers.churn_date to derive it over `outcome_days`). For each action, its treated rows are
compared with the control rows (the shared hold-out, plus rows held out from that action): retention treated -
retention control, with a Newcombe hybrid-score interval (difference of two Wilson intervals), and the customers
that difference retained among the treated. Segments: any offer or customer column (`segment_by`), and "all".
The contrast is causal only when the hold-out was randomised; otherwise the output says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from churnsense.core.io import read_table
from churnsense.core.release import read_yaml
from churnsense.data.contract import OFFERS, TableSpec
from churnsense.data.validation import split_valid_rows
from churnsense.insights.uplift_fit import _is_control, design_of
from churnsense.insights.uplift_metrics import difference_interval

log = logging.getLogger(__name__)


def incremental_retention(offers: pd.DataFrame, segment_by: Sequence[str] = (), level: float = 0.95) -> pd.DataFrame:
    """One row per action x segment (segment "all" included): n, retention of each arm, incremental retention
    with its interval, customers retained by the campaign among the treated. `offers` needs action, churned and
    treated (or action empty for held-out rows)."""
    control = _is_control(offers).to_numpy()
    action = offers["action"].astype("string").fillna("").to_numpy()
    retained = 1.0 - offers["churned"].astype(float).to_numpy()
    rows = []
    for a in sorted(set(action[~control]) - {""}):
        treated, held = ~control & (action == a), control & np.isin(action, ["", a])
        groups = [("all", "all", np.ones(len(offers), bool))]
        for col in segment_by:
            values = offers[col].astype("string").fillna("unknown").to_numpy()
            groups += [(col, v, values == v) for v in sorted(set(values))]
        for col, value, mask in groups:
            t, c = treated & mask, held & mask
            if not t.any() or not c.any():
                continue
            d, lo, hi = difference_interval(retained[t].sum(), t.sum(), retained[c].sum(), c.sum(), level)
            rows.append(
                {
                    "action": a,
                    "segment_by": col,
                    "segment": value,
                    "n_treated": int(t.sum()),
                    "n_control": int(c.sum()),
                    "retention_treated": float(retained[t].mean()),
                    "retention_control": float(retained[c].mean()),
                    "incremental_retention": d,
                    "ci_low": lo,
                    "ci_high": hi,
                    "customers_retained": d * int(t.sum()),
                    "significant": bool(lo > 0 or hi < 0),
                }
            )
    return pd.DataFrame(rows)


def campaign_outcomes(offers: pd.DataFrame, customers: pd.DataFrame | None, outcome_days: int) -> pd.DataFrame:
    """The campaign's rows with `churned`: from the log, else churn within `outcome_days` of the offer (rows whose
    window is not yet observed are dropped, with a notice)."""
    if "churned" in offers and offers["churned"].notna().any():
        return offers[offers["churned"].notna()].reset_index(drop=True)
    if customers is None or "churn_date" not in customers:
        raise ValueError(
            "impact: the offer log has no outcome column (churned); give input.customers with churn_date to derive it"
        )
    c = customers.set_index("customer_id")
    end = pd.Timestamp(c["observed_until"].max()) if "observed_until" in c else pd.Timestamp(c["churn_date"].max())
    stop = offers["ts"] + pd.Timedelta(days=outcome_days)
    seen = offers[stop <= end].copy()
    if len(seen) < len(offers):
        log.warning(
            "impact: %d offers whose %d-day outcome is not observed yet are left out",
            len(offers) - len(seen),
            outcome_days,
        )
    churn = seen["customer_id"].map(c["churn_date"])
    seen["churned"] = (churn > seen["ts"]) & (churn <= seen["ts"] + pd.Timedelta(days=outcome_days))
    return seen.reset_index(drop=True)


def _table(path: str, spec: Mapping | None, kind: str, segment_by: Sequence[str] = ()) -> pd.DataFrame:
    """The file's valid rows in canonical columns, plus the `segment_by` columns it has (as text)."""
    raw = read_table(str(path))
    spec = dict(spec or {})
    known = set(spec.get("categorical") or []) | set(spec.get("numeric") or [])
    spec["categorical"] = list(spec.get("categorical") or []) + [
        c for c in segment_by if c in raw.columns and c not in known
    ]
    table = TableSpec.from_config({**spec, "path": str(path)})
    valid, rejects = split_valid_rows(raw, table, kind, str(path))
    if len(rejects):
        first = rejects.iloc[0]
        log.warning(
            "impact: %d invalid %s rows left out (first: row %s, column %s: %s)",
            len(rejects),
            kind,
            first["row"],
            first["column"],
            first["reason"],
        )
    return valid


def serve_impact(cfg) -> Path:
    """Composition root of `serve.py task=impact` (conf/serve/task/impact.yaml): impact.csv + impact.json."""
    release_cfg = Path(str(cfg.model)) / "config.yaml"
    data = read_yaml(release_cfg).get("data", {}) if release_cfg.is_file() else {}
    segment_by = [str(c) for c in cfg.segment_by]
    spec = dict(data.get(OFFERS) or {})
    spec["columns"] = {**dict(spec.get("columns") or {}), **dict(cfg.columns)}
    offers = _table(cfg.input.offers, spec, "offers", segment_by)
    wanted = [c for c in segment_by if c not in offers]
    customers = _table(cfg.input.customers, data.get("customers"), "customers", wanted) if cfg.input.customers else None
    offers = campaign_outcomes(offers, customers, int(cfg.outcome_days))
    extra = [c for c in segment_by if c not in offers]
    if extra and customers is not None:
        offers = offers.merge(
            customers[["customer_id", *[c for c in extra if c in customers]]], on="customer_id", how="left"
        )
    missing = [c for c in segment_by if c not in offers]
    if missing:
        raise ValueError(f"impact: segment_by columns {missing} are in neither the offer log nor the customers")
    design = design_of(offers, str(cfg.assignment))
    table = incremental_retention(offers, segment_by, float(cfg.level))
    out = Path(str(cfg.output_dir))
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "impact.csv", index=False)
    note = {"randomised": "treated vs a randomised hold-out: the differences are causal effects"}.get(
        design, "the hold-out was not randomised: the differences are associations, not effects"
    )
    summary = {
        "offers": int(len(offers)),
        "design": design,
        "note": note,
        "level": float(cfg.level),
        "all": table[table["segment_by"] == "all"].to_dict("records"),
    }
    (out / "impact.json").write_text(json.dumps(summary, indent=1, default=float))
    for r in summary["all"]:
        print(
            f"impact {r['action']}: retention {r['retention_treated']:.1%} vs {r['retention_control']:.1%} held out "
            f"-> {r['incremental_retention']:+.1%} [{r['ci_low']:+.1%}, {r['ci_high']:+.1%}] "
            f"({r['customers_retained']:+.0f} customers of {r['n_treated']:,})"
        )
    print(f"impact: {note} -> {out / 'impact.csv'}")
    return out
