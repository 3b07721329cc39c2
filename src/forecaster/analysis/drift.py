"""``fit.half_life_days: auto``: the recency weighting of spells, chosen by an inner rolling backtest.

Before the forecast's as-of D, on the export as known at D (no peeking), each candidate half-life forecasts
the INNER_CUTOFFS windows as long as the forecast's that end before D; the one with the lowest mean CRPS of
revenue wins (ties go to no weighting). With less history than MIN_WINDOWS windows before the first inner
cutoff the weighting stays off: a drift cannot be told from noise on less.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np

from forecaster.analysis import scores
from forecaster.calendar import to_date, to_day
from forecaster.config import Config
from forecaster.crm import WON, CRMData, cut

CANDIDATES: tuple[int | None, ...] = (None, 730, 365, 182)
INNER_CUTOFFS = 3
INNER_TRIALS = 400
MIN_WINDOWS = 3


def choose_half_life(full: CRMData, config: Config, as_of: dt.date, window_days: int) -> tuple[int | None, dict]:
    """(the half-life in days or None, the figures behind the choice) for a forecast as of ``as_of``."""
    from forecaster.analysis.forecast import prepare, simulate_base  # the inner forecasts are forecasts

    known = cut(full, to_day(as_of))  # the export as known at as_of: everything after is unseen
    first = int(known.created.min()) if known.observed_from is None else known.observed_from
    cutoffs = [to_day(as_of) - k * window_days for k in range(1, INNER_CUTOFFS + 1)]
    figures: dict[str, Any] = {"candidates": [c or "off" for c in CANDIDATES], "window_days": window_days,
                               "cutoffs": [to_date(c).isoformat() for c in cutoffs]}
    if min(cutoffs) - first < MIN_WINDOWS * window_days:
        figures["reason"] = f"less than {MIN_WINDOWS} windows of history before the inner cutoffs"
        return None, figures
    crps = np.zeros((len(CANDIDATES), len(cutoffs)))
    for j, c in enumerate(cutoffs):
        start, end = to_date(c), to_date(c + window_days - 1)
        won = (known.status == WON) & (known.closed >= c) & (known.closed < c + window_days)
        actual = float(known.amount[won].sum())
        for i, hl in enumerate(CANDIDATES):
            cfg = dataclasses.replace(config, fit=dataclasses.replace(config.fit, half_life_days=hl))
            cfg = cfg.with_forecast(as_of=start, start=start, end=end, trials=INNER_TRIALS,
                                    parameter_uncertainty=False)
            crps[i, j] = scores.crps_sample(simulate_base(prepare(cfg, full=known)).revenue, actual)
    mean = crps.mean(axis=1)
    best = int(np.argmin(mean))  # argmin takes the first of equals: no weighting wins ties
    figures["mean_crps"] = mean.tolist()
    return CANDIDATES[best], figures
