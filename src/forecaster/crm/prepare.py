"""Preparation of a real export, declared in the config: recode values, filter deals (``data.where`` /
``data.drop``), join lookup tables, fill missing amounts, convert currencies. Each step is counted in the
data warnings or reported as a problem naming the file, column and value."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.config import COLUMN_KEYS, DataConfig
from forecaster.crm.read import read_table
from forecaster.crm.values import as_strings, blank_to_null, mask, parse_numbers
from forecaster.errors import Problems, suggest


def recode(table: pa.Table, mapping_by_column: dict) -> pa.Table:
    """Replace values per column (``data.recode``: column -> {old: new}); other values stay."""
    for col, mapping in mapping_by_column.items():
        if col not in table.column_names or not mapping:
            continue
        values = as_strings(table[col].combine_chunks())
        keys = pa.array(list(mapping.keys()), pa.string())
        idx = pc.index_in(values, value_set=keys)
        mapped = pc.take(pa.array(list(mapping.values()), pa.string()), idx)
        table = table.set_column(table.column_names.index(col), col, pc.coalesce(mapped, values))
    return table


def filter_column(cfg: DataConfig, key: str) -> str:
    """The column a ``data.where`` / ``data.drop`` key names: a canonical name means its mapped column."""
    return cfg.column(key) if key in COLUMN_KEYS else key


def filter_columns(cfg: DataConfig) -> list[str]:
    return [filter_column(cfg, k) for k in (*cfg.where, *cfg.drop)]


def filters(table: pa.Table, cfg: DataConfig, probs: Problems, warn) -> np.ndarray:
    """The rows ``data.where`` keeps and ``data.drop`` does not drop (values compared case-insensitively,
    blank as ''); each filter's count is a warning."""
    keep = np.ones(table.num_rows, bool)
    for key, (rule, values) in [*((k, ("where", v)) for k, v in cfg.where.items()),
                                *((k, ("drop", v)) for k, v in cfg.drop.items())]:
        col = filter_column(cfg, key)
        if col not in table.column_names:
            probs.add(f"{cfg.deals.name}: data.{rule}.{key}: no such column{suggest(col, table.column_names)}")
            continue
        text = pc.utf8_lower(pc.utf8_trim_whitespace(as_strings(table[col].combine_chunks()).fill_null("")))
        hit = mask(pc.is_in(text, value_set=pa.array([v.casefold() for v in values], pa.string())))
        out = ~hit if rule == "where" else hit
        warn(f"{rule}_{key}", int((out & keep).sum()),
             f"deals {'left out by' if rule == 'where' else 'dropped by'} data.{rule}.{key} "
             f"({', '.join(values)})")
        keep &= ~out
    return keep


def join(table: pa.Table, cfg: DataConfig, probs: Problems) -> tuple[pa.Table, list[str]]:
    """Left-join each ``data.join`` table on its key; its other columns become deal attributes (their
    names are returned)."""
    added: list[str] = []
    for j in cfg.join:
        lookup = recode(read_table(j.table, "join table"), dict(cfg.recode))
        if j.key not in table.column_names:
            probs.add(f"{cfg.deals}: data.join key '{j.key}': no such column{suggest(j.key, table.column_names)}")
            continue
        if j.key not in lookup.column_names:
            probs.add(f"{j.table}: data.join key '{j.key}': no such column{suggest(j.key, lookup.column_names)}")
            continue
        keys = as_strings(lookup[j.key].combine_chunks())
        if len(pc.unique(keys)) != len(keys):
            probs.add(f"{j.table}: column '{j.key}': key values must be unique to join on them")
            continue
        idx = pc.index_in(as_strings(table[j.key].combine_chunks()), value_set=keys)
        for name in lookup.column_names:
            if name == j.key or name in table.column_names:
                continue
            table = table.append_column(name, pc.take(lookup[name].combine_chunks(), idx))
            added.append(name)
    return table, added


def fill_amounts(table: pa.Table, cfg: DataConfig, amount: np.ndarray, empty: np.ndarray, bad: np.ndarray,
                 probs: Problems, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``data.amount_fill``: the amount from another column, or a fixed value, where it is missing
    (and/or zero). Returns (amount, empty, bad, filled mask)."""
    filled = np.zeros(len(amount), bool)
    fill_cfg = cfg.amount_fill
    if fill_cfg is None:
        return amount, empty, bad, filled
    if "missing" in fill_cfg.when:
        filled |= empty
    if "zero" in fill_cfg.when:
        filled |= ~empty & ~bad & (amount == 0)
    if fill_cfg.value is not None:
        return np.where(filled, fill_cfg.value, amount), empty & ~filled, bad & ~filled, filled
    fcol = fill_cfg.column
    if fcol not in table.column_names:
        probs.add(f"{label}: data.amount_fill.column '{fcol}': no such column{suggest(fcol, table.column_names)}")
        return amount, empty, bad, np.zeros(len(amount), bool)
    fill, f_empty, f_bad, _, _ = parse_numbers(table[fcol].combine_chunks(), cfg.amount_format)
    filled &= ~f_empty & ~f_bad
    return np.where(filled, fill, amount), empty & ~filled, bad & ~filled, filled


def currency_codes(table: pa.Table, cfg: DataConfig) -> tuple[str | None, pa.Array | None]:
    """(column, upper-cased codes with blanks as null) of the deals' currency column, if there is one."""
    col = cfg.currency.column if cfg.currency is not None and cfg.currency.column else cfg.column("currency")
    if col not in table.column_names:
        return (col if cfg.currency is not None else None), None
    return col, pc.utf8_upper(blank_to_null(as_strings(table[col].combine_chunks())))
