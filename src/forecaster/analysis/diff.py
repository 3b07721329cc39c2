"""What moved since last week: the forecast of one window as of D1 and as of D2, and its change split into
parts that add up exactly (docs/explain.md).

The forecast of the window [start, end] as of D is its expected revenue (and won deals): what was booked in
the window before D, plus for each deal open at D its amount times P(won inside the window) (the kernel's
share of won trials, so the sum is the simulated mean of the open deals to the last digit), plus the
new-deal allowance: per arrival day from D on, per segment and entry stage, the expected arrivals times
P(won inside the window) of a deal entering that day (one pseudo deal each, on its own stream) times the
mean amount. Every part is an exact function of per-deal probabilities, so the change splits deal by deal:

- won / lost: deals open at D1 and won / lost before D2: their booked amount (0 when lost, or won outside
  the window) minus their value at D1;
- created: deals created between D1 and D2, valued at D2 by the D1 model, less the allowance the D1
  forecast held for new deals arriving before D2;
- progressed / moved_back / aged / pushed / pulled_in: deals open at both dates, valued by the D1 model at
  their D2 stage and age minus at their D1 stage and age (the amount held at D1): a later stage is
  progressed, an earlier one moved back (a reopened deal too); in the same stage, a later CRM close date is
  pushed, an earlier one pulled in, else aged;
- amount: the change of the amount, times the D1 model's P(win) at D2;
- model: the D2 model's value of every deal open at D2 (and of the allowance of new deals from D2 on)
  minus the D1 model's (the refit).

The valuations use the config's seed and trials and common random numbers (a deal's draws depend on its
id only, a pseudo deal's on its segment, stage and arrival date), so a component is exactly zero when
nothing of its kind happened: D1 = D2 gives zeros everywhere, the same model a zero ``model``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from forecaster.analysis.forecast import Base, model_tables, prepare, simulate_base
from forecaster.calendar import NO_DATE, quarter_bounds, to_date, to_day
from forecaster.config import Config
from forecaster.crm import LOST, OPEN, WON, CRMData, load
from forecaster.crm.snapshot import MAX_DAYS_AFTER_DATA
from forecaster.errors import ConfigError
from forecaster.model import OpenDeals, PipelineModel, model_groups
from forecaster.sim import stream_ids

COMPONENTS = ("won", "lost", "created", "progressed", "moved_back", "aged", "amount", "pushed", "pulled_in", "model")
NEW_DEALS = "(new deals)"
LARGEST = 5


def diff_window(config: Config, to: dt.date, start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
    """The window [start, end]: the flags', else the fiscal quarter that contains ``to`` (an end alone ends
    that quarter's window; a start alone runs to the end of its own quarter)."""
    fiscal = config.calendar.fiscal_year_start
    first = start or quarter_bounds(to, fiscal)[0]
    last = end or quarter_bounds(first, fiscal)[1]
    if last < first:
        raise ConfigError(f"--end {last} is before --start {first}")
    if last < to:
        raise ConfigError(f"--end {last} is before --to {to}: the window must end on or after the later date")
    return first, last


def check_dates(full: CRMData, d1: dt.date, d2: dt.date) -> None:
    """--from and --to inside the data: D1 <= D2, a deal known before D1, D2 at most a month past the data."""
    if d2 < d1:
        raise ConfigError(f"--to {d2} is before --from {d1}")
    info = full.info()
    first, last = to_date(info.first_created), to_date(info.last_day)
    if d1 <= first:
        raise ConfigError(f"--from {d1} is not after the first deal in the data ({first}): nothing was known then")
    if (d2 - last).days > MAX_DAYS_AFTER_DATA:
        raise ConfigError(f"--to {d2} is {(d2 - last).days:,} days after the last recorded event in the data "
                          f"({last}); pick a date up to {MAX_DAYS_AFTER_DATA} days after it")


def under_model(base: Base, model: PipelineModel) -> tuple[Base, np.ndarray]:
    """``base`` with its open deals placed in the cells of ``model`` (fitted as of another date) and that
    model's tables; and bool [open deals] of the deals whose segment the model knows (the others are left
    out of the returned base)."""
    snap, open_idx = base.data, base.open_idx
    group = model_groups(snap, model)[0][open_idx]
    known = group >= 0
    d = base.deals
    cell = group * model.n_stages + snap.stage_now[open_idx]
    deals = OpenDeals(cell[known].astype(np.int32), d.age[known], d.amount[known], group[known].astype(np.int32),
                      d.stream_ids()[known])
    return dataclasses.replace(base, model=model, stage=model_tables(model, base.config), deals=deals,
                               open_idx=open_idx[known]), known


