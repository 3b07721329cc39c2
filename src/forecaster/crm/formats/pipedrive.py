"""Pipedrive: the deals list export ("Deal - ID", "Deal - Value", "Deal - Status" open/won/lost/deleted,
"Deal - Won time", "Deal - Lost time", "Deal - Stage", ...).

Won or lost time becomes the close; deleted deals are dropped (counted). The export has no stage
history: each deal is placed in the stage the export shows (an open deal's current stage, a closed deal's
stage when it closed) from its creation on, so the stage is kept as what it tells about a deal's odds and
time to close, and stage-to-stage moves are not modelled (docs/crm.md measures what that costs).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from forecaster.config import Config, DataConfig
from forecaster.crm.formats import Preset
from forecaster.crm.values import as_strings

WON_TIME = ("Deal - Won time", "Won time")
LOST_TIME = ("Deal - Lost time", "Lost time")
CLOSED = "Deal - Won time / Lost time"


def _first(names, candidates) -> str | None:
    return next((c for c in candidates if c in names), None)


class Pipedrive(Preset):
    def extra_columns(self, cfg: DataConfig, names: tuple[str, ...]) -> list[str]:
        return [c for c in (_first(names, WON_TIME), _first(names, LOST_TIME), cfg.column("stage")) if c]

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

    def history(self, deals: pa.Table, config: Config, problems) -> pa.Table | None:
        cfg = config.data
        cols = [cfg.column("history_deal_id"), cfg.column("stage"), cfg.column("entered_at")]
        missing = [c for c in cols if c not in deals.column_names]
        for col in missing:
            problems.add(f"{cfg.deals.name}: missing column '{col}' (the deal's stage; data.columns.stage names it)")
        return None if missing else deals.select(cols)


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
)
