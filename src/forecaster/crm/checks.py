"""Problems and counted warnings while a CRM export is validated: one line per problem, naming the file,
column, row and deal; warnings counted, never silent."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pyarrow as pa

from forecaster.config import DataConfig
from forecaster.crm.export import DataWarning
from forecaster.errors import DataError, Problems, suggest


class Collector:
    """Problems and counted warnings while loading; row-level problems name the deal."""

    def __init__(self) -> None:
        self.problems = Problems(DataError)
        self.warnings: dict[str, DataWarning] = {}

    def warn(self, key: str, count: int, message: str) -> None:
        if count:
            self.warnings[key] = DataWarning(key, int(count), message)

    def rows(self, mask: np.ndarray, ids: np.ndarray | None, prefix: str, what: str, values=None,
             hint: Callable[[object], str] | None = None) -> None:
        """One problem line per bad row (the CLI shows the first 20 and a count); ``hint(value)``: what to do."""
        for i in np.flatnonzero(mask):
            deal_id = py_value(ids[i]) if ids is not None else None
            deal = f" (deal '{deal_id}')" if deal_id is not None else ""
            value = py_value(values[i]) if values is not None else None
            val = f": {value!r}" if values is not None else ""
            self.problems.add(f"{prefix}: row {i + 1}{deal}: {what}{val}{hint(value) if hint else ''}")


def py_value(x: object) -> object:
    """A Python value from an arrow scalar or numpy element (for messages only)."""
    if isinstance(x, pa.Scalar):
        return x.as_py()
    return x.item() if isinstance(x, np.generic) else x


def rows_by_value(mask: np.ndarray, values) -> dict[object, list[int]]:
    """The rows flagged by ``mask``, grouped by their value (in order of first appearance)."""
    out: dict[object, list[int]] = {}
    for i in np.flatnonzero(mask):
        out.setdefault(py_value(values[i]), []).append(int(i))
    return out


def unknown_values(probs: Problems, mask: np.ndarray, values, ids, label: str, noun: str, known: list[str],
                   hint: str) -> None:
    """One problem line per distinct unknown value: how many rows, the first row and deal, the closest
    known value and what to do."""
    for value, rows in rows_by_value(mask, values).items():
        what = f"empty {noun.split()[0]}" if value is None else f"unknown {noun} '{value}'"
        probs.add(f"{label}: {what} in {len(rows)} row(s), first row {rows[0] + 1} (deal '{py_value(ids[rows[0]])}')"
                  f"{suggest(value, known) if value else ''}; {hint}")


def col_label(cfg: DataConfig, canonical: str) -> str:
    """"column 'CRM name' (canonical name)" for messages."""
    real = cfg.column(canonical)
    plain = canonical.removeprefix("history_")
    return f"column '{real}'" + (f" ({plain})" if real != plain else "")


def require(columns: Sequence[str], path, cfg: DataConfig, names: tuple[str, ...], probs: Problems) -> bool:
    """Every canonical column in ``names`` is among ``columns`` (under its mapped name); one problem per
    missing one."""
    ok = True
    for canonical in names:
        real = cfg.column(canonical)
        if real not in columns:
            plain = canonical.removeprefix("history_")
            if cfg.format != "generic":
                mapped = f" (the {cfg.format} name of '{plain}'; another is set with data.columns.{canonical})"
            else:
                mapped = f" (mapped from '{plain}' in data.columns)" if real != canonical else ""
            probs.add(f"{path}: missing required column '{real}'{mapped}{suggest(real, columns)}")
            ok = False
    return ok
