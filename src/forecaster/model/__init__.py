"""Snapshot as of D -> the fitted pipeline model (the second step of the flow).

Spells' survival estimators (survival), segment effects with empirical-Bayes shrinkage (segments), the
per-cell stage tables and their tail (stage), arrivals and amounts of new deals (arrivals), the tables'
contract (tables), the model and ``fit`` (pipeline), save/load (store). Nothing here imports sim,
analysis, report or cli.
"""

from forecaster.model.pipeline import PipelineModel, fit, group_index, group_names, model_groups, open_deal_cells
from forecaster.model.stage import apply_stale
from forecaster.model.mix import MixEffects
from forecaster.model.tables import ArrivalTables, OpenDeals, StageTables

__all__ = ["ArrivalTables", "MixEffects", "OpenDeals", "PipelineModel", "StageTables", "apply_stale", "fit", "group_index",
           "group_names", "model_groups", "open_deal_cells"]
