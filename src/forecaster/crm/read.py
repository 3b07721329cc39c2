"""Reading CRM files and parsing their values: Parquet (file or directory) and CSV/TSV as text, dates
and numbers vectorised with pyarrow compute."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from forecaster.calendar import NO_DATE
from forecaster.errors import DataError


# ---------------------------------------------------------------------------------------------
# Reading files


def read_table(path: Path, what: str, allow_no_rows: bool = False) -> pa.Table:
    """Parquet (file or directory dataset) or CSV/TSV (every column read as text)."""
    name = path.name.lower()
    try:
        if path.is_dir() or name.endswith((".parquet", ".pq")):
            table = pq.read_table(path)
        elif name.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            delim = "\t" if name.endswith(".tsv") else ","
            first = pacsv.open_csv(path, parse_options=pacsv.ParseOptions(delimiter=delim))
            names = first.schema.names
            first.close()
            table = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(delimiter=delim),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names}, strings_can_be_null=False
                ),
            )
        else:
            raise DataError(f"{path}: {what}: unknown file type (use .parquet, .csv or a directory of Parquet files)")
    except DataError:
        raise
    except (pa.ArrowInvalid, OSError, pa.ArrowException) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Empty CSV file" in msg:
            raise DataError(f"{path}: {what}: the file is empty") from None
        raise DataError(f"{path}: {what}: cannot read: {msg}") from None
    if table.num_columns == 0:
        raise DataError(f"{path}: {what}: the file has no columns")
    if table.num_rows == 0 and not allow_no_rows:
        raise DataError(f"{path}: {what}: the file has no rows")
    return table.combine_chunks()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Value parsing (vectorised with pyarrow compute)


def blank_to_null(a: pa.Array) -> pa.Array:
    a = pc.utf8_trim_whitespace(a)
    return pc.if_else(pc.equal(a, ""), pa.scalar(None, pa.string()), a)


_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%d %H:%M%z",
    "%Y/%m/%d",
)


def parse_dates(a: pa.Array, date_format: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Any date-like column -> (int32 days UTC with NO_DATE for empty, bool mask of unparseable)."""
    n = len(a)
    t = a.type
    if pa.types.is_dictionary(t):
        a = a.dictionary_decode()
        t = a.type
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            a = pc.cast(a, pa.timestamp(t.unit, "UTC"))
        a = pc.cast(pc.cast(a, pa.timestamp(t.unit)), pa.date32())
        t = a.type
    if pa.types.is_date(t):
        a = pc.cast(a, pa.date32())
        days = pc.cast(a.cast(pa.int32()), pa.int32()).to_numpy(zero_copy_only=False)
        days = np.where(pc.is_null(a).to_numpy(zero_copy_only=False), NO_DATE, days).astype(np.int32)
        return days, np.zeros(n, bool)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return np.full(n, NO_DATE, np.int32), ~pc.is_null(a).to_numpy(zero_copy_only=False)
    s = blank_to_null(pc.cast(a, pa.string()))
    empty = pc.is_null(s).to_numpy(zero_copy_only=False)
    if date_format:
        formats: Iterable[str] = (date_format,)
    else:
        s = pc.replace_substring_regex(s, r"^(\d{4}-\d{2}-\d{2})T", r"\1 ")
        s = pc.replace_substring_regex(s, r"(\d{2}:\d{2}:\d{2})\.\d+", r"\1")
        s = pc.replace_substring_regex(s, r"\s+(Z|[+-]\d{2}:?\d{2})$", r"\1")
        formats = _DATE_FORMATS
    days = np.full(n, NO_DATE, np.int64)
    todo = ~empty
    for f in formats:
        if not todo.any():
            break
        parsed = pc.strptime(s, format=f, unit="s", error_is_null=True)
        if parsed.type.tz is not None:
            parsed = pc.cast(parsed, pa.timestamp("s", "UTC"))
        secs = pc.cast(pc.cast(parsed, pa.timestamp("s")), pa.int64())
        ok = ~pc.is_null(secs).to_numpy(zero_copy_only=False) & todo
        vals = secs.to_numpy(zero_copy_only=False)
        days[ok] = np.floor_divide(vals[ok].astype(np.int64), 86400)
        todo &= ~ok
    return days.astype(np.int32), todo


def parse_numbers(a: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numeric or text column -> (float64 values, mask empty, mask not a number)."""
    n = len(a)
    if pa.types.is_integer(a.type) or pa.types.is_floating(a.type) or pa.types.is_decimal(a.type):
        v = pc.cast(a, pa.float64())
        empty = pc.is_null(v).to_numpy(zero_copy_only=False)
        vals = v.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isfinite(vals)
        return np.where(bad, 0.0, vals), empty, bad
    s = blank_to_null(pc.cast(a, pa.string()))
    empty = pc.is_null(s).to_numpy(zero_copy_only=False)
    ok = pc.match_substring_regex(s, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$").fill_null(False)
    okn = ok.to_numpy(zero_copy_only=False)
    vals = np.zeros(n, np.float64)
    if okn.any():
        vals[okn] = pc.cast(pc.filter(s, ok), pa.float64()).to_numpy(zero_copy_only=False)
    return vals, empty, ~empty & ~okn


def as_strings(a: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(a.type):
        a = a.dictionary_decode()
    if not (pa.types.is_string(a.type) or pa.types.is_large_string(a.type)):
        a = pc.cast(a, pa.string())
    return pc.cast(a, pa.string())