def open_p_win(base: Base) -> np.ndarray:
    """float64 [open deals]: each open deal's share of trials won inside the window (no new deals)."""
    return simulate_base(base, arrivals=None).deal_p_win


@dataclass(frozen=True)
class Allowance:
    """The expected new deals won inside the window, one entry per (arrival day, segment, entry stage) with
    arrivals, each [k]: ``day`` int64 (day number), ``weight`` float64 (expected arrivals that day in that
    segment and entry stage), ``p_win`` float64 (the pseudo deal's share of won trials), ``mean_amount``
    float64 (the segment's mean new-deal amount), ``revenue`` and ``wins`` float64 (their products)."""

    day: np.ndarray
    weight: np.ndarray
    p_win: np.ndarray
    mean_amount: np.ndarray

    @property
    def wins(self) -> np.ndarray:
        return self.weight * self.p_win

    @property
    def revenue(self) -> np.ndarray:
        return self.wins * self.mean_amount

    def total(self, mask: np.ndarray | None = None) -> tuple[float, float]:
        """(revenue, wins) of the entries ``mask`` (all by default)."""
        m = slice(None) if mask is None else mask
        return float(self.revenue[m].sum()), float(self.wins[m].sum())


NO_ALLOWANCE = Allowance(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))


def new_deal_allowance(base: Base) -> Allowance:
    """The new-deal allowance of a forecast: expected arrivals (rate x weekday x month-of-quarter factor;
    the per-trial gamma factor has mean 1) x entry share per day, segment and entry stage, each valued by a
    pseudo deal entering that stage that day at age 0 (its own stream, keyed by segment, stage and date,
    so two forecasts value the same arrival day with the same draws), times the segment's mean amount."""
    a = base.arrivals
    if a is None:
        return NO_ALLOWANCE
    model = base.model
    S = model.n_stages
    lam = a.rate[:, None] * a.weekday_factor[:, base.weekday] * a.moq_factor[:, base.moq]  # [G, days]
    weight = lam[:, None, :] * a.entry_p[:, :, None]  # [G, S, days]
    g, s, d = np.nonzero(weight > 0)
    if len(g) == 0:
        return NO_ALLOWANCE
    day = base.data.as_of + d.astype(np.int64)
    keys = [f"\x1fnew deal\x1f{model.group_name(gi)}\x1f{model.stages[si]}\x1f{di}"
            for gi, si, di in zip(g.tolist(), s.tolist(), day.tolist())]
    pseudo = OpenDeals(cell=(g * S + s).astype(np.int32), age=np.zeros(len(g), np.int32),
                       amount=np.ones(len(g)), group=g.astype(np.int32), stream_id=stream_ids(np.array(keys)),
                       start=d.astype(np.int32))
    p = simulate_base(base, deals=pseudo, arrivals=None).deal_p_win
    pools = [a.amount_pool[a.amount_off[i]:a.amount_off[i + 1]] for i in range(a.n_groups)]
    mean_amount = np.array([x.mean() if len(x) else 0.0 for x in pools])
    return Allowance(day, weight[g, s, d], p, mean_amount[g])


