"""Raw results of a simulation (``SimResult``) and the exact merge of blocks of trials."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class SimResult:
    """Raw results of ``simulate``. T trials, P periods, G groups, S open stages, n open deals,
    W = end_off - start_off + 1 window days. Amounts are in the deals' currency; days are offsets
    from as_of. New deals are included in every per-trial figure; ``new_*`` isolates them.

    Per trial:
      revenue          float64 [T]     won amount with a win day in [start_off, end_off]
      won_deals        int32   [T]     deals won in the window
      period_revenue   float64 [T, P]  by period p: period_start[p] <= win day < period_start[p + 1]
      period_wins      int32   [T, P]
      group_revenue    float64 [T, G]
      group_wins       int32   [T, G]
      new_revenue      float64 [T]     revenue from deals that arrive during the simulation
      new_wins         int32   [T]
      lost_deals       int32   [T]     deals lost in the window
      carried_deals    int32   [T, S]  deals still open after end_off, by stage
      carried_amount   float64 [T, S]
    Per open deal (accumulated over trials):
      deal_won_trials  int32 [n]      trials in which the deal is won in the window
      deal_lost_trials int32 [n]      trials in which it is lost in the window
      deal_win_hist    int32 [n, W]   trials won on each window day (column = day - start_off);
                                      shape [n, 0] when simulate(track_win_days=False)
    Work: deal_trials (deal walks, open and new), deal_steps (stage visits simulated).
    """

    n_trials: int
    seed: int
    start_off: int
    end_off: int
    period_start: np.ndarray
    revenue: np.ndarray
    won_deals: np.ndarray
    period_revenue: np.ndarray
    period_wins: np.ndarray
    group_revenue: np.ndarray
    group_wins: np.ndarray
    new_revenue: np.ndarray
    new_wins: np.ndarray
    lost_deals: np.ndarray
    carried_deals: np.ndarray
    carried_amount: np.ndarray
    deal_won_trials: np.ndarray
    deal_lost_trials: np.ndarray
    deal_win_hist: np.ndarray
    deal_trials: int
    deal_steps: int

    @property
    def deal_p_win(self) -> np.ndarray:
        """float64 [n]: share of trials in which each open deal is won in the window."""
        return self.deal_won_trials / self.n_trials

    @property
    def deal_p_lost(self) -> np.ndarray:
        return self.deal_lost_trials / self.n_trials

    def deal_median_win_off(self) -> np.ndarray:
        """int32 [n]: median win day offset among the trials a deal is won in (the lower median:
        the first day by which at least half of its wins happened); -1 for deals never won."""
        h = self.deal_win_hist
        if h.shape[1] == 0:
            raise ValueError("win days were not tracked (simulate(track_win_days=False))")
        cum = np.cumsum(h, axis=1, dtype=np.int64)
        won = cum[:, -1]
        first = np.argmax(2 * cum >= won[:, None], axis=1)
        return np.where(won > 0, first + self.start_off, -1).astype(np.int32)


PER_TRIAL = ("revenue", "won_deals", "period_revenue", "period_wins", "group_revenue", "group_wins", "new_revenue",
             "new_wins", "lost_deals", "carried_deals", "carried_amount")
PER_DEAL = ("deal_won_trials", "deal_lost_trials", "deal_win_hist", "deal_trials", "deal_steps")


def merge_results(parts: list[SimResult]) -> SimResult:
    """Blocks of trials (in order) as one result: per-trial arrays concatenated, per-deal counts added."""
    first = parts[0]
    cat = {f: np.concatenate([getattr(p, f) for p in parts]) for f in PER_TRIAL}
    add = {f: sum(getattr(p, f) for p in parts) for f in PER_DEAL}
    return dataclasses.replace(first, n_trials=sum(p.n_trials for p in parts), **cat, **add)
