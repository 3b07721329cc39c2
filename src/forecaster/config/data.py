"""The ``data:`` section: where the CRM export is, which layout it has and how to read its values.

Every key only declares; reading happens in ``forecaster.crm``. A preset (``format``) supplies defaults
for ``columns``, the status rule and date parsing there; the keys given here override them.
"""

from __future__ import annotations

import codecs
import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from forecaster.config.reader import Reader, kind
from forecaster.errors import suggest

# Canonical columns of the data contract; optional ones are read when present.
DEAL_COLUMNS = ("deal_id", "created_at", "amount", "status", "closed_at")
OPTIONAL_DEAL_COLUMNS = ("expected_close_at", "probability", "forecast_category", "currency", "is_closed",
                         "is_won", "pipeline")
HISTORY_COLUMNS = ("stage", "entered_at")
OPTIONAL_HISTORY_COLUMNS = ("history_expected_close_at", "history_probability", "history_forecast_category")
COLUMN_KEYS = DEAL_COLUMNS + OPTIONAL_DEAL_COLUMNS + HISTORY_COLUMNS + ("history_deal_id",) + OPTIONAL_HISTORY_COLUMNS
DATE_COLUMNS = ("created_at", "closed_at", "expected_close_at", "entered_at", "history_expected_close_at")
STATUSES = ("open", "won", "lost")
FORMATS = ("generic", "salesforce", "hubspot", "pipedrive")
DELIMITERS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", "|": "|"}
SEPARATORS = (",", ".", " ", "'", "")


@dataclass(frozen=True)
class JoinSpec:
    """A lookup table joined onto deals by one key column; its other columns become attributes."""

    table: Path
    key: str


@dataclass(frozen=True)
class AmountFill:
    """Where the amount is missing (and/or zero): take it from another (possibly joined) column, or a value."""

    column: str | None = None
    value: float | None = None
    when: tuple[str, ...] = ("missing",)


@dataclass(frozen=True)
class AmountFormat:
    """How amounts written as text group thousands and mark decimals ("1.234,50": '.' and ',')."""

    thousands: str = ","
    decimal: str = "."


@dataclass(frozen=True)
class CurrencySpec:
    """Convert amounts into ``to``: a rate is units of that currency per one unit of ``to`` (the ECB
    convention), given inline (``rates``) or in a CSV file ``currency,rate`` (optionally ``date``)."""

    to: str
    column: str | None = None
    rates: Mapping[str, float] = field(default_factory=dict)
    rates_file: Path | None = None


@dataclass(frozen=True)
class DataConfig:
    deals: Path
    stage_history: Path | None = None
    format: str = "generic"
    columns: Mapping[str, str] = field(default_factory=dict)
    status_values: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {s: (s,) for s in STATUSES}
    )
    date_format: str | None = None
    date_formats: Mapping[str, str] = field(default_factory=dict)
    timezone: str = "UTC"
    delimiter: str | None = None
    encoding: str | None = None
    amount_format: AmountFormat | None = None
    amount_fill: AmountFill | None = None
    currency: CurrencySpec | None = None
    where: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    drop: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    recode: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    join: tuple[JoinSpec, ...] = ()
    drop_missing_created: bool = False
    observed_from: dt.date | None = None  # None: detected from the data (crm.snapshot.observation_start)

    def column(self, canonical: str) -> str:
        """The CRM's name for a canonical column (history columns default to their deals namesakes)."""
        if canonical.startswith("history_"):
            return self.columns.get(canonical, self.column(canonical.removeprefix("history_")))
        return self.columns.get(canonical, canonical)

    def date_format_of(self, canonical: str) -> str | None:
        """The strptime format of a date column: its own (``date_formats``), else ``date_format``."""
        plain = canonical if canonical in self.date_formats else canonical.removeprefix("history_")
        return self.date_formats.get(plain, self.date_format)


DATA_KEYS = tuple(f for f in DataConfig.__dataclass_fields__)


