"""The deals table: read (only the columns the config uses), translated by its preset, filtered, then
each contract column parsed and checked. Every problem names the file, column, row and deal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.calendar import NO_DATE
from forecaster.config import DEAL_COLUMNS, OPTIONAL_DEAL_COLUMNS, PIPELINE_ATTR, Config, DataConfig
from forecaster.crm.checks import Collector, col_label, require, rows_by_value, unknown_values
from forecaster.crm.export import LOST, MISSING_ATTR, OPEN, STATUS_NAMES, WON
from forecaster.crm.fields import DealFields
from forecaster.crm.formats import FLAGS, Preset
from forecaster.crm.prepare import fill_amounts, filter_columns, filters, join, recode
from forecaster.crm.read import read_table
from forecaster.crm.values import (as_strings, blank_to_null, format_hint, mask, only_flags, parse_bools, parse_dates,
                                   parse_numbers)
from forecaster.errors import suggest


@dataclass
class Deals:
    """The deals table while it is validated: the table, ids (``ids``: as messages read them; an Arrow
    array, so that a million ids are not a million Python objects) and the parsed contract columns;
    ``keep``: the rows the filters keep."""

    table: pa.Table
    names: tuple[str, ...]
    name: str
    ids_arr: pa.Array
    ids: pa.Array
    keep: np.ndarray
    joined: tuple[str, ...] = ()
    created: np.ndarray = None  # type: ignore[assignment]
    closed: np.ndarray = None  # type: ignore[assignment]
    status: np.ndarray = None  # type: ignore[assignment]
    amount: np.ndarray = None  # type: ignore[assignment]


def flags_mode(cfg: DataConfig) -> bool:
    """Status from the closed/won flags (mapped, and no status column mapped)."""
    return "status" not in cfg.columns and any(k in cfg.columns for k in FLAGS)


def needed_columns(config: Config, preset: Preset, names: tuple[str, ...]) -> list[str]:
    """The deals columns the config uses: the contract's, attributes, filters, join keys, fills."""
    cfg = config.data
    need = {cfg.column(k) for k in DEAL_COLUMNS + OPTIONAL_DEAL_COLUMNS}
    need |= set(config.segment_by) | set(config.report_by) | set(filter_columns(cfg)) | {j.key for j in cfg.join}
    if cfg.amount_fill is not None and cfg.amount_fill.column:
        need.add(cfg.amount_fill.column)
    if cfg.currency is not None and cfg.currency.column:
        need.add(cfg.currency.column)
    need |= set(preset.extra_columns(cfg, names))
    return [n for n in names if n in need]


def time_columns(cfg: DataConfig, preset: Preset, canonical: tuple[str, ...]) -> list[str]:
    """The date columns a CSV reader may read as ISO timestamps: those forecaster would parse as ISO only
    (no format of their own, no preset layouts) and that no recode rewrites."""
    if preset.date_formats:
        return []
    return [cfg.column(k) for k in canonical if cfg.date_format_of(k) is None and cfg.column(k) not in cfg.recode]


def read_deals(config: Config, preset: Preset, c: Collector, names: tuple[str, ...]) -> Deals:
    """The deals file (the columns used), recoded, translated, filtered and joined, with its ids."""
    cfg = config.data
    probs = c.problems
    required = [k for k in DEAL_COLUMNS if not (k == "status" and flags_mode(cfg)) and k not in preset.derived]
    if flags_mode(cfg):
        required += list(FLAGS)
    if not require(names, cfg.deals, cfg, tuple(required), probs):
        probs.raise_if_any()
    table = read_table(cfg.deals, "deals", needed_columns(config, preset, names), encoding=cfg.encoding,
                       delimiter=cfg.delimiter, warn=c.warn,
                       times=time_columns(cfg, preset, ("created_at", "closed_at", "expected_close_at")))
    table = preset.translate(recode(table, dict(cfg.recode)), config)
    keep = filters(table, cfg, probs, c.warn)
    table, joined = join(table, cfg, probs)
    probs.raise_if_any()
    ids_arr = blank_to_null(as_strings(table[cfg.column("deal_id")].combine_chunks()))
    c.rows(mask(pc.is_null(ids_arr)) & keep, None, f"{cfg.deals.name}: {col_label(cfg, 'deal_id')}", "empty deal_id")
    return Deals(table, tuple(names) + tuple(joined), cfg.deals.name, ids_arr, ids_arr, keep, tuple(joined))


