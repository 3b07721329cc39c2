"""The funnel view of a fitted model, as revenue ops reads it (conversion, time in stage, stuck deals).

All figures come from the fitted (censoring-aware) tables, not from naive counts of closed deals:
- ``p_exit``: shares of each destination among deals that leave the stage (table + tail; sums to 1), and
  their sums ``forward_share`` (later stages and won), ``back_share`` (earlier stages), ``lost_share``;
- ``win_rate``: P(eventually won | entered the stage), absorbing-chain algebra per segment
  (B = (I - Q)^-1 R), mixed over segments by their share of the stage's spells;
- ``median_days`` / ``p90_days``: quantiles of time in stage from the mixture survival curve;
- ``stale_deals``: open deals older than the p90 time in stage of their own segment (``stale_deals``, the
  one definition, also behind ``prune_stale: {beyond: p90}``);
- ``bottleneck``: the stage losing the most value per deal entering the funnel (docs/model.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forecaster.calendar import to_date
from forecaster.config import PIPELINE_ATTR
from forecaster.crm import WON, Snapshot
from forecaster.errors import ConfigError
from forecaster.model import PipelineModel, model_groups, open_deal_cells
from forecaster.numeric import ratio

HORIZON_DAYS = 3650  # quantiles are searched up to ten years, tail included


def cell_curve(model: PipelineModel, c: int, days: int = HORIZON_DAYS) -> np.ndarray:
    """S(d) for d = 0 .. days-1 of cell c, the geometric tail continuing the table."""
    st = model.stage
    s = st.surv[st.cell_off[c]:st.cell_off[c + 1]]
    L = len(s)
    out = np.empty(days)
    k = min(L, days)
    out[:k] = s[:k]
    if days > L:
        out[L:] = s[-1] * (1.0 - st.tail_h[c]) ** np.arange(1, days - L + 1)
    return out


def cell_exit_shares(model: PipelineModel, c: int) -> np.ndarray:
    """P(destination k | leaves cell c) [K]: the exit-day distribution times each day's shares."""
    st = model.stage
    lo, hi = st.cell_off[c], st.cell_off[c + 1]
    s = st.surv[lo:hi]
    mass = np.r_[1.0, s[:-1]] - s
    p = mass @ st.bin_p[st.day_bin[lo:hi]] + s[-1] * st.bin_p[st.tail_bin[c]]
    return p / p.sum()


def cell_p90_days(model: PipelineModel) -> np.ndarray:
    """float64 [G*S]: each cell's p90 time in stage (days, the tail included; inf past ten years)."""
    return np.array([quantile(cell_curve(model, c), 0.9) for c in range(model.stage.n_cells)])


def stale_deals(model: PipelineModel, cell: np.ndarray, age: np.ndarray) -> np.ndarray:
    """bool [n]: open deals (their cells and ages in days) older than their cell's p90 time in stage.
    The one definition of stale: the funnel counts these, ``prune_stale: {beyond: p90}`` prunes them."""
    return np.asarray(age) > cell_p90_days(model)[np.asarray(cell)]