def parse_data(r: Reader, raw: Any) -> DataConfig | None:
    d = r.section(raw, "data", DATA_KEYS)
    if "deals" not in d:
        r.add("data.deals", "required (path to the deals table: CSV, Excel .xlsx or Parquet)")
    deals = r.path(d.get("deals"), "data.deals")
    history = r.path(d.get("stage_history"), "data.stage_history")
    fmt = r.typed(d.get("format", "generic"), "data.format", (str,), "a format name") or "generic"
    if fmt not in FORMATS:
        r.add("data.format", f"'{fmt}' is not one of {', '.join(FORMATS)}{suggest(fmt, FORMATS)}")
        fmt = "generic"
    columns = {k: name for k, v in r.section(d.get("columns"), "data.columns", COLUMN_KEYS).items()
               if k in COLUMN_KEYS and (name := r.name(v, f"data.columns.{k}")) is not None}
    drop = r.typed(d.get("drop_missing_created", False), "data.drop_missing_created", (bool,), "true or false")
    if deals is None:
        _parse_rest(r, d)
        return None
    observed_from = r.date(d.get("observed_from"), "data.observed_from")
    return DataConfig(deals=deals, stage_history=history, format=fmt, columns=columns, drop_missing_created=bool(drop),
                      observed_from=observed_from, **_parse_rest(r, d))


def _parse_rest(r: Reader, d: dict[str, Any]) -> dict[str, Any]:
    """Every data key but the files, the format and the column mapping."""
    return {
        "status_values": _status_values(r, d.get("status_values")),
        "date_format": r.typed(d.get("date_format"), "data.date_format", (str,), "a strptime format like '%m/%d/%Y'"),
        "date_formats": _date_formats(r, d.get("date_formats")),
        "timezone": _timezone(r, d.get("timezone", "UTC")),
        "delimiter": _delimiter(r, d.get("delimiter")),
        "encoding": _encoding(r, d.get("encoding")),
        "amount_format": _amount_format(r, d.get("amount_format")),
        "amount_fill": _amount_fill(r, d.get("amount_fill")),
        "currency": _currency(r, d.get("currency")),
        "where": _filter(r, d.get("where"), "data.where"),
        "drop": _filter(r, d.get("drop"), "data.drop"),
        "recode": _recode(r, d.get("recode")),
        "join": _joins(r, d.get("join")),
    }


def _status_values(r: Reader, raw: Any) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {s: (s,) for s in STATUSES}
    for k, v in r.section(raw, "data.status_values", STATUSES).items():
        if k in STATUSES:
            out[k] = r.values(v, f"data.status_values.{k}")
    seen: dict[str, str] = {}
    for s, vals in out.items():
        for v in vals:
            if v.casefold() in seen and seen[v.casefold()] != s:
                r.add(f"data.status_values.{s}", f"'{v}' is also listed under '{seen[v.casefold()]}'")
            seen[v.casefold()] = s
    return out


def _date_formats(r: Reader, raw: Any) -> dict[str, str]:
    out = {}
    for k, v in r.section(raw, "data.date_formats", DATE_COLUMNS).items():
        fmt = r.typed(v, f"data.date_formats.{k}", (str,), "a strptime format like '%m/%d/%Y %I:%M %p'")
        if k in DATE_COLUMNS and fmt:
            out[k] = fmt
    return out


def _timezone(r: Reader, raw: Any) -> str:
    tz = r.typed(raw, "data.timezone", (str,), "a time zone name like America/Los_Angeles")
    if tz is None:
        return "UTC"
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        r.add("data.timezone", f"unknown time zone '{tz}'{suggest(tz, sorted(zoneinfo.available_timezones()))}")
        return "UTC"
    return tz


def _delimiter(r: Reader, raw: Any) -> str | None:
    if raw is None:
        return None
    if raw not in DELIMITERS:
        r.add("data.delimiter", f"expected one of ',', ';', '|', tab, got {raw!r}")
        return None
    return DELIMITERS[raw]


def _encoding(r: Reader, raw: Any) -> str | None:
    enc = r.typed(raw, "data.encoding", (str,), "an encoding name like utf-8 or cp1252")
    if enc is None:
        return None
    try:
        return codecs.lookup(enc).name
    except LookupError:
        r.add("data.encoding", f"unknown encoding '{enc}'{suggest(enc, ['utf-8', 'utf-8-sig', 'cp1252', 'latin-1'])}")
        return None


def _amount_format(r: Reader, raw: Any) -> AmountFormat | None:
    if raw is None:
        return None
    d = r.section(raw, "data.amount_format", ("thousands", "decimal"))
    out = {}
    for k in ("thousands", "decimal"):
        if k in d:
            v = d[k]
            if not isinstance(v, str) or v not in SEPARATORS or (k == "decimal" and v not in (",", ".")):
                allowed = "',' or '.'" if k == "decimal" else "',', '.', ' ', \"'\" or ''"
                r.add(f"data.amount_format.{k}", f"expected {allowed}, got {v!r}")
            else:
                out[k] = v
    fmt = AmountFormat(**out)
    if fmt.thousands == fmt.decimal:
        r.add("data.amount_format", f"thousands and decimal separators are both '{fmt.decimal}'")
    return fmt


