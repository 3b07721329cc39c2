"""Stage tables: per open stage and segment (a *cell*) the discrete-time competing-risks model of a stay.

Per stage a pooled model (model.survival: censoring-aware hazards, day bins of destination shares, a
constant-hazard tail); per segment a prior, the pool moved by the segment's effects (model.segments);
per cell its own counts plus pseudo-spells of its prior, with empirical-Bayes strengths: ``share_strength``
pseudo-exits for the destination shares, ``hazard_strength`` pseudo-spells for the hazards and the tail.
Rules and their reasons: docs/model.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forecaster.crm import Spells
from forecaster.model.segments import (
    SegmentSpells,
    fit_effects,
    log_survival,
    scaled_log_survival,
    shift_lost_odds,
    tail_slope,
)
from forecaster.model.survival import (
    RiskCounts,
    bin_sums,
    day_bins,
    dirichlet_precision,
    hazard_precision,
    risk_counts,
    survival,
    tail_start,
)
from forecaster.model.tables import StageTables
from forecaster.numeric import ratio

MAX_STRENGTH = 1e4


@dataclass
class _CellTable:
    surv: np.ndarray
    bins: np.ndarray  # day -> local bin
    bin_p: np.ndarray  # [n_local_bins, K]
    tail_h: float
    tail_p: np.ndarray  # [K]


def shares(counts: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Rows of counts [..., K] as shares; a row with no counts takes ``fallback``."""
    return ratio(counts, counts.sum(axis=-1, keepdims=True), fallback)


@dataclass
class Pooled:
    """One stage's pooled model: what every segment of the stage is shrunk toward."""

    risk: RiskCounts
    hazard: np.ndarray  # h(d), [L]
    surv: np.ndarray  # S(d), [L]
    bins: np.ndarray  # day -> bin, [L]
    bin_p: np.ndarray  # [n_bins, K]
    tail_start: int
    tail_h: float  # daily exit probability beyond the table (geometric tail)
    tail_p: np.ndarray  # [K]
    exposure_per_spell: float  # spell-days at risk from tail_start, per spell


def pool_stage(risk: RiskCounts, min_exits: int, fallback_p: np.ndarray) -> Pooled:
    """The pooled model of one stage from its risk counts."""
    e = risk.exits
    tot = e.sum(axis=1)
    n_exits = float(tot.sum())
    hazard = ratio(tot, risk.at_risk, 0.0)
    bins = day_bins(tot, min_exits)
    n_bins = int(bins.max()) + 1
    counts = bin_sums(e, bins, n_bins)
    # Tail: a constant daily exit probability fitted on the last min_exits exits (the geometric MLE: exits /
    # spell-days at risk, censored spells older than the table included), with the mix of those late exits.
    t0 = tail_start(tot, min_exits)
    r_w = risk.exposure_from(t0)
    e_w = risk.exits_from(t0)
    if n_exits > 0:
        tail_h = min(float(e_w.sum()) / max(r_w, 1.0), 1.0)
        tail_p = shares(e_w, fallback_p)
    else:
        # A stage nobody has left yet: one pseudo-exit after the exposure seen, with the mix of all stages.
        tail_h = 1.0 / (r_w / max(risk.n_spells, 1) + 1.0)
        tail_p = fallback_p
    return Pooled(risk, hazard, survival(risk.at_risk, tot), bins, shares(counts, fallback_p), t0, tail_h, tail_p,
                  r_w / max(risk.n_spells, 1))


@dataclass
class _Prior:
    """A segment's prior for one stage: the pooled model run ``tau`` times slower (accelerated time),
    with the odds of losing shifted by ``theta``, on the segment's own day grid."""

    surv: np.ndarray  # [L_g]
    hazard: np.ndarray  # [L_g]
    bins: np.ndarray  # day -> row of bin_p, [L_g]; the pooled tail mix is the last row
    bin_p: np.ndarray  # [n_bins + 1, K], shifted
    tail_h: float
    tail_p: np.ndarray  # [K], shifted
    tail_start: int
    tau: float


