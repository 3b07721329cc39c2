"""Parsing the values of a CRM export, vectorised with pyarrow compute: text, dates and timestamps (per
column formats, the business's time zone), amounts as CRMs and spreadsheets write them, true/false flags.
"""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.calendar import NO_DATE
from forecaster.config import AmountFormat

NO_TIME = np.iinfo(np.int64).min
ISO_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%d %H:%M%z",
    "%Y/%m/%d",
)
TRUE_WORDS = ("true", "t", "yes", "y", "1", "1.0")
FALSE_WORDS = ("false", "f", "no", "n", "0", "0.0")


def blank_to_null(a: pa.Array) -> pa.Array:
    """Text trimmed, empty as null (the null pass only where there are empty values)."""
    a = pc.utf8_trim_whitespace(a)
    empty = pc.equal(a, "")
    if pc.any(empty).as_py():
        a = pc.if_else(empty, pa.scalar(None, pa.string()), a)
    return a


def as_strings(a: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(a.type):
        a = a.dictionary_decode()
    if pa.types.is_boolean(a.type):
        return pc.if_else(a, "true", "false")
    return pc.cast(a, pa.string())


def str_array(a: pa.Array) -> np.ndarray:
    """Text as a numpy StringDType array (each element a Python str when read; 16 bytes each for short
    values instead of a Python object per value), converted in slices so that no full object array is made."""
    out = np.empty(len(a), dtype=np.dtypes.StringDType())
    step = 1 << 16
    for lo in range(0, len(a), step):
        out[lo:lo + step] = a.slice(lo, step).to_numpy(zero_copy_only=False)
    return out


def mask(a: pa.Array) -> np.ndarray:
    """A boolean arrow array as numpy (null: False)."""
    return a.fill_null(False).to_numpy(zero_copy_only=False)


def _local(a: pa.Array, tz: str) -> pa.Array:
    """A zoned timestamp array as the naive wall-clock time of ``tz``."""
    return pc.local_timestamp(pc.cast(a, pa.timestamp(a.type.unit, tz)))


def parse_times(a: pa.Array, date_format: str | None, tz: str = "UTC",
                extra_formats: Iterable[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Any date-like column -> (int64 seconds since 1970 in the business's wall-clock time, NO_TIME for
    empty; bool mask of unparseable). Zoned timestamps are converted to ``tz``; naive ones are taken as
    already local. Text: ``date_format`` when given, else ISO dates and timestamps, then ``extra_formats``."""
    n = len(a)
    t = a.type
    if pa.types.is_dictionary(t):
        a = a.dictionary_decode()
        t = a.type
    if pa.types.is_timestamp(t):
        local = _local(a, tz) if t.tz is not None else a
        secs = pc.cast(pc.cast(local, pa.timestamp("s")), pa.int64())
        return np.where(mask(pc.is_null(secs)), NO_TIME, secs.fill_null(0).to_numpy(zero_copy_only=False)), \
            np.zeros(n, bool)
    if pa.types.is_date(t):
        days = pc.cast(pc.cast(a, pa.date32()), pa.int32()).fill_null(0).to_numpy(zero_copy_only=False)
        return np.where(mask(pc.is_null(a)), NO_TIME, days.astype(np.int64) * 86400), np.zeros(n, bool)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return np.full(n, NO_TIME, np.int64), ~mask(pc.is_null(a))
    s = blank_to_null(pc.cast(a, pa.string()))
    empty = mask(pc.is_null(s))
    if not date_format:
        try:  # plain ISO dates, the common case, in one pass
            days = pc.cast(s, pa.date32())
        except pa.ArrowInvalid:
            pass
        else:
            d = pc.cast(days, pa.int32()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            return np.where(empty, NO_TIME, d * 86400), np.zeros(n, bool)
    if date_format:
        formats: tuple[str, ...] = (date_format,)
    else:
        s = pc.replace_substring_regex(s, r"^(\d{4}-\d{2}-\d{2})T", r"\1 ")
        s = pc.replace_substring_regex(s, r"(\d{2}:\d{2}:\d{2})\.\d+", r"\1")
        s = pc.replace_substring_regex(s, r"\s+(Z|[+-]\d{2}:?\d{2})$", r"\1")
        formats = ISO_FORMATS + tuple(extra_formats)
    secs = np.full(n, NO_TIME, np.int64)
    todo = ~empty
    for f in formats:
        if not todo.any():
            break
        parsed = pc.strptime(s, format=f, unit="s", error_is_null=True)
        if parsed.type.tz is not None:
            parsed = _local(parsed, tz)
        vals = pc.cast(pc.cast(parsed, pa.timestamp("s")), pa.int64())
        ok = ~mask(pc.is_null(vals)) & todo
        secs[ok] = vals.fill_null(0).to_numpy(zero_copy_only=False)[ok]
        todo &= ~ok
    return secs, todo


def to_days(secs: np.ndarray) -> np.ndarray:
    """int32 day numbers of wall-clock seconds (NO_DATE for NO_TIME)."""
    return np.where(secs == NO_TIME, NO_DATE, np.floor_divide(secs, 86400)).astype(np.int32)


def parse_dates(a: pa.Array, date_format: str | None, tz: str = "UTC",
                extra_formats: Iterable[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Any date-like column -> (int32 days in the business's time zone, NO_DATE for empty; unparseable mask)."""
    secs, bad = parse_times(a, date_format, tz, extra_formats)
    return to_days(secs), bad


def format_hint(value: object) -> str:
    """A strptime format that could read a date written like ``value`` (for the error message)."""
    text = str(value).strip()
    date = "%d.%m.%Y" if re.match(r"^\d{1,2}\.\d{1,2}\.\d{4}", text) else "%m/%d/%Y" if "/" in text else "%Y-%m-%d"
    if re.search(r"\d{1,2}:\d{2}:\d{2}", text):
        time = " %I:%M:%S %p" if re.search(r"[AaPp][Mm]$", text) else " %H:%M:%S"
    elif re.search(r"\d{1,2}:\d{2}", text):
        time = " %I:%M %p" if re.search(r"[AaPp][Mm]$", text) else " %H:%M"
    else:
        time = ""
    return date + time


def _number_pattern(fmt: AmountFormat) -> str:
    t, d = re.escape(fmt.thousands), re.escape(fmt.decimal)
    grouped = rf"\d{{1,3}}({t}\d{{3}})+" if fmt.thousands else r"\d+"
    return rf"^-?({grouped}|\d+)({d}\d*)?([eE][+-]?\d+)?$|^-?{d}\d+$"


AMBIGUOUS = r"^-?\d{1,3}[.,]\d{3}$"  # "1.234" / "1,234": a thousand or one-point-something


class Numbers(NamedTuple):
    """A parsed number column: float64 ``values`` (0 where not a number), masks ``empty``, ``bad`` (not a
    finite number) and ``infinite`` (a number too large for float64, among ``bad``), and ``ambiguous``:
    how many values read differently with '.' or ',' as the decimal mark (counted without a format)."""

    values: np.ndarray
    empty: np.ndarray
    bad: np.ndarray
    infinite: np.ndarray
    ambiguous: int


def parse_numbers(a: pa.Array, fmt: AmountFormat | None = None) -> Numbers:
    """Numeric or text column -> ``Numbers``.

    Text as CRMs and spreadsheets write it: currency symbols or codes around the number ("$16,100.00",
    "EUR 900"), thousands separators, a decimal comma with ``fmt``, accounting negatives "(1,200)"."""
    n = len(a)
    if pa.types.is_integer(a.type) or pa.types.is_floating(a.type) or pa.types.is_decimal(a.type):
        v = pc.cast(a, pa.float64())
        empty = mask(pc.is_null(v))
        vals = v.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isfinite(vals)
        return Numbers(np.where(bad, 0.0, vals), empty, bad, bad & ~np.isnan(vals) & ~empty, 0)
    s = blank_to_null(as_strings(a))
    empty = mask(pc.is_null(s))
    ambiguous = 0 if fmt is not None else int(mask(pc.match_substring_regex(s, AMBIGUOUS)).sum())
    if fmt is None:
        try:  # plain numbers, the common case, in one pass
            vals = pc.cast(s, pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        except pa.ArrowInvalid:
            pass
        else:
            finite = np.isfinite(vals)
            return Numbers(np.where(finite, vals, 0.0), empty, ~finite, np.isinf(vals), ambiguous)
    s = pc.replace_substring_regex(s, "[\\s\u00a0\u202f]", "")
    s = pc.replace_substring_regex(s, r"^(-?)([A-Z]{3}|[$€£¥₹])", r"\1")
    s = pc.replace_substring_regex(s, r"([A-Z]{3}|[$€£¥₹])$", "")
    s = pc.replace_substring_regex(s, r"^\((.*)\)$", r"-\1")
    s = pc.replace_substring_regex(s, r"^\+", "")
    use = fmt or AmountFormat()
    ok = mask(pc.match_substring_regex(s, _number_pattern(use)))
    vals = np.zeros(n, np.float64)
    if ok.any():
        text = pc.filter(s, pa.array(ok))
        if use.thousands:
            text = pc.replace_substring(text, use.thousands, "")
        if use.decimal != ".":
            text = pc.replace_substring(text, use.decimal, ".")
        vals[ok] = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    finite = np.isfinite(vals)
    vals[~finite] = 0.0
    return Numbers(vals, empty, ~empty & ~(ok & finite), ok & ~finite, ambiguous)


def parse_bools(a: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """true/false flags as CRMs write them ("true"/"false", TRUE/FALSE, 1/0, yes/no) -> (bool values,
    mask empty, mask not a flag)."""
    if pa.types.is_boolean(a.type):
        return mask(a), mask(pc.is_null(a)), np.zeros(len(a), bool)
    s = pc.utf8_lower(blank_to_null(as_strings(a)))
    empty = mask(pc.is_null(s))
    true = mask(pc.is_in(s, value_set=pa.array(TRUE_WORDS)))
    false = mask(pc.is_in(s, value_set=pa.array(FALSE_WORDS)))
    return true, empty, ~empty & ~true & ~false


def only_flags(a: pa.Array) -> bool:
    """Whether every non-empty value is true or false (a flag column, not a status)."""
    if pa.types.is_boolean(a.type):
        return True
    s = pc.utf8_lower(blank_to_null(as_strings(a))).drop_null()
    return len(s) > 0 and bool(mask(pc.is_in(s, value_set=pa.array(["true", "false"]))).all())
