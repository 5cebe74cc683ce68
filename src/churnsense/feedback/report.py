"""Markdown evaluation note of a feedback run: overall, per language, per domain and per phenomenon."""

from __future__ import annotations

import math

from churnsense.data.contract import DOMAINS, LANGUAGES, PHENOMENA


def _cell(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    return "" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _count(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    return "" if value is None else str(int(value))


def evaluation_note(metrics: dict[str, float], sets: tuple[str, ...]) -> str:
    """Tables of sentiment macro-F1 (overall, per language), topic macro-F1, and accuracy / macro-F1 per domain
    and per phenomenon, one column group per evaluation set prefix in `sets` (e.g. 'dev', 'holdout')."""
    head = "| | " + " | ".join(sets) + " |\n|---|" + "---|" * len(sets) + "\n"
    rows = [
        ("sentiment macro-F1", "{s}/macro_f1"),
        *((f"  {lang}", "{s}/macro_f1/" + lang) for lang in LANGUAGES),
        ("topic macro-F1", "{s}/topic/macro_f1"),
        ("language accuracy", "{s}/language/accuracy"),
    ]
    lines = ["## Overall\n", head]
    lines += [f"| {name} | " + " | ".join(_cell(metrics, key.format(s=s)) for s in sets) + " |\n" for name, key in rows]
    for column, values in (("phenomena", PHENOMENA), ("domain", DOMAINS)):
        lines.append(
            f"\n## Per {'phenomenon' if column == 'phenomena' else column} (sentiment accuracy / macro-F1 "
            "over present classes / topic macro-F1, n)\n\n"
        )
        lines.append("| | " + " | ".join(sets) + " |\n|---|" + "---|" * len(sets) + "\n")
        for value in values:
            cells = []
            for s in sets:
                key = f"{s}/{column}/{value}"
                if key + "/n" not in metrics:
                    cells.append("")
                    continue
                cells.append(
                    f"{_cell(metrics, key + '/accuracy')} / {_cell(metrics, key + '/macro_f1')} / "
                    f"{_cell(metrics, key + '/topic_macro_f1')} (n={_count(metrics, key + '/n')})"
                )
            if any(cells):
                lines.append(f"| {value} | " + " | ".join(cells) + " |\n")
    return "".join(lines)
