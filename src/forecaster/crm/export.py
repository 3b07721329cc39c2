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
class FieldHistory:
    """What the CRM said about each deal over time, one row per stage-history row (edit rows included,
    sorted by deal and time): ``deal`` int32, ``day`` int32, ``expected_close`` int32 (NO_DATE: not given),
    ``probability`` float64 (NaN: not given), ``category`` object (None: not given). ``has_*``: whether the
    history holds that field at all (else the deals table's current value is the only one known)."""

    deal: np.ndarray
    day: np.ndarray
    expected_close: np.ndarray
    probability: np.ndarray
    category: np.ndarray
    has_expected_close: bool
    has_probability: bool
    has_category: bool

    def take(self, rows: np.ndarray, new_deal: np.ndarray) -> FieldHistory:
        """Rows ``rows`` with their deal indices replaced by ``new_deal``."""
        return FieldHistory(new_deal.astype(np.int32), self.day[rows], self.expected_close[rows],
                            self.probability[rows], self.category[rows], self.has_expected_close,
                            self.has_probability, self.has_category)


@dataclass(frozen=True)
class CRMData:
    """A validated CRM export, as arrays.

    Deals (length n): ``deal_id`` numpy StringDType (each element a str), ``created`` / ``closed`` int32 days (closed is NO_DATE
    while open; the day the deal entered its won/lost stage when the history says so), ``status`` int8
    (OPEN/WON/LOST), ``amount`` float64 (in ``currency``, the output currency; None when the export names
    none), ``attrs`` pyarrow table of the attribute columns as strings.
    What the CRM says about each deal (as of the snapshot's date in a Snapshot; the export's latest in a
    CRMData): ``expected_close`` int32 days (the rep's expected close date; NO_DATE when unknown),
    ``crm_probability`` float64 in [0, 1] (NaN when unknown), ``forecast_category`` object (str or None),
    ``close_pushes`` / ``close_push_days`` int32 (how many times and by how many days in all the expected
    close date was moved later; 0 when the export cannot tell); ``fields``: their history.
    History (length m, sorted by deal, time, file order; consecutive repeats of a stage merged):
    ``h_deal`` int32 index into deals, ``h_stage`` int16 index into ``stages`` - or ``len(stages)`` (won)
    / ``len(stages) + 1`` (lost) for a closing the deal was later reopened from (always followed by a row
    of an open stage) - and ``h_entered`` int32 days.
    """

    deal_id: np.ndarray
    created: np.ndarray
    closed: np.ndarray
    status: np.ndarray
    amount: np.ndarray
    attrs: pa.Table
    expected_close: np.ndarray
    crm_probability: np.ndarray
    forecast_category: np.ndarray
    close_pushes: np.ndarray
    close_push_days: np.ndarray
    currency: str | None
    fields: FieldHistory | None
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

