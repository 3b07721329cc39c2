"""Every date rule in one place: day numbers, weekdays, months of the quarter, calendar periods.

Dates travel through the package as int32 *day numbers* (days since 1970-01-01); ``NO_DATE`` marks an
empty date. Inside a simulation, days are offsets from the as-of day (day 0).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

EPOCH = dt.date(1970, 1, 1)
NO_DATE = np.iinfo(np.int32).min
PERIODS = ("week", "month", "quarter")


def to_day(d: dt.date) -> int:
    """Day number of a date (days since 1970-01-01)."""
    return (d - EPOCH).days


def to_date(day: int) -> dt.date:
    """The date of a day number."""
    return EPOCH + dt.timedelta(days=int(day))


def as_date(value: Any) -> dt.date | None:
    """A date, datetime or ISO 'YYYY-MM-DD' text as a date; None when it is none of these."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def weekday(days: np.ndarray) -> np.ndarray:
    """int64 weekday of day numbers, Monday = 0 .. Sunday = 6 (1970-01-01 was a Thursday)."""
    return ((np.asarray(days, np.int64) + 3) % 7).astype(np.int64)


def month_number(days: np.ndarray) -> np.ndarray:
    """int64 months since 1970-01 of day numbers."""
    return np.asarray(days, np.int64).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def month_start(month: int) -> dt.date:
    """First day of a month given as months since 1970-01."""
    return dt.date(1970 + int(month) // 12, int(month) % 12 + 1, 1)


def month_of_quarter(days: np.ndarray, fiscal_year_start: int = 1) -> np.ndarray:
    """int64 month of the (fiscal) quarter of day numbers: 0, 1 or 2. ``fiscal_year_start``: the month
    (1-12) the fiscal year begins in; quarters start every three months from it (1: calendar quarters)."""
    return ((month_number(days) - (fiscal_year_start - 1)) % 3).astype(np.int64)


def quarter_bounds(d: dt.date, fiscal_year_start: int = 1) -> tuple[dt.date, dt.date]:
    """First and last day of the (fiscal) quarter containing d."""
    months_in = (d.month - fiscal_year_start) % 3
    first = add_months(dt.date(d.year, d.month, 1), -months_in)
    return first, add_months(first, 3) - dt.timedelta(days=1)


def calendar_days(as_of_day: int, end_off: int, fiscal_year_start: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(weekday, month of the fiscal quarter) int32 [end_off + 1] of the day offsets 0 .. end_off from
    ``as_of_day``."""
    days = np.arange(as_of_day, as_of_day + end_off + 1, dtype=np.int64)
    return weekday(days).astype(np.int32), month_of_quarter(days, fiscal_year_start).astype(np.int32)


def add_months(d: dt.date, months: int) -> dt.date:
    """The same day ``months`` calendar months later (clamped to the month's last day)."""
    y, m = divmod(d.month - 1 + months, 12)
    y += d.year
    last = (dt.date(y + (m + 1) // 12, (m + 1) % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(y, m + 1, min(d.day, last))


def step(d: dt.date, every: str) -> dt.date:
    """One week, month or quarter after d."""
    return {"week": lambda: d + dt.timedelta(days=7), "month": lambda: add_months(d, 1),
            "quarter": lambda: add_months(d, 3)}[every]()


def window_end(d: dt.date, window: str) -> dt.date | None:
    """Last day of the window starting on d: 'Nd' days, or one calendar month / quarter; None when the
    text is none of these."""
    if window == "month":
        return add_months(d, 1) - dt.timedelta(days=1)
    if window == "quarter":
        return add_months(d, 3) - dt.timedelta(days=1)
    if window.endswith("d") and window[:-1].isdigit() and int(window[:-1]) > 0:
        return d + dt.timedelta(days=int(window[:-1]) - 1)
    return None


def period_bounds(start: dt.date, end: dt.date, period: str, fiscal_year_start: int = 1) -> list[tuple[dt.date, dt.date]]:
    """Calendar periods (weeks from Monday, months, fiscal quarters) cut to the window [start, end]."""
    out = []
    cur = start
    while cur <= end:
        if period == "week":
            nxt = cur + dt.timedelta(days=7 - cur.weekday())
        elif period == "month":
            nxt = dt.date(cur.year + cur.month // 12, cur.month % 12 + 1, 1)
        elif period == "quarter":
            nxt = quarter_bounds(cur, fiscal_year_start)[1] + dt.timedelta(days=1)
        else:
            raise ValueError(f"unknown period {period!r}")
        last = min(nxt - dt.timedelta(days=1), end)
        out.append((cur, last))
        cur = last + dt.timedelta(days=1)
    return out


def quarter_start(d: dt.date) -> dt.date:
    """First day of the calendar quarter that contains d."""
    return dt.date(d.year, (d.month - 1) // 3 * 3 + 1, 1)

