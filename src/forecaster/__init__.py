"""forecaster: calibrated Monte Carlo forecasts of revenue and won deals from CRM pipeline history.

Data flows one way: CRM files -> ``load``/``cut`` (data) -> ``fit`` (model) -> ``simulate`` (engine)
-> ``summarize`` (results) -> report.
"""

__version__ = "0.1.0"

from forecaster.config import Config, load_config
from forecaster.data import CRMData, cut, load, load_as_of
from forecaster.errors import ConfigError, DataError, ForecasterError, ModelError

__all__ = [
    "Config",
    "CRMData",
    "ConfigError",
    "DataError",
    "ForecasterError",
    "ModelError",
    "__version__",
    "cut",
    "load",
    "load_as_of",
    "load_config",
]
