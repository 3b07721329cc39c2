"""The deals a manager should look at this week, each with its reasons in words.

Four reasons, from the forecast's deals table (analysis.summary.deals_table) and its spread
(analysis.spread):

- ``slip_risk``: the CRM's expected close date lies inside the window, but the model wins the deal inside
  the window in fewer than ``SLIP_P_WIN`` (one in four) of its trials. A close date in the window is the
  rep saying "this quarter"; below one in four the model disagrees strongly, and the number is at risk.
- ``pushed``: the expected close date was moved later ``PUSHED_TIMES`` times or more (a deal whose date
  keeps sliding rarely closes on the next one).
- ``stale``: older in its stage than the 90th percentile of the stage's fitted time in stage (the funnel's
  stale rule, deals.parquet ``stale``).
- ``range``: among the ``RANGE_DEALS`` deals with the largest share of the variance of window revenue
  (``spread.deals``), those that carry a positive share: the deals that decide where in the range the
  quarter lands.

Of each reason the ``PER_REASON`` largest deals (by amount; ``range`` by share) are listed, each deal once
with all its reasons; the counts of every flagged deal per reason are kept.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

SLIP_P_WIN = 0.25
PUSHED_TIMES = 3
RANGE_DEALS = 5
PER_REASON = 10
REASONS = ("slip_risk", "pushed", "stale", "range")


def _date(v: Any) -> dt.date | None:
    return v if isinstance(v, dt.date) else None


def _reasons(row: dict[str, Any], start: dt.date, end: dt.date, share: float | None) -> dict[str, str]:
    """The reasons that apply to one deals-table row, each with its sentence."""
    out = {}
    close = _date(row.get("crm_expected_close"))
    if close is not None and start <= close <= end and row["p_win"] < SLIP_P_WIN:
        out["slip_risk"] = (f"CRM close date {close} is inside the window, but the deal is won inside it in only "
                            f"{100 * row['p_win']:.1f}% of trials")
    pushes = int(row.get("close_pushes") or 0)
    if pushes >= PUSHED_TIMES:
        days = int(row.get("close_push_days") or 0)
        out["pushed"] = f"close date pushed {pushes} times ({days:,} days in all)"
    if row.get("stale"):
        out["stale"] = f"{row['age_days']:,} days in {row['stage']}, longer than 90% of stays in that stage"
    if share is not None:
        out["range"] = f"carries {100 * share:.1f}% of the variance of window revenue"
    return out


def range_shares(spread: dict[str, Any] | None) -> dict[str, float]:
    """deal_id -> share of the variance, for the ``RANGE_DEALS`` deals of largest positive share."""
    if not spread:
        return {}
    rows = sorted((r for r in spread["deals"] if r["share"] > 0), key=lambda r: (-r["share"], r["deal_id"]))
    return {r["deal_id"]: r["share"] for r in rows[:RANGE_DEALS]}


def inspect_deals(deals: pa.Table, start: dt.date, end: dt.date, spread: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """summary.json's ``inspect``: ``{"rules", "flagged": {reason: deals}, "deals": [rows]}`` for the open
    deals of a forecast of the window [start, end] (``deals``: its deals table)."""
    shares = range_shares(spread)
    flagged: dict[str, list[tuple[float, str, dict[str, Any]]]] = {r: [] for r in REASONS}
    for row in deals.to_pylist():
        share = shares.get(str(row["deal_id"]))
        reasons = _reasons(row, start, end, share)
        for code in reasons:
            key = -share if code == "range" and share is not None else -row["amount"]
            flagged[code].append((key, str(row["deal_id"]), {**row, "_why": reasons}))
    picked: dict[str, dict[str, Any]] = {}
    for code in REASONS:
        for _, deal_id, row in sorted(flagged[code], key=lambda x: (x[0], x[1]))[:PER_REASON]:
            picked[deal_id] = row
    rows = [_row(r, shares.get(d)) for d, r in picked.items()]
    rows.sort(key=lambda r: (-r["amount"], r["deal_id"]))
    return {"rules": {"slip_p_win_below": SLIP_P_WIN, "pushed_at_least": PUSHED_TIMES, "stale": "age in stage above "
                      "the stage's P90", "range_deals": RANGE_DEALS, "per_reason": PER_REASON},
            "flagged": {code: len(v) for code, v in flagged.items()}, "deals": rows}


def _row(r: dict[str, Any], share: float | None) -> dict[str, Any]:
    close = _date(r.get("crm_expected_close"))
    why = r["_why"]
    return {"deal_id": str(r["deal_id"]), "stage": r["stage"], "age_days": int(r["age_days"]),
            "amount": float(r["amount"]), "p_win": float(r["p_win"]), "expected_revenue": float(r["expected_revenue"]),
            "crm_expected_close": close.isoformat() if close else None, "close_pushes": int(r.get("close_pushes") or 0),
            "stale": bool(r.get("stale")), "variance_share": share, "reasons": list(why),
            "why": "; ".join(why.values())}


__all__ = ["PUSHED_TIMES", "REASONS", "SLIP_P_WIN", "inspect_deals", "range_shares"]
