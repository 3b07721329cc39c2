"""Rolling-origin backtest: forecasts as of past cutoffs, scored against what really happened.

For each cutoff D (from, from + every, ..., to): the model and pipeline as of D (the as-of cut: nothing
dated on or after D is seen), a forecast of the window [D, D + window), and the actual won revenue and
won deals with a close date in the window, read from the same export. Methods scored the same way:

- ``forecaster``: the full model (parameter uncertainty as configured);
- ``forecaster_no_new_deals``: open pipeline only; ``forecaster_no_age``: every open deal as if it had
  just entered its stage (no age conditioning) - so the value of each modelling choice is visible;
- ``weighted_pipeline``: the CRM's weighted pipeline, each open deal's amount times its stage's
  historical win rate as of D (share won among closed deals that were in that stage); a point forecast,
  its CRPS is its absolute error;
- ``run_rate``: won revenue in the trailing windows of the same length before D, as an empirical
  distribution.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from forecaster.analysis import scores
from forecaster.analysis.forecast import prepare, simulate_base, simulate_forecast
from forecaster.analysis.summary import with_currency
from forecaster.calendar import step, to_date, to_day, window_end
from forecaster.config import Config
from forecaster.crm import OPEN, WON, CRMData, Snapshot, load
from forecaster.errors import ConfigError, ForecasterError

METHODS = ("forecaster", "forecaster_no_new_deals", "forecaster_no_age", "weighted_pipeline", "run_rate")
TARGETS = ("revenue", "won_deals")
RUN_RATE_WINDOWS = 8  # trailing windows at most (two years of quarters)


def window_last_day(d: dt.date, window: str) -> dt.date:
    """Last day of the window starting on d: 'Nd' days, or one calendar month / quarter."""
    last = window_end(d, window)
    if last is None:
        raise ConfigError(f"--window '{window}': expected a number of days like 90d, or month, or quarter")
    return last


def cutoffs(start: dt.date, end: dt.date, every: str) -> list[dt.date]:
    if end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    out, d = [], start
    while d <= end:
        out.append(d)
        d = step(d, every)
    return out


def actuals(full: CRMData, first: dt.date, last: dt.date) -> tuple[float, int]:
    """Won revenue and won deals with a close date in [first, last], from the full export."""
    won = (full.status == WON) & (full.closed >= to_day(first)) & (full.closed <= to_day(last))
    return float(full.amount[won].sum()), int(won.sum())


def weighted_pipeline(snap: Snapshot) -> tuple[float, float]:
    """Each open deal's amount (and 1 deal) times its stage's historical win rate as of the cut."""
    n_s = len(snap.stages)
    closed = (snap.status[snap.h_deal] != OPEN) & (snap.h_stage < n_s)  # open-stage rows of closed deals
    pairs = np.unique(snap.h_deal[closed].astype(np.int64) * n_s + snap.h_stage[closed])
    deal, stage = pairs // n_s, pairs % n_s
    won = snap.status[deal] == WON
    rate = np.bincount(stage, weights=won, minlength=n_s) / np.maximum(np.bincount(stage, minlength=n_s), 1)
    cur = snap.stage_now
    is_open = snap.status == OPEN
    p = rate[cur[is_open]]
    return float((snap.amount[is_open] * p).sum()), float(p.sum())


def run_rate(full: CRMData, d: dt.date, last: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """Won revenue and deals in the trailing windows of the same length before d (not before the data)."""
    length = (last - d).days + 1
    first_day = int(full.created.min())
    rev, wins = [], []
    for k in range(1, RUN_RATE_WINDOWS + 1):
        lo = to_day(d) - k * length
        if lo < first_day:
            break
        r, w = actuals(full, to_date(lo), to_date(lo + length - 1))
        rev.append(r)
        wins.append(w)
    return np.asarray(rev, float), np.asarray(wins, float)


def _score_rows(cutoff: dt.date, method: str, target: str, sample: np.ndarray | None, point: float | None,
                y: float) -> dict[str, Any]:
    row: dict[str, Any] = {"cutoff": cutoff, "method": method, "target": target, "actual": y}
    if sample is not None and len(sample):
        q = scores.quantiles(sample, [0.05, 0.1, 0.5, 0.9, 0.95])
        row.update(mean=float(np.mean(sample)), p5=q[0], p10=q[1], p50=q[2], p90=q[3], p95=q[4],
                   pit=scores.pit(sample, y), crps=scores.crps_sample(sample, y))
    elif point is not None:
        row.update(mean=point, p5=None, p10=None, p50=point, p90=None, p95=None, pit=None,
                   crps=scores.crps_point(point, y))
    else:
        return {**row, "mean": None, "p5": None, "p10": None, "p50": None, "p90": None, "p95": None, "pit": None,
                "crps": None, "pinball_10": None, "pinball_50": None, "pinball_90": None, "ape_median": None}
    for tau, key in ((0.1, "pinball_10"), (0.5, "pinball_50"), (0.9, "pinball_90")):
        qv = row["p10" if tau == 0.1 else "p50" if tau == 0.5 else "p90"]
        row[key] = None if qv is None else scores.pinball(qv, y, tau)
    row["ape_median"] = abs(row["p50"] - y) / abs(y) if y else None
    return row


def _cutoff_rows(full: CRMData, base: Any, d: dt.date, last: dt.date) -> list[dict[str, Any]]:
    """The scored rows of one cutoff: every method, both targets."""
    rows = []
    y_rev, y_won = actuals(full, d, last)
    sims = {"forecaster": simulate_forecast(base),
            "forecaster_no_new_deals": simulate_base(base, arrivals=None),
            "forecaster_no_age": simulate_base(base, deals=dataclasses.replace(
                base.deals, age=np.zeros_like(base.deals.age)))}
    for method, sim in sims.items():
        rows.append(_score_rows(d, method, "revenue", sim.revenue, None, y_rev))
        rows.append(_score_rows(d, method, "won_deals", sim.won_deals.astype(float), None, y_won))
    wp_rev, wp_won = weighted_pipeline(base.data)  # the export as of d, cut once by prepare
    rows.append(_score_rows(d, "weighted_pipeline", "revenue", None, wp_rev, y_rev))
    rows.append(_score_rows(d, "weighted_pipeline", "won_deals", None, wp_won, y_won))
    rr_rev, rr_won = run_rate(full, d, last)
    rows.append(_score_rows(d, "run_rate", "revenue", rr_rev if len(rr_rev) else None, None, y_rev))
    rows.append(_score_rows(d, "run_rate", "won_deals", rr_won if len(rr_won) else None, None, y_won))
    return rows


def backtest(config: Config, start: dt.date, end: dt.date, every: str = "month", window: str = "quarter",
             progress: Callable[[dt.date], None] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (one per cutoff, method and target) and the summary (layout of backtest.json)."""
    full = load(config)
    data_end = to_date(full.last_day())
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    used: list[dt.date] = []
    left_out: list[dt.date] = []
    failed: list[dict[str, str]] = []
    for d in cutoffs(start, end, every):
        last = window_last_day(d, window)
        if last > data_end:  # the outcome is not fully known yet
            left_out.append(d)
            continue
        cfg = config.with_forecast(as_of=d, start=d, end=last)
        try:
            base = prepare(cfg, full=full)
        except ForecasterError as e:  # e.g. a cutoff before the first deal: reported, not hidden
            failed.append({"cutoff": d.isoformat(), "error": "; ".join(e.problems)})
            continue
        if progress is not None:
            progress(d)
        used.append(d)
        rows += _cutoff_rows(full, base, d, last)
    if not used:
        why = "; ".join(f"{f['cutoff']}: {f['error']}" for f in failed[:3])
        raise ConfigError(f"backtest: no cutoff between {start} and {end} has a fitted model and a complete "
                          f"window before the data ends ({data_end})" + (f"; {why}" if why else ""))
    summary = summarize_backtest(rows, window)
    summary["cutoff_dates"] = [u.isoformat() for u in used]
    summary["left_out"] = {"cutoffs": [u.isoformat() for u in left_out],
                           "reason": f"the window ends after the last recorded event in the data ({data_end})"}
    summary["failed"] = failed
    summary["currency"] = full.currency
    summary["elapsed_s"] = time.perf_counter() - t0
    summary["trials"] = config.forecast.trials
    summary["parameter_uncertainty"] = config.forecast.parameter_uncertainty
    return rows, summary


