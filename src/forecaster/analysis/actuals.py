"""What really happened, read from the CRM export: won revenue and deals in a date range, and what the
current quarter has already won before the forecast date (the report's "won to date")."""

from __future__ import annotations

import datetime as dt
from typing import Any

from forecaster.calendar import period_bounds, quarter_start, to_day
from forecaster.crm import WON, CRMData


def won_between(full: CRMData, first_day: int, last_day: int) -> tuple[float, int]:
    """Won revenue and won deals with a close day in [first_day, last_day] (day numbers), from the export."""
    won = (full.status == WON) & (full.closed >= first_day) & (full.closed <= last_day)
    return float(full.amount[won].sum()), int(won.sum())


def actuals(full: CRMData, first: dt.date, last: dt.date) -> tuple[float, int]:
    """Won revenue and won deals with a close date in [first, last], from the full export."""
    return won_between(full, to_day(first), to_day(last))


def won_to_date(data: CRMData, as_of: dt.date, start: dt.date) -> dict[str, Any] | None:
    """``{"since", "revenue", "won_deals"}``: deals won in [quarter start, as_of) when the calendar quarter
    of the window's start began before as_of, else None. ``data`` may be a snapshot as of ``as_of`` (it
    knows every deal closed before as_of)."""
    since = quarter_start(start)
    if since >= as_of:
        return None
    revenue, wins = actuals(data, since, as_of - dt.timedelta(days=1))
    return {"since": since.isoformat(), "revenue": revenue, "won_deals": wins}


def won_by_week(data: CRMData, since: dt.date, as_of: dt.date) -> list[dict[str, Any]]:
    """Cumulative won revenue and deals at the end of each calendar week (Monday to Sunday) from
    ``since`` to the day before ``as_of``: ``[{"end": date, "revenue", "won_deals"}]``, the last week
    cut at as_of - 1."""
    if since >= as_of:
        return []
    out, revenue, wins = [], 0.0, 0
    for first, last in period_bounds(since, as_of - dt.timedelta(days=1), "week"):
        r, w = actuals(data, first, last)
        revenue, wins = revenue + r, wins + w
        out.append({"end": last.isoformat(), "revenue": revenue, "won_deals": wins})
    return out