def deal_values(snap: Any, open_idx: np.ndarray, p_open: np.ndarray, window: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per deal of ``snap``: (revenue, wins) float64 [n] in the window [first, last] (day numbers): the
    booked amount and 1 when won inside it, amount x p and p for the open deals ``open_idx`` (P(win)
    ``p_open``), else 0."""
    booked = (snap.status == WON) & (snap.closed >= window[0]) & (snap.closed <= window[1])
    wins = booked.astype(np.float64)
    wins[open_idx] = p_open
    return snap.amount * wins, wins


def _totals(as_of: dt.date, revenue: np.ndarray, wins: np.ndarray, is_open: np.ndarray, new: Allowance
            ) -> dict[str, Any]:
    """start / end of the JSON: the expected revenue and wins of the window as of one date, and its parts
    (per-deal arrays over any set of deals that holds every deal known then)."""
    new_rev, new_wins = new.total()
    booked = ~is_open
    return {"as_of": as_of.isoformat(), "revenue": float(revenue.sum()) + new_rev,
            "won_deals": float(wins.sum()) + new_wins,
            "booked": {"revenue": float(revenue[booked].sum()), "won_deals": float(wins[booked].sum())},
            "open_deals": {"deals": int(is_open.sum()), "revenue": float(revenue[is_open].sum()),
                           "won_deals": float(wins[is_open].sum())},
            "new_deals": {"revenue": new_rev, "won_deals": new_wins}}


@dataclass
class Rows:
    """The per-deal contributions as they are found: deal index at D2 (-1: the new-deal allowance),
    component, revenue and wins."""

    deal: list[np.ndarray] = dataclasses.field(default_factory=list)
    component: list[np.ndarray] = dataclasses.field(default_factory=list)
    revenue: list[np.ndarray] = dataclasses.field(default_factory=list)
    wins: list[np.ndarray] = dataclasses.field(default_factory=list)

    def add(self, name: str | np.ndarray, mask: np.ndarray, revenue: np.ndarray, wins: np.ndarray) -> None:
        idx = np.flatnonzero(mask)
        self.deal.append(idx)
        self.component.append(np.broadcast_to(np.asarray(name, object), mask.shape)[idx])
        self.revenue.append(np.asarray(revenue, np.float64)[idx])
        self.wins.append(np.asarray(wins, np.float64)[idx])

    def add_allowance(self, name: str, revenue: float, wins: float) -> None:
        self.add(name, np.ones(1, bool), np.array([revenue]), np.array([wins]))
        self.deal[-1] = np.array([-1])

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate(self.deal), np.concatenate(self.component), np.concatenate(self.revenue),
                np.concatenate(self.wins))


def _state_change(stage1: np.ndarray, stage2: np.ndarray, close1: np.ndarray, close2: np.ndarray) -> np.ndarray:
    """object [n]: progressed / moved_back by stage order, else pushed / pulled_in by the CRM close date
    (both known), else aged."""
    known = (close1 != NO_DATE) & (close2 != NO_DATE)
    return np.select([stage2 > stage1, stage2 < stage1, known & (close2 > close1), known & (close2 < close1)],
                     ["progressed", "moved_back", "pushed", "pulled_in"], "aged").astype(object)


def _on_deals(n: int, idx: np.ndarray, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
    out = np.full(n, fill)
    out[idx] = values
    return out


@dataclass(frozen=True)
class Valued:
    """Both forecasts' per-deal values over the deals known at D2 (n of them; deals not known at D1 hold 0
    and NaN there): revenue, wins and P(win) float64 [n] as of D1 (``*1``), as of D2 by the D1 model
    (``*12``) and by the D2 model (``*2``); the new-deal allowances of both forecasts; ``known1`` bool
    [n]: the deal was known at D1, ``at_d1`` int [n]: its index in the D1 snapshot (where known)."""

    rev1: np.ndarray
    win1: np.ndarray
    p1: np.ndarray
    rev12: np.ndarray
    win12: np.ndarray
    p12: np.ndarray
    rev2: np.ndarray
    win2: np.ndarray
    p2: np.ndarray
    new1: Allowance
    new2: Allowance
    known1: np.ndarray
    at_d1: np.ndarray

    def from_d1(self, x: np.ndarray, fill: Any) -> np.ndarray:
        """A per-deal array of the D1 snapshot on the D2 snapshot's deals (``fill`` where not known)."""
        out = np.full(len(self.known1), fill, dtype=np.asarray(x).dtype)
        out[self.known1] = x[self.at_d1[self.known1]]
        return out


def value(base1: Base, base2: Base, window: tuple[int, int]) -> Valued:
    """Every valuation the decomposition needs (five kernel runs: the open deals as of D1, as of D2 by
    either model, and the two allowances' pseudo deals)."""
    s1, s2 = base1.data, base2.data
    p1, p2 = open_p_win(base1), open_p_win(base2)
    base12, known_segment = under_model(base2, base1.model)
    p12 = p2.copy()  # a deal of a segment the D1 model never saw: the D2 model's view (no model part)
    p12[known_segment] = open_p_win(base12)
    rev1, win1 = deal_values(s1, base1.open_idx, p1, window)
    rev12, win12 = deal_values(s2, base2.open_idx, p12, window)
    rev2, win2 = deal_values(s2, base2.open_idx, p2, window)
    n2 = s2.n_deals
    # Deals known at D1 are the D2 snapshot's deals created before D1, in the same order.
    known1 = s2.created < s1.as_of
    mapped = Valued(rev1=rev1, win1=win1, p1=_on_deals(s1.n_deals, base1.open_idx, p1, np.nan),
                    rev12=rev12, win12=win12, p12=_on_deals(n2, base2.open_idx, p12, np.nan),
                    rev2=rev2, win2=win2, p2=_on_deals(n2, base2.open_idx, p2, np.nan),
                    new1=new_deal_allowance(base1), new2=new_deal_allowance(base2), known1=known1,
                    at_d1=np.cumsum(known1) - 1)
    return dataclasses.replace(mapped, rev1=mapped.from_d1(rev1, 0.0), win1=mapped.from_d1(win1, 0.0),
                               p1=mapped.from_d1(mapped.p1, np.nan))


