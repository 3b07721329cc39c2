"""The only reader of CRM exports: the files named by the config -> one validated ``CRMData``.

Contract (docs/data.md, docs/crm.md):
- deals: deal_id, created_at, amount, status (or closed/won flags), closed_at (+ optional columns and any
  attribute columns);
- stage_history (optional): deal_id, stage, entered_at; one row per stage entry.
A preset (``data.format``) first translates its CRM's layout into these (crm.formats). Without a stage
history (deal-level mode) every deal sits in the single stage of ``config.stages`` from created_at until
closed_at. Every problem is collected and raised as one DataError, one line each.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from forecaster.calendar import NO_DATE, to_date
from forecaster.config import OPTIONAL_DEAL_COLUMNS, OPTIONAL_HISTORY_COLUMNS, PIPELINE_ATTR, Config
from forecaster.crm import deals as D
from forecaster.crm.checks import Collector, require
from forecaster.crm.currency import convert
from forecaster.crm.export import OPEN, CRMData, FieldHistory
from forecaster.crm.fields import DealFields, fields_as_of
from forecaster.crm.formats import Preset, preset_of, resolve
from forecaster.crm.history import HISTORY_KEYS, History, load_history
from forecaster.crm.prepare import recode
from forecaster.crm.read import file_digest, header, one_heap, read_table
from forecaster.crm.values import str_array
from forecaster.errors import DataError, Problems, suggest


def _history_columns(config: Config) -> list[str]:
    cfg = config.data
    return [cfg.column(k) for k in (*HISTORY_KEYS, "history_expected_close_at", "history_probability",
                                    "history_forecast_category")]


def _resolved(config: Config) -> tuple[Config, Preset, tuple[str, ...], tuple[str, ...] | None, bool]:
    """The config with its preset's defaults, the preset, the deals' and the history file's column names,
    and whether the preset derives the history from the deals table."""
    cfg = config.data
    preset = preset_of(cfg.format)
    deal_names = header(cfg.deals, "deals", cfg.encoding, cfg.delimiter)
    hist_names = header(cfg.stage_history, "stage_history", cfg.encoding, cfg.delimiter) \
        if cfg.stage_history is not None else None
    derived = not config.deal_level and cfg.stage_history is None
    _mapped_optional(cfg, deal_names, hist_names)
    return resolve(config, preset, deal_names, hist_names, derived), preset, deal_names, hist_names, derived


def _mapped_optional(cfg, deal_names: tuple[str, ...], hist_names: tuple[str, ...] | None) -> None:
    """An optional column the user maps (data.columns) must exist: a typo would silently drop it."""
    probs = Problems(DataError)
    for key, name in cfg.columns.items():
        is_history = key in OPTIONAL_HISTORY_COLUMNS
        if key not in OPTIONAL_DEAL_COLUMNS and not is_history:
            continue
        names = hist_names if is_history else deal_names
        if names is not None and name not in names:
            where = cfg.stage_history.name if is_history else cfg.deals.name
            probs.add(f"{where}: data.columns.{key} '{name}': no such column{suggest(name, names)}")
    probs.raise_if_any()


def load(config: Config) -> CRMData:
    """Read and validate the CRM export named by the config (no as-of cut: see ``crm.cut``)."""
    with one_heap():
        return _load(config)


def _load(config: Config) -> CRMData:
    config, preset, deal_names, hist_names, derived = _resolved(config)
    cfg = config.data
    c = Collector()
    probs = c.problems
    d = D.read_deals(config, preset, c, deal_names)
    D.dates(cfg, preset, c, d)
    D.status(cfg, c, d)
    D.amounts(cfg, c, d)
    D.closing(cfg, c, d)
    D.duplicates(cfg, c, d)
    attrs = D.attributes(config, preset, c, d)
    current = D.current_fields(cfg, preset, c, d)
    d.amount, currency = convert(d.table, cfg, d.amount, d.closed, d.keep, probs)
    probs.raise_if_any()
    sources = [str(cfg.deals)]
    digest = hashlib.sha256(file_digest(cfg.deals).encode())
    table, label = None, cfg.deals.name
    if cfg.stage_history is not None:
        if not require(hist_names or (), cfg.stage_history, cfg, HISTORY_KEYS, probs):
            probs.raise_if_any()
        # a history with a header and no rows is a valid (if early) export: every deal sits in the first stage
        table = recode(read_table(cfg.stage_history, "stage_history", _history_columns(config), allow_no_rows=True,
                                  encoding=cfg.encoding, delimiter=cfg.delimiter, warn=c.warn,
                                  times=D.time_columns(cfg, preset, ("entered_at", "history_expected_close_at"))),
                       dict(cfg.recode))
        label = cfg.stage_history.name
        sources.append(str(cfg.stage_history))
        digest.update(file_digest(cfg.stage_history).encode())
    elif derived:
        table = preset.history(d.table, config, c)
        probs.raise_if_any()
        if preset.derived_history_note:
            c.warn(f"{preset.name}_history", int(d.keep.sum()), preset.derived_history_note)
    d.table = None  # type: ignore[assignment]  # the text of the deals is parsed: let it go

    keep = d.keep if not d.keep.all() else slice(None)  # a slice: no copies when every deal is kept
    created, closed, status = d.created[keep], d.closed[keep], d.status[keep]
    current = current.take(keep)
    dropped_ids = d.ids_arr.filter(pa.array(~d.keep)) if not d.keep.all() else None
    history = None
    if table is not None:
        pipes = attrs[PIPELINE_ATTR].to_numpy(zero_copy_only=False) if config.pipelines else None
        history = load_history(config, preset, c, table, label, d.ids_arr.filter(pa.array(d.keep)), pipes, created,
                               closed, status, dropped_ids)
        closed = _closes_after_export(c, history, created, status)
    for j in cfg.join:
        sources.append(str(j.table))
        digest.update(file_digest(j.table).encode())
    probs.raise_if_any()
    return _data(config, str_array(d.ids_arr.filter(pa.array(d.keep))), created, closed, status, d.amount[keep], attrs, current, currency, history,
                 tuple(c.warnings.values()), digest.hexdigest(), tuple(sources))


def _closes_after_export(c: Collector, history: History, created: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Close dates after the export was taken cannot be closes: where the history records closings, the
    export's day is its latest creation or stage entry, and a closed deal whose close date (one no history
    row confirms) lies after it closed by that day (a stale CloseDate left in the future)."""
    closed = history.closed
    if not history.records_closes:
        return closed
    export_day = max(int(created.max(initial=NO_DATE)), history.last_day)
    late = (status != OPEN) & (closed > export_day)
    c.warn("closed_after_export", int(late.sum()),
           f"closed deals dated after the export's last recorded event {to_date(export_day)} (closed that day)")
    return np.where(late, export_day, closed).astype(np.int32)


def _data(config: Config, ids, created, closed, status, amount, attrs, current: DealFields, currency, history,
          warnings, fingerprint: str, sources) -> CRMData:
    if history is None:
        h_deal, h_stage, h_entered = np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(0, np.int32)
        fields: FieldHistory | None = None
    else:
        h_deal, h_stage, h_entered, fields = history.deal, history.stage, history.entered, history.fields
    now = fields_as_of(fields, current)
    return CRMData(
        deal_id=ids, created=created.astype(np.int32), closed=closed.astype(np.int32), status=status.astype(np.int8),
        amount=amount.astype(np.float64), attrs=attrs, expected_close=now.expected_close,
        crm_probability=now.probability, forecast_category=now.category, close_pushes=now.close_pushes,
        close_push_days=now.close_push_days, currency=currency, fields=fields, h_deal=h_deal, h_stage=h_stage,
        h_entered=h_entered, stages=tuple(config.stages), deal_level=history is None, warnings=warnings,
        fingerprint=fingerprint, sources=sources,
    )
