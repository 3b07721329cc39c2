"""`forecast --explain`: what makes the range wide (analysis.spread) and the deals to inspect
(analysis.inspection), computed from a finished forecast on its own trials (docs/explain.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from forecaster.analysis.forecast import Forecast, subset_simulator
from forecaster.analysis.inspection import inspect_deals
from forecaster.analysis.spread import spread
from forecaster.analysis.summary import deals_table
from forecaster.sim.engines import LOCAL, Engine


def explain(f: Forecast, engine: Engine = LOCAL) -> dict[str, Any]:
    """``{"spread", "inspect"}`` of summary.json for the forecast ``f`` (prepared by run_forecast, so that
    its base is there); the spread reruns some of its open deals alone on ``engine``."""
    if f.base is None:
        raise ValueError("the forecast carries no prepared base (run it with analysis.forecast.run_forecast)")
    parts = spread(f.base, f.sim, subset_simulator(f.base, engine), f.rollups)
    w = f.summary["window"]
    inspect = inspect_deals(deals_table(f), dt.date.fromisoformat(w["start"]), dt.date.fromisoformat(w["end"]),
                            parts)
    return {"spread": parts, "inspect": inspect}


__all__ = ["explain"]
