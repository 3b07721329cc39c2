"""The stage history of an export: rows -> (deal, stage, entered day), validated, ordered and cleaned.

Rules (docs/data.md): rows are ordered by deal, then time (timestamps, not file order, decide between rows
of one day), then file order. A closed deal's close is the row that entered its won/lost stage after its
last open-stage row, when the history has one (a Salesforce rep often leaves CloseDate in the future on a
lost deal). A won/lost row followed by an open-stage row is a closing the deal was reopened from: it stays
in the history, so that as of a date between the two the deal is closed. Consecutive rows of one stage
are one stay (CRMs log amount and close-date edits as rows), but every row's expected close date,
probability and forecast category are kept (``FieldHistory``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.calendar import NO_DATE
from forecaster.config import Config
from forecaster.crm.checks import Collector, col_label, py_value, unknown_values
from forecaster.crm.export import OPEN, WON, FieldHistory
from forecaster.crm.formats import Preset
from forecaster.crm.values import NO_TIME, as_strings, blank_to_null, format_hint, mask, parse_times, to_days

HISTORY_KEYS = ("history_deal_id", "stage", "entered_at")
SEP = "\x1f"


def same_as_previous(a: np.ndarray) -> np.ndarray:
    """Element i equals element i-1 (False for the first)."""
    out = np.zeros(len(a), bool)
    out[1:] = a[1:] == a[:-1]
    return out


@dataclass(frozen=True)
class History:
    """The cleaned history (see ``CRMData``), the deals' close days as the history has them, what the
    rows said about each deal, whether the history records closings at all, and its latest day."""

    deal: np.ndarray
    stage: np.ndarray
    entered: np.ndarray
    closed: np.ndarray
    fields: FieldHistory
    records_closes: bool
    last_day: int


@dataclass
class _Rows:
    deal: np.ndarray
    stage: np.ndarray
    secs: np.ndarray
    row: np.ndarray

    def take(self, k: np.ndarray) -> _Rows:
        return _Rows(self.deal[k], self.stage[k], self.secs[k], self.row[k])


def load_history(config: Config, preset: Preset, c: Collector, t: pa.Table, label: str, kept_ids: pa.Array,
                 pipelines: np.ndarray | None, created: np.ndarray, closed: np.ndarray, status: np.ndarray,
                 dropped_ids: pa.Array | None) -> History:
    """The history table ``t`` (read from a file or derived by the preset; ``label`` names it) of the kept
    deals (``kept_ids`` in deal order; ``pipelines``: each kept deal's pipeline with ``pipelines:``).
    Rows of deals the config dropped (``dropped_ids``) go with them."""
    cfg = config.data
    h_ids = blank_to_null(as_strings(t[cfg.column("history_deal_id")].combine_chunks()))
    keep = np.ones(len(h_ids), bool)
    if dropped_ids is not None:
        keep = ~mask(pc.is_in(h_ids, value_set=dropped_ids))
        c.warn("dropped_history_rows", int((~keep).sum()), "stage rows of dropped deals")
    rows = _parse_rows(config, preset, c, t, label, h_ids, kept_ids, pipelines, keep)
    fields = _field_rows(config, preset, c, t, label, h_ids, keep)
    c.problems.raise_if_any()
    k = np.flatnonzero(keep)
    rows = rows.take(k)
    order = np.lexsort((rows.row, rows.secs, rows.deal))
    rows = rows.take(order)
    fields = dataclasses.replace(fields.take(k[order], rows.deal), day=to_days(rows.secs))
    n_s = len(config.stages)
    last_day = int(to_days(rows.secs).max()) if len(rows.secs) else NO_DATE
    records_closes = bool((rows.stage >= n_s).any())
    return _clean(config, c, rows, created, closed, status, fields, records_closes, last_day)


def _stage_index(config: Config, stage_raw: pa.Array, didx: np.ndarray, pipelines: np.ndarray | None) -> np.ndarray:
    """Per row its stage: open stages 0 .. S-1, then S (won) and S + 1 (lost); -1 when unknown. With
    ``pipelines:``, a stage is looked up among the stages of the row's deal's pipeline."""
    n_s = len(config.stages)
    if not config.pipelines:
        names = list(config.stages) + [config.won, config.lost]
        return pc.index_in(stage_raw, value_set=pa.array(names, pa.string())).fill_null(-1).to_numpy(
            zero_copy_only=False).astype(np.int32)
    keys, codes = [], []
    offset = 0
    for p in config.pipelines:
        for i, raw in enumerate(p.stages):
            keys.append(p.name + SEP + raw)
            codes.append(offset + i)
        offset += len(p.stages)
        keys += [p.name + SEP + p.won, p.name + SEP + p.lost]
        codes += [n_s, n_s + 1]
    deal_pipe = pa.array(np.where(didx >= 0, pipelines[np.maximum(didx, 0)] if pipelines is not None and len(pipelines)
                                  else "", ""), pa.string())
    key = pc.binary_join_element_wise(deal_pipe, stage_raw, SEP)
    idx = pc.index_in(key, value_set=pa.array(keys, pa.string())).fill_null(-1).to_numpy(zero_copy_only=False)
    return np.where(idx >= 0, np.asarray(codes + [-1], np.int32)[idx], -1).astype(np.int32)


def _parse_rows(config: Config, preset: Preset, c: Collector, t: pa.Table, label: str, h_ids: pa.Array,
                kept_ids: pa.Array, pipelines: np.ndarray | None, keep: np.ndarray) -> _Rows:
    """Times, stage and deal indices of every row, with a problem per unparseable date, unknown stage or
    deal missing from the deals table."""
    cfg = config.data
    raw_entered = t[cfg.column("entered_at")].combine_chunks()
    fmt = cfg.date_format_of("entered_at")
    secs, bad = parse_times(raw_entered, fmt, cfg.timezone, () if fmt else preset.date_formats)
    elabel = f"{label}: {col_label(cfg, 'entered_at')}"
    c.rows(bad & keep, h_ids, elabel, "unparseable date", raw_entered,
           lambda v: f" (set data.date_formats.entered_at, e.g. '{format_hint(v)}')")
    c.rows((secs == NO_TIME) & ~bad & keep, h_ids, elabel, "empty date")

    didx = pc.index_in(h_ids, value_set=kept_ids).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    stage_raw = blank_to_null(as_strings(t[cfg.column("stage")].combine_chunks()))
    sidx = _stage_index(config, stage_raw, didx, pipelines)
    if config.pipelines:
        names = [s for p in config.pipelines for s in (*p.stages, p.won, p.lost)]
        hint = "each pipeline's stages are listed under pipelines:"
    else:
        names = list(config.stages) + [config.won, config.lost]
        hint = f"stages in the config: {', '.join(names)}"
    unknown_values(c.problems, (sidx < 0) & (didx >= 0) & keep, stage_raw, h_ids,
                   f"{label}: {col_label(cfg, 'stage')}", "stage", names, hint)
    orphan = (didx < 0) & keep
    if orphan.any():
        seen: dict[object, int] = {}
        for i in np.flatnonzero(orphan):
            seen.setdefault(py_value(h_ids[i]), int(i))
        for value, row in seen.items():
            c.problems.add(f"{label}: {col_label(cfg, 'history_deal_id')}: row {row + 1}: deal '{value}' is not "
                           f"in the deals table")
    return _Rows(didx, sidx, secs, np.arange(len(didx)))


def _field_rows(config: Config, preset: Preset, c: Collector, t: pa.Table, label: str, h_ids: pa.Array,
                keep: np.ndarray) -> FieldHistory:
    """Each row's expected close date, probability and forecast category (where the history has them)."""
    from forecaster.crm.deals import Deals, date_column, probability

    cfg = config.data
    n = t.num_rows
    names = t.column_names
    has = {k: cfg.column(f"history_{k}") in names for k in ("expected_close_at", "probability", "forecast_category")}
    expected = np.full(n, NO_DATE, np.int32)
    ids = h_ids
    if has["expected_close_at"]:
        holder = Deals(t, tuple(names), label, h_ids, ids, keep)
        expected, _ = date_column(cfg, preset, c, holder, "history_expected_close_at")
    prob = np.full(n, np.nan)
    if has["probability"]:
        prob = probability(cfg, preset, c, t, "history_probability", keep, ids, label)
    category = np.full(n, None, dtype=object)
    if has["forecast_category"]:
        category = blank_to_null(as_strings(t[cfg.column("history_forecast_category")].combine_chunks())
                                 ).to_numpy(zero_copy_only=False).astype(object)
    return FieldHistory(np.zeros(n, np.int32), np.zeros(n, np.int32), expected, prob, category,
                        has["expected_close_at"], has["probability"], has["forecast_category"])


def _final_closes(r: _Rows, entered: np.ndarray, status: np.ndarray, closed: np.ndarray, n_s: int,
                  c: Collector) -> np.ndarray:
    """A closed deal's close: the first row of its won (lost) stage after its last open-stage row, where
    the history has one; else the deals table's close date."""
    n = len(status)
    last_open = np.full(n, -1, np.int64)
    is_open_row = r.stage < n_s
    np.maximum.at(last_open, r.deal[is_open_row], np.flatnonzero(is_open_row))
    kind = np.where(status == WON, n_s, n_s + 1)
    hit = (r.stage == kind[r.deal]) & (np.arange(len(r.deal)) > last_open[r.deal]) & (status[r.deal] != OPEN)
    first = np.full(n, -1, np.int64)
    rows = np.flatnonzero(hit)[::-1]
    first[r.deal[rows]] = rows  # the earliest such row wins (written last)
    from_history = first >= 0
    out = closed.copy()
    out[from_history] = entered[first[from_history]]
    c.warn("close_from_history", int((from_history & (out != closed)).sum()),
           "closed deals whose close date is the day they entered their won/lost stage, not closed_at")
    return out


def _clean(config: Config, c: Collector, r: _Rows, created: np.ndarray, closed: np.ndarray, status: np.ndarray,
           fields: FieldHistory, records_closes: bool, last_day: int) -> History:
    """Clamp the rows into each deal's life, take closes from the history, keep reopened closings and
    merge repeats (each step counted)."""
    n_s = len(config.stages)
    c.warn("same_day_rows", int((same_as_previous(r.deal) & same_as_previous(to_days(r.secs))).sum()),
           "stage rows on the same day as the deal's previous row (ordered by time and file order)")
    entered = to_days(r.secs)
    early = entered < created[r.deal]
    c.warn("rows_before_created", int(early.sum()), "stage rows dated before the deal's created_at (clamped to created_at)")
    entered = np.where(early, created[r.deal], entered).astype(np.int32)
    is_closed_row = r.stage >= n_s
    c.warn("closed_stage_rows", int(is_closed_row.sum()), "won/lost stage rows (the deal's close read from them)")
    closed = _final_closes(r, entered, status, closed, n_s, c)

    dclosed = closed[r.deal]
    after_close = (dclosed != NO_DATE) & ((entered > dclosed) | (is_closed_row & (entered >= dclosed)))
    c.warn("rows_after_close", int((after_close & ~is_closed_row).sum()),
           "open-stage rows dated after the deal closed (dropped)")
    d, s, e = r.deal[~after_close], r.stage[~after_close], entered[~after_close]
    # A closing stays only where the deal reopened: an open-stage row before and after it; of several
    # closing rows in a row, the first is the day it closed.
    open_row = s < n_s
    first_open = np.full(len(closed), len(d), np.int64)
    last_open = np.full(len(closed), -1, np.int64)
    pos = np.flatnonzero(open_row)
    np.minimum.at(first_open, d[pos], pos)
    np.maximum.at(last_open, d[pos], pos)
    here = np.arange(len(d))
    later_open, seen_open = last_open[d] > here, first_open[d] < here
    reopened = ~open_row & later_open & seen_open & ~(same_as_previous(d) & np.r_[False, ~open_row[:-1]])
    c.warn("reopened", int(reopened.sum()), "closings the deal was reopened from (closed in between)")
    k = open_row | reopened
    d, s, e = d[k], s[k], e[k]
    # Consecutive rows of the same stage (CRMs log amount or date edits as history rows): one spell.
    repeat = same_as_previous(d) & same_as_previous(s)
    c.warn("repeated_stage_rows", int(repeat.sum()), "consecutive rows of the same stage merged")
    k = ~repeat
    return History(d[k].astype(np.int32), s[k].astype(np.int16), e[k].astype(np.int32), closed.astype(np.int32),
                   fields, records_closes, last_day)
