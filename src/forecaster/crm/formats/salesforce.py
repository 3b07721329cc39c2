"""Salesforce: the Opportunity export (Data Loader API names or a report's column labels) and, for the
stages, OpportunityHistory (one row per stage change and per amount or close-date edit).

Status from IsClosed / IsWon; a closed deal's close is the history row that entered its won/lost stage
(reps often leave CloseDate in the future on a lost deal); an open deal's CloseDate is the rep's expected
close date; Probability (percent) and ForecastCategory are kept, their values as of a date coming from the
history rows before it, and so are the close-date pushes counted from the history's CloseDate.
"""

from __future__ import annotations

import pyarrow as pa

from forecaster.config import Config
from forecaster.crm.formats import Preset, only_where
from forecaster.crm.values import parse_bools

EXPECTED = "CloseDate (open deals)"


class Salesforce(Preset):
    def translate(self, deals: pa.Table, config: Config) -> pa.Table:
        cfg = config.data
        close, closed_flag = cfg.column("closed_at"), cfg.column("is_closed")
        if cfg.column("expected_close_at") != EXPECTED or close not in deals.column_names \
                or closed_flag not in deals.column_names:
            return deals
        is_closed, empty, _ = parse_bools(deals[closed_flag].combine_chunks())
        return only_where(deals, close, pa.array(~is_closed & ~empty), EXPECTED)


PRESET = Salesforce(
    name="salesforce",
    deal_columns={
        "deal_id": ("Id", "Opportunity ID"),
        "created_at": ("CreatedDate", "Created Date"),
        "amount": ("Amount",),
        "closed_at": ("CloseDate", "Close Date"),
        "is_closed": ("IsClosed", "Closed"),
        "is_won": ("IsWon", "Won"),
        "probability": ("Probability", "Probability (%)"),
        "forecast_category": ("ForecastCategoryName", "ForecastCategory", "Forecast Category"),
        "currency": ("CurrencyIsoCode", "Opportunity Currency"),
    },
    history_columns={
        "history_deal_id": ("OpportunityId", "Opportunity ID"),
        "stage": ("StageName", "Stage"),
        "entered_at": ("CreatedDate", "Created Date", "Last Modified"),
        "history_expected_close_at": ("CloseDate", "Close Date"),
        "history_probability": ("Probability", "Probability (%)"),
        "history_forecast_category": ("ForecastCategory", "ForecastCategoryName", "Forecast Category"),
    },
    derived={"expected_close_at": EXPECTED},
    # report exports write the user's locale; these are the US layouts (data.date_formats for others)
    date_formats=("%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M", "%m/%d/%Y"),
    probability_percent=True,
)
