"""The as-of cut: what the CRM knew before a date, as one ``Snapshot`` that every later step reads.

A snapshot holds the export's arrays as known before ``as_of`` (deals created on or after it vanish,
deals closed on or after it are open, stage rows on or after it are dropped) and what the fit and the
simulation need from them, computed once: each deal's current stage and the day it entered it, its entry
stage, and the stage spells (stays in open stages, exited or censored at as_of).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from forecaster.calendar import NO_DATE, to_date, to_day
from forecaster.config import Config
from forecaster.crm.export import LOST, OPEN, STATUS_NAMES, WON, CRMData, DataWarning, ExportInfo
from forecaster.crm.fields import DealFields, fields_as_of, unknown_fields
from forecaster.errors import DataError


@dataclass(frozen=True)
class Spells:
    """Stays in open stages as of D, one per open-stage history row seen. ``deal``, ``stage``, ``entered``
    (day), ``dur``: exit day since entry (exited) or age at D (censored, >= 1); ``dest``: destination (open
    stage index, S = won, S + 1 = lost; -1 when censored); ``exited`` bool; ``entry_age``: the age at which
    the spell came under observation (0, or ``observed_from - entered`` for a spell that began before the
    CRM recorded closes: left truncation). Spells that ended before observation began are left out."""

    deal: np.ndarray
    stage: np.ndarray
    entered: np.ndarray
    dur: np.ndarray
    dest: np.ndarray
    exited: np.ndarray
    entry_age: np.ndarray


@dataclass(frozen=True)
class Snapshot(CRMData):
    """The export as known before day ``as_of`` (see the module docstring). Per deal: ``stage_now`` int16
    (the stage of its last row), ``entered_now`` int32 (that row's day), ``entry_stage`` int64 (its first
    row's stage); ``spells`` one per history row; ``export``: what the whole export holds (files, counts,
    its first and last day; none of its rows); ``observed_from``: the first day whose closes the export
    records, when that is later than its first deals (a CRM adopted mid-history), else None."""

    as_of: int
    export: ExportInfo
    observed_from: int | None
    stage_now: np.ndarray
    entered_now: np.ndarray
    entry_stage: np.ndarray
    spells: Spells = field(repr=False)

    @property
    def open_idx(self) -> np.ndarray:
        """Indices of the deals open at as_of."""
        return np.flatnonzero(self.status == OPEN)

    @property
    def as_of_date(self) -> dt.date:
        return to_date(self.as_of)


def stage_spells(h_deal: np.ndarray, h_stage: np.ndarray, h_entered: np.ndarray, status: np.ndarray,
                 closed: np.ndarray, n_stages: int, as_of: int, observed_from: int | None = None) -> Spells:
    """Each open-stage row opens a spell; it ends at the deal's next row (another stage, or a closing it was
    later reopened from), at its closing, or is censored. With ``observed_from``, spells are seen from that
    day on (delayed entry) and those that ended before it are dropped. (Written to hold few temporaries: a
    million deal-level deals are a million spells.)"""
    d, m = h_deal, len(h_deal)
    has_next = np.zeros(m, bool)
    has_next[:-1] = d[1:] == d[:-1]
    status_d = status[d]
    closes = ~has_next & (status_d != OPEN)
    exit_day = np.where(closes, closed[d], np.int32(as_of)).astype(np.int32)
    nxt = np.flatnonzero(has_next)
    exit_day[nxt] = h_entered[nxt + 1]
    dest = np.full(m, -1, np.int64)
    dest[closes] = np.where(status_d[closes] == WON, n_stages, n_stages + 1)
    dest[nxt] = h_stage[nxt + 1]
    exited = has_next | closes
    dur = exit_day.astype(np.int64) - h_entered
    keep = h_stage < n_stages
    s, e = h_stage.astype(np.int64), h_entered.astype(np.int64)
    entry_age = np.zeros(m, np.int64)
    if observed_from is not None:
        entry_age = np.maximum(observed_from - e, 0)
        # Seen at all: it was still there on observed_from (an exit on that day counts; a censored spell's
        # last day at risk is dur - 1).
        keep &= np.where(exited, dur, dur - 1) >= entry_age
    if keep.all():
        return Spells(d, s, e, dur, dest, exited, entry_age)
    return Spells(d[keep], s[keep], e[keep], dur[keep], dest[keep], exited[keep], entry_age[keep])


def _with_derived(data: CRMData, as_of: int, export: ExportInfo, observed_from: int | None) -> Snapshot:
    """A Snapshot of arrays already cut at ``as_of``: the derived per-deal fields and spells computed."""
    n = data.n_deals
    stage_now = np.full(n, -1, np.int16)
    entered_now = np.full(n, NO_DATE, np.int32)
    entry_stage = np.zeros(n, np.int64)
    h = data.h_deal
    if len(h):
        last = np.r_[h[1:] != h[:-1], True]
        stage_now[h[last]] = data.h_stage[last]
        entered_now[h[last]] = data.h_entered[last]
        first = np.r_[True, h[1:] != h[:-1]]
        entry_stage[h[first]] = data.h_stage[first]
    fields = {f: getattr(data, f) for f in CRMData.__dataclass_fields__}
    spells = stage_spells(data.h_deal, data.h_stage, data.h_entered, data.status, data.closed, len(data.stages),
                          as_of, observed_from)
    return Snapshot(**fields, as_of=int(as_of), export=export, observed_from=observed_from, stage_now=stage_now,
                    entered_now=entered_now, entry_stage=entry_stage, spells=spells)


def default_as_of(data: CRMData) -> int:
    """The first day after the last recorded event (creation, stage entry, close) in the export."""
    return data.last_day() + 1


MIN_OBSERVATION_GAP_DAYS = 7


def observation_start(created: np.ndarray, closed: np.ndarray, status: np.ndarray) -> int | None:
    """The first day with a recorded close, when it comes more than a median sales cycle (creation to win,
    over the won deals; all closed deals when none is won) and at least a week after the first creation:
    before it the CRM did not record closes (adopted mid-history, or its history imported without them).
    None when closes are recorded from the start."""
    done = status != OPEN
    if not done.any():
        return None
    won = status == WON
    cycle_of = won if won.any() else done
    first_close = int(closed[done].min())
    cycle = max(float(np.median(closed[cycle_of] - created[cycle_of])), MIN_OBSERVATION_GAP_DAYS)
    return first_close if first_close - int(created.min()) > cycle else None


def _reopened_closings(h_deal: np.ndarray, h_stage: np.ndarray, h_entered: np.ndarray, status: np.ndarray,
                       closed: np.ndarray, n_stages: int) -> np.ndarray:
    """A deal whose last row before the cut is a closing it was reopened from later is closed as of the cut:
    its status and close day are set (in place); returns the rows to keep (that closing row goes)."""
    keep = np.ones(len(h_deal), bool)
    if len(h_deal):
        last = np.r_[h_deal[1:] != h_deal[:-1], True]
        trailing = last & (h_stage >= n_stages)
        deals = h_deal[trailing]
        status[deals] = np.where(h_stage[trailing] == n_stages, WON, LOST)
        closed[deals] = h_entered[trailing]
        keep = ~trailing
    return keep


def cut(data: CRMData, as_of: int, observed_from: int | None | str = "auto") -> Snapshot:
    """The export as known before day ``as_of``: nothing dated on or after it is visible.

    Deals created on/after as_of vanish; deals closed on/after as_of are open (or closed at a closing
    they were reopened from later); stage rows on/after as_of are dropped; the CRM's fields are those of
    the history rows before as_of. A deal with no stage row left sits in the first stage since created_at
    (deal-level mode: always). ``observed_from``: a day number, None (closes recorded from the start), or
    "auto" (observation_start of what is known before as_of, with a counted warning).
    """
    keep = data.created < as_of
    new_index = np.cumsum(keep, dtype=np.int64) - 1
    rows = slice(None) if keep.all() else keep  # every deal known: share the arrays, copy nothing
    closed = data.closed[keep].copy()
    status = data.status[keep].copy()
    later = (closed != NO_DATE) & (closed >= as_of)
    status[later] = OPEN
    closed[later] = NO_DATE

    hk = keep[data.h_deal] & (data.h_entered < as_of) if len(data.h_deal) else np.zeros(0, bool)
    h_deal = new_index[data.h_deal[hk]].astype(np.int32)
    h_stage = data.h_stage[hk]
    h_entered = data.h_entered[hk]
    closing = _reopened_closings(h_deal, h_stage, h_entered, status, closed, len(data.stages))
    if not closing.all():
        h_deal, h_stage, h_entered = h_deal[closing], h_stage[closing], h_entered[closing]
    n = int(keep.sum())
    has_row = np.zeros(n, bool)
    has_row[h_deal] = True
    missing = np.flatnonzero(~has_row)
    warnings = [w for w in data.warnings if w.key != "no_stage_rows"]
    if len(missing):
        created = data.created[keep]
        if len(h_deal):
            h_deal = np.r_[h_deal, missing.astype(np.int32)]
            h_stage = np.r_[h_stage, np.zeros(len(missing), np.int16)]
            h_entered = np.r_[h_entered, created[missing]]
            order = np.lexsort((h_entered, h_deal))  # stable: the synthetic row is each such deal's only row
            h_deal, h_stage, h_entered = h_deal[order], h_stage[order], h_entered[order]
        else:  # no stage row at all (deal-level): one row per deal, in deal order already
            h_deal, h_stage, h_entered = missing.astype(np.int32), np.zeros(len(missing), np.int16), created
        if not data.deal_level:
            warnings.append(DataWarning("no_stage_rows", len(missing),
                                        f"deals with no stage row before as_of (placed in '{data.stages[0]}' "
                                        f"from created_at)"))
    if observed_from == "auto":
        observed_from = observation_start(data.created[keep], closed, status)
        if observed_from is not None:
            early = int((data.created[keep] < observed_from).sum())
            warnings.append(DataWarning(
                "observed_from", early,
                f"deals created before the first recorded close {to_date(observed_from)}: history before it is "
                f"treated as unobserved (left truncation; set data.observed_from to override)"))
    fields = None
    if data.fields is not None:
        fk = keep[data.fields.deal] & (data.fields.day < as_of)
        fields = data.fields.take(np.flatnonzero(fk), new_index[data.fields.deal[fk]])
    current = deal_fields(data).take(rows)
    if as_of <= data.last_day():
        # The deals table holds the CRM's fields as of the export; before its last day they are the future
        # (a deal won since shows probability 100%): only a field history says what was known then.
        warnings += _set_aside(current)
        current = unknown_fields(len(current.expected_close))
    now = fields_as_of(fields, current, as_of)
    cut_data = CRMData(
        deal_id=data.deal_id[rows], created=data.created[rows], closed=closed.astype(np.int32), status=status,
        amount=data.amount[rows], attrs=data.attrs if keep.all() else data.attrs.filter(pa.array(keep)),
        expected_close=now.expected_close,
        crm_probability=now.probability, forecast_category=now.category, close_pushes=now.close_pushes,
        close_push_days=now.close_push_days, currency=data.currency, fields=fields,
        h_deal=h_deal.astype(np.int32), h_stage=h_stage.astype(np.int16), h_entered=h_entered.astype(np.int32),
        stages=data.stages, deal_level=data.deal_level, warnings=tuple(warnings), fingerprint=data.fingerprint,
        sources=data.sources,
    )
    return _with_derived(cut_data, as_of, data.info(), observed_from)


def _set_aside(current: DealFields) -> list[DataWarning]:
    n = int(((current.expected_close != NO_DATE) | np.isfinite(current.probability)
             | np.array([c is not None for c in current.category], bool)).sum())
    return [DataWarning("crm_fields_set_aside", n, "deals whose expected close, probability or forecast category "
                        "the deals table gives as of the export, after as_of (only a field history is used)")] if n else []


def deal_fields(data: CRMData) -> DealFields:
    return DealFields(data.expected_close, data.crm_probability, data.forecast_category, data.close_pushes,
                      data.close_push_days)


MAX_DAYS_AFTER_DATA = 30


def as_of_day(data: CRMData, when: dt.date | None) -> tuple[int, DataWarning | None]:
    """The as-of day (``when``, or the day after the last recorded event) and a warning when it lies after
    the data; more than 30 days after the last event is an error naming both dates."""
    last = data.last_day()
    if when is None:
        return last + 1, None
    day = to_day(when)
    gap = day - last
    if gap > MAX_DAYS_AFTER_DATA:
        raise DataError(f"as_of {when} is {gap:,} days after the last recorded event in the data ({to_date(last)}); "
                        f"pick an as-of date up to {MAX_DAYS_AFTER_DATA} days after it")
    if gap > 1:
        return day, DataWarning("as_of_after_data", gap, f"as_of {when} is after the last recorded event in the data "
                                                         f"({to_date(last)}): no deal is seen arriving or moving in "
                                                         f"the days between")
    return day, None


def snapshot(data: CRMData, config: Config, as_of: dt.date | None = None) -> Snapshot:
    """Cut a loaded export at ``as_of`` (or the config's forecast.as_of, or the day after the data's last
    recorded event)."""
    day, late = as_of_day(data, as_of or config.forecast.as_of)
    observed = config.data.observed_from
    out = cut(data, day, to_day(observed) if observed is not None else "auto")
    if out.n_deals == 0:
        raise DataError(f"{config.data.deals}: no deal was created before as_of {to_date(day)}")
    if late is not None:
        out = dataclasses.replace(out, warnings=out.warnings + (late,))
    return out


def resample(snap: Snapshot, idx: np.ndarray) -> Snapshot:
    """The snapshot made of deals ``idx`` (repeats allowed: a bootstrap resample), each with its stage rows.
    Deal ids repeat with their deals; a resample is for fitting, not for forecasting its deals (its CRM
    fields are the snapshot's, without their history)."""
    idx = np.asarray(idx, np.int64)
    n = snap.n_deals
    first = np.searchsorted(snap.h_deal, np.arange(n), side="left")
    last = np.searchsorted(snap.h_deal, np.arange(n), side="right")
    counts = (last - first)[idx]
    new_first = np.r_[0, np.cumsum(counts)[:-1]]
    rows = np.repeat(first[idx] - new_first, counts) + np.arange(int(counts.sum()))
    data = CRMData(
        deal_id=snap.deal_id[idx], created=snap.created[idx], closed=snap.closed[idx], status=snap.status[idx],
        amount=snap.amount[idx], attrs=snap.attrs.take(pa.array(idx)), expected_close=snap.expected_close[idx],
        crm_probability=snap.crm_probability[idx], forecast_category=snap.forecast_category[idx],
        close_pushes=snap.close_pushes[idx], close_push_days=snap.close_push_days[idx], currency=snap.currency,
        fields=None, h_deal=np.repeat(np.arange(len(idx), dtype=np.int32), counts), h_stage=snap.h_stage[rows],
        h_entered=snap.h_entered[rows], stages=snap.stages, deal_level=snap.deal_level, warnings=snap.warnings,
        fingerprint=snap.fingerprint, sources=snap.sources,
    )
    return _with_derived(data, snap.as_of, snap.export, snap.observed_from)


@dataclass(frozen=True)
class PipelineView:
    """Open deals per stage as of the cut: what `validate` and `demo` print."""

    as_of: dt.date
    stages: tuple[str, ...]
    open_deals: np.ndarray
    open_amount: np.ndarray
    median_age_days: np.ndarray
    counts: dict[str, int]
    first_day: dt.date | None
    last_day: dt.date | None
    stages_seen: tuple[str, ...]
    segment_values: dict[str, int]
    currency: str | None = None


def pipeline_view(snap: Snapshot, segment_by: tuple[str, ...] = ()) -> PipelineView:
    """The open pipeline per stage (deals, value, median age), status counts and the stages seen."""
    is_open = snap.status == OPEN
    n_s = len(snap.stages)
    s = snap.stage_now[is_open].astype(np.int64)
    age = (snap.as_of - snap.entered_now[is_open]).astype(np.float64)
    med = np.full(n_s, np.nan)
    for i in range(n_s):
        if (s == i).any():
            med[i] = float(np.median(age[s == i]))
    seen = np.unique(snap.h_stage[snap.h_stage < n_s]) if len(snap.h_stage) else np.zeros(0, int)
    return PipelineView(
        as_of=to_date(snap.as_of),
        stages=snap.stages,
        open_deals=np.bincount(s, minlength=n_s),
        open_amount=np.bincount(s, weights=snap.amount[is_open], minlength=n_s),
        median_age_days=med,
        counts={name: int((snap.status == code).sum()) for code, name in enumerate(STATUS_NAMES)},
        first_day=to_date(int(snap.created.min())) if snap.n_deals else None,
        last_day=to_date(snap.last_day()) if snap.n_deals else None,
        stages_seen=tuple(snap.stages[i] for i in seen),
        segment_values={name: len(np.unique(snap.attrs[name].to_numpy(zero_copy_only=False))) for name in segment_by},
        currency=snap.currency,
    )


__all__ = ["Snapshot", "Spells", "cut", "default_as_of", "pipeline_view", "resample", "snapshot", "stage_spells"]
