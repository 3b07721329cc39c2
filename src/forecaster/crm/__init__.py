"""CRM exports -> validated tables -> the as-of snapshot (the first step of the flow).

``load(config)`` reads and validates the files the config names into a ``CRMData``; ``snapshot(data,
config, as_of)`` (or ``cut(data, day)``) gives the ``Snapshot`` known before a date, which the model
fits and the simulation starts from. Nothing here imports the model or anything after it.
"""

from forecaster.crm.export import LOST, MISSING_ATTR, OPEN, STATUS_NAMES, WON, CRMData, DataWarning, ExportInfo, FieldHistory
from forecaster.crm.load import load
from forecaster.crm.snapshot import PipelineView, Snapshot, Spells, cut, default_as_of, pipeline_view, resample, snapshot

__all__ = ["CRMData", "DataWarning", "ExportInfo", "FieldHistory", "LOST", "MISSING_ATTR", "OPEN", "PipelineView", "STATUS_NAMES", "Snapshot",
           "Spells", "WON", "cut", "default_as_of", "load", "pipeline_view", "resample", "snapshot"]