def contributions(base1: Base, base2: Base, v: Valued) -> Rows:
    """The per-deal parts of the change from base1's forecast (as of D1) to base2's (as of D2 >= D1)."""
    s1, s2 = base1.data, base2.data
    status1, amount1 = v.from_d1(s1.status, OPEN), v.from_d1(s1.amount, 0.0)
    status2 = s2.status
    p12 = np.nan_to_num(v.p12)
    rows = Rows()
    rows.add("created", ~v.known1, v.rev12, v.win12)
    open1 = v.known1 & (status1 == OPEN)
    rows.add("won", open1 & (status2 == WON), v.rev2 - v.rev1, v.win2 - v.win1)
    rows.add("lost", open1 & (status2 == LOST), v.rev2 - v.rev1, v.win2 - v.win1)
    both = open1 & (status2 == OPEN)
    state = _state_change(v.from_d1(s1.stage_now, -1), s2.stage_now, v.from_d1(s1.expected_close, NO_DATE),
                          s2.expected_close)
    rows.add(state, both, amount1 * p12 - v.rev1, p12 - v.win1)
    rows.add("amount", both & (s2.amount != amount1), v.rev12 - amount1 * p12, np.zeros(len(p12)))
    closed1 = v.known1 & (status1 != OPEN)
    rows.add("moved_back", closed1 & (status2 == OPEN), v.rev12 - v.rev1, v.win12 - v.win1)  # reopened
    changed = closed1 & (status2 != OPEN) & ((v.rev2 != v.rev1) | (v.win2 != v.win1))
    rows.add(np.where(status2 == WON, "won", "lost").astype(object), changed, v.rev2 - v.rev1, v.win2 - v.win1)
    rows.add("model", status2 == OPEN, v.rev2 - v.rev12, v.win2 - v.win12)
    if base1.arrivals is not None or base2.arrivals is not None:
        before = v.new1.day < s2.as_of  # the allowance for arrivals between D1 and D2
        held_rev, held_wins = v.new1.total(before)
        rows.add_allowance("created", -held_rev, -held_wins)
        (rev2, wins2), (rest_rev, rest_wins) = v.new2.total(), v.new1.total(~before)
        rows.add_allowance("model", rev2 - rest_rev, wins2 - rest_wins)
    return rows


def _stage_names(snap: Any, stages: tuple[str, ...], names: tuple[str, str]) -> np.ndarray:
    """object [n]: each deal's stage, or the won / lost stage's name when closed."""
    open_name = np.array(list(stages) + [None], object)[np.where(snap.stage_now >= 0, snap.stage_now, len(stages))]
    return np.select([snap.status == WON, snap.status == LOST], [names[0], names[1]], open_name).astype(object)


def _dates(days: np.ndarray) -> pa.Array:
    return pa.array(days.astype(np.int32), pa.date32(), mask=days == NO_DATE)


def rows_table(base1: Base, base2: Base, v: Valued, rows: Rows) -> pa.Table:
    """diff.parquet: one row per deal and component (the new-deal allowance as deal "(new deals)"), with
    the deal's stage, amount, P(win in the window) and CRM close date at both dates."""
    s1, s2 = base1.data, base2.data
    deal, component, revenue, wins = rows.arrays()
    order = np.lexsort((deal, np.array([COMPONENTS.index(c) for c in component])))
    deal, component, revenue, wins = deal[order], component[order], revenue[order], wins[order]
    names = (base2.config.won, base2.config.lost)
    stage1 = v.from_d1(_stage_names(s1, s1.stages, names), None)
    stage2 = _stage_names(s2, s2.stages, names)
    is_deal = deal >= 0
    k = np.where(is_deal, deal, 0)

    def col(x: np.ndarray, fill: Any = None) -> list[Any]:
        return [x[i] if ok else fill for i, ok in zip(k.tolist(), is_deal.tolist())]

    def floats(x: np.ndarray) -> pa.Array:
        vals = x[k]
        return pa.array(vals, pa.float64(), mask=~is_deal | np.isnan(vals))

    amount1 = np.where(v.known1, v.from_d1(s1.amount, 0.0), np.nan)
    close1 = np.where(is_deal, v.from_d1(s1.expected_close, NO_DATE)[k], NO_DATE)
    close2 = np.where(is_deal, s2.expected_close[k], NO_DATE)
    return pa.table({
        "deal_id": pa.array([str(x) if ok else NEW_DEALS for x, ok in zip(col(s2.deal_id), is_deal.tolist())],
                            pa.string()),
        "component": pa.array(component.tolist(), pa.string()),
        "revenue": pa.array(revenue, pa.float64()),
        "won_deals": pa.array(wins, pa.float64()),
        "stage_from": pa.array(col(stage1), pa.string()),
        "stage_to": pa.array(col(stage2), pa.string()),
        "amount_from": floats(amount1),
        "amount_to": floats(s2.amount.astype(np.float64)),
        "p_win_from": floats(v.p1),
        "p_win_to": floats(v.p2),
        "crm_expected_close_from": _dates(close1),
        "crm_expected_close_to": _dates(close2),
    })


