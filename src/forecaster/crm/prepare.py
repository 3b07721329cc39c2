"""Preparation of a real export, declared in the config: recode values, join lookup tables, fill
missing amounts from another column. Each step is counted in the data warnings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.config import DataConfig
from forecaster.crm.read import as_strings, parse_numbers, read_table
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


def join(table: pa.Table, cfg: DataConfig, probs: Problems) -> pa.Table:
    """Left-join each ``data.join`` table on its key; its other columns become deal attributes."""
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
    return table


def fill_amounts(table: pa.Table, cfg: DataConfig, amount: np.ndarray, empty: np.ndarray, bad: np.ndarray,
                 probs: Problems, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``data.amount_fill``: the amount from another column where it is missing (and/or zero).
    Returns (amount, empty, bad, filled mask)."""
    filled = np.zeros(len(amount), bool)
    fill_cfg = cfg.amount_fill
    if fill_cfg is None:
        return amount, empty, bad, filled
    fcol = fill_cfg.column
    if fcol not in table.column_names:
        probs.add(f"{label}: data.amount_fill.column '{fcol}': no such column{suggest(fcol, table.column_names)}")
        return amount, empty, bad, filled
    fill, f_empty, f_bad = parse_numbers(table[fcol].combine_chunks())
    if "missing" in fill_cfg.when:
        filled |= empty
    if "zero" in fill_cfg.when:
        filled |= ~empty & ~bad & (amount == 0)
    filled &= ~f_empty & ~f_bad
    return np.where(filled, fill, amount), empty & ~filled, bad & ~filled, filled