def _segment_prior(pool: Pooled, tau: float, theta: float, lost: int) -> _Prior:
    L = pool.risk.length
    L_g = max(L, int(np.ceil(L * tau)))
    days = np.arange(L_g)
    log_s = scaled_log_survival(log_survival(pool.surv), tail_slope(pool.tail_h), tau, days)
    surv = np.exp(log_s)
    hazard = -np.expm1(np.diff(np.r_[0.0, log_s]))  # from log S: no 0/0 where S underflows
    pooled_day = np.floor(days / tau).astype(np.int64)
    n_bins = len(pool.bin_p)
    bins = np.where(pooled_day < L, pool.bins[np.minimum(pooled_day, L - 1)], n_bins)
    bin_p = shift_lost_odds(np.vstack([pool.bin_p, pool.tail_p]), theta, lost)
    # A geometric tail run tau times slower survives a day with (1 - h)^(1 / tau).
    return _Prior(surv, np.clip(hazard, 0.0, 1.0), bins, bin_p, float(-np.expm1(-tail_slope(pool.tail_h) / tau)),
                  shift_lost_odds(pool.tail_p, theta, lost), int(np.ceil(pool.tail_start * tau)), tau)


def _segment_table(pool: Pooled, prior: _Prior, risk: RiskCounts, share_strength: float,
                   hazard_strength: float) -> _CellTable:
    """A segment's table: its own counts plus pseudo-spells following its prior."""
    if risk.n_spells == 0:
        return _CellTable(prior.surv, prior.bins, prior.bin_p, prior.tail_h, prior.tail_p)
    s_prev = np.r_[1.0, prior.surv[:-1]]
    n_b = risk.at_risk + hazard_strength * s_prev
    e_b = risk.exits.sum(axis=1) + hazard_strength * s_prev * prior.hazard
    h_b = ratio(e_b, n_b, 0.0)
    surv = np.cumprod(1.0 - np.clip(h_b, 0.0, 1.0))
    n_bins = len(prior.bin_p)
    prior_mass = bin_sums((s_prev * prior.hazard)[:, None], prior.bins, n_bins)[:, 0]
    counts = bin_sums(risk.exits, prior.bins, n_bins) + (share_strength * prior_mass)[:, None] * prior.bin_p
    pseudo_exposure = hazard_strength * pool.exposure_per_spell * prior.tau  # the pool's, in the segment's time
    own_w = risk.exits_from(prior.tail_start)
    pseudo_exits = prior.tail_h * pseudo_exposure  # a geometric tail: h exits per spell-day at risk
    if own_w.sum() + pseudo_exits > 0:
        tail_h = (own_w.sum() + pseudo_exits) / max(risk.exposure_from(prior.tail_start) + pseudo_exposure, 1e-12)
    else:
        tail_h = prior.tail_h
    tail_p = shares(own_w + pseudo_exits * prior.tail_p, prior.tail_p)
    return _CellTable(surv, prior.bins, shares(counts, prior.bin_p), float(min(max(tail_h, 1e-9), 1.0)), tail_p)


def _trim(t: _CellTable) -> _CellTable:
    """End a table at its first day with S = 0 (nothing survives past it)."""
    zero = np.flatnonzero(t.surv <= 0.0)
    if len(zero):
        k = int(zero[0]) + 1
        return _CellTable(t.surv[:k], t.bins[:k], t.bin_p, t.tail_h, t.tail_p)
    return t


def _hazard_strength(priors: list[_Prior], groups: list[RiskCounts]) -> float:
    """Pseudo-spells for the hazards of one stage: each segment's observed vs expected exits per time bin
    under its prior (survival.hazard_precision), from pseudo-exits per bin to pseudo-spells with the
    prior's exit mass per bin."""
    n_bins = len(priors[0].bin_p)
    obs = np.zeros((len(groups), n_bins))
    exp = np.zeros((len(groups), n_bins))
    mass = []
    for g, (pr, risk) in enumerate(zip(priors, groups)):
        np.add.at(obs[g], pr.bins, risk.exits.sum(axis=1))
        np.add.at(exp[g], pr.bins, risk.at_risk * pr.hazard)
        m_g = bin_sums((np.r_[1.0, pr.surv[:-1]] * pr.hazard)[:, None], pr.bins, n_bins)[:, 0]
        mass.append(m_g[m_g > 0].mean() if (m_g > 0).any() else 1.0)
    a = hazard_precision(obs, exp, n_params=len(groups))
    if not np.isfinite(a):
        return MAX_STRENGTH
    return float(np.clip(a / float(np.mean(mass)), 1.0, MAX_STRENGTH))


