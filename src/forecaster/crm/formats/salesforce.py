"""Salesforce: the Opportunity export (Data Loader API names, a report's column labels, or Fivetran's
warehouse table) and, for the stages, OpportunityHistory (one row per stage change and per amount or
close-date edit).

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
    # API names (Data Loader), report labels, and Fivetran's warehouse table opportunity (its history-mode
    # opportunity_history is not OpportunityHistory: a record's first version starts at the connector's
    # first sync, not when the deal entered its stage, so it is not read as a stage history)
    deal_columns={
        "deal_id": ("Id", "Opportunity ID", "id"),
        "created_at": ("CreatedDate", "Created Date", "created_date"),
        "amount": ("Amount", "amount"),
        "closed_at": ("CloseDate", "Close Date", "close_date"),
        "is_closed": ("IsClosed", "Closed", "is_closed"),
        "is_won": ("IsWon", "Won", "is_won"),
        "probability": ("Probability", "Probability (%)", "probability"),
        "forecast_category": ("ForecastCategoryName", "ForecastCategory", "Forecast Category",
                              "forecast_category_name"),
        "currency": ("CurrencyIsoCode", "Opportunity Currency", "currency_iso_code"),
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
