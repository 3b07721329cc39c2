"""Calendar time and shared shocks on the exits of a stay (formulas: docs/model.md).

- Month of the (fiscal) quarter: per open stage s and month q a factor ``exit_rate[s, q]`` on the daily
  hazard of leaving the stage forward or lost (moves back keep the table's), and a shift
  ``lost_shift[s, q]`` of the log odds of losing against moving forward among those exits (per stage: a
  quarter-end push moves the wins out of the last stages, not the moves between early ones). The rate is observed against expected exits over the
  same days at risk under the age-conditioned tables (O / E); the shift the conditional maximum likelihood
  of the month's lost exits given its exits; both shrunk by empirical Bayes (toward 1 and 0), used only
  once a full quarter of exits is observed. The kernel draws exits at R = max(1, rates) times the table's
  hazard and thins them (sim.compact.mixed_thresholds): a deal that wins at the end of the quarter is one
  that was not allowed to leave earlier, which is what a quarter-end push is.
- Shared shock: per trial one Gamma(1 / var, var) multiplier Z of the odds of losing against moving
  forward, shared by every deal (whole periods go well or badly together). Its variance comes from the
  dispersion, over past periods as long as the forecast window, of the lost exits against their
  expectation (with the calendar shifts): Var(O_p) = V_p + var D_p^2, so var = sum_p [(O_p - E_p)^2 - V_p] /
  sum_p D_p^2, with V_p = sum l (1 - l) and D_p = sum l (1 - l) over the period's exits, l their lost
  share; at least MIN_PERIODS periods.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from forecaster.calendar import month_of_quarter, quarter_bounds, to_date, to_day
from forecaster.crm import Spells
from forecaster.model.mix import MixEffects
from forecaster.model.segments import solve_lost_log_odds
from forecaster.model.tables import StageTables

MIN_PERIODS = 4
MAX_VARIANCE = 1.0


@dataclass
class ExitShares:
    """The observed exits of a snapshot with the shares the tables give their exit day: lost ``l`` and
    forward ``f`` (later stages and won); the exit's day number and outcome (0 back, 1 lost, 2 forward
    other, 3 won)."""

    day: np.ndarray
    l: np.ndarray  # noqa: E741 - the lost share, as in the formulas
    f: np.ndarray
    outcome: np.ndarray
    stage: np.ndarray | None = None  # the open stage of each exit (None: all stage 0)

    def stage_of(self) -> np.ndarray:
        return np.zeros(len(self.day), np.int64) if self.stage is None else self.stage.astype(np.int64)


def exit_shares(spells: Spells, cells: np.ndarray, stage: StageTables, first_day: int, as_of: int) -> ExitShares:
    """Shares of the exits of ``spells`` (cell per spell) seen on days [first_day, as_of)."""
    S = stage.n_stages
    ex = spells.exited
    day = (spells.entered + spells.dur)[ex]
    keep = (day >= first_day) & (day < as_of)
    c = cells[ex][keep].astype(np.int64)
    d = spells.dur[ex][keep]
    dest = spells.dest[ex][keep]
    L = stage.cell_len[c]
    row = np.where(d < L, stage.day_bin[stage.cell_off[c] + np.minimum(d, L - 1)], stage.tail_bin[c])
    p = stage.bin_p[row]
    s = (c % S)[:, None]
    col = np.arange(S + 2)[None, :]
    f = np.where((col > s) & (col <= S), p, 0.0).sum(axis=1)
    lost = p[:, S + 1]
    outcome = np.where(dest == S, 3, np.where(dest == S + 1, 1, np.where(dest < spells.stage[ex][keep], 0, 2)))
    return ExitShares(day[keep], lost, f, outcome, (c % S).astype(np.int64))


MIN_CAUSE_EXITS = 20  # exits of a cause in a month of the quarter below which its rate stays 1
RATE_BOUND = 4.0  # every rate within [1 / RATE_BOUND, RATE_BOUND]
BOUND = 3.0  # |log odds shift| at most


@dataclass(frozen=True)
class ExitHazards:
    """Per cell the cumulative expected exits forward or lost (not back) by age: ``flat[off[c] + a]`` = sum
    over ages j < a of h(j) (1 - b(j)), for a = 0 .. L_c (h the daily exit probability of the table, b the
    back share of its row); past the table ``tail[c]`` a day."""

    flat: np.ndarray
    off: np.ndarray
    L: np.ndarray
    tail: np.ndarray

    def at(self, c: np.ndarray, a: np.ndarray) -> np.ndarray:
        L = self.L[c]
        return self.flat[self.off[c] + np.minimum(a, L)] + np.maximum(a - L, 0) * self.tail[c]


def _back_share(p: np.ndarray, stage_of_row: np.ndarray) -> np.ndarray:
    cum = np.cumsum(p, axis=1)
    s = stage_of_row.astype(np.int64)
    return np.where(s > 0, cum[np.arange(len(s)), np.maximum(s - 1, 0)], 0.0)


def exit_hazards(stage: StageTables) -> ExitHazards:
    S = stage.n_stages
    L = stage.cell_len.astype(np.int64)
    cells = np.repeat(np.arange(stage.n_cells), L)
    start = stage.cell_off[:-1].astype(np.int64)
    first = np.zeros(len(stage.surv), bool)
    first[start[L > 0]] = True
    prev = np.where(first, 1.0, np.r_[1.0, stage.surv[:-1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where(prev > 0, 1.0 - stage.surv / prev, 1.0)
    per_day = h * (1.0 - _back_share(stage.bin_p[stage.day_bin], cells % S))
    cum = np.cumsum(per_day)
    before = np.r_[0.0, cum][start]  # the sum before each cell
    off = start + np.arange(stage.n_cells)  # each cell: L + 1 entries, the first 0
    flat = np.zeros(len(stage.surv) + stage.n_cells)
    flat[off[cells] + (np.arange(len(stage.surv)) - start[cells]) + 1] = cum - before[cells]
    tail = stage.tail_h * (1.0 - _back_share(stage.bin_p[stage.tail_bin], np.arange(stage.n_cells) % S))
    return ExitHazards(flat, off, L, tail)


def _fiscal_months(first_day: int, as_of: int, fiscal_year_start: int) -> list[tuple[int, int, int]]:
    """(first day, last day, month of the quarter) of every calendar month overlapping [first_day, as_of)."""
    out = []
    d = to_date(first_day).replace(day=1)
    end = to_date(as_of - 1)
    while d <= end:
        nxt = (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        lo, hi = max(to_day(d), first_day), min(to_day(nxt) - 1, as_of - 1)
        out.append((lo, hi, int(month_of_quarter(np.array([lo]), fiscal_year_start)[0])))
        d = nxt
    return out


def observed_and_expected(spells: Spells, cells: np.ndarray, stage: StageTables, first_day: int, as_of: int,
                          fiscal_year_start: int) -> tuple[np.ndarray, np.ndarray]:
    """Per open stage and month of the quarter [S, 3]: exits forward or lost (not back) seen on its days in
    [first_day, as_of), and those the tables expect over the same days at risk (each spell from its entry
    age, censored ones to as_of)."""
    S = stage.n_stages
    hz = exit_hazards(stage)
    c = cells.astype(np.int64)
    lo_age = spells.entry_age.astype(np.int64)
    hi_age = np.where(spells.exited, spells.dur, spells.dur - 1).astype(np.int64)
    ent = spells.entered.astype(np.int64)
    start_day, end_day = ent + lo_age, ent + hi_age
    exit_day = ent + spells.dur
    back = spells.exited & (spells.dest < spells.stage)
    seen = spells.exited & ~back & (exit_day >= first_day) & (exit_day < as_of)
    st = c % S
    observed = np.bincount(st[seen] * 3 + month_of_quarter(exit_day[seen], fiscal_year_start),
                           minlength=3 * S).astype(float).reshape(S, 3)
    expected = np.zeros((S, 3))
    for lo, hi, q in _fiscal_months(first_day, as_of, fiscal_year_start):
        sel = (start_day <= hi) & (end_day >= lo)
        if sel.any():
            e = ent[sel]
            x = np.maximum(lo_age[sel], lo - e)
            y = np.minimum(hi_age[sel], hi - e)
            expected[:, q] += np.bincount(st[sel], weights=hz.at(c[sel], y + 1) - hz.at(c[sel], x), minlength=S)
    return observed, expected


def _finite(a: np.ndarray) -> list:
    """A figure for model.json: nested lists, None where not finite (no estimate)."""
    return [[None if not math.isfinite(v) else float(v) for v in row] for row in np.atleast_2d(a)]


def _odds_shift(p: np.ndarray, observed: float) -> tuple[float, float]:
    """theta with sum p e^theta / (p e^theta + 1 - p) = observed (the segments' bisection, no pseudo-exits,
    within +-BOUND), and its standard error from the Fisher information; (0, inf) with nothing to fit."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    if len(p) == 0 or not 0 < observed < len(p):
        return 0.0, math.inf
    theta = solve_lost_log_odds(np.ones(len(p)), p, observed, pseudo=0.0, bound=BOUND)
    q = p * math.exp(theta) / (p * math.exp(theta) + 1.0 - p)
    info = float((q * (1.0 - q)).sum())
    return theta, (1.0 / math.sqrt(info)) if info > 0 else math.inf


