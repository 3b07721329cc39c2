"""Test-side simulators of stage processes with known truth, written as real CRM files.

A process: open stages 0..S-1; in stage s each day a deal of segment g leaves with hazard ``hazard(s, d, g)``
(d = days in the stage) to destination k drawn from ``dest(s, d, g)`` (k < S another stage, S won, S+1 lost).
Deals are created uniformly over [0, span) days after BASE, start in stage 0 and walk until closed.
``as_of`` cuts them (the cut itself is forecaster's, from the full files).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BASE = dt.date(2022, 1, 1)


def geometric_chain(p_exit: np.ndarray, hazard: np.ndarray):
    """Constant daily hazard per stage; destination independent of the day."""
    return (lambda s, d, g: hazard[s]), (lambda s, d, g: p_exit[s])


def simulate(root: Path, n_deals: int, span: int, seed: int, n_stages: int,
             hazard: Callable[[int, int, int], float], dest: Callable[[int, int, int], np.ndarray],
             segments: np.ndarray | None = None, max_days: int = 5000) -> Path:
    """Write deals.parquet, history.parquet, forecaster.yaml; return the config path."""
    rng = np.random.default_rng(seed)
    created = np.sort(rng.integers(0, span, n_deals))
    ids, status, closed, hist = [], [], [], []
    for i in range(n_deals):
        g = 0 if segments is None else int(segments[i])
        s, day = 0, int(created[i])
        hist.append((f"D{i:06d}", s, day))
        outcome, end = "open", None
        for _ in range(64):
            d = 0
            h = hazard(s, 0, g)
            while rng.random() >= h and d < max_days:
                d += 1
                h = hazard(s, d, g)
            day += d
            k = int(rng.choice(n_stages + 2, p=dest(s, d, g)))
            if k >= n_stages:
                outcome, end = ("won" if k == n_stages else "lost"), day
                break
            s = k
            hist.append((f"D{i:06d}", s, day))
        ids.append(f"D{i:06d}")
        status.append(outcome)
        closed.append(end)
    root.mkdir(parents=True, exist_ok=True)
    to_date = lambda x: None if x is None else BASE + dt.timedelta(days=int(x))  # noqa: E731
    cols = {
        "deal_id": ids,
        "created_at": pa.array([to_date(c) for c in created], pa.date32()),
        "amount": pa.array(np.full(n_deals, 1000.0)),
        "status": status,
        "closed_at": pa.array([to_date(c) for c in closed], pa.date32()),
    }
    if segments is not None:
        cols["segment"] = [str(x) for x in segments]
    pq.write_table(pa.table(cols), root / "deals.parquet")
    pq.write_table(pa.table({
        "deal_id": [h[0] for h in hist],
        "stage": [f"s{h[1]}" for h in hist],
        "entered_at": pa.array([to_date(h[2]) for h in hist], pa.date32()),
    }), root / "history.parquet")
    stages = ", ".join(f"s{s}" for s in range(n_stages))
    seg = "segment_by: [segment]\n" if segments is not None else ""
    (root / "forecaster.yaml").write_text(
        f"data:\n  deals: deals.parquet\n  stage_history: history.parquet\nstages: [{stages}]\n{seg}"
        f"fit: {{min_bin_exits: 20}}\n"
    )
    return root / "forecaster.yaml"


def day(offset: int) -> dt.date:
    return BASE + dt.timedelta(days=offset)
