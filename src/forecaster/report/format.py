"""Numbers as people read them, for the terminal and the HTML report alike: 1.45M, 41.2%, 12 days."""

from __future__ import annotations

import math
from typing import Any


def money(x: Any) -> str:
    """An amount in thousands, millions or billions with two digits where they matter: 930k, 1.45M."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    ax = abs(x)
    if ax >= 1e9:
        return f"{x / 1e9:,.2f}B"
    if ax >= 1e6:
        return f"{x / 1e6:,.2f}M"
    if ax >= 1e4:
        return f"{x / 1e3:,.0f}k"
    return f"{x:,.0f}"


def days(x: Any) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:,.0f}"


def pct(x: Any) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