def _amount_fill(r: Reader, raw: Any) -> AmountFill | None:
    if raw is None:
        return None
    fr = Reader(r.problems, "data.amount_fill", r.base_dir)
    fd = fr.section(raw, "", ("column", "value", "when"))
    col = fr.name(fd.get("column"), "data.amount_fill.column")
    value = fr.typed(fd.get("value"), "data.amount_fill.value", (int, float), "a number")
    if (col is None) == (value is None):
        r.add("data.amount_fill", "needs either 'column' (take the amount from it) or 'value' (e.g. 0)")
    if value is not None and value < 0:
        r.add("data.amount_fill.value", f"must be >= 0, got {value}")
    when = fd.get("when", ["missing"])
    when_t = fr.names([when] if isinstance(when, str) else when, "data.amount_fill.when")
    for w in when_t:
        if w not in ("missing", "zero"):
            r.add("data.amount_fill.when", f"'{w}' is not one of missing, zero")
    if col is None and value is None:
        return None
    return AmountFill(col, None if value is None else float(value), when_t)


def _currency(r: Reader, raw: Any) -> CurrencySpec | None:
    if raw is None:
        return None
    cr = Reader(r.problems, "data.currency", r.base_dir)
    cd = cr.section(raw, "", ("column", "to", "rates"))
    to = cr.name(cd.get("to"), "data.currency.to", "a currency code like EUR")
    if to is None:
        r.add("data.currency.to", "required (the currency of every output, e.g. EUR)")
    column = cr.name(cd.get("column"), "data.currency.column")
    rates: dict[str, float] = {}
    rates_file = None
    raw_rates = cd.get("rates")
    if raw_rates is None:
        r.add("data.currency.rates", "required: {CODE: units per one " + (to or "'to'") + "} or a CSV file")
    elif isinstance(raw_rates, str):
        rates_file = cr.path(raw_rates, "data.currency.rates")
    elif isinstance(raw_rates, Mapping):
        for code, rate in raw_rates.items():
            v = cr.typed(rate, f"data.currency.rates.{code}", (int, float), "a number of units per one " + str(to))
            if v is not None and not v > 0:
                r.add(f"data.currency.rates.{code}", f"must be > 0, got {v}")
            elif v is not None:
                rates[str(code).strip()] = float(v)
    else:
        r.add("data.currency.rates", f"expected a mapping CODE: rate or a CSV file, got {kind(raw_rates)}")
    return CurrencySpec(to, column, rates, rates_file) if to else None


def _filter(r: Reader, raw: Any, key: str) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        r.add(key, f"expected a mapping column -> [values], got {kind(raw)}")
        return {}
    return {str(col): r.values(vals, f"{key}.{col}") for col, vals in raw.items()}


def _recode(r: Reader, raw: Any) -> dict[str, dict[str, str]]:
    recode: dict[str, dict[str, str]] = {}
    if raw is None:
        return recode
    if not isinstance(raw, Mapping):
        r.add("data.recode", f"expected a mapping column -> {{old: new}}, got {raw!r}")
        return recode
    for col, m in raw.items():
        if not isinstance(m, Mapping):
            r.add(f"data.recode.{col}", f"expected a mapping old -> new, got {m!r}")
            continue
        recode[str(col)] = {str(a): str(b) for a, b in m.items()}
    return recode


def _joins(r: Reader, raw: Any) -> tuple[JoinSpec, ...]:
    joins: list[JoinSpec] = []
    if raw is None:
        return ()
    if not isinstance(raw, list):
        r.add("data.join", f"expected a list of {{table, key}}, got {raw!r}")
        return ()
    for i, j in enumerate(raw):
        jr = Reader(r.problems, f"data.join[{i}]", r.base_dir)
        jd = jr.section(j, "", ("table", "key"))
        if not jd or "table" not in jd or "key" not in jd:
            r.add(f"data.join[{i}]", "needs 'table' (a file) and 'key' (a column)")
            continue
        t = jr.path(jd["table"], f"data.join[{i}].table")
        key = jr.typed(jd["key"], f"data.join[{i}].key", (str,), "a column name")
        if t is not None and key:
            joins.append(JoinSpec(t, key))
    return tuple(joins)