def date_column(cfg: DataConfig, preset: Preset, c: Collector, d: Deals, canonical: str,
                keep: np.ndarray | None = None, table: pa.Table | None = None, ids=None,
                name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A date column (of the deals, or of ``table``) as day numbers, and its unparseable mask; one problem
    per unparseable value among ``keep``, naming the data.date_formats key that reads it."""
    table = d.table if table is None else table
    raw = table[cfg.column(canonical)].combine_chunks()
    fmt = cfg.date_format_of(canonical)
    days, bad = parse_dates(raw, fmt, cfg.timezone, () if fmt else preset.date_formats)
    keep = d.keep if keep is None else keep
    c.rows(bad & keep, d.ids if ids is None else ids, f"{name or d.name}: {col_label(cfg, canonical)}",
           "unparseable date", raw, lambda v: f" (set data.date_formats.{canonical}, e.g. '{format_hint(v)}')")
    return days, bad


def dates(cfg: DataConfig, preset: Preset, c: Collector, d: Deals) -> None:
    """created_at and closed_at as day numbers; rows without a creation date are an error unless the config
    drops them."""
    d.created, created_bad = date_column(cfg, preset, c, d, "created_at")
    no_created = (d.created == NO_DATE) & ~created_bad
    if cfg.drop_missing_created:
        c.warn("dropped_missing_created", int((no_created & d.keep).sum()),
               "deals without created_at dropped (data.drop_missing_created)")
        d.keep = d.keep & ~no_created
    else:
        c.rows(no_created & d.keep, d.ids, f"{d.name}: {col_label(cfg, 'created_at')}", "empty date")
    d.closed, _ = date_column(cfg, preset, c, d, "closed_at")


def status(cfg: DataConfig, c: Collector, d: Deals) -> None:
    """Status from the closed/won flags, or from the status column's values mapped case-insensitively ("*":
    any other value; one line per distinct unknown value)."""
    if flags_mode(cfg):
        return _status_from_flags(cfg, c, d)
    raw = d.table[cfg.column("status")].combine_chunks()
    if only_flags(kept(d, raw)):
        c.problems.add(f"{d.name}: {col_label(cfg, 'status')}: holds only true/false values, which cannot tell "
                       f"open from lost deals; map data.columns.is_closed and data.columns.is_won instead")
        d.status = np.zeros(len(d.ids), np.int8)
        return
    status_raw = blank_to_null(as_strings(raw))
    folded = pc.utf8_lower(status_raw)
    st = np.full(len(d.ids), -1, np.int8)
    wildcard = None
    for code, name in enumerate(STATUS_NAMES):
        vals = [v for v in cfg.status_values[name] if v != "*"]
        if "*" in cfg.status_values[name]:
            wildcard = code
        st[mask(pc.is_in(folded, value_set=pa.array([v.casefold() for v in vals], pa.string())))] = code
    if wildcard is not None:
        st[(st < 0) & ~mask(pc.is_null(status_raw))] = wildcard
    unknown_values(c.problems, (st < 0) & d.keep, status_raw, d.ids, f"{d.name}: {col_label(cfg, 'status')}",
                   "status value", [v for vals in cfg.status_values.values() for v in vals],
                   "map it under data.status_values")
    d.status = st


def _status_from_flags(cfg: DataConfig, c: Collector, d: Deals) -> None:
    flags = {}
    for key in FLAGS:
        raw = d.table[cfg.column(key)].combine_chunks()
        value, empty, bad = parse_bools(raw)
        label = f"{d.name}: {col_label(cfg, key)}"
        c.rows(empty & d.keep, d.ids, label, "empty value (expected true or false)")
        c.rows(bad & d.keep, d.ids, label, "not true/false", raw)
        flags[key] = value
    d.status = np.where(flags["is_closed"], np.where(flags["is_won"], WON, LOST), OPEN).astype(np.int8)


def amounts(cfg: DataConfig, c: Collector, d: Deals) -> None:
    """Amounts (as CRMs write them), filled where configured, then checked."""
    raw_amount = d.table[cfg.column("amount")].combine_chunks()
    amount, empty, bad, infinite, ambiguous = parse_numbers(raw_amount, cfg.amount_format)
    amount, empty, bad, filled = fill_amounts(d.table, cfg, amount, empty, bad, c.problems, d.name)
    if cfg.amount_fill is not None:
        source = f"column '{cfg.amount_fill.column}'" if cfg.amount_fill.column else f"{cfg.amount_fill.value:g}"
        c.warn("amount_filled", int((filled & d.keep).sum()), f"amounts filled with {source} (data.amount_fill)")
    c.warn("ambiguous_amounts", ambiguous, "amounts like '1.234' or '1,234' that read differently with '.' or ',' "
                                           "as the decimal mark (read with '.'; set data.amount_format)")
    label = f"{d.name}: {col_label(cfg, 'amount')}"
    c.rows(empty & d.keep, d.ids, label, "empty amount", hint=lambda v: " (data.amount_fill: {value: 0} fills it)")
    c.rows(infinite & d.keep, d.ids, label, "not a finite number", raw_amount)
    c.rows(bad & ~infinite & d.keep, d.ids, label, "not a number", raw_amount,
           lambda v: "" if cfg.amount_format else " (data.amount_format sets the separators, e.g. "
                                                  "{thousands: '.', decimal: ','})")
    c.rows((amount < 0) & ~bad & d.keep, d.ids, label, "negative amount", amount)
    c.warn("zero_amount", int(((amount == 0) & ~empty & ~bad & d.keep).sum()), "deals with zero amount")
    d.amount = amount


def closing(cfg: DataConfig, c: Collector, d: Deals) -> None:
    """Won and lost deals need a close date; open deals' close dates are ignored; no close before creation."""
    keep, st, created = d.keep, d.status, d.created
    closed_status = (st == WON) | (st == LOST)
    c.rows(closed_status & (d.closed == NO_DATE) & keep, d.ids, f"{d.name}: {col_label(cfg, 'closed_at')}",
           "won/lost deal has no closed_at")
    open_closed = (st == OPEN) & (d.closed != NO_DATE) & keep
    c.warn("open_with_closed_at", int(open_closed.sum()), "open deals with closed_at set (closed_at ignored)")
    closed = np.where(st == OPEN, NO_DATE, d.closed).astype(np.int32)
    early = (closed != NO_DATE) & (created != NO_DATE) & (closed < created) & keep
    c.warn("closed_before_created", int(early.sum()), "deals closed before created_at (closed_at clamped to created_at)")
    d.closed = np.where(early, created, closed).astype(np.int32)


