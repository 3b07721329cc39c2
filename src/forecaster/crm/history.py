"""The stage history of an export: rows -> (deal, stage, entered day), validated, ordered and cleaned."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.calendar import NO_DATE
from forecaster.config import Config
from forecaster.crm.checks import Collector, col_label, py_value, require, unknown_values
from forecaster.crm.prepare import recode
from forecaster.crm.read import as_strings, blank_to_null, parse_dates, read_table

HISTORY_KEYS = ("history_deal_id", "stage", "entered_at")


def same_as_previous(a: np.ndarray) -> np.ndarray:
    """Element i equals element i-1 (False for the first)."""
    out = np.zeros(len(a), bool)
    out[1:] = a[1:] == a[:-1]
    return out


def load_history(config: Config, c: Collector, kept_ids: pa.Array, created: np.ndarray, closed: np.ndarray,
                 dropped_ids: pa.Array | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(deal index int32, stage index int16, entered day int32) per open-stage spell start, sorted by deal,
    date and file order. ``kept_ids``: the deals' ids in deal order; ``dropped_ids``: ids of deals the
    config dropped (their rows go with them)."""
    cfg = config.data
    probs = c.problems
    path = cfg.stage_history
    assert path is not None
    # A history with a header and no rows is a valid (if early) export: every deal sits in the first stage.
    t = recode(read_table(path, "stage_history", allow_no_rows=True), dict(cfg.recode))
    if not require(t, path, cfg, HISTORY_KEYS, probs):
        probs.raise_if_any()
    h_ids = blank_to_null(as_strings(t[cfg.column("history_deal_id")].combine_chunks()))
    keep = np.ones(len(h_ids), bool)
    if dropped_ids is not None:
        keep = ~pc.is_in(h_ids, value_set=dropped_ids).fill_null(False).to_numpy(zero_copy_only=False)
        c.warn("dropped_history_rows", int((~keep).sum()), "stage rows of dropped deals")
    didx, sidx, entered = _parse_rows(config, c, t, h_ids, kept_ids, keep)
    probs.raise_if_any()
    rows = np.flatnonzero(keep)
    return _clean(config, c, didx[rows], sidx[rows], entered[rows], rows, created, closed)


def _parse_rows(config: Config, c: Collector, t: pa.Table, h_ids: pa.Array, kept_ids: pa.Array,
                keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dates, stage indices (open stages, then won and lost) and deal indices of every row, with a problem
    per unparseable date, unknown stage or deal missing from the deals table."""
    cfg = config.data
    hname = cfg.stage_history.name
    entered, bad = parse_dates(t[cfg.column("entered_at")].combine_chunks(), cfg.date_format)
    elabel = f"{hname}: {col_label(cfg, 'entered_at')}"
    c.rows(bad & keep, h_ids, elabel, "unparseable date", t[cfg.column("entered_at")].combine_chunks())
    c.rows((entered == NO_DATE) & ~bad & keep, h_ids, elabel, "empty date")

    # Stage names: open stages, plus the closed stages which carry no spell (deals.closed_at rules).
    names = list(config.stages) + [config.won, config.lost]
    stage_raw = blank_to_null(as_strings(t[cfg.column("stage")].combine_chunks()))
    stage_idx = pc.index_in(stage_raw, value_set=pa.array(names, pa.string()))
    sidx = stage_idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    unknown_values(c.problems, (sidx < 0) & keep, stage_raw, h_ids, f"{hname}: {col_label(cfg, 'stage')}",
                   "stage", names, f"stages in the config: {', '.join(names)}")

    deal_idx = pc.index_in(h_ids, value_set=kept_ids)
    didx = deal_idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    orphan = (didx < 0) & keep
    if orphan.any():
        orphan_ids: dict[object, int] = {}
        for i in np.flatnonzero(orphan):
            orphan_ids.setdefault(py_value(h_ids[i]), int(i))
        for value, row in orphan_ids.items():
            c.problems.add(f"{hname}: {col_label(cfg, 'history_deal_id')}: row {row + 1}: deal '{value}' is not "
                           f"in the deals table")
    return didx, sidx, entered


def _clean(config: Config, c: Collector, didx: np.ndarray, sidx: np.ndarray, entered: np.ndarray, rows: np.ndarray,
           created: np.ndarray, closed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order the rows, clamp them into each deal's life and merge repeats (each step counted)."""
    # Order by deal, then date, then file order (several rows the same day keep the file's order).
    order = np.lexsort((rows, entered, didx))
    didx, sidx, entered = didx[order], sidx[order], entered[order]
    same_deal = same_as_previous(didx)
    c.warn("same_day_rows", int((same_deal & same_as_previous(entered)).sum()),
           "stage rows on the same day as the deal's previous row (ordered by file order)")
    early = entered < created[didx]
    c.warn("rows_before_created", int(early.sum()), "stage rows dated before the deal's created_at (clamped to created_at)")
    entered = np.where(early, created[didx], entered).astype(np.int32)

    # Closed stages carry no spell: the deal's closed_at/status say when and how it closed.
    is_closed_row = sidx >= len(config.stages)
    c.warn("closed_stage_rows", int(is_closed_row.sum()), "won/lost stage rows (closing taken from deals.closed_at)")
    dclosed = closed[didx]
    after_close = ~is_closed_row & (dclosed != NO_DATE) & (entered > dclosed)
    c.warn("rows_after_close", int(after_close.sum()), "open-stage rows dated after the deal closed (dropped)")
    k = ~is_closed_row & ~after_close
    didx, sidx, entered = didx[k], sidx[k], entered[k]
    # Consecutive rows of the same stage (CRMs log amount or date edits as history rows): one spell.
    repeat = same_as_previous(didx) & same_as_previous(sidx)
    c.warn("repeated_stage_rows", int(repeat.sum()), "consecutive rows of the same stage merged")
    k = ~repeat
    return didx[k].astype(np.int32), sidx[k].astype(np.int16), entered[k].astype(np.int32)
