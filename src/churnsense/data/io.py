"""Read and write whole CSV / Parquet tables by file extension (training side; serving streams via serving.io)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churnsense.core.locate import resolve_path

PARQUET = (".parquet", ".pq")


def is_parquet(path: str | Path) -> bool:
    return str(path).lower().endswith(PARQUET)


def read_table(path: str, columns: list[str] | None = None, read_options: Mapping[str, Any] | None = None,
               str_columns: list[str] | None = None) -> pd.DataFrame:
    """Read one file (CSV/TXT or Parquet). `str_columns` are read as text (ids keep leading zeros)."""
    p = resolve_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if is_parquet(p):
        return pd.read_parquet(p, columns=columns)
    opts = dict(read_options or {})
    if str_columns:
        opts.setdefault("dtype", {}).update({c: str for c in str_columns})
    return pd.read_csv(p, usecols=columns, **opts)


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write CSV or Parquet by extension (parent directory created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if is_parquet(p):
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), p)
    else:
        df.to_csv(p, index=False)
