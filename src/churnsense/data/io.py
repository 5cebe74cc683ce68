"""Read and write CSV / Parquet by file extension, whole or in chunks."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churnsense.data.public import resolve_path

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


def iter_table(path: str, chunk_size: int, columns: list[str] | None = None,
               read_options: Mapping[str, Any] | None = None,
               str_columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """Yield chunks of about `chunk_size` rows (memory bounded)."""
    p = resolve_path(path)
    if is_parquet(p):
        with pq.ParquetFile(p) as f:
            for batch in f.iter_batches(batch_size=chunk_size, columns=columns):
                yield batch.to_pandas()
        return
    opts = dict(read_options or {})
    if str_columns:
        opts.setdefault("dtype", {}).update({c: str for c in str_columns})
    yield from pd.read_csv(p, usecols=columns, chunksize=chunk_size, **opts)


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write CSV or Parquet by extension (parent directory created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if is_parquet(p):
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), p)
    else:
        df.to_csv(p, index=False)
