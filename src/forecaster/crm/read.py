"""Reading CRM files as they come: CSV/TSV (delimiter and encoding detected or given, a BOM, quoted
newlines, trailing empty rows), Excel .xlsx (python-calamine) and Parquet (a file, or a directory whose
files disagree on a column's type or presence). Text files are read as text, only the columns asked for;
forecaster parses the values itself (crm.values), so nothing is guessed by a type sniffer.
"""

from __future__ import annotations

import codecs
import csv
import ctypes
import hashlib
import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from forecaster.crm.values import as_strings, mask
from forecaster.errors import DataError

Warn = Callable[[str, int, str], None]
SNIFF_BYTES = 1 << 20
DELIMITERS = (",", ";", "\t", "|")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")


@dataclass(frozen=True)
class Dialect:
    """How a text file is written: its encoding (Python codec name), delimiter and header names."""

    encoding: str
    delimiter: str
    names: tuple[str, ...]


@contextmanager
def one_heap():
    """Arrow's buffers from the system allocator while an export is read, released at the end.

    Reading and parsing leave pyarrow's default pool (mimalloc) holding the freed text of the export, in
    a heap numpy cannot reuse; with one heap and the free pages given back, a 1M-deal CSV loads in about
    half the peak memory (benchmarks/bench_load.py). Buffers made here stay valid after."""
    before = pa.default_memory_pool()
    pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(before)
        pool.release_unused()
        _give_back()


def _give_back() -> None:
    """Return the C heap's free pages to the system (glibc's malloc_trim; elsewhere nothing to do):
    Arrow's system pool does not, and the export's text has just been freed."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _kind(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir() or name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(EXCEL_SUFFIXES):
        return "excel"
    raise DataError(f"{path}: unknown file type (use .csv, .tsv, .xlsx, .parquet or a directory of Parquet files)")


def _decode_sample(raw: bytes, encoding: str | None) -> tuple[str, str]:
    """(encoding, text) of the first bytes of a file: the given encoding, a BOM's, UTF-8, else cp1252."""
    if encoding is None:
        if raw.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = "utf-16"
    candidates = [encoding] if encoding else ["utf-8", "cp1252", "latin-1"]
    for enc in candidates:
        try:
            return enc, codecs.getincrementaldecoder(enc)().decode(raw, final=len(raw) < SNIFF_BYTES)
        except UnicodeDecodeError:
            continue
    raise DataError(f"cannot decode the file as {encoding}")  # latin-1 decodes every byte


def _delimiter(text: str, given: str | None, path: Path) -> str:
    """The delimiter among , ; tab | that splits the header and the first rows into the same number of
    fields, the most of them."""
    if given:
        return given
    if path.name.lower().endswith(".tsv"):
        return "\t"
    lines = text.splitlines()[:20]
    best, best_n = ",", 1
    for d in DELIMITERS:
        try:
            rows = [r for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=d) if r]
        except csv.Error:
            continue
        if not rows or len(rows[0]) <= best_n:
            continue
        body = rows[1:-1] if len(rows) > 2 else rows[1:]  # the last sampled row may be cut short
        if all(len(r) == len(rows[0]) for r in body):
            best, best_n = d, len(rows[0])
    return best


def sniff(path: Path, encoding: str | None = None, delimiter: str | None = None) -> Dialect:
    """The encoding, delimiter and header of a text file, from its first megabyte."""
    with open(path, "rb") as fh:
        raw = fh.read(SNIFF_BYTES)
    if path.name.lower().endswith(".gz"):
        import gzip

        with gzip.open(path, "rb") as fh:
            raw = fh.read(SNIFF_BYTES)
    if not raw.strip():
        raise DataError(f"{path}: the file is empty")
    enc, text = _decode_sample(raw, encoding)
    text = text.lstrip("\ufeff")
    delim = _delimiter(text, delimiter, path)
    header = next(csv.reader(io.StringIO(text), delimiter=delim), [])
    return Dialect(enc, delim, tuple(h.strip() for h in header))


