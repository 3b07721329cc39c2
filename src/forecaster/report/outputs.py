"""Output files of finished results, each written atomically: JSON objects, Parquet tables (and CSV
copies for BI tools), the resolved config. Rendering only: the tables and objects come computed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from forecaster.files import dumps, write_atomic, write_with


def write_parquet(path: Path, table: pa.Table) -> Path:
    return write_with(path, lambda tmp: pq.write_table(table, tmp))


def with_currency(table: pa.Table, currency: str | None) -> pa.Table:
    """The table with a ``currency`` column (the ISO code of every amount in it) when the code is known."""
    if currency is None or "currency" in table.column_names:
        return table
    return table.append_column("currency", pa.array([currency] * table.num_rows, pa.string()))


def write_table(path: Path, table: pa.Table, csv: bool = False, currency: str | None = None) -> list[Path]:
    """A Parquet file, and with ``csv`` the same table as CSV beside it (same name, .csv)."""
    import pyarrow.csv as pcsv

    table = with_currency(table, currency)
    out = [write_parquet(path, table)]
    if csv:
        out.append(write_with(Path(path).with_suffix(".csv"), lambda tmp: pcsv.write_csv(table, tmp)))
    return out


def write_forecast(out_dir: Path, summary: dict[str, Any], tables: dict[str, pa.Table], resolved_config: str,
                   csv: bool = False) -> list[Path]:
    """Each table as ``<name>.parquet`` (trials, deals, group_trials; with ``csv`` also ``<name>.csv``),
    config.resolved.yaml, and summary.json last (each file written atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, table in tables.items():
        written += write_table(out_dir / f"{name}.parquet", table, csv, summary.get("currency"))
    written.append(write_atomic(out_dir / "config.resolved.yaml", resolved_config))
    written.append(write_atomic(out_dir / "summary.json", dumps(summary)))
    return written


def write_result(out_dir: Path, json_name: str, result: dict[str, Any], table: pa.Table | None = None,
                 table_name: str = "", csv: bool = False, currency: str | None = None) -> None:
    """A command's JSON object (and its per-row Parquet table, when given) into ``out_dir``."""
    if table is not None:
        write_table(Path(out_dir) / table_name, table, csv, currency)
    write_atomic(Path(out_dir) / json_name, dumps(result))