def _share_strength(priors: list[_Prior], groups: list[RiskCounts]) -> float:
    """Pseudo-exits for the destination shares of one stage (Dirichlet-multinomial moments around each
    segment's prior shares)."""
    exit_counts = np.array([r.exits.sum(axis=0) for r in groups])
    expected = np.array([
        shares((r.exits.sum(axis=1) @ pr.bin_p[pr.bins]) if r.n_exits else pr.bin_p[-1], pr.bin_p[-1])
        for r, pr in zip(groups, priors)
    ])
    return dirichlet_precision(exit_counts, max_strength=MAX_STRENGTH, expected=expected, n_params=1)


def _by_stage(spells: Spells, weight: np.ndarray, deal_group: np.ndarray, n_groups: int, n_stages: int):
    """Per stage its spells (dur, dest, exited, entry, weight, group) and per stage and segment a
    SegmentSpells."""
    grp = deal_group[spells.deal]
    stage_spells, seg_spells = [], []
    for s in range(n_stages):
        in_s = spells.stage == s
        cols = (spells.dur[in_s], spells.dest[in_s], spells.exited[in_s], spells.entry_age[in_s], weight[in_s])
        g_s = grp[in_s]
        stage_spells.append((*cols, g_s))
        seg_spells.append([SegmentSpells(*(c[g_s == g] for c in cols)) for g in range(n_groups)])
    return stage_spells, seg_spells


def fit_stage_tables(spells: Spells, deal_group: np.ndarray, n_groups: int, n_stages: int, min_exits: int,
                     prior_strength: float | None, weight: np.ndarray | None = None
                     ) -> tuple[StageTables, dict[str, Any]]:
    """Fit every cell (docs/model.md). Returns the tables and the per-cell / per-stage figures behind them.

    Pass 1, per stage: the pooled model and each segment's spells; the segment effects backfitted against
    the pools (model.segments). Pass 2: each cell is its own counts plus pseudo-spells of its prior, the
    pooled model adjusted by the segment's effects. ``weight`` [spells]: recency weights (default 1).
    """
    K = n_stages + 2
    lost = n_stages + 1
    weight = np.ones(len(spells.deal)) if weight is None else weight
    all_exits = np.bincount(spells.dest[spells.exited], weights=weight[spells.exited], minlength=K).astype(float)
    stage_spells, seg_spells = _by_stage(spells, weight, deal_group, n_groups, n_stages)
    entered = np.array([len(x[0]) for x in stage_spells], np.int64)
    exits_g = np.array([sum(seg_spells[s][g].exit_weight() for s in range(n_stages)) for g in range(n_groups)])

    def pooled(tau: np.ndarray) -> list[Pooled]:
        """Each stage's pooled model in reference time: every segment's stays divided by its time scale."""
        out = []
        for s, (dur, dest, ex, entry, w, g_s) in enumerate(stage_spells):
            scale = tau[g_s]
            ref = np.where(ex, np.floor(dur / scale), np.maximum(np.floor(dur / scale), 1)).astype(np.int64)
            ref_entry = np.minimum(np.floor(entry / scale).astype(np.int64), np.where(ex, ref, ref - 1))
            L = int(ref[ex].max()) + 1 if ex.any() else 1
            fallback = all_exits.copy()
            fallback[s] = 0.0
            fallback = fallback / fallback.sum() if fallback.sum() > 0 else np.eye(K)[lost]
            out.append(pool_stage(risk_counts(ref, dest, ex, K, L, ref_entry, w), min_exits, fallback))
        return out

    tau, theta, pools = fit_effects(seg_spells, exits_g, pooled, lost)
    cells, figures = _fit_cells(pools, seg_spells, tau, theta, lost, K, prior_strength)
    figures.update(entered=entered, tail_h=np.array([p.tail_h for p in pools]),
                   segment_lost_shift=theta, segment_time_scale=tau)
    return _assemble(cells, n_groups * n_stages), figures


