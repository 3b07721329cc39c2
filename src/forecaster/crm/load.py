"""The only reader of CRM exports: the files named by the config -> one validated ``CRMData``.

Contract (docs/data.md):
- deals: deal_id, created_at, amount, status, closed_at (+ any attribute columns);
- stage_history (optional): deal_id, stage, entered_at; one row per stage entry.
Without stage_history (deal-level mode) every deal sits in the single stage of ``config.stages``
from created_at until closed_at. Every problem is collected and raised as one DataError, one line each.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.calendar import NO_DATE
from forecaster.config import DEAL_COLUMNS, Config, DataConfig
from forecaster.crm.checks import Collector, col_label, require, rows_by_value, unknown_values
from forecaster.crm.export import LOST, MISSING_ATTR, OPEN, STATUS_NAMES, WON, CRMData
from forecaster.crm.history import load_history
from forecaster.crm.prepare import fill_amounts, join, recode
from forecaster.crm.read import as_strings, blank_to_null, file_digest, parse_dates, parse_numbers, read_table
from forecaster.errors import suggest


@dataclass
class _Deals:
    """The deals table while it is validated: the table, ids and the parsed contract columns."""

    table: pa.Table
    name: str
    ids_arr: pa.Array
    ids: np.ndarray
    keep: np.ndarray
    created: np.ndarray = None  # type: ignore[assignment]
    closed: np.ndarray = None  # type: ignore[assignment]
    status: np.ndarray = None  # type: ignore[assignment]
    amount: np.ndarray = None  # type: ignore[assignment]


def load(config: Config) -> CRMData:
    """Read and validate the CRM export named by the config (no as-of cut: see ``crm.cut``)."""
    cfg = config.data
    c = Collector()
    probs = c.problems
    deals = _read_deals(cfg, c)
    closed_bad = _dates(cfg, c, deals)
    _status(cfg, c, deals)
    _amounts(cfg, c, deals)
    _closing(cfg, c, deals, closed_bad)
    _duplicates(cfg, c, deals)
    attrs = _attributes(config, c, deals)
    probs.raise_if_any()

    keep = deals.keep
    created, closed = deals.created[keep], deals.closed[keep]
    status, amount = deals.status[keep], deals.amount[keep]
    dropped_ids = deals.ids_arr.filter(pa.array(~keep)) if not keep.all() else None
    sources = [str(cfg.deals)]
    digest = hashlib.sha256(file_digest(cfg.deals).encode())
    if cfg.stage_history is not None:
        h_deal, h_stage, h_entered = load_history(config, c, deals.ids_arr.filter(pa.array(keep)), created, closed,
                                                  dropped_ids)
        sources.append(str(cfg.stage_history))
        digest.update(file_digest(cfg.stage_history).encode())
    else:
        h_deal = np.zeros(0, np.int32)
        h_stage = np.zeros(0, np.int16)
        h_entered = np.zeros(0, np.int32)
    for j in cfg.join:
        sources.append(str(j.table))
        digest.update(file_digest(j.table).encode())
    probs.raise_if_any()

    return CRMData(
        deal_id=deals.ids[keep],
        created=created.astype(np.int32),
        closed=closed.astype(np.int32),
        status=status.astype(np.int8),
        amount=amount.astype(np.float64),
        attrs=attrs,
        h_deal=h_deal,
        h_stage=h_stage,
        h_entered=h_entered,
        stages=tuple(config.stages),
        deal_level=cfg.stage_history is None,
        warnings=tuple(c.warnings.values()),
        fingerprint=digest.hexdigest(),
        sources=tuple(sources),
    )


def _read_deals(cfg: DataConfig, c: Collector) -> _Deals:
    """The deals file, recoded and joined, with its required columns and ids."""
    probs = c.problems
    table = recode(read_table(cfg.deals, "deals"), dict(cfg.recode))
    if not require(table, cfg.deals, cfg, DEAL_COLUMNS, probs):
        probs.raise_if_any()
    table = join(table, cfg, probs)
    probs.raise_if_any()
    name = cfg.deals.name
    ids_arr = blank_to_null(as_strings(table[cfg.column("deal_id")].combine_chunks()))
    ids = ids_arr.to_numpy(zero_copy_only=False)
    c.rows(pc.is_null(ids_arr).to_numpy(zero_copy_only=False), None, f"{name}: {col_label(cfg, 'deal_id')}",
           "empty deal_id")
    return _Deals(table, name, ids_arr, ids, np.ones(len(ids), bool))


def _dates(cfg: DataConfig, c: Collector, d: _Deals) -> np.ndarray:
    """created_at and closed_at as day numbers; rows without a creation date are an error unless the config
    drops them. Returns the mask of unparseable close dates."""
    raw_created = d.table[cfg.column("created_at")].combine_chunks()
    raw_closed = d.table[cfg.column("closed_at")].combine_chunks()
    d.created, created_bad = parse_dates(raw_created, cfg.date_format)
    d.closed, closed_bad = parse_dates(raw_closed, cfg.date_format)
    no_created = (d.created == NO_DATE) & ~created_bad
    if cfg.drop_missing_created:
        d.keep = ~no_created
        c.warn("dropped_missing_created", int(no_created.sum()),
               "deals without created_at dropped (data.drop_missing_created)")
    else:
        c.rows(no_created, d.ids, f"{d.name}: {col_label(cfg, 'created_at')}", "empty date")
    c.rows(created_bad & d.keep, d.ids, f"{d.name}: {col_label(cfg, 'created_at')}", "unparseable date", raw_created)
    c.rows(closed_bad & d.keep, d.ids, f"{d.name}: {col_label(cfg, 'closed_at')}", "unparseable date", raw_closed)
    return closed_bad


def _status(cfg: DataConfig, c: Collector, d: _Deals) -> None:
    """Status values mapped case-insensitively ("*": any other value); one line per distinct unknown value."""
    status_raw = blank_to_null(as_strings(d.table[cfg.column("status")].combine_chunks()))
    folded = pc.utf8_lower(status_raw)
    status = np.full(len(d.ids), -1, np.int8)
    wildcard = None
    for code, name in enumerate(STATUS_NAMES):
        vals = [v for v in cfg.status_values[name] if v != "*"]
        if "*" in cfg.status_values[name]:
            wildcard = code
        hit = pc.is_in(folded, value_set=pa.array([v.casefold() for v in vals], pa.string()))
        status[hit.fill_null(False).to_numpy(zero_copy_only=False)] = code
    if wildcard is not None:
        status[(status < 0) & ~pc.is_null(status_raw).to_numpy(zero_copy_only=False)] = wildcard
    unknown_values(c.problems, (status < 0) & d.keep, status_raw, d.ids, f"{d.name}: {col_label(cfg, 'status')}",
                   "status value", [v for vals in cfg.status_values.values() for v in vals],
                   "map it under data.status_values")
    d.status = status


def _amounts(cfg: DataConfig, c: Collector, d: _Deals) -> None:
    """Amounts, filled from another column where configured, then checked."""
    raw_amount = d.table[cfg.column("amount")].combine_chunks()
    amount, empty, bad = parse_numbers(raw_amount)
    amount, empty, bad, filled = fill_amounts(d.table, cfg, amount, empty, bad, c.problems, d.name)
    if cfg.amount_fill is not None:
        c.warn("amount_filled", int((filled & d.keep).sum()),
               f"amounts taken from column '{cfg.amount_fill.column}' (data.amount_fill)")
    label = f"{d.name}: {col_label(cfg, 'amount')}"
    c.rows(empty & d.keep, d.ids, label, "empty amount")
    c.rows(bad & d.keep, d.ids, label, "not a number", raw_amount)
    c.rows((amount < 0) & ~bad & d.keep, d.ids, label, "negative amount", amount)
    c.warn("zero_amount", int(((amount == 0) & ~empty & ~bad & d.keep).sum()), "deals with zero amount")
    d.amount = amount


def _closing(cfg: DataConfig, c: Collector, d: _Deals, closed_bad: np.ndarray) -> None:
    """Won and lost deals need a close date; open deals' close dates are ignored; no close before creation."""
    keep, status, created = d.keep, d.status, d.created
    closed_status = (status == WON) | (status == LOST)
    c.rows(closed_status & (d.closed == NO_DATE) & ~closed_bad & keep, d.ids,
           f"{d.name}: {col_label(cfg, 'closed_at')}", "won/lost deal has no closed_at")
    open_closed = (status == OPEN) & (d.closed != NO_DATE) & keep
    c.warn("open_with_closed_at", int(open_closed.sum()), "open deals with closed_at set (closed_at ignored)")
    closed = np.where(status == OPEN, NO_DATE, d.closed).astype(np.int32)
    early = (closed != NO_DATE) & (created != NO_DATE) & (closed < created) & keep
    c.warn("closed_before_created", int(early.sum()), "deals closed before created_at (closed_at clamped to created_at)")
    d.closed = np.where(early, created, closed).astype(np.int32)