def duplicates(cfg: DataConfig, c: Collector, d: Deals) -> None:
    """One problem per duplicated deal id among the kept rows."""
    counts = pc.value_counts(kept(d, d.ids_arr).drop_null())
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(dup):
        is_dup = mask(pc.is_in(d.ids_arr, value_set=dup.field("values")))
        for value, rows in rows_by_value(is_dup & d.keep, d.ids).items():
            c.problems.add(f"{d.name}: {col_label(cfg, 'deal_id')}: duplicate deal_id '{value}' "
                           f"({len(rows)} rows, first row {rows[0] + 1})")
    if not d.keep.any():
        c.problems.add(f"{d.name}: no deals left to use")
    c.problems.raise_if_any()


def attributes(config: Config, preset: Preset, c: Collector, d: Deals) -> pa.Table:
    """Every column read besides the contract's (segment_by, report_by, filters, joined ones, currency,
    pipeline) as strings (empty: MISSING_ATTR); with ``pipelines``, the deal's pipeline as ``pipeline``."""
    cfg = config.data
    contract = {cfg.column(k) for k in DEAL_COLUMNS + OPTIONAL_DEAL_COLUMNS if k not in ("currency", "pipeline")}
    contract |= set(preset.extra_columns(cfg, d.names)) | set(preset.derived.values())
    for name in dict.fromkeys((*config.segment_by, *config.report_by)):
        if (name not in d.table.column_names or name in contract) and not (config.pipelines and name == PIPELINE_ATTR):
            where = "segment_by" if name in config.segment_by else "report_by"
            known = [n for n in d.names if n not in contract]
            c.problems.add(f"{d.name}: {where} column '{name}' not found{suggest(name, known)}")
    cols = {n: kept(d, blank_to_null(as_strings(d.table[n].combine_chunks())).fill_null(MISSING_ATTR))
            for n in d.table.column_names if n not in contract}
    if config.pipelines:
        cols[PIPELINE_ATTR] = kept(d, pipeline_values(config, c, d))
    if not cols:
        return pa.table({"_": pa.nulls(int(d.keep.sum()))}).drop(["_"])
    return pa.table(cols)


