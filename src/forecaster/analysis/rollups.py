"""``report_by``: the forecast rolled up by reporting columns (owner, region, pipeline) that are not model
segments, per trial, without a model cell per value.

Per trial, a group's revenue is the sum over its deals of what each deal did in that trial. The kernel
returns per-trial sums only per model segment, so for any other column each value's open deals are
simulated on their own with the forecast's seed: every deal draws from its own stream (common random
numbers), so a deal does in that run exactly what it did in the forecast, and the value's per-trial
revenue is exact. New deals carry no owner or region: they are one more group, "(new deals)". A column
that is a model segment is rolled up from the segments' own per-trial sums, new deals included. Every
column's groups add up, trial by trial, to the forecast's total, shown as "(total)".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from forecaster.crm import MISSING_ATTR
from forecaster.model import OpenDeals
from forecaster.sim import SimResult

if TYPE_CHECKING:
    from forecaster.analysis.forecast import Base

Simulate = Callable[[OpenDeals], SimResult]  # the forecast's trials of some open deals, no new deals

BLANK = "(blank)"
NEW_DEALS = "(new deals)"
TOTAL = "(total)"


@dataclass(frozen=True)
class Rollup:
    """One reporting column: its values (blank as "(blank)", then "(new deals)" where new deals are a
    group of their own, then "(total)") and per value and trial the revenue float64 [T] and wins int [T]."""

    column: str
    values: tuple[str, ...]
    revenue: tuple[np.ndarray, ...]
    wins: tuple[np.ndarray, ...]


def label(value: str) -> str:
    """A group's name: blank values (empty, or MISSING_ATTR) are "(blank)"."""
    return BLANK if value == MISSING_ATTR or not value.strip() else value


def _from_segments(base: Base, sim: SimResult, column: str) -> Rollup:
    model = base.model
    j = model.segment_by.index(column)
    labels = [label(g[j]) for g in model.groups]
    names = sorted(set(labels))
    rev, wins = [], []
    for v in names:
        gs = [g for g, lab in enumerate(labels) if lab == v]
        rev.append(sim.group_revenue[:, gs].sum(axis=1))
        wins.append(sim.group_wins[:, gs].sum(axis=1))
    return Rollup(column, (*names, TOTAL), (*rev, sim.revenue), (*wins, sim.won_deals))


def _by_deal_groups(base: Base, sim: SimResult, column: str, simulate: Simulate) -> Rollup:
    labels = np.array([label(v) for v in base.data.attrs[column].to_numpy(zero_copy_only=False)[base.open_idx]],
                      dtype=object)
    names = sorted(set(labels.tolist()))
    rev, wins = [], []
    for v in names:
        part = simulate(base.deals.take(np.flatnonzero(labels == v)))
        rev.append(part.revenue)
        wins.append(part.won_deals)
    if base.config.forecast.new_deals:
        names.append(NEW_DEALS)
        rev.append(sim.new_revenue)
        wins.append(sim.new_wins)
    return Rollup(column, (*names, TOTAL), (*rev, sim.revenue), (*wins, sim.won_deals))


def rollups(base: Base, sim: SimResult, simulate: Simulate) -> list[Rollup]:
    """The forecast ``sim`` of ``base`` rolled up by each ``report_by`` column; ``simulate(deals)`` runs the
    forecast's trials (same seed, same blocks and models) of some of its open deals without new deals."""
    out = []
    for column in base.config.report_by:
        if column in base.model.segment_by:
            out.append(_from_segments(base, sim, column))
        else:
            out.append(_by_deal_groups(base, sim, column, simulate))
    return out


__all__ = ["BLANK", "NEW_DEALS", "Rollup", "TOTAL", "rollups"]
