"""What a revenue team would otherwise use, as of a cutoff D, for the window [D, last]: the baselines that
`forecaster backtest` scores the same way as the forecaster.

Point forecasts (scored by the CRPS of a point mass: the absolute error):
- ``weighted_pipeline``: the CRM convention done right: amount x the stage's win rate, over the open deals
  expected to close inside the window. The expected close is the CRM's own when the export has one (an
  overdue date counts as due now, at D); otherwise D plus the median remaining time to close, in history,
  of the deals that had been in the stage at least as long (a deal older than any that closed has none:
  stale pipeline is not expected in the window);
- ``weighted_pipeline_all``: amount x stage win rate over every open deal, whatever its timing (the number
  most CRMs show; kept for reference);
- ``crm_forecast``: the reps' own view when the export carries it: amount x the CRM's probability over the
  deals expected to close in the window, and the ``commit`` and ``best_case`` forecast-category totals;
- ``seasonal_naive``: the won revenue of the same window one year earlier, else one quarter earlier,
  whichever the history allows (it knows the end-of-quarter push).

Distributions (scored by CRPS, coverage and PIT):
- ``run_rate``: won revenue in the trailing windows of the same length before D, as an empirical sample;
- ``ets``: an exponential-smoothing model (statsforecast's AutoETS) of won revenue per window-length block
  before D, its one-step predictive distribution (normal, from its prediction intervals) as a sample of
  quantiles. Needs at least ``ETS_MIN_BLOCKS`` blocks of history and the optional statsforecast package.

Every baseline sees only what was known before D (the snapshot for the pipeline baselines; closes before D
for the history baselines).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from forecaster.analysis.actuals import won_between
from forecaster.calendar import NO_DATE, add_months, to_day
from forecaster.crm import OPEN, WON, CRMData, Snapshot

RUN_RATE_WINDOWS = 8  # trailing windows at most (two years of quarters)
ETS_MIN_BLOCKS = 8
ETS_QUANTILES = 199  # the predictive distribution as this many equally spaced quantiles
COMMIT, BEST_CASE = "commit", "best_case"


@dataclass(frozen=True)
class PipelineView:
    """Per open deal of a snapshot: its index, stage, amount, stage win rate and expected close day."""

    idx: np.ndarray
    stage: np.ndarray
    amount: np.ndarray
    win_rate: np.ndarray
    expected_close: np.ndarray


def stage_win_rates(snap: Snapshot) -> np.ndarray:
    """float64 [S]: per stage, the share won among the closed deals that were ever in it (as of D)."""
    n_s = len(snap.stages)
    closed = snap.status[snap.h_deal] != OPEN
    pairs = np.unique(snap.h_deal[closed].astype(np.int64) * n_s + snap.h_stage[closed])
    deal, stage = pairs // n_s, pairs % n_s
    won = snap.status[deal] == WON
    return np.bincount(stage, weights=won, minlength=n_s) / np.maximum(np.bincount(stage, minlength=n_s), 1)


def closed_stage_durations(snap: Snapshot) -> list[np.ndarray]:
    """Per stage, sorted: the days from entering it to the deal's close, over the spells of the deals closed
    before D (the history a CRM report would use)."""
    sp = snap.spells
    closed = snap.status[sp.deal] != OPEN
    days = (snap.closed[sp.deal] - sp.entered)[closed].astype(np.int64)
    stage = sp.stage[closed]
    return [np.sort(days[stage == s]) for s in range(len(snap.stages))]


def expected_close_days(snap: Snapshot, idx: np.ndarray) -> np.ndarray:
    """int64 expected close day of the deals ``idx``: the CRM's own where the snapshot has one, else D plus the
    median remaining time to close of the history's deals that had been in the stage at least as long
    (their days from entering it to the close, minus the deal's age); NO_DATE when no deal in history took
    that long (a stale deal: no expected close)."""
    stage = snap.stage_now[idx].astype(np.int64)
    age = (snap.as_of - snap.entered_now[idx]).astype(np.int64)
    durations = closed_stage_durations(snap)
    derived = np.full(len(idx), NO_DATE, np.int64)
    for s in np.unique(stage):
        d = durations[s]
        at = np.flatnonzero(stage == s)
        k = np.searchsorted(d, age[at], side="right")  # the history's spells longer than the deal's age
        left = len(d) - k
        ok = left > 0
        lo = k[ok] + (left[ok] - 1) // 2
        hi = k[ok] + left[ok] // 2
        remaining = (d[lo] + d[hi]) / 2.0 - age[at][ok]
        derived[at[ok]] = snap.as_of + np.ceil(remaining).astype(np.int64)
    own = snap.expected_close[idx].astype(np.int64)  # the CRM's close date as known at as-of
    derived = np.where(own != NO_DATE, np.maximum(own, snap.as_of), derived)
    return derived


def pipeline_view(snap: Snapshot) -> PipelineView:
    idx = snap.open_idx
    stage = snap.stage_now[idx].astype(np.int64)
    return PipelineView(idx, stage, snap.amount[idx], stage_win_rates(snap)[stage], expected_close_days(snap, idx))


def in_window(view: PipelineView, first: dt.date, last: dt.date) -> np.ndarray:
    return (view.expected_close >= to_day(first)) & (view.expected_close <= to_day(last))


def weighted_pipeline(view: PipelineView, first: dt.date, last: dt.date) -> tuple[float, float]:
    """(revenue, won deals) expected from the open deals due to close inside [first, last]."""
    w = view.win_rate * in_window(view, first, last)
    return float((view.amount * w).sum()), float(w.sum())


def weighted_pipeline_all(view: PipelineView) -> tuple[float, float]:
    """(revenue, won deals) of every open deal times its stage's win rate, whatever its timing."""
    return float((view.amount * view.win_rate).sum()), float(view.win_rate.sum())


def crm_probabilities(snap: Snapshot, view: PipelineView) -> np.ndarray | None:
    """The CRM's probability per open deal (NaN where unknown), or None when the export has none."""
    p = np.asarray(snap.crm_probability, np.float64)[view.idx]
    return p if np.isfinite(p).any() else None


def crm_forecast(snap: Snapshot, view: PipelineView, first: dt.date, last: dt.date) -> dict[str, float] | None:
    """The reps' view for the window: ``expected`` = sum of amount x CRM probability (revenue) and of the
    probabilities (deals) over the deals due in the window; ``commit`` and ``best_case`` category totals
    (best case includes commit) where a forecast category exists. None without CRM probabilities."""
    p = crm_probabilities(snap, view)
    if p is None:
        return None
    due = in_window(view, first, last) & np.isfinite(p)
    out = {"revenue": float((view.amount * np.where(due, p, 0.0)).sum()), "won_deals": float(np.where(due, p, 0.0).sum())}
    cats = np.asarray(snap.forecast_category)[view.idx]
    c = np.array([str(x).casefold().replace(" ", "_") if x is not None else "" for x in cats], dtype=object)
    if len(c) and (c != "").any():
        commit = due & (c == COMMIT)
        best = due & ((c == COMMIT) | (c == BEST_CASE))
        out.update(commit_revenue=float(view.amount[commit].sum()), commit_deals=float(commit.sum()),
                   best_case_revenue=float(view.amount[best].sum()), best_case_deals=float(best.sum()))
    return out


def history_start(full: CRMData, observed_from: int | None = None) -> int:
    """The first day whose closes the export records: the first creation day, or ``observed_from``."""
    first = int(full.created.min())
    return max(first, observed_from) if observed_from is not None else first


def run_rate(full: CRMData, d: dt.date, last: dt.date, start_day: int) -> tuple[np.ndarray, np.ndarray]:
    """Won revenue and deals in the trailing windows of the same length before d (not before start_day)."""
    length = (last - d).days + 1
    rev, wins = [], []
    for k in range(1, RUN_RATE_WINDOWS + 1):
        lo = to_day(d) - k * length
        if lo < start_day:
            break
        r, w = won_between(full, lo, lo + length - 1)
        rev.append(r)
        wins.append(w)
    return np.asarray(rev, float), np.asarray(wins, float)


def seasonal_naive(full: CRMData, d: dt.date, last: dt.date, start_day: int) -> tuple[float, float, str] | None:
    """(revenue, won deals, 'year' or 'quarter') of the same window one year earlier, else one quarter
    earlier, whichever lies inside the history before d; None when neither does."""
    for months, name in ((12, "year"), (3, "quarter")):
        lo, hi = add_months(d, -months), add_months(last + dt.timedelta(days=1), -months) - dt.timedelta(days=1)
        if to_day(lo) >= start_day and hi < d:
            r, w = won_between(full, to_day(lo), to_day(hi))
            return r, float(w), name
    return None


def block_series(full: CRMData, d: dt.date, last: dt.date, start_day: int) -> tuple[np.ndarray, np.ndarray]:
    """Won revenue and deals per block of the window's length, the last block ending the day before d,
    as many whole blocks as the history holds (oldest first)."""
    length = (last - d).days + 1
    n = (to_day(d) - start_day) // length
    rev, wins = np.zeros(n), np.zeros(n)
    for k in range(n):
        lo = to_day(d) - (n - k) * length
        rev[k], wins[k] = won_between(full, lo, lo + length - 1)
    return rev, wins


def ets_sample(series: np.ndarray, blocks_per_year: float) -> np.ndarray | None:
    """The one-step predictive distribution of AutoETS on ``series`` as ETS_QUANTILES quantiles (clipped
    at 0: bookings are not negative), or None with too short a history or without statsforecast."""
    if len(series) < ETS_MIN_BLOCKS:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library's own deprecation notices are not ours to fail on
        try:
            from statsforecast.models import AutoETS
        except ImportError:  # the optional 'baselines' extra
            return None
    season = int(round(blocks_per_year))
    season = season if season >= 2 and len(series) >= 2 * season + 2 else 1
    y = np.asarray(series, np.float64)
    if np.all(y == y[0]):
        return np.full(ETS_QUANTILES, float(y[0]))
    level = 80
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = AutoETS(season_length=season).forecast(y=y, h=1, level=[level])
    mean = float(fc["mean"][0])
    hi = float(fc[f"hi-{level}"][0])
    sd = max((hi - mean) / NormalDist().inv_cdf(0.5 + level / 200), 0.0)
    if not (math.isfinite(mean) and math.isfinite(sd)):
        return None
    z = np.array([NormalDist().inv_cdf((i + 0.5) / ETS_QUANTILES) for i in range(ETS_QUANTILES)])
    return np.maximum(mean + sd * z, 0.0)


def blocks_per_year(d: dt.date, last: dt.date) -> float:
    return 365.25 / ((last - d).days + 1)


__all__ = ["crm_forecast", "ets_sample", "pipeline_view", "run_rate", "seasonal_naive", "stage_win_rates",
           "weighted_pipeline", "weighted_pipeline_all", "won_between"]
