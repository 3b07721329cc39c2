"""A validated CRM export as arrays: ``CRMData``, the status codes and counted data warnings.

Dates are int32 day numbers (forecaster.calendar); ``NO_DATE`` marks an empty date.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from forecaster.calendar import NO_DATE

OPEN, WON, LOST = 0, 1, 2
STATUS_NAMES = ("open", "won", "lost")
MISSING_ATTR = "(none)"


@dataclass(frozen=True)
class DataWarning:
    """A counted data warning: processing goes on, the count is kept in output metadata."""

    key: str
    count: int
    message: str

    def line(self) -> str:
        return f"warning: {self.message} ({self.count})"


@dataclass(frozen=True)
class CRMData:
    """A validated CRM export, as arrays.

    Deals (length n): ``deal_id`` str objects, ``created`` / ``closed`` int32 days (closed is NO_DATE
    while open), ``status`` int8 (OPEN/WON/LOST), ``amount`` float64, ``attrs`` pyarrow table of the
    attribute columns as strings. History (length m, sorted by deal, date, file order; open stages only,
    consecutive repeats of a stage merged): ``h_deal`` int32 index into deals, ``h_stage`` int16 index
    into ``stages``, ``h_entered`` int32 days.
    """

    deal_id: np.ndarray
    created: np.ndarray
    closed: np.ndarray
    status: np.ndarray
    amount: np.ndarray
    attrs: pa.Table
    h_deal: np.ndarray
    h_stage: np.ndarray
    h_entered: np.ndarray
    stages: tuple[str, ...]
    deal_level: bool
    warnings: tuple[DataWarning, ...]
    fingerprint: str
    sources: tuple[str, ...]

    @property
    def n_deals(self) -> int:
        return len(self.deal_id)

    def last_day(self) -> int:
        """The latest date anywhere in the data."""
        days = [self.created.max(initial=NO_DATE), self.closed.max(initial=NO_DATE)]
        if len(self.h_entered):
            days.append(self.h_entered.max())
        return int(max(days))

    def warning_counts(self) -> dict[str, int]:
        return {w.key: w.count for w in self.warnings}

    def info(self) -> ExportInfo:
        return ExportInfo(sources=self.sources, fingerprint=self.fingerprint, n_deals=self.n_deals,
                          n_history_rows=len(self.h_deal), deal_level=self.deal_level,
                          first_created=int(self.created.min()) if self.n_deals else NO_DATE,
                          last_day=self.last_day())


@dataclass(frozen=True)
class ExportInfo:
    """What an export holds, without its rows: the files, their fingerprint, how many deals and stage rows,
    the first creation day and the latest day in it (day numbers)."""

    sources: tuple[str, ...]
    fingerprint: str
    n_deals: int
    n_history_rows: int
    deal_level: bool
    first_created: int
    last_day: int