def _duplicates(cfg: DataConfig, c: Collector, d: _Deals) -> None:
    """One problem per duplicated deal id among the kept rows."""
    counts = pc.value_counts(d.ids_arr.filter(pa.array(d.keep)).drop_null())
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(dup):
        is_dup = pc.is_in(d.ids_arr, value_set=dup.field("values")).fill_null(False).to_numpy(zero_copy_only=False)
        for value, rows in rows_by_value(is_dup & d.keep, d.ids).items():
            c.problems.add(
                f"{d.name}: {col_label(cfg, 'deal_id')}: duplicate deal_id '{value}' "
                f"({len(rows)} rows, first row {rows[0] + 1})"
            )
    if not d.keep.any():
        c.problems.add(f"{d.name}: no deals left to use")
    c.problems.raise_if_any()


def _attributes(config: Config, c: Collector, d: _Deals) -> pa.Table:
    """Every column outside the contract, as strings (empty: MISSING_ATTR); segment_by columns must exist."""
    cfg = config.data
    contract_cols = {cfg.column(k) for k in DEAL_COLUMNS}
    attr_names = [n for n in d.table.column_names if n not in contract_cols]
    kept_t = d.table.filter(pa.array(d.keep))
    attrs = pa.table(
        {n: blank_to_null(as_strings(kept_t[n].combine_chunks())).fill_null(MISSING_ATTR) for n in attr_names}
    ) if attr_names else pa.table({"__row": pa.array(np.zeros(int(d.keep.sum()), np.int8))}).drop(["__row"])
    for name in config.segment_by:
        if name not in d.table.column_names:
            c.problems.add(f"{d.name}: segment_by column '{name}' not found{suggest(name, attr_names)}")
    return attrs
