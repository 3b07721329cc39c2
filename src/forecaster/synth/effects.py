"""What real pipelines have and the plain generator does not, as switches (all off by default).

- ``quarter_end_push``: that share of wins that would come before the last ``push_days`` days of their
  calendar quarter is delayed to a uniform day among them (reps push deals to the quarter end).
- ``quarter_shock``: per calendar quarter one factor exp(sd Z) on the odds of losing, shared by every
  spell that starts in that quarter (whole quarters go well or badly together).
- ``win_drift``: the log odds of losing change by this much per year (a slow drift in win rates).
- ``crm_start``: the CRM was adopted on this date: deals closed before it are not in the export, and a
  deal open then is recorded from that day in the stage it was in (left truncation of history).
- ``optimistic_close``: each deal's expected close date is set at creation to created + this share of its
  product's median cycle; when the date passes while the deal is open, the rep pushes it by 14 to 45 days
  (each push a history row of the same stage with the new date); a won deal's date becomes its close.
- ``stale_close_dates``: that share of lost deals keep their last expected close date instead of the close.
- ``crm_probability``: every history row and deal carries the stage's CRM probability (Salesforce's default
  ladder) and forecast category.

Each is recorded in truth.json (``effects``), with the realised quarter shocks. Effect draws use their own
random streams, so switching an effect off leaves the plain generator's files byte for byte as they were.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from forecaster.calendar import month_number, to_date, to_day

# Salesforce's default stage probabilities, mapped onto the generator's stages (in [0, 1]).
STAGE_PROBABILITY = {"prospecting": 0.10, "qualification": 0.20, "discovery": 0.30, "demo": 0.40,
                     "proposal": 0.60, "negotiation": 0.80}
PUSH_MIN_DAYS, PUSH_MAX_DAYS = 14, 45


@dataclass(frozen=True)
class Effects:
    quarter_end_push: float = 0.0
    push_days: int = 10
    quarter_shock: float = 0.0
    win_drift: float = 0.0
    crm_start: dt.date | None = None
    optimistic_close: float = 0.0
    stale_close_dates: float = 0.0
    crm_probability: bool = False

    @property
    def crm_fields(self) -> bool:
        """Whether the export carries expected close dates and/or CRM probabilities."""
        return self.optimistic_close > 0 or self.crm_probability

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["crm_start"] = self.crm_start.isoformat() if self.crm_start else None
        return d


def realistic(start: dt.date, end: dt.date | None = None) -> Effects:
    """Every effect on, at strengths seen in real pipelines (the CRM adopted half a year in, or a quarter of
    the way through a shorter history)."""
    days = 182 if end is None else min(182, max(1, (end - start).days // 4))
    return Effects(quarter_end_push=0.35, push_days=10, quarter_shock=0.3, win_drift=0.1,
                   crm_start=start + dt.timedelta(days=days), optimistic_close=0.6, stale_close_dates=0.5,
                   crm_probability=True)


def quarter_index(days: np.ndarray) -> np.ndarray:
    """int64 calendar quarters since 1970 of day numbers."""
    return month_number(days) // 3


def quarter_last_day(days: np.ndarray) -> np.ndarray:
    """int64 day number of the last day of the calendar quarter containing each day."""
    q = quarter_index(days) + 1
    first_next = (np.datetime64("1970-01", "M") + (q * 3).astype("timedelta64[M]")).astype("datetime64[D]")
    return first_next.astype(np.int64) - 1


class LostOdds:
    """The multiplier of the odds of losing for spells starting on given days: drift times the quarter's
    shock. ``shocks`` maps a calendar quarter index to its factor; quarters not yet drawn are drawn on
    first use from ``rng`` (so the future of truth.json continues the same process)."""

    def __init__(self, e: Effects, rng: np.random.Generator, start_day: int):
        self.e, self.rng, self.start_day = e, rng, start_day
        self.shocks: dict[int, float] = {}

    def __call__(self, days: np.ndarray) -> np.ndarray:
        days = np.asarray(days, np.int64)
        mult = np.exp(self.e.win_drift * (days - self.start_day) / 365.25)
        if self.e.quarter_shock > 0:
            q = quarter_index(days)
            for k in np.unique(q):
                if int(k) not in self.shocks:
                    self.shocks[int(k)] = float(np.exp(self.e.quarter_shock * self.rng.standard_normal()))
            mult = mult * np.array([self.shocks[int(k)] for k in q])
        return mult

    def realized(self) -> dict[str, float]:
        out = {}
        for k, f in sorted(self.shocks.items()):
            first = to_date(int((np.datetime64("1970-01", "M") + np.timedelta64(k * 3, "M")).astype("datetime64[D]").astype(np.int64)))
            out[f"{first.year}Q{(first.month - 1) // 3 + 1}"] = f
        return out


def quarter_push(e: Effects, rng: np.random.Generator, won_code: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function (destination, exit day) -> exit day that delays that share of wins to the quarter end."""

    def push(dest: np.ndarray, day: np.ndarray) -> np.ndarray:
        last = quarter_last_day(day)
        first_push = last - e.push_days + 1
        u = rng.random(day.size)
        v = rng.integers(0, e.push_days, day.size)
        move = (dest == won_code) & (day < first_push) & (u < e.quarter_end_push)
        return np.where(move, first_push + v, day)

    return push


