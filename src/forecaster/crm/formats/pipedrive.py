"""Pipedrive: the deals list export ("Deal - ID", "Deal - Value", "Deal - Status" open/won/lost/deleted,
"Deal - Won time", "Deal - Lost time", "Deal - Stage", ...).

Won or lost time becomes the close; deleted deals are dropped (counted). The export has no stage
history: each deal is placed in the stage the export shows (an open deal's current stage, a closed deal's
stage when it closed) from its creation on - or, where the export has "Deal - Last stage change", in the
first stage from its creation and in that stage from its last change - so the stage is kept as what it
tells about a deal's odds and time to close, and most stage-to-stage moves are not seen. Measured, this
biases forecasts low (docs/pipedrive_cost.md); without ``stages:`` in the config the export is read
deal-level (one 'open' stage), which measured close to the full history.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.config import Config, DataConfig
from forecaster.crm.checks import Collector
from forecaster.crm.formats import Preset
from forecaster.crm.values import as_strings, blank_to_null

WON_TIME = ("Deal - Won time", "Won time")
LOST_TIME = ("Deal - Lost time", "Lost time")
LAST_CHANGE = ("Deal - Last stage change", "Last stage change")
CLOSED = "Deal - Won time / Lost time"


def _first(names, candidates) -> str | None:
    return next((c for c in candidates if c in names), None)


class Pipedrive(Preset):
    def extra_columns(self, cfg: DataConfig, names: tuple[str, ...]) -> list[str]:
        return [c for c in (_first(names, WON_TIME), _first(names, LOST_TIME), _first(names, LAST_CHANGE),
                            cfg.column("stage")) if c]

    def translate(self, deals: pa.Table, config: Config) -> pa.Table:
        cfg = config.data
        names = deals.column_names
        won, lost, status = _first(names, WON_TIME), _first(names, LOST_TIME), cfg.column("status")
        if cfg.column("closed_at") != CLOSED or status not in names:
            return deals
        st = pc.utf8_lower(pc.utf8_trim_whitespace(as_strings(deals[status].combine_chunks())))
        none = pa.nulls(deals.num_rows, pa.string())
        won_t = as_strings(deals[won].combine_chunks()) if won else none
        lost_t = as_strings(deals[lost].combine_chunks()) if lost else none
        closed = pc.if_else(pc.equal(st, "won"), won_t, pc.if_else(pc.equal(st, "lost"), lost_t, none))
        return deals.append_column(CLOSED, closed.fill_null(""))

    def history(self, deals: pa.Table, config: Config, c: Collector) -> pa.Table | None:
        """One row per deal: its stage from its creation; with the export's "Last stage change", the
        first stage from its creation and its stage from that day (two rows, in that order)."""
        cfg = config.data
        cols = [cfg.column("history_deal_id"), cfg.column("stage"), cfg.column("entered_at")]
        missing = [col for col in cols if col not in deals.column_names]
        for col in missing:
            c.problems.add(f"{cfg.deals.name}: missing column '{col}' (the deal's stage; data.columns.stage names it)")
        change = _first(deals.column_names, LAST_CHANGE)
        if missing or change is None:
            return None if missing else deals.select(cols)
        ids, stage = as_strings(deals[cols[0]].combine_chunks()), as_strings(deals[cols[1]].combine_chunks())
        when = blank_to_null(as_strings(deals[change].combine_chunks()))
        moved = pc.invert(pc.is_null(when))
        first = pc.if_else(moved, _first_stages(deals, config), stage)
        n = deals.num_rows
        order = pa.array(np.argsort(np.r_[np.arange(n) * 2, np.arange(n) * 2 + 1], kind="stable"))
        table = pa.table({cols[0]: pa.concat_arrays([ids, ids]), cols[1]: pa.concat_arrays([first, stage]),
                          cols[2]: pa.concat_arrays([as_strings(deals[cols[2]].combine_chunks()), when])})
        both = pa.concat_arrays([pa.array(np.ones(n, bool)), moved])
        return table.take(order).filter(both.take(order))


def _first_stages(deals: pa.Table, config: Config) -> pa.Array:
    """Each deal's first stage: its pipeline's (with ``pipelines:``), else the config's."""
    if not config.pipelines or config.data.column("pipeline") not in deals.column_names:
        return pa.array([config.stages[0]] * deals.num_rows, pa.string())
    pipes = pc.utf8_trim_whitespace(as_strings(deals[config.data.column("pipeline")].combine_chunks()))
    names = pa.array([p.name for p in config.pipelines], pa.string())
    firsts = pa.array([p.stages[0] for p in config.pipelines], pa.string())
    return pc.take(firsts, pc.index_in(pipes, value_set=names)).fill_null(config.pipelines[0].stages[0])


PRESET = Pipedrive(
    name="pipedrive",
    deal_columns={
        "deal_id": ("Deal - ID", "ID"),
        "created_at": ("Deal - Deal created", "Deal created"),
        "amount": ("Deal - Value", "Value"),
        "status": ("Deal - Status", "Status"),
        "expected_close_at": ("Deal - Expected close date", "Expected close date"),
        "probability": ("Deal - Probability", "Probability"),
        "currency": ("Deal - Currency", "Currency"),
        "pipeline": ("Deal - Pipeline", "Pipeline"),
    },
    derived_history_columns={
        "history_deal_id": ("Deal - ID", "ID"),
        "stage": ("Deal - Stage", "Stage"),
        "entered_at": ("Deal - Deal created", "Deal created"),
    },
    derived={"closed_at": CLOSED},
    probability_percent=True,
    drop={"status": ("deleted",)},
    derived_history_note="deals placed in the stage the export shows from their creation (biased low: "
                         "docs/crm.md)",
)
