"""`drift.json` and `drift.html` of a scoring run, and the one-line alert printed when a feature drifted.

The HTML page is self-contained (inline CSS and SVG, no scripts): a summary, a table of every feature sorted by PSI
with drifted rows highlighted and new categories listed, then a reference-vs-current bar chart per drifted feature.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from churnsense.core.drift import DriftReport, FeatureDrift, Profile

CHART_BINS = 15  # bars per chart: the bins with the largest shares (categorical features can have hundreds)
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left;font-size:14px}th{background:#f4f4f4}
tr.drift td{background:#fde8e4}td.num{text-align:right;font-variant-numeric:tabular-nums}.fail{color:#b3261e}
.pass{color:#1e7b34}.chart{margin:1em 0 2em}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px}"""


def drift_paths(output: str | os.PathLike) -> tuple[Path, Path]:
    """`<output stem>.drift.json` and `.drift.html` next to a scoring output."""
    output = Path(output)
    return output.with_name(f"{output.stem}.drift.json"), output.with_name(f"{output.stem}.drift.html")


def _atomic_write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


def write_drift_json(
    report: DriftReport, current: Profile, path: str | os.PathLike, meta: dict[str, Any] | None = None
) -> Path:
    """The comparison (summary + per-feature results) and the run's own profile (counts, mergeable later)."""
    doc = {**(meta or {}), **report.to_dict(), "current_profile": current.to_dict()}
    return _atomic_write(Path(path), json.dumps(doc, indent=1, ensure_ascii=False, default=str))


def _bars_svg(feature: FeatureDrift) -> str:
    """Horizontal bars per bin: reference (grey) over current (orange), shares on a common scale."""
    bins = sorted(feature.bins, key=lambda b: -max(b["reference"], b["current"]))[:CHART_BINS]
    order = {b["label"]: i for i, b in enumerate(feature.bins)}
    bins.sort(key=lambda b: order[b["label"]])
    top = max([max(b["reference"], b["current"]) for b in bins] + [1e-9])
    row, label_w, bar_w = 26, 180, 360
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 120}" height="{row * len(bins) + 4}"'
        f' role="img" aria-label="{html.escape(feature.name)} reference vs current">'
    ]
    for i, b in enumerate(bins):
        y = i * row + 2
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" font-size="12" text-anchor="end">'
            f"{html.escape(b['label'][:28])}</text>"
        )
        for j, (key, colour) in enumerate((("reference", "#9e9e9e"), ("current", "#e8710a"))):
            w = bar_w * b[key] / top
            parts.append(f'<rect x="{label_w}" y="{y + j * 11}" width="{w:.1f}" height="10" fill="{colour}"/>')
        parts.append(
            f'<text x="{label_w + bar_w * max(b["reference"], b["current"]) / top + 4:.1f}" y="{y + 15}" '
            f'font-size="11">{b["reference"]:.1%} → {b["current"]:.1%}</text>'
        )
    return "".join(parts) + "</svg>"


def _row(f: FeatureDrift) -> str:
    value = "" if f.value is None else f"{f.value:.3f}"
    new = ", ".join(f"{html.escape(n['category'])} ({n['share']:.1%})" for n in f.new_categories)
    cells = [
        html.escape(f.name),
        f.group,
        f.kind,
        value,
        f"{f.threshold:g}",
        f.status,
        f"{f.rows_reference:,}",
        f"{f.rows_current:,}",
        f"{f.missing_reference:.1%} → {f.missing_current:.1%}",
        new,
    ]
    numeric = {3, 4, 6, 7}
    tds = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(cells))
    return f'<tr class="{"drift" if f.drifted else ""}">{tds}</tr>'


def render_drift_html(report: DriftReport, title: str, meta: dict[str, Any] | None = None) -> str:
    """The whole page as a string."""
    s = report.summary
    verdict = '<b class="pass">PASS</b>' if s["passed"] else '<b class="fail">FAIL</b>'
    info = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in (meta or {}).items())
    head = (
        "<tr><th>feature</th><th>group</th><th>kind</th><th>PSI</th><th>threshold</th><th>status</th>"
        "<th>reference rows</th><th>current rows</th><th>missing</th><th>new categories</th></tr>"
    )
    charts = "".join(
        f'<div class="chart"><h3>{html.escape(f.name)} (PSI {f.value:.3f})</h3>{_bars_svg(f)}</div>'
        for f in report.features
        if f.drifted
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{verdict}: {s['drifted']} of {s['tested']} tested features drifted "
        f"({s['drifted_share']:.0%}; the run fails above {s['thresholds']['max_drifted_share']:.0%}).</p>"
        f"<ul>{info}</ul><table>{head}{''.join(_row(f) for f in report.features)}</table>"
        f"<h2>Drifted features</h2><p class='legend'><span style='background:#9e9e9e'></span>reference"
        f"<span style='background:#e8710a'></span>this run</p>{charts or '<p>none</p>'}</body></html>"
    )


def write_drift_html(
    report: DriftReport, path: str | os.PathLike, title: str, meta: dict[str, Any] | None = None
) -> Path:
    return _atomic_write(Path(path), render_drift_html(report, title, meta))


def _describe(f: FeatureDrift) -> str:
    if f.new_categories:
        names = ", ".join(n["category"] for n in f.new_categories[:3])
        return f"{f.name} new [{names}] {f.new_share:.1%}, PSI {f.value:.2f}"
    return f"{f.name} PSI {f.value:.2f}"


def alert_line(report: DriftReport, task: str, html_path: str | os.PathLike) -> str | None:
    """One line naming the drifted features, or None when none drifted."""
    drifted = [f for f in report.features if f.drifted]
    if not drifted:
        return None
    s = report.summary
    verdict = "FAIL" if not s["passed"] else "pass"
    return (
        f"DRIFT {task}: {len(drifted)}/{s['tested']} features drifted [{verdict}]: "
        f"{'; '.join(_describe(f) for f in drifted)} -> {html_path}"
    )
