"""The only reader of CRM tables: Parquet/CSV -> validated arrays, and the as-of cut.

Dates are int32 day numbers (days since 1970-01-01, UTC); ``NO_DATE`` marks an empty date.
A loaded export is a ``CRMData``; ``cut(data, as_of)`` returns the state known before ``as_of``.

Contract (docs/data.md):
- deals: deal_id, created_at, amount, status, closed_at (+ any attribute columns);
- stage_history (optional): deal_id, stage, entered_at; one row per stage entry.
Without stage_history (deal-level mode) every deal sits in the single stage of ``config.stages``
from created_at until closed_at.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from forecaster.config import DEAL_COLUMNS, Config, DataConfig, suggest
from forecaster.errors import DataError, Problems

NO_DATE = np.iinfo(np.int32).min
OPEN, WON, LOST = 0, 1, 2
STATUS_NAMES = ("open", "won", "lost")
MISSING_ATTR = "(none)"
EPOCH = dt.date(1970, 1, 1)


def to_day(d: dt.date) -> int:
    return (d - EPOCH).days


def to_date(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))


@dataclass(frozen=True)
class Warning_:
    """A counted data warning: processing goes on, the count is kept in output metadata."""

    key: str
    count: int
    message: str

    def line(self) -> str:
        return f"warning: {self.message} ({self.count})"


@dataclass(frozen=True)
class CRMData:
    """A validated CRM export (or its as-of cut), as arrays.

    Deals (length n): ``deal_id`` str objects, ``created`` / ``closed`` int32 days (closed is NO_DATE
    while open), ``status`` int8 (OPEN/WON/LOST), ``amount`` float64, ``attrs`` pyarrow table of the
    attribute columns as strings. History (length m, sorted by deal, date, file order; open stages only,
    consecutive repeats of a stage merged): ``h_deal`` int32 index into deals, ``h_stage`` int16 index
    into ``stages``, ``h_entered`` int32 days.
    """

    deal_id: np.ndarray
    created: np.ndarray
    closed: np.ndarray
    status: np.ndarray
    amount: np.ndarray
    attrs: pa.Table
    h_deal: np.ndarray
    h_stage: np.ndarray
    h_entered: np.ndarray
    stages: tuple[str, ...]
    deal_level: bool
    warnings: tuple[Warning_, ...] = ()
    fingerprint: str = ""
    as_of: int | None = None
    sources: tuple[str, ...] = ()

    @property
    def n_deals(self) -> int:
        return len(self.deal_id)

    def last_day(self) -> int:
        """The latest date anywhere in the data."""
        days = [self.created.max(initial=NO_DATE), self.closed.max(initial=NO_DATE)]
        if len(self.h_entered):
            days.append(self.h_entered.max())
        return int(max(days))

    def warning_counts(self) -> dict[str, int]:
        return {w.key: w.count for w in self.warnings}

    def current_stage(self) -> tuple[np.ndarray, np.ndarray]:
        """Per deal: index of its last history row's stage and that row's entered day (-1 / NO_DATE if none)."""
        stage = np.full(self.n_deals, -1, np.int16)
        entered = np.full(self.n_deals, NO_DATE, np.int32)
        if len(self.h_deal):
            last = np.r_[self.h_deal[1:] != self.h_deal[:-1], True]
            stage[self.h_deal[last]] = self.h_stage[last]
            entered[self.h_deal[last]] = self.h_entered[last]
        return stage, entered


# ---------------------------------------------------------------------------------------------
# Reading files


def read_table(path: Path, what: str, allow_no_rows: bool = False) -> pa.Table:
    """Parquet (file or directory dataset) or CSV/TSV (every column read as text)."""
    name = path.name.lower()
    try:
        if path.is_dir() or name.endswith((".parquet", ".pq")):
            table = pq.read_table(path)
        elif name.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            delim = "\t" if name.endswith(".tsv") else ","
            first = pacsv.open_csv(path, parse_options=pacsv.ParseOptions(delimiter=delim))
            names = first.schema.names
            first.close()
            table = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(delimiter=delim),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names}, strings_can_be_null=False
                ),
            )
        else:
            raise DataError(f"{path}: {what}: unknown file type (use .parquet, .csv or a directory of Parquet files)")
    except DataError:
        raise
    except (pa.ArrowInvalid, OSError, pa.ArrowException) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Empty CSV file" in msg:
            raise DataError(f"{path}: {what}: the file is empty") from None
        raise DataError(f"{path}: {what}: cannot read: {msg}") from None
    if table.num_columns == 0:
        raise DataError(f"{path}: {what}: the file has no columns")
    if table.num_rows == 0 and not allow_no_rows:
        raise DataError(f"{path}: {what}: the file has no rows")
    return table.combine_chunks()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Value parsing (vectorised with pyarrow compute)


def _blank_to_null(a: pa.Array) -> pa.Array:
    a = pc.utf8_trim_whitespace(a)
    return pc.if_else(pc.equal(a, ""), pa.scalar(None, pa.string()), a)


_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%d %H:%M%z",
    "%Y/%m/%d",
)


def parse_dates(a: pa.Array, date_format: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Any date-like column -> (int32 days UTC with NO_DATE for empty, bool mask of unparseable)."""
    n = len(a)
    t = a.type
    if pa.types.is_dictionary(t):
        a = a.dictionary_decode()
        t = a.type
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            a = pc.cast(a, pa.timestamp(t.unit, "UTC"))
        a = pc.cast(pc.cast(a, pa.timestamp(t.unit)), pa.date32())
        t = a.type
    if pa.types.is_date(t):
        a = pc.cast(a, pa.date32())
        days = pc.cast(a.cast(pa.int32()), pa.int32()).to_numpy(zero_copy_only=False)
        days = np.where(pc.is_null(a).to_numpy(zero_copy_only=False), NO_DATE, days).astype(np.int32)
        return days, np.zeros(n, bool)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return np.full(n, NO_DATE, np.int32), ~pc.is_null(a).to_numpy(zero_copy_only=False)
    s = _blank_to_null(pc.cast(a, pa.string()))
    empty = pc.is_null(s).to_numpy(zero_copy_only=False)
    if date_format:
        formats: Iterable[str] = (date_format,)
    else:
        s = pc.replace_substring_regex(s, r"^(\d{4}-\d{2}-\d{2})T", r"\1 ")
        s = pc.replace_substring_regex(s, r"(\d{2}:\d{2}:\d{2})\.\d+", r"\1")
        s = pc.replace_substring_regex(s, r"\s+(Z|[+-]\d{2}:?\d{2})$", r"\1")
        formats = _DATE_FORMATS
    days = np.full(n, NO_DATE, np.int64)
    todo = ~empty
    for f in formats:
        if not todo.any():
            break
        parsed = pc.strptime(s, format=f, unit="s", error_is_null=True)
        if parsed.type.tz is not None:
            parsed = pc.cast(parsed, pa.timestamp("s", "UTC"))
        secs = pc.cast(pc.cast(parsed, pa.timestamp("s")), pa.int64())
        ok = ~pc.is_null(secs).to_numpy(zero_copy_only=False) & todo
        vals = secs.to_numpy(zero_copy_only=False)
        days[ok] = np.floor_divide(vals[ok].astype(np.int64), 86400)
        todo &= ~ok
    return days.astype(np.int32), todo


