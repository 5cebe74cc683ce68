"""`report.html` of a scoring run, written for a retention manager: the headline numbers, segments (size, churn,
value at risk, top reasons), the top reasons, and the call list per queue with its scripts (right-to-left
languages shown right-to-left, numbers kept left-to-right with `<bdi>`), then the charts and the remaining tables,
summarised (long tables show their first rows and name the CSV that holds them all).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from churnsense.insights.wording import FSI, LRI, PDI, load_language

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','Noto Sans Hebrew',Arial,sans-serif;
 margin:24px auto;max-width:1320px;color:#1f2328;line-height:1.4}
h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:2px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a;margin-bottom:16px}
.kpis{display:flex;gap:12px;flex-wrap:wrap}
.kpi{border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;min-width:150px}
.kpi b{display:block;font-size:1.5em}.kpi span{color:#57606a;font-size:.9em}
table{border-collapse:collapse;margin:6px 0;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}
th{background:#f6f8fa;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
details{margin:0}summary{cursor:pointer;color:#0969da}
.script{white-space:pre-line;background:#f6f8fa;border-radius:6px;padding:8px 10px;margin-top:6px;max-width:760px}
.more{color:#57606a;font-size:.9em}img{max-width:49%;border:1px solid #d0d7de;margin:4px 0}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value))


def bidi_html(text: object) -> str:
    """Escaped text with Unicode isolates as `<bdi>` (LRI..PDI -> `<bdi dir="ltr">`, FSI..PDI -> `<bdi>`)."""
    out = _e(text)
    out = re.sub(f"{LRI}([^{PDI}]*){PDI}", r'<bdi dir="ltr">\1</bdi>', out)
    return re.sub(f"{FSI}([^{PDI}]*){PDI}", r"<bdi>\1</bdi>", out)


def _direction(code: str) -> str:
    try:
        return "rtl" if load_language(code).rtl else "ltr"
    except ValueError:
        return "ltr"


def _num(value: object, spec: str = ",.0f") -> str:
    return "" if value is None or pd.isna(value) else format(value, spec)


def _table(
    frame: pd.DataFrame, formats: Mapping[str, str] | None = None, limit: int | None = None, csv_name: str | None = None
) -> str:
    """A small HTML table; at most `limit` rows, then a line naming the CSV with all of them."""
    formats = dict(formats or {})
    shown = frame if limit is None else frame.head(limit)
    head = "".join(f"<th>{_e(c)}</th>" for c in shown.columns)
    rows = []
    for _, row in shown.iterrows():
        cells = []
        for c in shown.columns:
            v = row[c]
            if c in formats and v is not None and not (isinstance(v, float) and pd.isna(v)):
                cells.append(f"<td class='n'>{format(v, formats[c])}</td>")
            else:
                cells.append(f"<td>{bidi_html(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if limit is not None and len(frame) > limit:
        where = f"; all in {_e(csv_name)}" if csv_name else ""
        more = f"<p class='more'>{limit} of {len(frame):,} rows shown{where}</p>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def reason_label(code: str) -> str:
    """A reason code in words for the report ("price_increase" -> "price increase", "attr:region" -> "region")."""
    return str(code).split(":", 1)[-1].replace("_", " ")


def segment_summary(scores: pd.DataFrame, profile: pd.DataFrame | None) -> pd.DataFrame:
    """Per segment: customers, at risk, churn (observed in a backtest, else predicted), value at risk, actions and
    the most frequent top reasons of its at-risk customers."""
    s = scores.assign(acted=scores["recommended_action"].fillna("none").ne("none"))
    g = (
        s.groupby(["segment", "segment_name"], dropna=False)
        .agg(
            customers=("customer_id", "size"),
            at_risk=("at_risk", "sum"),
            value_at_risk=("value_at_risk", "sum"),
            actions=("acted", "sum"),
            mean_risk=("churn_probability", "mean"),
        )
        .reset_index()
    )
    reasons = s[s["at_risk"] & s["reason_1"].fillna("").ne("")].groupby("segment")["reason_1"]
    top = reasons.agg(
        lambda r: ", ".join(f"{reason_label(k)} {v:.0%}" for k, v in r.value_counts(normalize=True).head(3).items())
    )
    g["top_reasons"] = g["segment"].map(top).fillna("")
    g["churn"] = g["mean_risk"]
    g["churn_source"] = "predicted"
    if profile is not None and len(profile) and "churn_rate" in profile:
        p = profile.set_index("segment")
        g["churn"] = g["segment"].map(p["churn_rate"]).fillna(g["mean_risk"])
        g["churn_source"] = g["segment"].map(p["churn_rate_source"]).fillna("predicted")
    g = g.sort_values("value_at_risk", ascending=False)
    return g[
        ["segment_name", "customers", "at_risk", "churn", "churn_source", "value_at_risk", "actions", "top_reasons"]
    ].rename(
        columns={
            "segment_name": "segment",
            "at_risk": "at risk",
            "churn_source": "churn is",
            "value_at_risk": "value at risk",
            "actions": "calls",
            "top_reasons": "top reasons (at risk)",
        }
    )


def period_summary(frame: pd.DataFrame, names: Mapping[int, str], cutoff: str = "", periods: int = 6) -> pd.DataFrame:
    """Observed churn rate per segment and month (rows: segment names, columns: months): the first `periods`
    months from the cutoff's month when the data goes past it (a backtest: the scored customers were all active
    before it), else the last `periods` months."""
    months = sorted(frame["period"].astype(str).unique())
    after = [m for m in months if cutoff and m[:7] >= cutoff[:7]]
    shown = after[:periods] if after else months[-periods:]
    recent = frame[frame["period"].astype(str).isin(shown)]
    table = recent.pivot_table(index="segment", columns="period", values="churn_rate", aggfunc="mean")
    table.columns = [str(c)[:7] for c in table.columns]
    table.index = [names.get(int(i), str(int(i))) for i in table.index]
    return table.rename_axis("segment").reset_index()


def _kpis(summary: Mapping[str, Any]) -> str:
    items = [
        ("customers scored", _num(summary.get("customers"))),
        ("at risk", f"{_num(summary.get('at_risk'))}"),
        ("value at risk", _num(summary.get("value_at_risk"))),
        ("recommended calls", _num(summary.get("actions"))),
        (
            "expected saved value",
            _num(summary.get("expected_saved_value"))
            if str(summary.get("uplift", "on")).startswith("on")
            else "none claimed (no offer log)",
        ),
    ]
    if summary.get("observed_churn_rate") is not None:
        items.append(("observed churn (backtest)", f"{summary['observed_churn_rate']:.1%}"))
    cards = "".join(f"<div class='kpi'><b>{v}</b><span>{_e(k)}</span></div>" for k, v in items)
    return f"<div class='kpis'>{cards}</div>"


def _call_rows(calls: pd.DataFrame) -> str:
    """Rows of one queue; the script of its first call with reasons is open, the others one click away."""
    rows = []
    with_reasons = calls["top_reasons_local"].fillna("").ne("").to_numpy()
    first = int(with_reasons.argmax()) if with_reasons.any() else 0
    for i, (_, r) in enumerate(calls.iterrows()):
        lang = str(r.get("script_language") or "en")
        d = _direction(lang)
        reasons = bidi_html(r["top_reasons_local"]) if with_reasons[i] else "—"
        script = (
            f"<details{' open' if i == first else ''}><summary>script ({_e(lang)})</summary>"
            f"<div class='script' dir='{d}' lang='{_e(lang)}'>"
            f"{bidi_html(r['call_script'])}</div></details>"
        )
        rows.append(
            f"<tr><td class='n'>{int(r['rank'])}</td><td>{_e(r['customer_id'])}</td><td>{_e(r['team'])}</td>"
            f"<td>{_e(r['recommended_action'])}</td><td class='n'>{_num(r['churn_probability'], '.0%')}</td>"
            f"<td class='n'>{_num(r['expected_saved_value'])}</td>"
            f"<td dir='{d}' lang='{_e(lang)}'>{reasons}</td><td>{script}</td></tr>"
        )
    head = (
        "<tr><th>rank</th><th>customer</th><th>team</th><th>action</th><th>risk</th><th>expected saved</th>"
        "<th>reasons (customer's language)</th><th>call script</th></tr>"
    )
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def call_list_section(calls: pd.DataFrame, rows_per_queue: int, export_name: str) -> str:
    """Queues by expected saved value (calls, value, team split), then each queue's first `rows_per_queue`
    calls with their scripts."""
    if calls.empty:
        return "<p>No recommended calls.</p>"
    q = calls.groupby("queue").agg(
        calls=("customer_id", "size"),
        value_at_risk=("value_at_risk", "sum"),
        expected_saved_value=("expected_saved_value", "sum"),
        language=("script_language", "first"),
        teams=("team", lambda t: ", ".join(f"{k} {v}" for k, v in t.value_counts().items())),
    )
    q = (
        q.sort_values("expected_saved_value", ascending=False)
        .reset_index()
        .rename(columns={"value_at_risk": "value at risk", "expected_saved_value": "expected saved value"})
    )
    parts = [_table(q, {"calls": ",d", "value at risk": ",.0f", "expected saved value": ",.0f"})]
    for queue in q["queue"]:
        part = calls[calls["queue"] == queue]
        calls_word = "call" if len(part) == 1 else "calls"
        parts.append(f"<h3>{_e(queue)}: {len(part):,} {calls_word}</h3>" + _call_rows(part.head(rows_per_queue)))
        if len(part) > rows_per_queue:
            parts.append(
                f"<p class='more'>{rows_per_queue} of {len(part):,} shown; the whole list is in {_e(export_name)}</p>"
            )
    return "\n".join(parts)


def write_page(
    path: Path,
    summary: Mapping[str, Any],
    scores: pd.DataFrame,
    calls: pd.DataFrame,
    frames: Mapping[str, pd.DataFrame],
    images: Sequence[Path],
    page_cfg: Mapping[str, Any],
    export_name: str = "crm/",
) -> Path:
    """Write `report.html` (see module doc). `frames`: the report tables by name (segments, top_reasons, ...);
    `page_cfg`: `rows_per_queue`, `table_rows`."""
    rows_per_queue, table_rows = int(page_cfg.get("rows_per_queue", 5)), int(page_cfg.get("table_rows", 15))
    cutoff = str(summary.get("cutoff") or "")[:10]
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Retention report {cutoff}</title>"
        f"<style>{STYLE}</style></head><body>",
        "<h1>Retention report</h1>",
        f"<div class='sub'>scores at cutoff {_e(cutoff)}; at risk = churn probability above the release's "
        f"threshold; values in the revenue currency</div>",
        _kpis(summary),
        "<h2>Segments</h2>",
        _table(
            segment_summary(scores, frames.get("segments")),
            {"customers": ",d", "at risk": ",d", "churn": ".1%", "value at risk": ",.0f", "calls": ",d"},
        ),
    ]
    if "top_reasons" in frames and len(frames["top_reasons"]):
        top = (
            frames["top_reasons"]
            .assign(reason=lambda t: t["reason"].map(reason_label))
            .rename(columns={"value_at_risk": "value at risk", "mean_risk": "mean risk", "share": "share of explained"})
        )
        parts += [
            "<h2>Top reasons (first reason of each at-risk customer)</h2>",
            _table(
                top,
                {"customers": ",d", "value at risk": ",.0f", "mean risk": ".1%", "share of explained": ".1%"},
                table_rows,
                "top_reasons.csv",
            ),
        ]
    parts += ["<h2>Call list by queue</h2>", call_list_section(calls, rows_per_queue, export_name)]
    if images:
        parts += ["<h2>Charts</h2>"] + [f"<img src='{_e(p.name)}' alt='{_e(p.stem)}'>" for p in images]
    for name, frame in frames.items():
        if name in ("segments", "top_reasons") or frame is None or not len(frame):
            continue
        if name == "churn_by_segment_period":
            names = scores.drop_duplicates("segment").set_index("segment")["segment_name"].to_dict()
            recent = period_summary(frame, names, cutoff)
            parts += [
                "<h2>Observed churn rate by segment and month</h2>",
                _table(recent, {c: ".1%" for c in recent.columns if c != "segment"}),
                f"<p class='more'>all months, with active and churned counts: {name}.csv</p>",
            ]
            continue
        parts += [f"<h2>{_e(name.replace('_', ' '))}</h2>", _table(frame.round(4), None, table_rows, f"{name}.csv")]
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