def summarize_components(table: pa.Table) -> list[dict[str, Any]]:
    """The JSON's ``components``: per component, in COMPONENTS order, the sums of its rows, how many deals
    it holds (the allowance row is not a deal) and its ``LARGEST`` rows by size of revenue."""
    comp = np.array(table["component"].to_pylist(), object)
    rev = table["revenue"].to_numpy()
    wins = table["won_deals"].to_numpy()
    ids = np.array(table["deal_id"].to_pylist(), object)
    out = []
    for name in COMPONENTS:
        sel = np.flatnonzero(comp == name)
        top = sel[np.lexsort((ids[sel], -np.abs(rev[sel])))][:LARGEST]
        out.append({"name": name, "revenue": float(rev[sel].sum()), "won_deals": float(wins[sel].sum()),
                    "deals": int((ids[sel] != NEW_DEALS).sum()),
                    "largest": [{"deal_id": str(ids[i]), "revenue": float(rev[i]), "won_deals": float(wins[i])}
                                for i in top]})
    return out


@dataclass(frozen=True)
class Diff:
    """``result``: diff.json (from, to, window, start, end, components); ``rows``: diff.parquet."""

    result: dict[str, Any]
    rows: pa.Table


def decompose(base1: Base, base2: Base, window: tuple[dt.date, dt.date]) -> Diff:
    """The change of the forecast of ``window`` from base1 (as of D1) to base2 (as of D2 >= D1), both
    prepared on the same export with the same trials and seed."""
    days = (to_day(window[0]), to_day(window[1]))
    v = value(base1, base2, days)
    table = rows_table(base1, base2, v, contributions(base1, base2, v))
    s1, s2 = base1.data, base2.data
    open1 = v.from_d1(s1.status == OPEN, False)
    result = {
        "from": base1.as_of.isoformat(), "to": base2.as_of.isoformat(),
        "window": {"start": window[0].isoformat(), "end": window[1].isoformat()},
        "currency": s2.currency, "trials": int(base2.config.forecast.trials), "seed": int(base2.config.forecast.seed),
        "new_deals": bool(base2.config.forecast.new_deals),
        "start": _totals(base1.as_of, v.rev1, v.win1, open1, v.new1),
        "end": _totals(base2.as_of, v.rev2, v.win2, s2.status == OPEN, v.new2),
        "components": summarize_components(table),
    }
    return Diff(result, table)


def run_diff(config: Config, d1: dt.date, d2: dt.date, start: dt.date | None = None, end: dt.date | None = None,
             *, full: CRMData | None = None) -> Diff:
    """`forecaster diff`: the forecast of the window (default: the fiscal quarter that contains ``d2``) as
    of ``d1`` and as of ``d2``, and what moved between them. Each forecast is fitted on what was known
    before its date; the valuations run on this process with the config's trials and seed (expected
    values: ``forecast.parameter_uncertainty`` does not apply)."""
    if d2 < d1:
        raise ConfigError(f"--to {d2} is before --from {d1}")
    first, last = diff_window(config, d2, start, end)
    full = full if full is not None else load(config)
    check_dates(full, d1, d2)
    cfg = config.with_forecast(parameter_uncertainty=False)
    base1 = prepare(cfg.with_forecast(as_of=d1, start=max(first, d1), end=last), full=full)
    base2 = prepare(cfg.with_forecast(as_of=d2, start=max(first, d2), end=last), full=full)
    return decompose(base1, base2, (first, last))


__all__ = ["COMPONENTS", "Diff", "NEW_DEALS", "decompose", "diff_window", "run_diff"]