def lost_odds_for(e: Effects, rng: np.random.Generator, start_day: int) -> LostOdds | None:
    return LostOdds(e, rng, start_day) if (e.win_drift != 0 or e.quarter_shock > 0) else None


def push_for(e: Effects, rng: np.random.Generator, won_code: int):
    return quarter_push(e, rng, won_code) if e.quarter_end_push > 0 else None


def truncate_history(rows: tuple[np.ndarray, np.ndarray, np.ndarray], status: np.ndarray, closed: np.ndarray,
                     crm_start: dt.date, n_stages: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The CRM adopted on ``crm_start``: (kept deals mask, rows) without the deals closed before it, and each
    deal open then starting its recorded history with the stage it was in, entered on crm_start."""
    day0 = to_day(crm_start)
    keep = ~((status != 0) & (closed < day0))
    deal, dest, day = rows
    before = day < day0
    next_same = np.r_[deal[1:] == deal[:-1], False]
    next_after = np.r_[day[1:] >= day0, False]
    # The row in force on crm_start: a deal's last row before it (an open stage: closed deals are dropped).
    last_before = before & (~next_same | next_after) & (dest < n_stages)
    k = keep[deal] & (~before | last_before)
    return keep, (deal[k], dest[k], np.where(last_before, day0, day)[k])


def crm_columns(e: Effects, rng: np.random.Generator, rows: tuple[np.ndarray, np.ndarray, np.ndarray],
                created: np.ndarray, status: np.ndarray, closed: np.ndarray, cycle_days: np.ndarray, end_day: int,
                stages: tuple[str, ...]) -> dict[str, Any]:
    """Expected close dates with their pushes and CRM probabilities.

    Returns ``rows`` (deal, destination code, day) with the push rows added (same stage, sorted by deal and
    day), per row ``expected_close`` (int64 day, -1 unknown) and ``probability`` (NaN unknown), and per
    deal the latest ``expected_close`` and ``probability`` as of ``end_day``.
    """
    deal, dest, day = rows
    n = len(created)
    n_s = len(stages)
    exp0 = created + np.ceil(e.optimistic_close * cycle_days).astype(np.int64)
    push_deal, push_day, push_exp = [], [], []
    if e.optimistic_close > 0:
        stop = np.where(status != 0, closed, end_day + 1)  # pushes happen while the deal is open and observed
        cur = exp0.copy()
        active = np.flatnonzero(cur < stop)
        while active.size:
            when = cur[active] + 1  # the day after the date passed
            new = when + rng.integers(PUSH_MIN_DAYS, PUSH_MAX_DAYS + 1, active.size)
            ok = when < stop[active]
            push_deal.append(active[ok])
            push_day.append(when[ok])
            push_exp.append(new[ok])
            cur[active[ok]] = new[ok]
            active = active[ok][new[ok] < stop[active[ok]]]
    p_deal = np.concatenate(push_deal) if push_deal else np.zeros(0, np.int64)
    p_day = np.concatenate(push_day) if push_day else np.zeros(0, np.int64)
    p_exp = np.concatenate(push_exp) if push_exp else np.zeros(0, np.int64)
    # A deal's history may start after its creation (the CRM adopted later): pushes before its first row
    # are not recorded, but the date they set is the one in force at that row.
    first_row = np.r_[True, deal[1:] != deal[:-1]] if len(deal) else np.zeros(0, bool)
    first_day = np.full(n, np.iinfo(np.int64).max)
    first_day[deal[first_row]] = day[first_row]
    early = p_day < first_day[p_deal]
    np.maximum.at(exp0, p_deal[early], p_exp[early])
    p_deal, p_day, p_exp = p_deal[~early], p_day[~early], p_exp[~early]
    # Merge: push rows carry the stage in force on their day (the deal's last row before them).
    all_deal = np.r_[deal, p_deal]
    all_day = np.r_[day, p_day]
    is_push = np.r_[np.zeros(len(deal), bool), np.ones(len(p_deal), bool)]
    order = np.lexsort((is_push, all_day, all_deal))
    all_deal, all_day, is_push = all_deal[order], all_day[order], is_push[order]
    all_dest = np.r_[dest, np.full(len(p_deal), -1)][order]
    all_exp = np.r_[np.full(len(deal), -1), p_exp][order]
    idx = np.arange(len(all_dest))
    src = np.where(all_dest >= 0, idx, 0)
    np.maximum.accumulate(src, out=src)  # forward-fill the stage of the last real row
    all_dest = np.where(is_push, all_dest[src], all_dest)
    expected = np.full(len(all_deal), -1, np.int64)
    if e.optimistic_close > 0:
        # The date in force at each row: the creation date's, then each push's; a won or lost row closes it.
        start_row = np.r_[True, all_deal[1:] != all_deal[:-1]]
        val = np.where(start_row, exp0[all_deal], all_exp)
        carry = np.where(val >= 0, idx, 0)
        np.maximum.accumulate(carry, out=carry)
        expected = val[carry]
        closing = all_dest >= n_s
        stale = rng.random(len(all_deal)) < e.stale_close_dates
        keep_stale = closing & (all_dest == n_s + 1) & stale
        expected = np.where(closing & ~keep_stale, all_day, expected)
    prob = np.full(len(all_deal), np.nan)
    if e.crm_probability:
        ladder = np.r_[[STAGE_PROBABILITY[s] for s in stages], 1.0, 0.0]
        prob = ladder[all_dest]
    last = np.r_[all_deal[1:] != all_deal[:-1], True] if len(all_deal) else np.zeros(0, bool)
    deal_exp = np.full(n, -1, np.int64)
    deal_prob = np.full(n, np.nan)
    deal_exp[all_deal[last]] = expected[last]
    deal_prob[all_deal[last]] = prob[last]
    return {"rows": (all_deal, all_dest, all_day), "expected_close": expected, "probability": prob,
            "deal_expected_close": deal_exp, "deal_probability": deal_prob, "pushes": int(len(p_deal))}


def forecast_category(probability: np.ndarray, dest: np.ndarray, n_stages: int) -> list[str | None]:
    """Salesforce's categories from the probability: closed (won), omitted (lost), commit (>= 0.7),
    best_case (>= 0.4), pipeline."""
    out: list[str | None] = []
    for p, d in zip(probability.tolist(), dest.tolist()):
        if p != p:  # NaN
            out.append(None)
        elif d == n_stages:
            out.append("closed")
        elif d == n_stages + 1:
            out.append("omitted")
        else:
            out.append("commit" if p >= 0.7 else "best_case" if p >= 0.4 else "pipeline")
    return out