def _method_block(rs: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in rs if r["crps"] is not None]
    out: dict[str, Any] = {"cutoffs": len(scored)}
    if not scored:
        return {**out, "coverage_80": None, "coverage_90": None, "crps": None, "pinball_50": None, "bias": None,
                "wape": None, "mape": None}
    ys = np.array([r["actual"] for r in scored], float)
    med = np.array([r["p50"] for r in scored], float)
    out.update(crps=float(np.mean([r["crps"] for r in scored])),
               pinball_50=float(np.mean([r["pinball_50"] for r in scored])),
               bias=scores.bias(med, ys), wape=scores.wape(med, ys), mape=scores.mape(med, ys))
    if scored[0]["p10"] is not None:
        for key, lo, hi, nominal in (("coverage_80", "p10", "p90", 0.8), ("coverage_90", "p5", "p95", 0.9)):
            c = scores.coverage(np.array([r[lo] for r in scored]), np.array([r[hi] for r in scored]), ys, nominal)
            out[key] = c["coverage"]
            out[key + "_interval"] = c
        pits = np.array([r["pit"] for r in scored], float)
        out["pit_histogram"] = scores.pit_histogram(pits)
    else:
        out["coverage_80"] = out["coverage_90"] = None
    return out


def summarize_backtest(rows: list[dict[str, Any]], window: str) -> dict[str, Any]:
    out: dict[str, Any] = {"window": window}
    for target in TARGETS:
        methods = {}
        for m in METHODS:
            rs = [r for r in rows if r["method"] == m and r["target"] == target]
            if rs:
                methods[m] = _method_block(rs)
        f = methods["forecaster"]["crps"]
        skill = {m: scores.skill(f, methods[m]["crps"]) for m in methods
                 if m != "forecaster" and methods[m]["crps"] is not None}
        block = {"methods": methods, "skill": skill}
        if target == "revenue":
            out.update(cutoffs=methods["forecaster"]["cutoffs"], target="revenue", **block)
        else:
            out["won_deals"] = block
    return out


def rows_table(rows: list[dict[str, Any]], currency: str | None = None) -> pa.Table:
    cols = list(rows[0].keys())
    return with_currency(pa.table({c: pa.array([r[c] for r in rows], pa.date32() if c == "cutoff" else None)
                                   for c in cols}), currency)


__all__ = ["backtest", "cutoffs", "window_last_day", "weighted_pipeline", "run_rate", "actuals", "rows_table"]