def _fit_cells(pools: list[Pooled], seg_spells: list[list[SegmentSpells]], tau: np.ndarray, theta: np.ndarray,
               lost: int, K: int, prior_strength: float | None) -> tuple[dict[int, _CellTable], dict[str, Any]]:
    """Pass 2: every cell's table from its own counts and its prior, and the figures behind each."""
    n_stages, n_groups = len(pools), len(tau)
    cell_spells = np.zeros(n_groups * n_stages, np.int64)
    cell_exits = np.zeros(n_groups * n_stages, np.int64)
    cell_weight = np.zeros(n_groups * n_stages)
    strengths = np.zeros(n_stages)
    hazard_strengths = np.zeros(n_stages)
    cells: dict[int, _CellTable] = {}
    for s, pool in enumerate(pools):
        priors = [_segment_prior(pool, float(tau[g]), float(theta[g]), lost) for g in range(n_groups)]
        groups = [risk_counts(x.dur, x.dest, x.exited, K, len(pr.surv), x.entry, x.weight)
                  for x, pr in zip(seg_spells[s], priors)]
        if n_groups == 1:
            share_strength = hazard_strength = 0.0  # the pooled model is the segment's own
        elif prior_strength is not None:
            share_strength = hazard_strength = prior_strength
        else:
            share_strength = _share_strength(priors, groups)
            hazard_strength = _hazard_strength(priors, groups)
        strengths[s] = share_strength
        hazard_strengths[s] = hazard_strength
        for g, (risk, pr) in enumerate(zip(groups, priors)):
            c = g * n_stages + s
            cells[c] = _trim(_segment_table(pool, pr, risk, share_strength, hazard_strength))
            cell_spells[c] = risk.n_spells
            cell_exits[c] = risk.n_exits
            own = risk.n_exits + share_strength
            cell_weight[c] = risk.n_exits / own if own > 0 else 0.0
    figures = {"cell_spells": cell_spells, "cell_exits": cell_exits, "cell_weight": cell_weight,
               "prior_strength": strengths, "duration_prior_strength": hazard_strengths}
    return cells, figures


def _assemble(cells: dict[int, _CellTable], n_cells: int) -> StageTables:
    """The cells' tables concatenated into StageTables (each cell's bins, then its tail mix, as rows)."""
    surv_parts, bin_parts, bin_rows, tails_h, tails_bin, cell_len = [], [], [], [], [], []
    for c in range(n_cells):
        t = cells[c]
        base = len(bin_rows)
        bin_rows.extend(t.bin_p)
        bin_rows.append(t.tail_p)
        surv_parts.append(t.surv)
        bin_parts.append(t.bins + base)
        tails_h.append(t.tail_h)
        tails_bin.append(base + len(t.bin_p))
        cell_len.append(len(t.surv))
    bin_p = np.asarray(bin_rows, np.float64)
    bin_p /= bin_p.sum(axis=1, keepdims=True)
    return StageTables.of(
        surv=np.concatenate(surv_parts),
        cell_off=np.r_[0, np.cumsum(cell_len)],
        day_bin=np.concatenate(bin_parts),
        bin_p=bin_p,
        tail_h=np.clip(np.asarray(tails_h, np.float64), 1e-9, 1.0),
        tail_bin=tails_bin,
    )


def apply_stale(stage: StageTables, stale_after_days: int) -> StageTables:
    """Deals that have sat ``stale_after_days`` days in a stage are lost on that day.

    Each cell's table ends at day ``stale_after_days`` with S = 0 and destination lost (a table shorter
    than that is first continued with its geometric tail); the tail becomes "lost at once", so an open
    deal already older than that is lost on the as-of date. Tables are changed, not the kernel.
    """
    n_s = stage.n_stages
    lost_row = np.zeros(n_s + 2)
    lost_row[n_s + 1] = 1.0
    lost_bin = stage.bin_p.shape[0]
    surv, bins, lens = [], [], []
    for c in range(stage.n_cells):
        lo, hi = stage.cell_off[c], stage.cell_off[c + 1]
        s, b = stage.surv[lo:hi], stage.day_bin[lo:hi]
        L, stop = len(s), stale_after_days
        if stop < L:
            s, b = s[:stop + 1].copy(), b[:stop + 1].copy()
        else:
            extra = np.arange(1, stop - L + 2)
            s = np.r_[s, s[-1] * (1.0 - stage.tail_h[c]) ** extra]
            b = np.r_[b, np.full(len(extra), stage.tail_bin[c], np.int32)]
        s[stop] = 0.0
        b[stop] = lost_bin
        zero = np.flatnonzero(s <= 0.0)[0]  # an earlier natural zero ends the table there
        surv.append(s[:zero + 1])
        bins.append(b[:zero + 1])
        lens.append(zero + 1)
    return StageTables.of(
        surv=np.concatenate(surv),
        cell_off=np.r_[0, np.cumsum(lens)],
        day_bin=np.concatenate(bins),
        bin_p=np.vstack([stage.bin_p, lost_row]),
        tail_h=np.ones(stage.n_cells),
        tail_bin=np.full(stage.n_cells, lost_bin, np.int32),
    )
