"""HubSpot: the deals export ("Record ID", "Deal Stage", "Amount", "Create Date", "Close Date", "Pipeline",
...) with one column per stage and pipeline, ``Date entered "<stage> (<pipeline>)"``, melted here into a
stage history. HubSpot keeps one date per stage (a re-entry overwrites it), so moves back and repeated
stays cannot be seen (docs/crm.md). Status from the deal's stage: its pipeline's won or lost stage, else
open; the close is the date the deal entered that stage.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.config import Config, DataConfig
from forecaster.crm.checks import Collector
from forecaster.crm.formats import Preset, closed_stage_names, only_where, open_where
from forecaster.crm.values import as_strings, blank_to_null, format_hint, mask, parse_times

DATE_ENTERED = re.compile(r"""^Date entered\s+["'\u201c]?(.*?)\s+\(([^()]*)\)["'\u201d]?$""")
EXPECTED = "Close Date (open deals)"


def stage_columns(names) -> list[tuple[str, str, str]]:
    """(column, stage, pipeline) of every "Date entered" column."""
    out = []
    for n in names:
        m = DATE_ENTERED.match(n)
        if m:
            out.append((n, m.group(1).strip(), m.group(2).strip()))
    return out


def _known_stages(config: Config) -> dict[str, tuple[str, ...]]:
    """Pipeline -> the stage names its columns may carry (open, won, lost); '' for the config without
    pipelines."""
    if config.pipelines:
        return {p.name: p.stages + (p.won, p.lost) for p in config.pipelines}
    return {"": tuple(config.stages) + (config.won, config.lost)}


class HubSpot(Preset):
    def extra_columns(self, cfg: DataConfig, names: tuple[str, ...]) -> list[str]:
        return [c for c, _, _ in stage_columns(names)]

    def status_values(self, config: Config) -> dict[str, tuple[str, ...]]:
        won, lost = closed_stage_names(config)
        return {"open": ("*",), "won": won, "lost": lost}

    def translate(self, deals: pa.Table, config: Config) -> pa.Table:
        cfg = config.data
        close, stage = cfg.column("closed_at"), cfg.column("status")
        if cfg.column("expected_close_at") != EXPECTED or close not in deals.column_names \
                or stage not in deals.column_names:
            return deals
        return only_where(deals, close, open_where(deals[stage].combine_chunks(), config), EXPECTED)

    def history(self, deals: pa.Table, config: Config, c: Collector) -> pa.Table | None:
        """One row per non-empty "Date entered" cell of the deal's own pipeline, ordered by deal and then
        by the export's column order (the pipeline's stage order), each date checked here so that a
        problem names its column."""
        cfg = config.data
        problems = c.problems
        name = cfg.deals.name
        id_col = cfg.column("deal_id")
        if id_col not in deals.column_names:
            return None
        columns = stage_columns(deals.column_names)
        if not columns:
            problems.add(f"{name}: no 'Date entered \"<stage> (<pipeline>)\"' columns: export the deals with "
                         f"their stage dates (docs/crm.md), or give data.stage_history")
            return None
        ids = as_strings(deals[id_col].combine_chunks())
        pcol = cfg.column("pipeline")
        pipeline = (pc.utf8_trim_whitespace(as_strings(deals[pcol].combine_chunks())).to_numpy(zero_copy_only=False)
                    if config.pipelines and pcol in deals.column_names else None)
        known = _known_stages(config)
        parts: list[tuple[np.ndarray, np.ndarray, str, pa.Array]] = []
        for pos, (col, stage, pipe) in enumerate(columns):
            raw = blank_to_null(as_strings(deals[col].combine_chunks()))
            rows = ~mask(pc.is_null(raw))
            if pipeline is not None:
                rows &= pipeline == pipe
            if not rows.any():
                continue
            allowed = known.get(pipe if config.pipelines else "", ())
            if stage not in allowed:
                where = f"pipeline '{pipe}'" if config.pipelines else "the config"
                problems.add(f"{name}: column '{col}': stage '{stage}' is not a stage of {where} "
                             f"({', '.join(allowed) or 'no such pipeline'}), yet {int(rows.sum())} deal(s) entered it")
                continue
            _, bad = parse_times(raw, cfg.date_format_of("entered_at"), cfg.timezone)
            for i in np.flatnonzero(bad & rows)[:20]:
                problems.add(f"{name}: column '{col}': row {i + 1} (deal '{ids[i]}'): unparseable date: "
                             f"'{raw[i].as_py()}' (set data.date_formats.entered_at, e.g. "
                             f"'{format_hint(raw[i].as_py())}')")
            idx = np.flatnonzero(rows)
            parts.append((idx, np.full(len(idx), pos), stage, raw.take(pa.array(idx))))
        if not parts:
            return pa.table({"deal_id": pa.array([], pa.string()), "stage": pa.array([], pa.string()),
                             "entered_at": pa.array([], pa.string())})
        row = np.concatenate([p[0] for p in parts])
        pos = np.concatenate([p[1] for p in parts])
        order = np.lexsort((pos, row))
        stages = np.concatenate([np.full(len(p[0]), p[2], dtype=object) for p in parts])
        dates = pa.concat_arrays([p[3] for p in parts]).take(pa.array(order))
        return pa.table({"deal_id": ids.take(pa.array(row[order])), "stage": pa.array(stages[order], pa.string()),
                         "entered_at": dates})


PRESET = HubSpot(
    name="hubspot",
    deal_columns={
        "deal_id": ("Record ID", "Deal ID"),
        "created_at": ("Create Date", "Create date"),
        "amount": ("Amount",),
        "status": ("Deal Stage", "Deal stage"),
        "closed_at": ("Close Date", "Close date"),
        "pipeline": ("Pipeline",),
        "probability": ("Deal probability", "Deal Probability"),
        "forecast_category": ("Forecast category", "Forecast Category"),
        "currency": ("Currency", "Deal currency code"),
    },
    derived_history_columns={"history_deal_id": ("deal_id",), "stage": ("stage",), "entered_at": ("entered_at",)},
    derived={"expected_close_at": EXPECTED},
)
