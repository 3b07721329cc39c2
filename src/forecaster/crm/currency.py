"""Deals in several currencies: converted into one (``data.currency``), or refused when they would be summed.

A rate is units of the deal's currency per one unit of the output currency (the ECB convention: with
``to: EUR``, ``USD: 1.08`` means 1 EUR = 1.08 USD), so a deal's amount in the output currency is its
amount divided by the rate. A rates file holds ``currency,rate`` and optionally ``date``: a closed deal
takes the rate of its close date (the latest dated on or before it, else the earliest), an open deal the
latest rate in the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.calendar import NO_DATE
from forecaster.config import DataConfig
from forecaster.crm.checks import py_value
from forecaster.crm.prepare import currency_codes
from forecaster.crm.read import read_table
from forecaster.crm.values import as_strings, blank_to_null, mask, parse_dates, parse_numbers
from forecaster.errors import Problems, suggest


def _rates_file(path: Path, probs: Problems) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Code -> (days sorted, rates): a file 'currency,rate[,date]' (undated rows: day NO_DATE)."""
    t = read_table(path, "currency rates")
    for col in ("currency", "rate"):
        if col not in t.column_names:
            probs.add(f"{path}: missing required column '{col}'{suggest(col, t.column_names)} (a rates file "
                      f"holds currency,rate and optionally date)")
    if probs:
        return {}
    codes = pc.utf8_upper(blank_to_null(as_strings(t["currency"]))).to_numpy(zero_copy_only=False)
    rate, empty, bad, _, _ = parse_numbers(t["rate"])
    days = parse_dates(t["date"], None)[0] if "date" in t.column_names else np.full(t.num_rows, NO_DATE, np.int32)
    for i in np.flatnonzero(empty | bad | (rate <= 0))[:20]:
        probs.add(f"{path}: column 'rate': row {i + 1}: expected a number > 0, got {py_value(t['rate'][i])!r}")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for code in dict.fromkeys(c for c in codes if c):
        rows = np.flatnonzero(codes == code)
        order = np.argsort(days[rows], kind="stable")
        out[code] = (days[rows][order], rate[rows][order])
    return out


def _deal_rates(codes: np.ndarray, table: dict[str, tuple[np.ndarray, np.ndarray]], to: str,
                closed: np.ndarray) -> np.ndarray:
    rate = np.ones(len(codes), np.float64)
    for code, (days, rates) in table.items():
        if code == to:
            continue
        rows = np.flatnonzero(codes == code)
        when = np.where(closed[rows] == NO_DATE, np.iinfo(np.int32).max, closed[rows])
        pos = np.clip(np.searchsorted(days, when, side="right") - 1, 0, len(days) - 1)
        rate[rows] = rates[pos]
    return rate


def convert(table: pa.Table, cfg: DataConfig, amount: np.ndarray, closed: np.ndarray, keep: np.ndarray,
            probs: Problems) -> tuple[np.ndarray, str | None]:
    """(amounts in the output currency, its code or None when the export names no currency)."""
    name = cfg.deals.name
    col, codes_arr = currency_codes(table, cfg)
    spec = cfg.currency
    if codes_arr is None:
        if spec is not None:
            probs.add(f"{name}: data.currency.column '{col}': no such column{suggest(col, table.column_names)}")
        return amount, spec.to if spec is not None else None
    codes = codes_arr.to_numpy(zero_copy_only=False)
    kept = codes_arr.filter(pa.array(keep))
    if spec is None:
        counts = pc.value_counts(kept.drop_null()).to_pylist()
        counts.sort(key=lambda c: (-c["counts"], c["values"]))
        if len(counts) > 1:
            listed = ", ".join(f"{c['values']} {c['counts']} deal(s)" for c in sorted(counts, key=lambda c: c["values"]))
            others = ", ".join(f"{c['values']}: ..." for c in counts[1:])
            probs.add(f"{name}: column '{col}': amounts in {len(counts)} currencies ({listed}); convert them with "
                      f"data.currency: {{to: {counts[0]['values']}, rates: {{{others}}}}}")
        return amount, counts[0]["values"] if counts else None
    blank = mask(pc.is_null(codes_arr)) & keep
    if blank.any():
        first = int(np.flatnonzero(blank)[0])
        probs.add(f"{name}: column '{col}': empty currency in {int(blank.sum())} row(s), first row {first + 1}")
    table_rates = _rates_file(spec.rates_file, probs) if spec.rates_file is not None else {
        code: (np.array([NO_DATE], np.int32), np.array([rate])) for code, rate in spec.rates.items()}
    known = set(table_rates) | {spec.to}
    for code in dict.fromkeys(c for c in kept.drop_null().to_pylist()):
        if code not in known:
            rows = np.flatnonzero((codes == code) & keep)
            probs.add(f"{name}: column '{col}': no rate for currency '{code}' ({len(rows)} deal(s), first row "
                      f"{rows[0] + 1}); add it to data.currency.rates (units of {code} per one {spec.to})")
    if probs:
        return amount, spec.to
    return amount / _deal_rates(codes, table_rates, spec.to, closed), spec.to
