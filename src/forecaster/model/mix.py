"""The effects that move an exit beyond its stage table: calendar shifts per stage and month of the fiscal
quarter, and the shared shock's variance (fitted by model.shocks; formulas: docs/model.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forecaster.errors import ModelError, Problems
from forecaster.model.tables import _check_array


@dataclass(frozen=True, eq=False)
class MixEffects:
    """What moves an exit beyond its stage table (model.shocks; docs/model.md).

    exit_rate   float64 [n, 3]  per open stage (n = the number of open stages, or 1: one row for every
                                stage) and month of the fiscal quarter: the factor on the daily hazard of
                                leaving the stage forward or lost (moves back keep the table's), on days of
                                that month
    lost_shift  float64 [n, 3]  per stage and month: shift of the log odds of losing against moving forward
                                among those exits
    frailty_var float           variance of the per-trial Gamma(1/var, var) multiplier of those odds (0: none)
    fiscal_year_start int       the month (1-12) the fiscal year starts in (months of the quarter follow it)
    All rates 1, no shift and no variance: no effect (the plain stage tables). A 1-d [3] array is read as
    one row for every stage.
    """

    exit_rate: np.ndarray
    lost_shift: np.ndarray
    frailty_var: float = 0.0
    fiscal_year_start: int = 1

    def __post_init__(self) -> None:
        for name in ("exit_rate", "lost_shift"):
            a = getattr(self, name)
            if isinstance(a, np.ndarray) and a.ndim == 1:
                object.__setattr__(self, name, a[None, :])

    @staticmethod
    def none(fiscal_year_start: int = 1) -> MixEffects:
        return MixEffects(np.ones((1, 3)), np.zeros((1, 3)), 0.0, fiscal_year_start)

    def rows(self, stage_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(exit_rate, lost_shift) [len(stage_of), 3] for open stages ``stage_of``."""
        i = np.minimum(np.asarray(stage_of, np.int64), self.exit_rate.shape[0] - 1)
        return self.exit_rate[i], self.lost_shift[i]

    @property
    def calendar(self) -> bool:
        """Whether any month's exit rate or lost odds differ from the table's."""
        return bool(np.any(self.exit_rate != 1.0) or np.any(self.lost_shift != 0.0))

    @property
    def active(self) -> bool:
        return self.calendar or self.frailty_var > 0

    @property
    def max_rate(self) -> float:
        """R = max(1, the exit rates): the kernel draws exits at R times the table's hazard and thins them."""
        return float(max(1.0, float(self.exit_rate.max())))

    def without(self, *, calendar: bool = False, frailty: bool = False) -> MixEffects:
        """A copy with the calendar effects and/or the shared shock switched off (ablations)."""
        return MixEffects(np.ones((1, 3)) if calendar else self.exit_rate,
                          np.zeros((1, 3)) if calendar else self.lost_shift,
                          0.0 if frailty else self.frailty_var, self.fiscal_year_start)

    def same_as(self, other: MixEffects) -> bool:
        return (np.array_equal(self.exit_rate, other.exit_rate) and np.array_equal(self.lost_shift, other.lost_shift)
                and self.frailty_var == other.frailty_var and self.fiscal_year_start == other.fiscal_year_start)

    def check(self) -> MixEffects:
        p = Problems(ModelError)
        o = "MixEffects"
        if _check_array(p, o, "exit_rate", self.exit_rate, np.float64, 2) and (
                self.exit_rate.shape[1:] != (3,) or self.exit_rate.shape[0] < 1
                or not np.all(np.isfinite(self.exit_rate) & (self.exit_rate > 0))):
            p.add(f"{o}.exit_rate: expected per stage 3 finite hazard factors > 0, got {self.exit_rate.tolist()}")
        if _check_array(p, o, "lost_shift", self.lost_shift, np.float64, 2) and (
                self.lost_shift.shape != self.exit_rate.shape or not np.all(np.isfinite(self.lost_shift))):
            p.add(f"{o}.lost_shift: expected per stage 3 finite log odds shifts (the shape of exit_rate), "
                  f"got {self.lost_shift.tolist()}")
        if not (math.isfinite(self.frailty_var) and 0.0 <= self.frailty_var):
            p.add(f"{o}.frailty_var: expected a finite variance >= 0, got {self.frailty_var!r}")
        if not 1 <= int(self.fiscal_year_start) <= 12:
            p.add(f"{o}.fiscal_year_start: expected a month 1-12, got {self.fiscal_year_start!r}")
        p.raise_if_any()
        return self