def _shrunk(theta: np.ndarray, se: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, float]:
    """Empirical-Bayes shrinkage of per-stage, per-month shifts [S, 3] toward 0 (one variance of the true
    shifts by moments over all of them), then centred per stage by ``weight`` so its months average no
    shift."""
    ok = np.isfinite(se)
    if ok.sum() < 2:
        return np.zeros_like(theta), 0.0
    tau2 = max(0.0, float(np.mean(theta[ok] ** 2) - np.mean(se[ok] ** 2)))
    out = np.where(ok, theta * tau2 / (tau2 + np.where(ok, se, 1.0) ** 2), 0.0)
    w = np.where(ok, weight, 0.0)
    tot = w.sum(axis=-1, keepdims=True)
    centre = np.divide((w * out).sum(axis=-1, keepdims=True), tot, out=np.zeros_like(tot), where=tot > 0)
    return out - centre, tau2


def _shrunk_rates(observed: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(rates, raw O / E, standard errors of log O / E, prior variance), all [S, 3]: empirical-Bayes shrinkage
    of the log rates toward 0 (one variance of the true log rates by moments over every stage and month);
    a stage's month with fewer than MIN_CAUSE_EXITS exits keeps rate 1."""
    ok = (observed >= MIN_CAUSE_EXITS) & (expected > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = np.where(ok, observed / np.where(expected > 0, expected, 1.0), 1.0)
        se = np.where(ok, 1.0 / np.sqrt(np.maximum(observed, 1.0)), np.inf)
    log_raw = np.log(raw)
    if ok.sum() < 2:
        return np.ones_like(raw), raw, se, 0.0
    tau2 = max(0.0, float(np.mean(log_raw[ok] ** 2) - np.mean(se[ok] ** 2)))
    shrunk = np.where(ok, log_raw * tau2 / (tau2 + np.where(ok, se, 1.0) ** 2), 0.0)
    rates = np.clip(np.exp(shrunk), 1.0 / RATE_BOUND, RATE_BOUND)
    return rates, raw, se, tau2


def fit_exit_rates(spells: Spells, cells: np.ndarray, stage: StageTables, fiscal_year_start: int, as_of: int,
                   first_day: int) -> tuple[np.ndarray, dict]:
    """Per open stage and month of the quarter [S, 3] the factor on the hazard of leaving forward or lost:
    observed against expected exits (observed_and_expected), shrunk toward 1 (``_shrunk_rates``)."""
    observed, expected = observed_and_expected(spells, cells, stage, first_day, as_of, fiscal_year_start)
    rate, raw, se, tau = _shrunk_rates(observed, expected)
    return rate, {"exits_observed": observed.tolist(), "exits_expected": expected.tolist(), "exit_rate_raw": raw.tolist(),
                  "exit_rate_se": _finite(se), "exit_rate_prior_var": tau}


def fit_lost_shifts(x: ExitShares, fiscal_year_start: int, n_stages: int | None = None) -> tuple[np.ndarray, dict]:
    """Per open stage and month of the quarter [S, 3] the shift of the log odds of losing among exits forward
    or lost: the conditional maximum likelihood against the tables' shares, shrunk toward 0 and centred per
    stage."""
    q = month_of_quarter(x.day, fiscal_year_start)
    st = x.stage_of()
    S = n_stages if n_stages is not None else int(st.max(initial=0)) + 1
    ell_all = x.l / np.maximum(x.l + x.f, 1e-300)
    open_l = (ell_all > 1e-9) & (ell_all < 1 - 1e-9)  # an exit whose outcome the tables leave open
    theta, se, n = np.zeros((S, 3)), np.zeros((S, 3)), np.zeros((S, 3))
    for k in range(S):
        for m in range(3):
            nb = (st == k) & (q == m) & (x.outcome != 0) & open_l
            theta[k, m], se[k, m] = _odds_shift(ell_all[nb], float((x.outcome[nb] == 1).sum()))
            n[k, m] = nb.sum()
    lost, tau = _shrunk(theta, se, n)
    return lost, {"lost_raw": theta.tolist(), "lost_se": _finite(se), "lost_prior_var": tau,
                  "exits_not_back": n.tolist()}


def fit_calendar(spells: Spells, cells: np.ndarray, stage: StageTables, x: ExitShares, fiscal_year_start: int,
                 as_of: int, first_day: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per month of the fiscal quarter the factor on the hazard of leaving forward or lost, and the shift of
    the log odds of losing among those exits (1 and 0 until a full quarter of exits is observed), and the
    figures behind them."""
    first = to_date(first_day)
    qs, qe = quarter_bounds(first, fiscal_year_start)
    full_start = qs if qs == first else qe + dt.timedelta(days=1)
    full_end = quarter_bounds(full_start, fiscal_year_start)[1]
    figures: dict[str, Any] = {"first_full_quarter": [full_start.isoformat(), full_end.isoformat()]}
    if full_end >= to_date(as_of):
        figures["used"] = False
        figures["reason"] = "less than one full quarter of exits observed"
        return np.ones((1, 3)), np.zeros((1, 3)), figures
    rate, rate_fig = fit_exit_rates(spells, cells, stage, fiscal_year_start, as_of, first_day)
    lost, lost_fig = fit_lost_shifts(x, fiscal_year_start, stage.n_stages)
    figures.update(used=True, **rate_fig, **lost_fig)
    return rate, lost, figures


def fit_frailty(x: ExitShares, lost_shift: np.ndarray, fiscal_year_start: int, as_of: int, first_day: int,
                period_days: int) -> tuple[float, dict]:
    """The variance of the per-trial Gamma multiplier of the odds of losing, from the dispersion of lost exits
    over past periods of ``period_days`` (module docstring)."""
    n_periods = (as_of - first_day) // period_days
    figures: dict[str, Any] = {"period_days": int(period_days), "periods": int(n_periods)}
    if n_periods < MIN_PERIODS:
        figures["reason"] = f"fewer than {MIN_PERIODS} periods of {period_days} days observed"
        return 0.0, figures
    nb = x.outcome != 0
    day = x.day[nb]
    k = (as_of - 1 - day) // period_days
    use = k < n_periods
    q = month_of_quarter(day, fiscal_year_start)
    shift = np.atleast_2d(lost_shift)
    st = np.minimum(x.stage_of()[nb], shift.shape[0] - 1)
    odds = x.l[nb] / np.maximum(x.f[nb], 1e-300) * np.exp(shift[st, q])
    ell = odds / (1.0 + odds)
    lost = (x.outcome[nb] == 1).astype(float)
    o = np.bincount(k[use], weights=lost[use], minlength=n_periods)
    e = np.bincount(k[use], weights=ell[use], minlength=n_periods)
    v = np.bincount(k[use], weights=(ell * (1 - ell))[use], minlength=n_periods)
    excess = float(((o - e) ** 2 - v).sum())
    var = min(MAX_VARIANCE, max(0.0, excess / max(float((v ** 2).sum()), 1e-300)))
    figures.update(observed=o[::-1].tolist(), expected=e[::-1].tolist(), variance=var)
    return var, figures


def fit_mix_effects(spells: Spells, cells: np.ndarray, stage: StageTables, as_of: int, first_day: int,
                    fiscal_year_start: int, period_days: int) -> tuple[MixEffects, dict]:
    """The calendar effects and the shared shock of the model, fitted on its own tables."""
    x = exit_shares(spells, cells, stage, first_day, as_of)
    rate, lost, cal = fit_calendar(spells, cells, stage, x, fiscal_year_start, as_of, first_day)
    var, frail = fit_frailty(x, lost, fiscal_year_start, as_of, first_day, period_days)
    effects = MixEffects(exit_rate=rate, lost_shift=lost, frailty_var=var, fiscal_year_start=fiscal_year_start)
    return effects.check(), {"calendar": cal, "shared_shock": frail}