def absorption(p_exit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From exit shares [S, S+2]: fundamental matrix N = (I - Q)^-1 and B = N R (won, lost)."""
    n_s = p_exit.shape[0]
    q = p_exit[:, :n_s]
    r = p_exit[:, n_s:]
    n = np.linalg.inv(np.eye(n_s) - q)
    return n, n @ r


def quantile(curve: np.ndarray, q: float) -> float:
    hit = np.flatnonzero(curve <= 1.0 - q + 1e-12)
    return float(hit[0]) if len(hit) else float("inf")


@dataclass(frozen=True)
class Selection:
    """Which groups a funnel covers (all, or those matching --segment COL=VALUE)."""

    groups: np.ndarray
    label: str


def select_groups(model: PipelineModel, segment: tuple[str, ...] = ()) -> Selection:
    keep = np.ones(model.n_groups, bool)
    labels = []
    for item in segment:
        if "=" not in item:
            raise ConfigError(f"--segment '{item}': expected COLUMN=VALUE")
        col, val = item.split("=", 1)
        if col not in model.segment_by:
            seg = ", ".join(model.segment_by) or "none (no segment_by in the config)"
            raise ConfigError(f"--segment '{item}': '{col}' is not a segment column; segment_by: {seg}")
        j = model.segment_by.index(col)
        values = sorted({g[j] for g in model.groups})
        if val not in values:
            raise ConfigError(f"--segment '{item}': no segment {col}={val}; values: {', '.join(values)}")
        keep &= np.array([g[j] == val for g in model.groups])
        labels.append(f"{col}={val}")
    if not keep.any():
        raise ConfigError(f"--segment {' '.join(segment)}: no deals in that combination of segments")
    return Selection(np.flatnonzero(keep), ", ".join(labels) or "all")


def funnel(model: PipelineModel, data: Snapshot, segment: tuple[str, ...] = ()) -> dict[str, Any]:
    """The funnel metrics of ``model`` on the snapshot it was fitted on (JSON layout of
    `forecaster funnel --format json`)."""
    sel = select_groups(model, segment)
    n_s = model.n_stages
    K = n_s + 2
    gsel = sel.groups

    # Per group: exit shares per stage and the chain's absorption probabilities.
    p_exit_g = np.array([[cell_exit_shares(model, g * n_s + s) for s in range(n_s)] for g in gsel])
    b_won_g = np.array([absorption(p)[1][:, 0] for p in p_exit_g])  # [G', S]
    w = model.cell_spells.reshape(model.n_groups, n_s)[gsel].astype(float)  # [G', S]
    w_norm = ratio(w, w.sum(axis=0), 1.0 / len(gsel))

    # Open deals of the selection.
    open_idx, cell, age, grp = open_deal_cells(data, model)
    in_sel = np.isin(grp, gsel)
    o_stage = (cell % n_s)[in_sel]
    o_stale = stale_deals(model, cell, age)[in_sel]
    o_amount = data.amount[open_idx][in_sel]

    # Spells of the selection: deals that entered each stage, and their amounts.
    spells = data.spells
    gm, _, _ = model_groups(data, model)
    sp_sel = np.isin(gm[spells.deal], gsel)
    entered = np.bincount(spells.stage[sp_sel], minlength=n_s)
    amount_in = np.bincount(spells.stage[sp_sel], weights=data.amount[spells.deal[sp_sel]], minlength=n_s)

    stages = []
    p_exit_mix = np.zeros((n_s, K))
    for s in range(n_s):
        p_mix = (w_norm[:, s:s + 1] * p_exit_g[:, s, :]).sum(axis=0)
        p_exit_mix[s] = p_mix
        curve = sum(w_norm[i, s] * cell_curve(model, int(g) * n_s + s) for i, g in enumerate(gsel))
        p90 = quantile(curve, 0.9)
        in_s = o_stage == s
        names = list(model.stages) + [model.won, model.lost]
        stages.append({
            "stage": model.stages[s],
            "entered": int(entered[s]),
            "open_deals": int(in_s.sum()),
            "open_amount": float(o_amount[in_s].sum()),
            "p_exit": {names[k]: float(p_mix[k]) for k in range(K) if k != s},
            "forward_share": float(p_mix[s + 1:n_s + 1].sum()),
            "back_share": float(p_mix[:s].sum()),
            "lost_share": float(p_mix[n_s + 1]),
            "win_rate": float((w_norm[:, s] * b_won_g[:, s]).sum()),
            "median_days": quantile(curve, 0.5),
            "p90_days": p90,
            "stale_deals": int(o_stale[in_s].sum()),
        })

    # Overall: entry mix of new deals, recent won amounts, cycle of won deals.
    rate = model.arrivals.rate[gsel]
    entry = (rate[:, None] * model.arrivals.entry_p[gsel]).sum(axis=0)
    entry = entry / entry.sum() if entry.sum() > 0 else np.eye(n_s)[0]
    n_fund, _ = absorption(p_exit_mix)
    visits = entry @ n_fund
    win_rate = float(sum(entry[s] * stages[s]["win_rate"] for s in range(n_s)))
    deal_sel = np.isin(gm, gsel)
    won = deal_sel & (data.status == WON)
    recent_won = won & (data.closed >= data.as_of - model.meta.get("fit", {}).get("lookback_days", 365))
    use = recent_won if recent_won.any() else won
    avg_won = float(data.amount[use].mean()) if use.any() else 0.0
    cycle = float(np.median(data.closed[use] - data.created[use])) if use.any() else float("nan")
    velocity = (len(o_stage) * win_rate * avg_won / cycle) if cycle and cycle > 0 else 0.0
    mean_amount_in = np.where(entered > 0, amount_in / np.maximum(entered, 1), 0.0)
    lost_value = visits * p_exit_mix[:, n_s + 1] * mean_amount_in
    shown, won_name, lost_name = pipeline_stages(model, gsel)
    keep = list(range(n_s)) if shown is None else sorted(shown)
    if shown is not None:  # one pipeline: only its stages, under its won and lost names
        rename = {model.won: won_name, model.lost: lost_name}
        stages = [{**stages[i], "p_exit": {rename.get(k, k): v for k, v in stages[i]["p_exit"].items()
                                          if k in rename or model.stages.index(k) in shown}} for i in keep]
    return {
        "as_of": to_date(data.as_of).isoformat(),
        "segment": sel.label,
        "currency": data.currency,
        "stages": stages,
        "overall": {
            "win_rate": win_rate,
            "avg_won_amount": avg_won,
            "cycle_days_median": cycle,
            "open_deals": int(len(o_stage)),
            "open_amount": float(o_amount.sum()),
            "velocity_per_day": float(velocity),
        },
        "bottleneck": model.stages[keep[int(np.argmax(lost_value[keep]))]],
        "bottleneck_lost_value_per_new_deal": {model.stages[s]: float(lost_value[s]) for s in keep},
    }


def pipeline_stages(model: PipelineModel, gsel: np.ndarray) -> tuple[set[int] | None, str, str]:
    """When every selected group is in one pipeline (``pipelines:``): its stage indices and its won and lost
    names; else (None, won, lost)."""
    pipes = model.meta.get("pipelines") or {}
    if not pipes or PIPELINE_ATTR not in model.segment_by:
        return None, model.won, model.lost
    j = model.segment_by.index(PIPELINE_ATTR)
    names = {model.groups[g][j] for g in gsel}
    if len(names) != 1 or next(iter(names)) not in pipes:
        return None, model.won, model.lost
    p = pipes[names.pop()]
    return {model.stages.index(s) for s in p["stages"]}, p["won"], p["lost"]


__all__ = ["funnel", "absorption", "cell_exit_shares", "cell_curve", "select_groups", "stale_deals"]
