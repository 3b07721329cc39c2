"""Calendar time and shared shocks on the outcome of a stay (formulas: docs/model.md).

Both act on the destination of an exit, in the two steps of the kernel's nested draw (sim.compact): the odds
of losing against moving forward (a later stage or won), and among forward moves the odds of winning against
a later open stage. Moves back keep their share, so every effect, like the conversion lever, only trades lost
against forward mass and keeps pairing across scenarios monotone.

- Month of the (fiscal) quarter: per month q a shift of each log odds, ``lost_shift[q]`` and
  ``won_shift[q]``, estimated from the observed exits of each month against the shares the age-conditioned
  tables give them (conditional maximum likelihood, one equation per month), shrunk toward 0 by empirical
  Bayes and centred; used only once a full quarter of exits is observed.
- Shared shock: per trial one Gamma(1 / var, var) multiplier Z of the odds of losing, shared by every deal
  (whole periods go well or badly together). Its variance comes from the dispersion, over past periods as
  long as the forecast window, of the lost exits against their expectation (with the calendar shifts):
  Var(O_p) = V_p + var D_p^2, so var = sum_p [(O_p - E_p)^2 - V_p] / sum_p D_p^2, with V_p = sum l (1 - l)
  and D_p = sum l (1 - l) over the period's exits, l their lost share; at least MIN_PERIODS periods.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forecaster.calendar import month_of_quarter, quarter_bounds, to_date
from forecaster.crm import Spells
from forecaster.model.tables import MixEffects, StageTables

MIN_PERIODS = 4
MAX_VARIANCE = 1.0
BOUND = 3.0  # |log odds shift| at most


@dataclass
class ExitShares:
    """The observed exits of a snapshot with the shares the tables give their exit day: back ``b``, lost
    ``l``, forward ``f`` (later stages and won), won ``w`` (inside f); the exit's day number and outcome
    (0 back, 1 lost, 2 forward other, 3 won)."""

    day: np.ndarray
    b: np.ndarray
    l: np.ndarray  # noqa: E741 - the lost share, as in the formulas
    f: np.ndarray
    w: np.ndarray
    outcome: np.ndarray
    figures: dict[str, Any] = field(default_factory=dict)


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
    b = np.where(col < s, p, 0.0).sum(axis=1)
    f = np.where((col > s) & (col <= S), p, 0.0).sum(axis=1)
    lost = p[:, S + 1]
    won = p[:, S]
    outcome = np.where(dest == S, 3, np.where(dest == S + 1, 1, np.where(dest < spells.stage[ex][keep], 0, 2)))
    return ExitShares(day[keep], b, lost, f, won, outcome)


def _odds_shift(p: np.ndarray, observed: float) -> tuple[float, float]:
    """theta with sum p e^theta / (p e^theta + 1 - p) = observed (bisection), and its standard error from the
    Fisher information; (0, inf) with nothing to fit."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    if len(p) == 0 or not 0 < observed < len(p):
        return 0.0, math.inf
    lo, hi = -BOUND, BOUND

    def expected(theta: float) -> float:
        e = math.exp(theta)
        return float((p * e / (p * e + 1.0 - p)).sum())

    if expected(lo) >= observed:
        theta = lo
    elif expected(hi) <= observed:
        theta = hi
    else:
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if expected(mid) < observed:
                lo = mid
            else:
                hi = mid
        theta = 0.5 * (lo + hi)
    q = p * math.exp(theta) / (p * math.exp(theta) + 1.0 - p)
    info = float((q * (1.0 - q)).sum())
    return theta, (1.0 / math.sqrt(info)) if info > 0 else math.inf


def _shrunk(theta: np.ndarray, se: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, float]:
    """Empirical-Bayes shrinkage of per-month shifts toward 0 (variance of the true shifts by moments), then
    centred by ``weight`` so the months average no shift."""
    ok = np.isfinite(se)
    if ok.sum() < 2:
        return np.zeros_like(theta), 0.0
    tau2 = max(0.0, float(np.mean(theta[ok] ** 2) - np.mean(se[ok] ** 2)))
    out = np.where(ok, theta * tau2 / (tau2 + np.where(ok, se, 1.0) ** 2), 0.0)
    w = np.where(ok, weight, 0.0)
    if w.sum() > 0:
        out = out - (w * out).sum() / w.sum()
    return out, tau2


def fit_calendar(x: ExitShares, fiscal_year_start: int, as_of: int, first_day: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per month of the fiscal quarter the shifts of the lost-vs-forward and won-vs-other log odds (both
    zero until a full quarter of exits is observed), and the figures behind them."""
    first = to_date(first_day)
    qs, qe = quarter_bounds(first, fiscal_year_start)
    full_start = qs if qs == first else qe + dt.timedelta(days=1)
    full_end = quarter_bounds(full_start, fiscal_year_start)[1]
    figures: dict[str, Any] = {"first_full_quarter": [full_start.isoformat(), full_end.isoformat()]}
    if full_end >= to_date(as_of):
        figures["used"] = False
        figures["reason"] = "less than one full quarter of exits observed"
        return np.zeros(3), np.zeros(3), figures
    q = month_of_quarter(x.day, fiscal_year_start)
    lost_theta, lost_se, won_theta, won_se, n_nb, n_fw = (np.zeros(3) for _ in range(6))
    # Only exits whose outcome the tables leave open inform a shift (a share of 0 or 1 has no odds to move).
    ell_all = x.l / np.maximum(x.l + x.f, 1e-300)
    omega_all = x.w / np.maximum(x.f, 1e-300)
    open_l = (ell_all > 1e-9) & (ell_all < 1 - 1e-9)
    open_w = (omega_all > 1e-9) & (omega_all < 1 - 1e-9)
    for m in range(3):
        nb = (q == m) & (x.outcome != 0) & open_l  # not back: lost or forward
        lost_theta[m], lost_se[m] = _odds_shift(ell_all[nb], float((x.outcome[nb] == 1).sum()))
        fw = (q == m) & (x.outcome >= 2) & open_w
        won_theta[m], won_se[m] = _odds_shift(omega_all[fw], float((x.outcome[fw] == 3).sum()))
        n_nb[m], n_fw[m] = nb.sum(), fw.sum()
    lost, tau_l = _shrunk(lost_theta, lost_se, n_nb)
    won, tau_w = _shrunk(won_theta, won_se, n_fw)
    figures.update(used=True, lost_raw=lost_theta.tolist(), won_raw=won_theta.tolist(),
                   lost_se=lost_se.tolist(), won_se=won_se.tolist(),
                   lost_prior_var=tau_l, won_prior_var=tau_w, exits_not_back=n_nb.tolist(),
                   exits_forward=n_fw.tolist())
    return lost, won, figures


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
    odds = x.l[nb] / np.maximum(x.f[nb], 1e-300) * np.exp(lost_shift[q])
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
    """The calendar shifts and the shared shock of the model, fitted on its own tables."""
    x = exit_shares(spells, cells, stage, first_day, as_of)
    lost, won, cal = fit_calendar(x, fiscal_year_start, as_of, first_day)
    var, frail = fit_frailty(x, lost, fiscal_year_start, as_of, first_day, period_days)
    effects = MixEffects(lost_shift=lost, won_shift=won, frailty_var=var, fiscal_year_start=fiscal_year_start)
    return effects.check(), {"calendar": cal, "shared_shock": frail}
