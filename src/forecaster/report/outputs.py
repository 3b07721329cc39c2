"""Output files of finished results, each written atomically: JSON objects, Parquet tables, the resolved
config. Rendering only: the tables and objects come computed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from forecaster.files import dumps, write_atomic, write_with


def write_parquet(path: Path, table: pa.Table) -> Path:
    return write_with(path, lambda tmp: pq.write_table(table, tmp))


def write_forecast(out_dir: Path, summary: dict[str, Any], trials: pa.Table, deals: pa.Table,
                   resolved_config: str) -> list[Path]:
    """trials.parquet, deals.parquet, config.resolved.yaml, summary.json (each written atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_parquet(out_dir / "trials.parquet", trials),
        write_parquet(out_dir / "deals.parquet", deals),
        write_atomic(out_dir / "config.resolved.yaml", resolved_config),
        write_atomic(out_dir / "summary.json", dumps(summary)),
    ]


def write_result(out_dir: Path, json_name: str, result: dict[str, Any], table: pa.Table | None = None,
                 table_name: str = "") -> None:
    """A command's JSON object (and its per-row Parquet table, when given) into ``out_dir``."""
    if table is not None:
        write_parquet(Path(out_dir) / table_name, table)
    write_atomic(Path(out_dir) / json_name, dumps(result))