def header(path: Path, what: str, encoding: str | None = None, delimiter: str | None = None) -> tuple[str, ...]:
    """The column names of a file (no rows read); duplicate names are an error naming them."""
    try:
        kind = _kind(path)
        if kind == "csv":
            names = sniff(path, encoding, delimiter).names
        elif kind == "excel":
            names = tuple(_excel_rows(path, header_only=True)[0])
        else:
            names = tuple(_parquet_schema(path).names)
    except DataError as e:
        raise DataError(f"{path}: {what}: {str(e).removeprefix(f'{path}: ')}") from None
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: {what}: cannot read: {_first_line(e)}") from None
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        cols = "; ".join(f"'{d}' (columns {_and([str(i + 1) for i, n in enumerate(names) if n == d])})" for d in dups)
        raise DataError(f"{path}: {what}: duplicate column names: {cols}; rename them in the export")
    if not names or not any(names):
        raise DataError(f"{path}: {what}: the file has no columns")
    return names


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_table(path: Path, what: str, columns: Sequence[str] | None = None, *, allow_no_rows: bool = False,
               encoding: str | None = None, delimiter: str | None = None, warn: Warn | None = None,
               times: Sequence[str] = ()) -> pa.Table:
    """The table of a file: text files as text, Parquet as stored. ``columns``: only these (those
    present; default all). ``times``: CSV columns first tried as ISO timestamps (read as text when any
    value is not one; half the memory of text). ``warn(key, count, message)`` receives counted warnings
    (encoding detected, trailing empty rows ignored, Parquet files missing a column)."""
    names = header(path, what, encoding, delimiter)
    wanted = set(names if columns is None else columns)
    # at least one column is read, so that an empty selection still counts the rows
    use = [n for n in names if n in wanted] or [names[0]]
    warn = warn or (lambda key, count, message: None)
    try:
        kind = _kind(path)
        if kind == "csv":
            table = _read_csv(path, use, encoding, delimiter, warn, [n for n in times if n in use])
        elif kind == "excel":
            table = _read_excel(path, use)
        else:
            table = _read_parquet(path, use, warn)
    except DataError as e:
        raise DataError(f"{path}: {what}: {str(e).removeprefix(f'{path}: ')}") from None
    except (pa.ArrowInvalid, OSError, pa.ArrowException, UnicodeError) as e:
        raise DataError(f"{path}: {what}: cannot read: {_first_line(e)}") from None
    if kind != "parquet":
        table = _drop_trailing_empty(table, path, warn)
    if table.num_rows == 0 and not allow_no_rows:
        raise DataError(f"{path}: {what}: the file has no rows")
    # columns stay in the reader's chunks: combining them all at once would double the table in memory
    return table.select([n for n in table.column_names if n in wanted])


def _read_csv(path: Path, use: list[str], encoding: str | None, delimiter: str | None, warn: Warn,
              times: list[str]) -> pa.Table:
    d = sniff(path, encoding, delimiter)

    def read(enc: str, typed: list[str]) -> pa.Table:
        # Quoted newlines (CRM description columns) in files of any size; empty typed values are null.
        return pacsv.read_csv(
            path,
            # one thread: with quoted newlines the blocks are found serially anyway (measured faster, less memory)
            read_options=pacsv.ReadOptions(encoding="utf8" if enc in ("utf-8", "utf-8-sig") else enc, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=d.delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.timestamp("s") if n in typed else pa.string() for n in use}, include_columns=use,
                strings_can_be_null=False, null_values=[""], timestamp_parsers=[pacsv.ISO8601]),
        )

    enc = d.encoding
    table = None
    if times:
        try:
            table = read(enc, times)
        except pa.ArrowInvalid:
            table = None  # some value is not an ISO timestamp (or not UTF-8): read as text, parsed by forecaster
    if table is None:
        try:
            table = read(enc, [])
        except pa.ArrowInvalid as e:
            if encoding is not None or enc != "utf-8" or "UTF8" not in str(e):
                raise
            enc = "cp1252"  # not UTF-8 past the sampled start: the usual Windows export
            table = read(enc, [])
    if encoding is None and enc not in ("utf-8", "utf-8-sig"):
        warn(f"encoding_{path.name}", 1, f"{path.name} is not UTF-8: read as {enc} (set data.encoding to choose)")
    table = table.rename_columns([n.strip() for n in table.column_names])
    return table


def _drop_trailing_empty(table: pa.Table, path: Path, warn: Warn) -> pa.Table:
    """Spreadsheets often end a file with rows of empty cells: ignore them (counted). Only the end of
    the table is looked at."""
    n = table.num_rows
    if n == 0 or table.num_columns == 0:
        return table
    trailing, step = 0, 256
    while trailing < n:
        lo = max(0, n - trailing - step)
        tail = table.slice(lo, n - trailing - lo)
        blank = np.ones(tail.num_rows, bool)
        for col in tail.columns:
            text = as_strings(col.combine_chunks()).fill_null("")
            blank &= ~mask(pc.match_substring_regex(text, r"\S"))
        run = int(np.argmin(blank[::-1])) if not blank.all() else len(blank)
        trailing += run
        if run < len(blank):
            break
        step *= 4
    if trailing:
        warn(f"empty_rows_{path.name}", trailing, f"empty rows at the end of {path.name} (ignored)")
        table = table.slice(0, n - trailing)
    return table


