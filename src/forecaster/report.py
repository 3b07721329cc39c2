"""Rendering only: terminal tables (rich), JSON, atomic file writes. No statistics here."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from forecaster.config import Config
from forecaster.data import CRMData, pipeline_view, to_date


WIDTH = 100


def console(stderr: bool = False) -> Console:
    return Console(width=WIDTH, stderr=stderr, highlight=False, soft_wrap=False)


def money(x: float) -> str:
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


def print_warnings(data: CRMData, out: Console) -> None:
    for w in data.warnings:
        out.print(w.line(), style="yellow")


def print_validation(config: Config, full: CRMData, snap: CRMData) -> None:
    """The data summary of `validate` and `demo`: what was loaded and the open pipeline as of."""
    out = console()
    view = pipeline_view(snap)
    mode = "deal-level (no stage history)" if full.deal_level else f"{len(full.h_deal):,} stage rows"
    out.print(f"config   {config.path}")
    for src in full.sources:
        out.print(f"data     {src}")
    c = view.counts
    out.print(
        f"loaded   {full.n_deals:,} deals, {mode}; created {to_date(int(full.created.min()))} .. "
        f"last date {to_date(full.last_day())}"
    )
    out.print(
        f"as of    {view.as_of}: {snap.n_deals:,} deals known - {c['open']:,} open, {c['won']:,} won, "
        f"{c['lost']:,} lost"
    )
    if config.segment_by:
        parts = []
        for name in config.segment_by:
            vals = snap.attrs[name].to_numpy(zero_copy_only=False)
            parts.append(f"{name} ({len(np.unique(vals))} values)")
        out.print(f"segments {', '.join(parts)}")
    table = Table(title=f"Open pipeline as of {view.as_of}", title_justify="left")
    table.add_column("stage")
    table.add_column("open deals", justify="right")
    table.add_column("open value", justify="right")
    table.add_column("median age (days)", justify="right")
    for i, s in enumerate(view.stages):
        med = view.median_age_days[i]
        table.add_row(s, f"{view.open_deals[i]:,}", money(view.open_amount[i]),
                      "-" if np.isnan(med) else f"{med:.0f}")
    table.add_row("total", f"{view.open_deals.sum():,}", money(view.open_amount.sum()), "", style="bold")
    out.print(table)
    seen = np.unique(snap.h_stage) if len(snap.h_stage) else np.zeros(0, int)
    out.print(f"stages seen in history: {', '.join(snap.stages[i] for i in seen) or '-'}")
    print_warnings(snap, out)
    if not snap.warnings:
        out.print("no warnings")


def to_jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "isoformat"):
        return x.isoformat()
    return x


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False)
