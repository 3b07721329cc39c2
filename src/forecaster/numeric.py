"""Small numeric helpers shared by the fit, the funnel, the levers and the generator."""

from __future__ import annotations

import numpy as np


def ratio(num, den, fill=0.0) -> np.ndarray:
    """``num / den`` where ``den > 0``, else ``fill`` (broadcast), without warnings for the masked cells."""
    den = np.asarray(den)
    ok = den > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, num / np.where(ok, den, 1), fill)
