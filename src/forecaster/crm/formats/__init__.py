"""``data.format``: presets that translate a CRM's own export into the generic tables before validation.

A preset only sets defaults - column names (the first of its candidates the file has), the status rule,
date layouts, filters - and, where the CRM's layout differs, derives the generic columns and the stage
history from what the export holds. ``data.columns`` and the other data keys override every default, and
everything after the translation is the generic loader, so a forecast from a preset equals the forecast
from the same data written in the generic layout. One module per CRM: salesforce, hubspot, pipedrive.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import pyarrow as pa

from forecaster.config import Config, DataConfig
from forecaster.config.data import STATUSES

if TYPE_CHECKING:
    from forecaster.crm.checks import Collector

FLAGS = ("is_closed", "is_won")


@dataclass(frozen=True)
class Preset:
    """The defaults and translation of one export layout (the generic one: no defaults at all).

    ``deal_columns`` / ``history_columns``: canonical name -> the CRM's names, tried in order (history
    columns of a history file; ``derived_history_columns`` of a history the preset derives from the deals);
    ``derived``: canonical name -> the column ``translate`` adds for it; ``date_formats``: strptime layouts tried after ISO where a column has no ``data.date_formats``;
    ``probability_percent``: the CRM writes probabilities in percent; ``drop``: default ``data.drop``;
    ``derived_history_note``: what a derived history approximates (a counted warning)."""

    name: str = "generic"
    deal_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    history_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    derived_history_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    derived: Mapping[str, str] = field(default_factory=dict)
    date_formats: tuple[str, ...] = ()
    probability_percent: bool = False
    drop: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    derived_history_note: str | None = None  # a warning counting the deals of a derived history

    def extra_columns(self, cfg: DataConfig, names: tuple[str, ...]) -> list[str]:
        """Deals columns the translation reads besides the mapped ones."""
        return []

    def status_values(self, config: Config) -> dict[str, tuple[str, ...]] | None:
        """Default ``data.status_values`` (None: the generic open/won/lost)."""
        return None

    def translate(self, deals: pa.Table, config: Config) -> pa.Table:
        """The deals table with the generic columns the CRM does not write directly."""
        return deals

    def history(self, deals: pa.Table, config: Config, c: Collector) -> pa.Table | None:
        """A stage history derived from the deals table (None: there is none, or it is a file); problems
        and warnings go to ``c`` (crm.checks.Collector)."""
        return None


def _pick(candidates: tuple[str, ...], names: tuple[str, ...], required: bool) -> str | None:
    for c in candidates:
        if c in names:
            return c
    return candidates[0] if required and candidates else None


def resolve(config: Config, preset: Preset, deal_names: tuple[str, ...],
            history_names: tuple[str, ...] | None, derived_history: bool = False) -> Config:
    """The config with the preset's defaults under the user's keys: column names the files have (for a
    derived history, the names the preset gives its columns), the status rule and filters. The user's
    ``data.columns`` always win."""
    cfg = config.data
    user = dict(cfg.columns)
    columns: dict[str, str] = {}
    flags_found = all(_pick(preset.deal_columns.get(k, ()), deal_names, False) for k in FLAGS)
    for canonical, candidates in preset.deal_columns.items():
        required = canonical in ("deal_id", "created_at", "amount", "closed_at") or (
            canonical in FLAGS and not flags_found and "status" not in preset.deal_columns)
        chosen = _pick(candidates, deal_names, required)
        if chosen is not None:
            columns[canonical] = chosen
    columns.update(preset.derived)
    history_columns = preset.derived_history_columns if derived_history else preset.history_columns
    for canonical, candidates in history_columns.items():
        names = deal_names if derived_history else history_names or ()
        chosen = _pick(candidates, names, canonical in ("history_deal_id", "stage", "entered_at"))
        if chosen is not None:
            columns[canonical] = chosen
    columns.update(user)
    changes: dict = {"columns": columns, "drop": {**preset.drop, **cfg.drop}}
    default_status = {s: (s,) for s in STATUSES}
    if cfg.status_values == default_status and "status" not in user:
        status_values = preset.status_values(config)
        if status_values is not None:
            changes["status_values"] = status_values
    return dataclasses.replace(config, data=dataclasses.replace(cfg, **changes))


def uses_flags(cfg: DataConfig, names: tuple[str, ...]) -> bool:
    """Status from IsClosed/IsWon-style flags: both flag columns mapped and present, status not mapped."""
    return "status" not in cfg.columns and all(k in cfg.columns and cfg.columns[k] in names for k in FLAGS)


def preset_of(name: str) -> Preset:
    from forecaster.crm.formats import hubspot, pipedrive, salesforce

    return {"generic": Preset(), "salesforce": salesforce.PRESET, "hubspot": hubspot.PRESET,
            "pipedrive": pipedrive.PRESET}[name]


def closed_stage_names(config: Config) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every won and every lost stage name (of each pipeline, or the config's own)."""
    if config.pipelines:
        return tuple(dict.fromkeys(p.won for p in config.pipelines)), tuple(dict.fromkeys(p.lost for p in config.pipelines))
    return (config.won,), (config.lost,)


def open_where(values: pa.Array, config: Config) -> pa.Array:
    """Boolean: the stage-like ``values`` name no won or lost stage (case-insensitive)."""
    import pyarrow.compute as pc

    from forecaster.crm.values import as_strings

    won, lost = closed_stage_names(config)
    closed = pa.array([v.casefold() for v in won + lost], pa.string())
    return pc.invert(pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(as_strings(values))), value_set=closed))


def only_where(table: pa.Table, source: str, keep: pa.Array, name: str) -> pa.Table:
    """``table`` with a column ``name``: ``source``'s values where ``keep``, else empty."""
    import pyarrow.compute as pc

    from forecaster.crm.values import as_strings

    col = as_strings(table[source].combine_chunks())
    return table.append_column(name, pc.if_else(keep.fill_null(False), col, pa.scalar(None, pa.string())))


__all__ = ["Preset", "closed_stage_names", "open_where", "only_where", "preset_of", "resolve", "uses_flags"]