def _excel_cell(v: object) -> str:
    """A spreadsheet cell as the text a CSV export of it would hold (ISO dates, plain numbers)."""
    import datetime as dt

    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    return str(v)


def _excel_rows(path: Path, header_only: bool = False) -> list[list[object]]:
    from python_calamine import CalamineWorkbook

    try:
        sheet = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0)
        rows = sheet.to_python(skip_empty_area=False, nrows=1 if header_only else None)
    except Exception as e:  # calamine raises its own error types for broken workbooks
        raise DataError(f"{path}: cannot read the workbook: {_first_line(e)}") from None
    if not rows:
        raise DataError(f"{path}: the first sheet is empty")
    rows[0] = [_excel_cell(h).strip() for h in rows[0]]
    while rows[0] and rows[0][-1] == "":
        rows[0].pop()
    return rows


def _read_excel(path: Path, use: list[str]) -> pa.Table:
    rows = _excel_rows(path)
    names = rows[0]
    idx = [names.index(n) for n in use]
    cols = {n: pa.array([_excel_cell(r[i]) if i < len(r) else "" for r in rows[1:]], pa.string())
            for n, i in zip(use, idx)}
    return pa.table(cols) if cols else pa.table({"_": pa.nulls(len(rows) - 1)}).drop(["_"])


# ---------------------------------------------------------------------------------------------
# Parquet: one file, or a directory of files that may disagree


def _parquet_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(PARQUET_SUFFIXES))
    if not files:
        raise DataError(f"{path}: the directory holds no .parquet files")
    return files


def _unified_type(types: list[pa.DataType]) -> pa.DataType | None:
    """One type that holds every file's values of a column without loss, or None when there is none."""
    if all(t == types[0] for t in types):
        return types[0]
    plain = [t.value_type if pa.types.is_dictionary(t) else t for t in types]
    if all(pa.types.is_integer(t) for t in plain):
        return pa.int64()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) for t in plain):
        return pa.float64()
    if all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in plain):
        return pa.string()
    if all(pa.types.is_timestamp(t) or pa.types.is_date(t) for t in plain):
        zones = {t.tz for t in plain if pa.types.is_timestamp(t)}
        return pa.timestamp("us", zones.pop() if len(zones) == 1 else "UTC")
    if all(pa.types.is_null(t) or t == plain[0] for t in plain):
        return plain[0]
    return None


def _parquet_schema(path: Path) -> pa.Schema:
    files = _parquet_files(path)
    schemas = [pq.read_schema(f) for f in files]
    names: list[str] = []
    for s in schemas:
        names += [n for n in s.names if n not in names]
    fields = []
    for name in names:
        present = [(f, s.field(name).type) for f, s in zip(files, schemas) if name in s.names]
        typ = _unified_type([t for _, t in present if not pa.types.is_null(t)] or [pa.null()])
        if typ is None:
            (fa, ta), (fb, tb) = present[0], next((f, t) for f, t in present if t != present[0][1])
            raise DataError(f"{path}: column '{name}' is {ta} in {fa.name} but {tb} in {fb.name}; "
                            f"write the files with one type")
        fields.append(pa.field(name, typ))
    return pa.schema(fields)


def _read_parquet(path: Path, use: list[str], warn: Warn) -> pa.Table:
    files = _parquet_files(path)
    if len(files) == 1:
        return pq.read_table(files[0], columns=use)
    schema = _parquet_schema(path)
    target = pa.schema([schema.field(n) for n in use])
    parts, missing = [], {}
    for f in files:
        have = pq.read_schema(f).names
        t = pq.read_table(f, columns=[n for n in use if n in have])
        cols = []
        for field in target:
            if field.name in have:
                col = t[field.name]
                if pa.types.is_dictionary(col.type) and not pa.types.is_dictionary(field.type):
                    col = col.cast(col.type.value_type)
                cols.append(col.cast(field.type))
            else:
                missing.setdefault(field.name, [f.name, 0])[1] += t.num_rows
                cols.append(pa.nulls(t.num_rows, field.type))
        parts.append(pa.Table.from_arrays(cols, schema=target))
    for name, (first, rows) in missing.items():
        warn(f"missing_{name}", rows, f"rows of Parquet files without column '{name}' (first {first}; read as empty)")
    return pa.concat_tables(parts)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
