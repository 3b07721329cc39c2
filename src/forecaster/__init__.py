"""forecaster: calibrated Monte Carlo forecasts of revenue and won deals from CRM pipeline history.

Data flows one way (docs/architecture.md): CRM files -> ``crm`` (validated tables, the as-of snapshot)
-> ``model`` (the fitted PipelineModel) -> ``sim`` (the kernel's trials) -> ``analysis`` (forecast,
scenarios, plan, funnel, backtest) -> ``report`` (terminal, files). The public API:

- ``load_config(path)`` -> ``Config``; ``load(config, as_of)`` -> ``Snapshot``; ``fit(snapshot, config)``
  -> ``PipelineModel``;
- ``forecast``, ``compare``, ``plan``, ``backtest``, ``funnel``, ``funnel_change``, ``diff``: one call per
  job (forecaster.api); ``html_report`` renders their finished results as one HTML page;
- ``open_engine(config.engine)``: where simulations run (local threads or Dask workers), reusable across
  calls through their ``engine=`` argument;
- errors: ``ForecasterError`` and its kinds ``ConfigError``, ``DataError``, ``ModelError``, ``EngineError``.

The names are imported on first use, so ``import forecaster`` (and the CLI's ``--help``) does not load
numba until a job needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

from forecaster._version import __version__
from forecaster.errors import ConfigError, DataError, EngineError, ForecasterError, ModelError

_LAZY = {
    "Backtest": "forecaster.api", "Comparison": "forecaster.api", "backtest": "forecaster.api",
    "compare": "forecaster.api", "fit": "forecaster.api", "forecast": "forecaster.api",
    "funnel": "forecaster.api", "funnel_change": "forecaster.api", "load": "forecaster.api",
    "diff": "forecaster.api", "Diff": "forecaster.analysis.diff", "plan": "forecaster.api",
    "html_report": "forecaster.api",
    "Forecast": "forecaster.analysis.forecast", "Config": "forecaster.config", "load_config": "forecaster.config",
    "Snapshot": "forecaster.crm", "PipelineModel": "forecaster.model", "open_engine": "forecaster.sim.engines",
}

__all__ = [
    "Backtest", "Comparison", "Config", "ConfigError", "DataError", "Diff", "diff", "EngineError", "Forecast", "ForecasterError",
    "ModelError", "PipelineModel", "Snapshot", "__version__", "backtest", "compare", "fit", "forecast", "funnel",
    "funnel_change", "html_report", "load", "load_config", "open_engine", "plan",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'forecaster' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