def parse_numbers(a: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numeric or text column -> (float64 values, mask empty, mask not a number)."""
    n = len(a)
    if pa.types.is_integer(a.type) or pa.types.is_floating(a.type) or pa.types.is_decimal(a.type):
        v = pc.cast(a, pa.float64())
        empty = pc.is_null(v).to_numpy(zero_copy_only=False)
        vals = v.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isfinite(vals)
        return np.where(bad, 0.0, vals), empty, bad
    s = _blank_to_null(pc.cast(a, pa.string()))
    empty = pc.is_null(s).to_numpy(zero_copy_only=False)
    ok = pc.match_substring_regex(s, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$").fill_null(False)
    okn = ok.to_numpy(zero_copy_only=False)
    vals = np.zeros(n, np.float64)
    if okn.any():
        vals[okn] = pc.cast(pc.filter(s, ok), pa.float64()).to_numpy(zero_copy_only=False)
    return vals, empty, ~empty & ~okn


def as_strings(a: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(a.type):
        a = a.dictionary_decode()
    if not (pa.types.is_string(a.type) or pa.types.is_large_string(a.type)):
        a = pc.cast(a, pa.string())
    return pc.cast(a, pa.string())


# ---------------------------------------------------------------------------------------------
# Loading and validation


class _Collector:
    """Problems and counted warnings while loading; row-level problems name the deal."""

    def __init__(self) -> None:
        self.problems = Problems(DataError)
        self.warnings: dict[str, Warning_] = {}

    def warn(self, key: str, count: int, message: str) -> None:
        if count:
            self.warnings[key] = Warning_(key, int(count), message)

    def rows(self, mask: np.ndarray, ids: np.ndarray | None, prefix: str, what: str, values=None) -> None:
        """One problem line per bad row (the CLI shows the first 20 and a count)."""
        for i in np.flatnonzero(mask):
            deal_id = _py(ids[i]) if ids is not None else None
            deal = f" (deal '{deal_id}')" if deal_id is not None else ""
            val = f": {_py(values[i])!r}" if values is not None else ""
            self.problems.add(f"{prefix}: row {i + 1}{deal}: {what}{val}")


def _py(x: object) -> object:
    """A Python value from an arrow scalar or numpy element (for messages only)."""
    if isinstance(x, pa.Scalar):
        return x.as_py()
    return x.item() if isinstance(x, np.generic) else x


def _rows_by_value(mask: np.ndarray, values) -> dict[object, list[int]]:
    """The rows flagged by ``mask``, grouped by their value (in order of first appearance)."""
    out: dict[object, list[int]] = {}
    for i in np.flatnonzero(mask):
        out.setdefault(_py(values[i]), []).append(int(i))
    return out


def _unknown_values(probs: Problems, mask: np.ndarray, values, ids, label: str, noun: str, known: list[str],
                    hint: str) -> None:
    """One problem line per distinct unknown value: how many rows, the first row and deal, the closest
    known value and what to do."""
    for value, rows in _rows_by_value(mask, values).items():
        what = f"empty {noun.split()[0]}" if value is None else f"unknown {noun} '{value}'"
        probs.add(f"{label}: {what} in {len(rows)} row(s), first row {rows[0] + 1} (deal '{_py(ids[rows[0]])}')"
                  f"{suggest(value, known) if value else ''}; {hint}")


def _col_label(cfg: DataConfig, canonical: str) -> str:
    real = cfg.column(canonical)
    plain = canonical.removeprefix("history_")
    return f"column '{real}'" + (f" ({plain})" if real != plain else "")


def _require(table: pa.Table, path: Path, cfg: DataConfig, names: tuple[str, ...], probs: Problems) -> bool:
    ok = True
    for canonical in names:
        real = cfg.column(canonical)
        if real not in table.column_names:
            mapped = f" (mapped from '{canonical}' in data.columns)" if real != canonical else ""
            probs.add(
                f"{path}: missing required column '{real}'{mapped}{suggest(real, table.column_names)}"
            )
            ok = False
    return ok


def _recode(table: pa.Table, recode: dict) -> pa.Table:
    for col, mapping in recode.items():
        if col not in table.column_names or not mapping:
            continue
        values = as_strings(table[col].combine_chunks())
        keys = pa.array(list(mapping.keys()), pa.string())
        idx = pc.index_in(values, value_set=keys)
        mapped = pc.take(pa.array(list(mapping.values()), pa.string()), idx)
        table = table.set_column(table.column_names.index(col), col, pc.coalesce(mapped, values))
    return table


def _join(table: pa.Table, cfg: DataConfig, probs: Problems) -> pa.Table:
    for j in cfg.join:
        lookup = _recode(read_table(j.table, "join table"), dict(cfg.recode))
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


def load(config: Config) -> CRMData:
    """Read and validate the CRM export named by the config (no as-of cut; see ``cut``)."""
    cfg = config.data
    c = _Collector()
    probs = c.problems
    stages = tuple(config.stages)

    deals_t = _recode(read_table(cfg.deals, "deals"), dict(cfg.recode))
    if not _require(deals_t, cfg.deals, cfg, DEAL_COLUMNS, probs):
        probs.raise_if_any()
    deals_t = _join(deals_t, cfg, probs)
    probs.raise_if_any()
    dpath = cfg.deals.name

    ids_arr = _blank_to_null(as_strings(deals_t[cfg.column("deal_id")].combine_chunks()))
    ids = ids_arr.to_numpy(zero_copy_only=False)
    c.rows(pc.is_null(ids_arr).to_numpy(zero_copy_only=False), None, f"{dpath}: {_col_label(cfg, 'deal_id')}", "empty deal_id")

    created, created_bad = parse_dates(deals_t[cfg.column("created_at")].combine_chunks(), cfg.date_format)
    closed, closed_bad = parse_dates(deals_t[cfg.column("closed_at")].combine_chunks(), cfg.date_format)
    raw_created = deals_t[cfg.column("created_at")].combine_chunks()
    raw_closed = deals_t[cfg.column("closed_at")].combine_chunks()

    # Rows without a creation date cannot be placed in time: an error unless the config drops them.
    no_created = (created == NO_DATE) & ~created_bad
    keep = np.ones(len(ids), bool)
    if cfg.drop_missing_created:
        keep = ~no_created
        c.warn("dropped_missing_created", int(no_created.sum()), "deals without created_at dropped (data.drop_missing_created)")
    else:
        c.rows(no_created, ids, f"{dpath}: {_col_label(cfg, 'created_at')}", "empty date")
    created_label = f"{dpath}: {_col_label(cfg, 'created_at')}"
    c.rows(created_bad & keep, ids, created_label, "unparseable date", raw_created)
    c.rows(closed_bad & keep, ids, f"{dpath}: {_col_label(cfg, 'closed_at')}", "unparseable date", raw_closed)

    # Status values, mapped case-insensitively; one line per distinct unknown value.
    status_raw = _blank_to_null(as_strings(deals_t[cfg.column("status")].combine_chunks()))
    folded = pc.utf8_lower(status_raw)
    status = np.full(len(ids), -1, np.int8)
    wildcard = None
    for code, name in enumerate(STATUS_NAMES):
        vals = [v for v in cfg.status_values[name] if v != "*"]
        if "*" in cfg.status_values[name]:
            wildcard = code
        hit = pc.is_in(folded, value_set=pa.array([v.casefold() for v in vals], pa.string()))
        status[hit.fill_null(False).to_numpy(zero_copy_only=False)] = code
    if wildcard is not None:
        status[(status < 0) & ~pc.is_null(status_raw).to_numpy(zero_copy_only=False)] = wildcard
    _unknown_values(probs, (status < 0) & keep, status_raw, ids, f"{dpath}: {_col_label(cfg, 'status')}",
                    "status value", [v for vals in cfg.status_values.values() for v in vals],
                    "map it under data.status_values")

    # Amounts: fill from another column where configured, then check.
    amount, a_empty, a_bad = parse_numbers(deals_t[cfg.column("amount")].combine_chunks())
    if cfg.amount_fill is not None:
        fcol = cfg.amount_fill.column
        if fcol not in deals_t.column_names:
            probs.add(f"{dpath}: data.amount_fill.column '{fcol}': no such column{suggest(fcol, deals_t.column_names)}")
        else:
            fill, f_empty, f_bad = parse_numbers(deals_t[fcol].combine_chunks())
            use = np.zeros(len(ids), bool)
            if "missing" in cfg.amount_fill.when:
                use |= a_empty
            if "zero" in cfg.amount_fill.when:
                use |= ~a_empty & ~a_bad & (amount == 0)
            use &= ~f_empty & ~f_bad
            amount = np.where(use, fill, amount)
            a_empty &= ~use
            a_bad &= ~use
            c.warn("amount_filled", int((use & keep).sum()), f"amounts taken from column '{fcol}' (data.amount_fill)")
    alabel = f"{dpath}: {_col_label(cfg, 'amount')}"
    raw_amount = deals_t[cfg.column("amount")].combine_chunks()
    c.rows(a_empty & keep, ids, alabel, "empty amount")
    c.rows(a_bad & keep, ids, alabel, "not a number", raw_amount)
    c.rows((amount < 0) & ~a_bad & keep, ids, alabel, "negative amount", amount)
    c.warn("zero_amount", int(((amount == 0) & ~a_empty & ~a_bad & keep).sum()), "deals with zero amount")

    closed_status = (status == WON) | (status == LOST)
    c.rows(closed_status & (closed == NO_DATE) & ~closed_bad & keep, ids,
           f"{dpath}: {_col_label(cfg, 'closed_at')}", "won/lost deal has no closed_at")
    open_closed = (status == OPEN) & (closed != NO_DATE) & keep
    c.warn("open_with_closed_at", int(open_closed.sum()), "open deals with closed_at set (closed_at ignored)")
    closed = np.where(status == OPEN, NO_DATE, closed).astype(np.int32)
    early = (closed != NO_DATE) & (created != NO_DATE) & (closed < created) & keep
    c.warn("closed_before_created", int(early.sum()), "deals closed before created_at (closed_at clamped to created_at)")
    closed = np.where(early, created, closed).astype(np.int32)

    # Duplicate ids among kept rows.
    counts = pc.value_counts(ids_arr.filter(pa.array(keep)).drop_null())
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(dup):
        is_dup = pc.is_in(ids_arr, value_set=dup.field("values")).fill_null(False).to_numpy(zero_copy_only=False)
        for value, rows in _rows_by_value(is_dup & keep, ids).items():
            probs.add(
                f"{dpath}: {_col_label(cfg, 'deal_id')}: duplicate deal_id '{value}' "
                f"({len(rows)} rows, first row {rows[0] + 1})"
            )
    if not keep.any():
        probs.add(f"{dpath}: no deals left to use")
    probs.raise_if_any()

    # Attribute columns: everything not in the contract, as strings.
    contract_cols = {cfg.column(k) for k in DEAL_COLUMNS}
    attr_names = [n for n in deals_t.column_names if n not in contract_cols]
    kept_t = deals_t.filter(pa.array(keep))
    attrs = pa.table(
        {n: as_strings(kept_t[n].combine_chunks()).fill_null(MISSING_ATTR) for n in attr_names}
    ) if attr_names else pa.table({"__row": pa.array(np.zeros(int(keep.sum()), np.int8))}).drop(["__row"])
    for name in config.segment_by:
        if name not in deals_t.column_names:
            probs.add(
                f"{dpath}: segment_by column '{name}' not found{suggest(name, attr_names)}"
            )
    probs.raise_if_any()

    ids = ids[keep]
    created, closed, status, amount = created[keep], closed[keep], status[keep], amount[keep]
    dropped_ids = ids_arr.filter(pa.array(~keep)) if not keep.all() else None

    sources = [str(cfg.deals)]
    digest = hashlib.sha256(file_digest(cfg.deals).encode())
    if cfg.stage_history is not None:
        h_deal, h_stage, h_entered = _load_history(config, c, ids_arr.filter(pa.array(keep)), created, closed,
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
        deal_id=ids,
        created=created.astype(np.int32),
        closed=closed.astype(np.int32),
        status=status.astype(np.int8),
        amount=amount.astype(np.float64),
        attrs=attrs,
        h_deal=h_deal,
        h_stage=h_stage,
        h_entered=h_entered,
        stages=stages,
        deal_level=cfg.stage_history is None,
        warnings=tuple(c.warnings.values()),
        fingerprint=digest.hexdigest(),
        sources=tuple(sources),
    )


def _same_as_previous(a: np.ndarray) -> np.ndarray:
    """Element i equals element i-1 (False for the first)."""
    out = np.zeros(len(a), bool)
    out[1:] = a[1:] == a[:-1]
    return out


def _load_history(config: Config, c: _Collector, kept_ids: pa.Array, created: np.ndarray,
                  closed: np.ndarray, dropped_ids: pa.Array | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cfg = config.data
    probs = c.problems
    path = cfg.stage_history
    assert path is not None
    hname = path.name
    # A history with a header and no rows is a valid (if early) export: every deal sits in the first stage.
    t = _recode(read_table(path, "stage_history", allow_no_rows=True), dict(cfg.recode))
    if not _require(t, path, cfg, ("history_deal_id", "stage", "entered_at"), probs):
        probs.raise_if_any()
    h_ids = _blank_to_null(as_strings(t[cfg.column("history_deal_id")].combine_chunks()))
    stage_raw = _blank_to_null(as_strings(t[cfg.column("stage")].combine_chunks()))
    entered, bad = parse_dates(t[cfg.column("entered_at")].combine_chunks(), cfg.date_format)
    h_ids_np = h_ids  # indexed lazily, for messages

    # Rows of deals dropped for a missing created_at go with them.
    keep = np.ones(len(h_ids_np), bool)
    if dropped_ids is not None:
        keep = ~pc.is_in(h_ids, value_set=dropped_ids).fill_null(False).to_numpy(zero_copy_only=False)
        c.warn("dropped_history_rows", int((~keep).sum()), "stage rows of dropped deals")

    elabel = f"{hname}: {_col_label(cfg, 'entered_at')}"
    c.rows(bad & keep, h_ids_np, elabel, "unparseable date", t[cfg.column("entered_at")].combine_chunks())
    c.rows((entered == NO_DATE) & ~bad & keep, h_ids_np, elabel, "empty date")

    # Stage names: open stages, plus the closed stages which carry no spell (deals.closed_at rules).
    names = list(config.stages) + [config.won, config.lost]
    stage_idx = pc.index_in(stage_raw, value_set=pa.array(names, pa.string()))
    sidx = stage_idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    _unknown_values(probs, (sidx < 0) & keep, stage_raw, h_ids_np, f"{hname}: {_col_label(cfg, 'stage')}",
                    "stage", names, f"stages in the config: {', '.join(names)}")

    deal_idx = pc.index_in(h_ids, value_set=kept_ids)
    didx = deal_idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    orphan = (didx < 0) & keep
    if orphan.any():
        orphan_ids: dict[object, int] = {}
        for i in np.flatnonzero(orphan):
            orphan_ids.setdefault(_py(h_ids_np[i]), int(i))
        for value, row in orphan_ids.items():
            probs.add(f"{hname}: {_col_label(cfg, 'history_deal_id')}: row {row + 1}: deal '{value}' is not in the deals table")
    probs.raise_if_any()

    rows = np.flatnonzero(keep)
    didx, sidx, entered = didx[rows], sidx[rows], entered[rows]
    # Order by deal, then date, then file order (several rows the same day keep the file's order).
    order = np.lexsort((rows, entered, didx))
    didx, sidx, entered = didx[order], sidx[order], entered[order]
    same_deal = _same_as_previous(didx)
    c.warn("same_day_rows", int((same_deal & _same_as_previous(entered)).sum()),
           "stage rows on the same day as the deal's previous row (ordered by file order)")
    early = entered < created[didx]
    c.warn("rows_before_created", int(early.sum()), "stage rows dated before the deal's created_at (clamped to created_at)")
    entered = np.where(early, created[didx], entered).astype(np.int32)

    # Closed stages carry no spell: the deal's closed_at/status say when and how it closed.
    n_open = len(config.stages)
    is_closed_row = sidx >= n_open
    c.warn("closed_stage_rows", int(is_closed_row.sum()), "won/lost stage rows (closing taken from deals.closed_at)")
    dclosed = closed[didx]
    after_close = ~is_closed_row & (dclosed != NO_DATE) & (entered > dclosed)
    c.warn("rows_after_close", int(after_close.sum()), "open-stage rows dated after the deal closed (dropped)")
    k = ~is_closed_row & ~after_close
    didx, sidx, entered = didx[k], sidx[k], entered[k]
    # Consecutive rows of the same stage (CRMs log amount or date edits as history rows): one spell.
    repeat = _same_as_previous(didx) & _same_as_previous(sidx)
    c.warn("repeated_stage_rows", int(repeat.sum()), "consecutive rows of the same stage merged")
    k = ~repeat
    return didx[k].astype(np.int32), sidx[k].astype(np.int16), entered[k].astype(np.int32)


# ---------------------------------------------------------------------------------------------
# The as-of cut


def default_as_of(data: CRMData) -> int:
    """The first day after the latest date in the export."""
    return data.last_day() + 1


def cut(data: CRMData, as_of: int) -> CRMData:
    """The export as known before day ``as_of``: nothing dated on or after it is visible.

    Deals created on/after as_of vanish; deals closed on/after as_of are open; stage rows on/after
    as_of are dropped. A deal with no stage row left sits in the first stage since created_at
    (deal-level mode: always).
    """
    keep = data.created < as_of
    new_index = np.cumsum(keep, dtype=np.int64) - 1
    closed = data.closed[keep]
    status = data.status[keep].copy()
    later = (closed != NO_DATE) & (closed >= as_of)
    status[later] = OPEN
    closed = np.where(later, NO_DATE, closed).astype(np.int32)

    hk = keep[data.h_deal] & (data.h_entered < as_of) if len(data.h_deal) else np.zeros(0, bool)
    h_deal = new_index[data.h_deal[hk]].astype(np.int32)
    h_stage = data.h_stage[hk]
    h_entered = data.h_entered[hk]
    n = int(keep.sum())
    has_row = np.zeros(n, bool)
    has_row[h_deal] = True
    missing = np.flatnonzero(~has_row)
    warnings = [w for w in data.warnings if w.key != "no_stage_rows"]
    if len(missing):
        created = data.created[keep]
        h_deal = np.r_[h_deal, missing.astype(np.int32)]
        h_stage = np.r_[h_stage, np.zeros(len(missing), np.int16)]
        h_entered = np.r_[h_entered, created[missing]]
        order = np.lexsort((h_entered, h_deal))  # stable: the synthetic row is each such deal's only row
        h_deal, h_stage, h_entered = h_deal[order], h_stage[order], h_entered[order]
        if not data.deal_level:
            warnings.append(Warning_("no_stage_rows", len(missing),
                                     f"deals with no stage row before as_of (placed in '{data.stages[0]}' from created_at)"))
    return replace(
        data,
        deal_id=data.deal_id[keep],
        created=data.created[keep],
        closed=closed,
        status=status,
        amount=data.amount[keep],
        attrs=data.attrs.filter(pa.array(keep)),
        h_deal=h_deal.astype(np.int32),
        h_stage=h_stage.astype(np.int16),
        h_entered=h_entered.astype(np.int32),
        warnings=tuple(warnings),
        as_of=int(as_of),
    )


def load_as_of_data(data: CRMData, config: Config, as_of: dt.date | None = None) -> CRMData:
    """Cut a loaded export at ``as_of`` (or the config's, or the day after the data's end)."""
    when = as_of or config.forecast.as_of
    day = to_day(when) if when is not None else default_as_of(data)
    out = cut(data, day)
    if out.n_deals == 0:
        raise DataError(f"{config.data.deals}: no deal was created before as_of {to_date(day)}")
    return out


def load_as_of(config: Config, as_of: dt.date | None = None) -> CRMData:
    """Load the export named by the config and cut it at ``as_of``."""
    return load_as_of_data(load(config), config, as_of)


def resample(data: CRMData, idx: np.ndarray) -> CRMData:
    """The export made of deals ``idx`` (repeats allowed: a bootstrap resample), each with its stage rows.
    Deal ids repeat with their deals; a resample is for fitting, not for forecasting its deals."""
    idx = np.asarray(idx, np.int64)
    n = data.n_deals
    first = np.searchsorted(data.h_deal, np.arange(n), side="left")
    last = np.searchsorted(data.h_deal, np.arange(n), side="right")
    counts = (last - first)[idx]
    new_first = np.r_[0, np.cumsum(counts)[:-1]]
    rows = np.repeat(first[idx] - new_first, counts) + np.arange(int(counts.sum()))
    return replace(
        data,
        deal_id=data.deal_id[idx],
        created=data.created[idx],
        closed=data.closed[idx],
        status=data.status[idx],
        amount=data.amount[idx],
        attrs=data.attrs.take(pa.array(idx)),
        h_deal=np.repeat(np.arange(len(idx), dtype=np.int32), counts),
        h_stage=data.h_stage[rows],
        h_entered=data.h_entered[rows],
    )


@dataclass(frozen=True)
class PipelineView:
    """Open deals per stage as of the cut: what `validate` and `demo` print."""

    as_of: dt.date
    stages: tuple[str, ...]
    open_deals: np.ndarray
    open_amount: np.ndarray
    median_age_days: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)
    first_day: dt.date | None = None
    last_day: dt.date | None = None


def pipeline_view(data: CRMData) -> PipelineView:
    assert data.as_of is not None
    stage, entered = data.current_stage()
    is_open = data.status == OPEN
    n_s = len(data.stages)
    s = stage[is_open].astype(np.int64)
    age = (data.as_of - entered[is_open]).astype(np.float64)
    med = np.full(n_s, np.nan)
    for i in range(n_s):
        if (s == i).any():
            med[i] = float(np.median(age[s == i]))
    return PipelineView(
        as_of=to_date(data.as_of),
        stages=data.stages,
        open_deals=np.bincount(s, minlength=n_s),
        open_amount=np.bincount(s, weights=data.amount[is_open], minlength=n_s),
        median_age_days=med,
        counts={name: int((data.status == code).sum()) for code, name in enumerate(STATUS_NAMES)},
        first_day=to_date(int(data.created.min())) if data.n_deals else None,
        last_day=to_date(data.last_day()) if data.n_deals else None,
    )