def kept(d: Deals, a: pa.Array) -> pa.Array:
    """The kept rows of a column (the column itself when every row is kept: no copy)."""
    return a if d.keep.all() else a.filter(pa.array(d.keep))


def pipeline_values(config: Config, c: Collector, d: Deals) -> pa.Array:
    """Each deal's pipeline (all rows); one problem per pipeline not in ``pipelines:``."""
    cfg = config.data
    col = cfg.column("pipeline")
    if col not in d.table.column_names:
        c.problems.add(f"{d.name}: missing column '{col}' (pipeline) that 'pipelines:' needs (data.columns.pipeline "
                       f"names it){suggest(col, d.names)}")
        return pa.array([MISSING_ATTR] * len(d.ids), pa.string())
    values = blank_to_null(as_strings(d.table[col].combine_chunks()))
    names = [p.name for p in config.pipelines]
    unknown = mask(pc.invert(pc.is_in(values, value_set=pa.array(names, pa.string())))) | mask(pc.is_null(values))
    unknown_values(c.problems, unknown & d.keep, values, d.ids, f"{d.name}: {col_label(cfg, 'pipeline')}", "pipeline",
                   names, "add it to 'pipelines:' or leave it out with data.where")
    return values.fill_null(MISSING_ATTR)


def current_fields(cfg: DataConfig, preset: Preset, c: Collector, d: Deals) -> DealFields:
    """What the deals table says now: expected close date, probability (a share), forecast category."""
    n = len(d.ids)
    names = d.table.column_names
    expected = np.full(n, NO_DATE, np.int32)
    if cfg.column("expected_close_at") in names:
        expected, _ = date_column(cfg, preset, c, d, "expected_close_at")
    prob = np.full(n, np.nan)
    if cfg.column("probability") in names:
        prob = probability(cfg, preset, c, d.table, "probability", d.keep, d.ids, d.name)
    category = np.full(n, None, dtype=object)
    if cfg.column("forecast_category") in names:
        category = blank_to_null(as_strings(d.table[cfg.column("forecast_category")].combine_chunks())
                                 ).to_numpy(zero_copy_only=False).astype(object)
    return DealFields(expected, prob, category, np.zeros(n, np.int32), np.zeros(n, np.int32))


def probability(cfg: DataConfig, preset: Preset, c: Collector, table: pa.Table, canonical: str, keep: np.ndarray,
                ids, name: str) -> np.ndarray:
    """A probability column as a share in [0, 1] (NaN when empty); the preset's percent read as percent."""
    raw = table[cfg.column(canonical)].combine_chunks()
    text = pc.replace_substring(as_strings(raw), "%", "") if not pa.types.is_floating(raw.type) else raw
    value, empty, bad, _, _ = parse_numbers(text)
    if preset.probability_percent:
        value = value / 100.0
    top = "100" if preset.probability_percent else "1"
    label = f"{name}: {col_label(cfg, canonical)}"
    c.rows(bad & keep, ids, label, "not a number", raw)
    c.rows(((value < 0) | (value > 1)) & ~bad & ~empty & keep, ids, label, f"probability outside 0 .. {top}", raw)
    return np.where(empty | bad, np.nan, value)
