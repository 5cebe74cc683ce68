"""The hand-written multilingual feedback dev set (evaluation and model selection only, never training).

`load_devset` reads and validates `dev.tsv`; `describe_devset` renders its count tables as Markdown;
`python -m churnsense.feedback.devset --write-readme` refreshes the tables in README.md
(`--check-readme` exits non-zero when they are stale).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

import pandas as pd

from churnsense.data.contract import DOMAINS, LANGUAGES, PHENOMENA, SENTIMENTS, TOPICS

DEVSET = Path(__file__).with_name("dev.tsv")
README = Path(__file__).with_name("README.md")
COLUMNS = ("language", "sentiment", "topic", "domain", "phenomena", "text")
DIRECTIONAL = ("sarcasm", "negation", "mixed_stance", "polite_complaint", "loaded_neutral")
LABELS = {"language": LANGUAGES, "sentiment": SENTIMENTS, "topic": TOPICS, "domain": DOMAINS}
BEGIN, END = "<!-- counts:begin -->", "<!-- counts:end -->"


def _fail(path: Path, line: int | None, column: str | None, why: str) -> None:
    where = f"{path}" + (f", line {line}" if line is not None else "") + (f", column {column!r}" if column else "")
    raise ValueError(f"{where}: {why}")


def load_devset(path: Path = DEVSET) -> pd.DataFrame:
    """Read the dev set (UTF-8 TSV, no quoting) and check header, labels, tags and texts; ValueError names the line."""
    df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False, encoding="utf-8")
    if tuple(df.columns) != COLUMNS:
        _fail(path, 1, None, f"header must be {list(COLUMNS)}, got {list(df.columns)}")
    for i, row in enumerate(df.itertuples(index=False), start=2):  # line 1 is the header
        for column, allowed in LABELS.items():
            if getattr(row, column) not in allowed:
                _fail(path, i, column, f"{getattr(row, column)!r} is not one of {list(allowed)}")
        tags = row.phenomena.split(";")
        unknown = [t for t in tags if t not in PHENOMENA]
        if unknown or not row.phenomena:
            _fail(
                path, i, "phenomena", f"unknown or empty tags {unknown or [row.phenomena]}; allowed {list(PHENOMENA)}"
            )
        if not row.text.strip():
            _fail(path, i, "text", "empty text")
    dup = df["text"].duplicated(keep="first")
    if dup.any():
        first = int(dup.to_numpy().argmax())
        _fail(path, first + 2, "text", f"duplicate text {df['text'].iloc[first]!r}")
    return df


def _markdown(table: pd.DataFrame, index_name: str) -> str:
    head = f"| {index_name} | " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * (len(table.columns) + 1)
    rows = [f"| {idx} | " + " | ".join(str(v) for v in vals) + " |" for idx, vals in zip(table.index, table.to_numpy())]
    return "\n".join([head, rule, *rows])


def describe_devset(df: pd.DataFrame) -> str:
    """Markdown tables: language x sentiment, phenomenon x language, phenomenon x sentiment, domain, topic."""
    lang = pd.Categorical(df["language"], categories=LANGUAGES)
    sent = pd.crosstab(
        lang, pd.Categorical(df["sentiment"], categories=SENTIMENTS), margins=True, margins_name="all", dropna=False
    )
    tags = df.assign(tag=df["phenomena"].str.split(";")).explode("tag")
    phen = pd.crosstab(
        pd.Categorical(tags["tag"], categories=PHENOMENA),
        pd.Categorical(tags["language"], categories=LANGUAGES),
        dropna=False,
    )
    dom = pd.crosstab(pd.Categorical(df["domain"], categories=DOMAINS), lang, dropna=False)
    top = pd.crosstab(pd.Categorical(df["topic"], categories=TOPICS), lang, dropna=False)
    hard = tags[tags["tag"].isin(DIRECTIONAL)]
    keys = [f"{t} / {s}" for t in DIRECTIONAL for s in SENTIMENTS]
    direction = pd.crosstab(
        pd.Categorical(hard["tag"] + " / " + hard["sentiment"], categories=keys),
        pd.Categorical(hard["language"], categories=LANGUAGES),
        dropna=False,
    )
    direction = direction[direction.sum(axis=1) > 0]
    return "\n\n".join(
        [
            f"Rows: {len(df)}.",
            "Language x sentiment:",
            _markdown(sent, "language"),
            "Phenomenon x language (a row can carry several tags):",
            _markdown(phen, "phenomenon"),
            "Stance-bearing phenomena by sentiment (both directions of sarcasm, negation, mixed stance):",
            _markdown(direction, "phenomenon / sentiment"),
            "Domain x language:",
            _markdown(dom, "domain"),
            "Topic x language:",
            _markdown(top, "topic"),
        ]
    )


def _with_tables(readme: str, tables: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        raise ValueError(f"{README}: markers {BEGIN} ... {END} not found")
    return pattern.sub(lambda _: f"{BEGIN}\n{tables}\n{END}", readme)


def readme_is_current(path: Path = DEVSET, readme: Path = README) -> bool:
    """True when the count tables in README.md match the dev set file."""
    text = readme.read_text(encoding="utf-8")
    return _with_tables(text, describe_devset(load_devset(path))) == text


def main(argv: list[str] | None = None) -> int:
    """CLI: print the tables, or write / check them in README.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write-readme", action="store_true", help="replace the tables between the README markers")
    group.add_argument("--check-readme", action="store_true", help="exit 1 when the README tables are stale")
    args = parser.parse_args(argv)
    if args.check_readme:
        ok = readme_is_current()
        print("README counts are current" if ok else "README counts are stale: run with --write-readme")
        return 0 if ok else 1
    tables = describe_devset(load_devset())
    if args.write_readme:
        README.write_text(_with_tables(README.read_text(encoding="utf-8"), tables), encoding="utf-8")
    else:
        print(tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
