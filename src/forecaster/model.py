"""fit(history as of D) -> PipelineModel: the sampling tables of docs/kernel_contract.md.

Per open stage and segment (a *cell*) a discrete-time competing-risks model of the stay in the
stage, estimated with right censoring (survival.py); small segments borrow from the pooled model
(empirical Bayes, strength m per stage); beyond the last observed exit a constant-hazard tail.
Arrivals of new deals per segment with weekday and month-of-quarter factors and overdispersion;
amounts of new deals bootstrapped from the segment's recent deals. Rules and their reasons:
docs/model.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from forecaster import __version__
from forecaster.config import Config
from forecaster.data import NO_DATE, OPEN, WON, CRMData, to_date
from forecaster.errors import ModelError
from forecaster.survival import (
    RiskCounts,
    bin_sums,
    day_bins,
    dirichlet_precision,
    hazard_precision,
    scaled_log_survival,
    solve_time_scale,
    risk_counts,
    shift_lost_odds,
    solve_lost_log_odds,
    survival,
    tail_start,
)
from forecaster.tables import ArrivalTables, StageTables

FORMAT_VERSION = 1
GROUP_SEP = "\x1f"
BLOCK_DAYS = 28  # arrival overdispersion is measured on 4-week blocks (whole weeks: weekday-balanced)


@dataclass(frozen=True)
class Spells:
    """Stays in open stages as of D. ``dur``: exit day (exited) or age at D (censored, >= 1)."""

    deal: np.ndarray
    stage: np.ndarray
    entered: np.ndarray
    dur: np.ndarray
    dest: np.ndarray
    exited: np.ndarray


def spells(data: CRMData) -> Spells:
    """Each history row opens a spell; it ends at the deal's next row, at its closing, or is censored."""
    assert data.as_of is not None, "spells need an as-of cut"
    n_s = len(data.stages)
    d, s, e = data.h_deal, data.h_stage.astype(np.int64), data.h_entered.astype(np.int64)
    m = len(d)
    has_next = np.zeros(m, bool)
    has_next[:-1] = d[1:] == d[:-1]
    nxt_entered = np.r_[e[1:], 0][:m]
    nxt_stage = np.r_[s[1:], 0][:m]
    status = data.status[d]
    closed = data.closed[d].astype(np.int64)
    closes = ~has_next & (status != OPEN)
    exited = has_next | closes
    exit_day = np.where(has_next, nxt_entered, np.where(closes, closed, data.as_of))
    dest = np.where(has_next, nxt_stage, np.where(status == WON, n_s, n_s + 1))
    dest = np.where(exited, dest, -1)
    return Spells(d, s, e, (exit_day - e).astype(np.int64), dest.astype(np.int64), exited)


def group_index(data: CRMData, segment_by: tuple[str, ...]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Per deal its segment combination's index, and the combinations (sorted)."""
    if not segment_by:
        return np.zeros(data.n_deals, np.int32), [()]
    cols = [data.attrs[c].combine_chunks() for c in segment_by]
    key = cols[0] if len(cols) == 1 else pc.binary_join_element_wise(*cols, GROUP_SEP)
    uniq, inv = np.unique(np.asarray(key.to_pylist(), dtype=object).astype(str), return_inverse=True)
    return inv.astype(np.int32), [tuple(u.split(GROUP_SEP)) for u in uniq]


@dataclass(frozen=True, eq=False)
class PipelineModel:
    """A fitted model: stage tables, arrivals and the figures that explain them.

    Per cell (c = g * S + s): ``cell_spells``, ``cell_exits`` (own data), ``cell_weight`` (share of
    the estimate resting on the segment's own exits: E / (E + m)). Per stage: ``prior_strength`` m,
    ``entered`` (spells that entered it), ``tail_rate`` (pooled constant hazard per day).
    """

    stages: tuple[str, ...]
    won: str
    lost: str
    segment_by: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]
    as_of: int
    stage: StageTables
    arrivals: ArrivalTables
    cell_spells: np.ndarray
    cell_exits: np.ndarray
    cell_weight: np.ndarray
    prior_strength: np.ndarray
    entered: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def group_name(self, g: int) -> str:
        return _group_names(self.segment_by, [self.groups[g]])[0]

    # -- persistence -------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write model.json and Parquet tables into ``directory`` (each file atomically)."""
        from forecaster.files import write_atomic
        from forecaster.report import dumps

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        st, ar = self.stage, self.arrivals
        tables = {
            "days.parquet": pa.table({"surv": st.surv, "day_bin": st.day_bin}),
            "bins.parquet": pa.table({f"p{k}": st.bin_p[:, k] for k in range(st.bin_p.shape[1])}),
            "cells.parquet": pa.table({
                "cell_off": st.cell_off[:-1], "tail_h": st.tail_h, "tail_bin": st.tail_bin,
                "spells": self.cell_spells, "exits": self.cell_exits, "weight": self.cell_weight,
            }),
            "amounts.parquet": pa.table({"amount": ar.amount_pool}),
        }
        for name, table in tables.items():
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            write_atomic(out / name, sink.getvalue().to_pybytes())
        doc = {
            **self.meta,
            "format_version": FORMAT_VERSION,
            "stages": list(self.stages), "won": self.won, "lost": self.lost,
            "segment_by": list(self.segment_by), "groups": [list(g) for g in self.groups],
            "as_of": to_date(self.as_of).isoformat(), "as_of_day": self.as_of,
            # Per segment and stage: the data behind each table. effective_sample_size = own exits + the
            # prior's pseudo-exits (m); own_weight = own exits / that.
            "cells": [
                {"segment": self.group_name(g), "stage": self.stages[s],
                 "spells": int(self.cell_spells[g * self.n_stages + s]),
                 "exits": int(self.cell_exits[g * self.n_stages + s]),
                 "prior_strength": float(self.prior_strength[s]),
                 "effective_sample_size": float(self.cell_exits[g * self.n_stages + s] + self.prior_strength[s]),
                 "own_weight": float(self.cell_weight[g * self.n_stages + s])}
                for g in range(self.n_groups) for s in range(self.n_stages)
            ],
            "L_total": int(st.cell_off[-1]),
            "prior_strength": self.prior_strength, "entered": self.entered,
            "arrivals": {
                "rate": ar.rate, "weekday_factor": ar.weekday_factor, "moq_factor": ar.moq_factor,
                "gamma_shape": [None if np.isinf(x) else x for x in ar.gamma_shape],
                "entry_p": ar.entry_p, "amount_off": ar.amount_off,
            },
        }
        write_atomic(out / "model.json", dumps(doc))
        return out

    @classmethod
    def load(cls, directory: str | Path, expect_fingerprint: str | None = None) -> PipelineModel:
        """Read a saved model; refuse another format version, or data other than ``expect_fingerprint``."""
        d = Path(directory)
        path = d / "model.json"
        if not path.is_file():
            raise ModelError(f"{d}: no model.json (write one with `forecaster fit CONFIG -o {d}`)")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ModelError(f"{path}: not a valid model file: {e.msg} at line {e.lineno}") from None
        version = doc.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelError(
                f"{path}: model format version {version}, this forecaster {__version__} reads version "
                f"{FORMAT_VERSION}; refit with `forecaster fit`"
            )
        if expect_fingerprint is not None and doc.get("data_fingerprint") != expect_fingerprint:
            raise ModelError(
                f"{path}: the model was fitted on other data (fingerprint {str(doc.get('data_fingerprint'))[:12]}, "
                f"the config's data has {expect_fingerprint[:12]}); refit with `forecaster fit`"
            )
        try:
            days = pq.read_table(d / "days.parquet")
            bins = pq.read_table(d / "bins.parquet")
            cells = pq.read_table(d / "cells.parquet")
            amounts = pq.read_table(d / "amounts.parquet")
        except (OSError, pa.ArrowException) as e:
            raise ModelError(f"{d}: cannot read the model's tables: {str(e).splitlines()[0]}") from None
        a = doc["arrivals"]
        arr = lambda x, t=np.float64: np.asarray(x, dtype=t)  # noqa: E731
        stage = StageTables.of(
            surv=days["surv"].to_numpy(),
            cell_off=np.r_[cells["cell_off"].to_numpy(), doc["L_total"]],
            day_bin=days["day_bin"].to_numpy(),
            bin_p=np.column_stack([bins[c].to_numpy() for c in bins.column_names]),
            tail_h=cells["tail_h"].to_numpy(),
            tail_bin=cells["tail_bin"].to_numpy(),
        )
        arrivals = ArrivalTables(
            rate=arr(a["rate"]), weekday_factor=arr(a["weekday_factor"]), moq_factor=arr(a["moq_factor"]),
            gamma_shape=arr([np.inf if x is None else x for x in a["gamma_shape"]]),
            entry_p=arr(a["entry_p"]).reshape(len(a["rate"]), -1),
            amount_pool=amounts["amount"].to_numpy().astype(np.float64),
            amount_off=arr(a["amount_off"], np.int64),
        ).check(stage)
        meta_keys = ("version", "config_sha256", "data_fingerprint", "warnings", "fit", "n_deals", "n_spells",
                     "arrival_window", "segment_effects")
        return cls(
            stages=tuple(doc["stages"]), won=doc["won"], lost=doc["lost"],
            segment_by=tuple(doc["segment_by"]), groups=tuple(tuple(g) for g in doc["groups"]),
            as_of=int(doc["as_of_day"]), stage=stage, arrivals=arrivals,
            cell_spells=cells["spells"].to_numpy().astype(np.int64),
            cell_exits=cells["exits"].to_numpy().astype(np.int64),
            cell_weight=cells["weight"].to_numpy().astype(np.float64),
            prior_strength=arr(doc["prior_strength"]), entered=arr(doc["entered"], np.int64),
            meta={k: doc[k] for k in meta_keys if k in doc},
        )


# ---------------------------------------------------------------------------------------------
# Stage tables


@dataclass
class _CellTable:
    surv: np.ndarray
    bins: np.ndarray  # day -> local bin
    bin_p: np.ndarray  # [n_local_bins, K]
    tail_h: float
    tail_p: np.ndarray  # [K]


def _shares(counts: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    tot = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(tot > 0, counts / np.where(tot > 0, tot, 1.0), fallback)
    return out


@dataclass
class _Pooled:
    """One stage's pooled model: what every segment of the stage is shrunk toward."""

    rc: RiskCounts
    hazard: np.ndarray  # h(d), [L]
    surv: np.ndarray  # S(d), [L]
    bins: np.ndarray  # day -> bin, [L]
    bin_p: np.ndarray  # [n_bins, K]
    bin_exit_share: np.ndarray  # share of the exits in each bin, [n_bins]
    shares: np.ndarray  # exit shares over all days, [K]
    tail_start: int
    tail_rate: float  # lambda per day
    tail_p: np.ndarray  # [K]
    exposure_per_spell: float  # spell-days at risk from tail_start, per spell


def _pool_stage(rc: RiskCounts, min_exits: int, fallback_p: np.ndarray) -> _Pooled:
    e = rc.exits
    tot = e.sum(axis=1)
    n_exits = float(tot.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        hazard = np.where(rc.at_risk > 0, tot / np.where(rc.at_risk > 0, rc.at_risk, 1), 0.0)
    bins = day_bins(tot, min_exits)
    n_bins = int(bins.max()) + 1
    counts = bin_sums(e, bins, n_bins)
    # Tail: constant hazard fitted on the last quarter of the exits (MLE: exits / spell-days at risk,
    # censored spells older than the table included), with the destination mix of those late exits.
    t0 = tail_start(tot, min_exits)
    r_w = rc.exposure_from(t0)
    e_w = rc.exits_from(t0)
    if n_exits > 0:
        lam = float(e_w.sum()) / max(r_w, 1.0)
        tail_p = _shares(e_w, fallback_p)
    else:
        # A stage nobody has left yet: one pseudo-exit after the exposure seen, with the mix of all stages.
        lam = 1.0 / (r_w / max(rc.n_spells, 1) + 1.0)
        tail_p = fallback_p
    return _Pooled(rc, hazard, survival(rc.at_risk, tot), bins, _shares(counts, fallback_p),
                   counts.sum(axis=1) / max(n_exits, 1.0), _shares(e.sum(axis=0), fallback_p), t0, lam, tail_p,
                   r_w / max(rc.n_spells, 1))


@dataclass
class _Prior:
    """A segment's prior for one stage: the pooled model run ``tau`` times slower (accelerated time),
    with the odds of losing shifted by ``theta``, on the segment's own day grid."""

    surv: np.ndarray  # [L_g]
    hazard: np.ndarray  # [L_g]
    bins: np.ndarray  # day -> row of bin_p, [L_g]; the pooled tail mix is the last row
    bin_p: np.ndarray  # [n_bins + 1, K], shifted
    tail_rate: float
    tail_p: np.ndarray  # [K], shifted
    tail_start: int
    tau: float


def _segment_prior(pool: _Pooled, tau: float, theta: float, lost: int) -> _Prior:
    L = pool.rc.length
    L_g = max(L, int(np.ceil(L * tau)))
    days = np.arange(L_g)
    log_s = scaled_log_survival(_log(pool.surv), pool.tail_rate, tau, days)
    surv = np.exp(log_s)
    hazard = -np.expm1(np.diff(np.r_[0.0, log_s]))  # from log S: no 0/0 where S underflows
    pooled_day = np.floor(days / tau).astype(np.int64)
    n_bins = len(pool.bin_p)
    bins = np.where(pooled_day < L, pool.bins[np.minimum(pooled_day, L - 1)], n_bins)
    bin_p = shift_lost_odds(np.vstack([pool.bin_p, pool.tail_p]), theta, lost)
    return _Prior(surv, np.clip(hazard, 0.0, 1.0), bins, bin_p, pool.tail_rate / tau,
                  shift_lost_odds(pool.tail_p, theta, lost), int(np.ceil(pool.tail_start * tau)), tau)


def _log(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(x, 1e-300))


def _segment_table(pool: _Pooled, prior: _Prior, rc: RiskCounts, m: float, m_dur: float) -> _CellTable:
    """A segment's table: its own counts plus pseudo-spells following its prior: ``m`` of them for the
    destination shares, ``m_dur`` for the hazards and the tail."""
    tail_h_prior = float(-np.expm1(-max(prior.tail_rate, 1e-9)))
    if rc.n_spells == 0:
        return _CellTable(prior.surv, prior.bins, prior.bin_p, tail_h_prior, prior.tail_p)
    s_prev = np.r_[1.0, prior.surv[:-1]]
    n_b = rc.at_risk + m_dur * s_prev
    e_b = rc.exits.sum(axis=1) + m_dur * s_prev * prior.hazard
    with np.errstate(invalid="ignore", divide="ignore"):
        h_b = np.where(n_b > 0, e_b / np.where(n_b > 0, n_b, 1), 0.0)
    surv = np.cumprod(1.0 - np.clip(h_b, 0.0, 1.0))
    n_bins = len(prior.bin_p)
    prior_mass = bin_sums((s_prev * prior.hazard)[:, None], prior.bins, n_bins)[:, 0]
    counts = bin_sums(rc.exits, prior.bins, n_bins) + (m * prior_mass)[:, None] * prior.bin_p
    pseudo_exposure = m_dur * pool.exposure_per_spell * prior.tau  # the pool's exposure, in the segment's time
    own_w = rc.exits_from(prior.tail_start)
    pseudo_exits = prior.tail_rate * pseudo_exposure
    if own_w.sum() + pseudo_exits > 0:
        lam = (own_w.sum() + pseudo_exits) / max(rc.exposure_from(prior.tail_start) + pseudo_exposure, 1e-12)
    else:
        lam = prior.tail_rate
    tail_p = _shares(own_w + pseudo_exits * prior.tail_p, prior.tail_p)
    return _CellTable(surv, prior.bins, _shares(counts, prior.bin_p), float(-np.expm1(-max(lam, 1e-9))), tail_p)


def _trim(t: _CellTable) -> _CellTable:
    """End a table at its first day with S = 0 (nothing survives past it)."""
    zero = np.flatnonzero(t.surv <= 0.0)
    if len(zero):
        k = int(zero[0]) + 1
        return _CellTable(t.surv[:k], t.bins[:k], t.bin_p, t.tail_h, t.tail_p)
    return t


MAX_STRENGTH = 1e4
SEGMENT_ROUNDS = 3  # backfitting rounds of segment effects vs the pooled model
PSEUDO_EXITS = 5.0  # segment effects: pseudo-exits at the pooled rates keep tiny segments near the pool


def _duration_strength(priors: list[_Prior], groups: list[RiskCounts]) -> float:
    """Pseudo-spells for the hazards of one stage: each segment's observed vs expected exits per time bin
    under its prior (survival.hazard_precision), from pseudo-exits per bin to pseudo-spells with the
    prior's exit mass per bin."""
    n_bins = len(priors[0].bin_p)
    obs = np.zeros((len(groups), n_bins))
    exp = np.zeros((len(groups), n_bins))
    mass = []
    for g, (pr, rc) in enumerate(zip(priors, groups)):
        np.add.at(obs[g], pr.bins, rc.exits.sum(axis=1))
        np.add.at(exp[g], pr.bins, rc.at_risk * pr.hazard)
        m_g = bin_sums((np.r_[1.0, pr.surv[:-1]] * pr.hazard)[:, None], pr.bins, n_bins)[:, 0]
        mass.append(m_g[m_g > 0].mean() if (m_g > 0).any() else 1.0)
    a = hazard_precision(obs, exp, n_params=len(groups))
    if not np.isfinite(a):
        return MAX_STRENGTH
    return float(np.clip(a / float(np.mean(mass)), 1.0, MAX_STRENGTH))


@dataclass
class _SegmentSpells:
    dur: np.ndarray
    dest: np.ndarray
    exited: np.ndarray

    def ends(self) -> np.ndarray:
        """Spells by the last day they were seen at risk (exit day, or age - 1 if censored)."""
        last = np.where(self.exited, self.dur, self.dur - 1)
        return np.bincount(last[last >= 0], minlength=1)


def fit_stage_tables(sp: Spells, deal_group: np.ndarray, n_groups: int, n_stages: int, min_exits: int,
                     prior_strength: float | None) -> tuple[StageTables, dict[str, np.ndarray]]:
    """Fit every cell (docs/model.md). Returns the tables and per-cell/per-stage figures.

    Pass 1, per stage: the pooled model and each segment's spells. Then, per segment, two effects common to
    all its stages, fitted on all its spells: its time scale tau (accelerated time: its stays are the
    pool's times tau) and the shift theta of the log-odds of losing given the (scaled) exit day. Pass 2:
    each cell is its own counts plus pseudo-spells of its prior, the pooled model adjusted by tau and theta.
    """
    K = n_stages + 2
    lost = n_stages + 1
    grp = deal_group[sp.deal]
    all_exits = np.bincount(sp.dest[sp.exited], minlength=K).astype(float)
    entered = np.zeros(n_stages, np.int64)
    seg_spells: list[list[_SegmentSpells]] = []
    stage_spells = []
    for s in range(n_stages):
        in_s = sp.stage == s
        entered[s] = int(in_s.sum())
        dur, dest, ex, g_s = sp.dur[in_s], sp.dest[in_s], sp.exited[in_s], grp[in_s]
        stage_spells.append((dur, dest, ex, g_s))
        seg_spells.append([_SegmentSpells(dur[g_s == g], dest[g_s == g], ex[g_s == g]) for g in range(n_groups)])
    exits_g = np.array([sum(int(seg_spells[s][g].exited.sum()) for s in range(n_stages)) for g in range(n_groups)])

    def pooled(tau: np.ndarray) -> list[_Pooled]:
        """Each stage's pooled model in reference time: every segment's stays divided by its time scale."""
        out = []
        for s, (dur, dest, ex, g_s) in enumerate(stage_spells):
            scale = tau[g_s]
            ref = np.where(ex, np.floor(dur / scale), np.maximum(np.floor(dur / scale), 1)).astype(np.int64)
            L = int(ref[ex].max()) + 1 if ex.any() else 1
            fallback = all_exits.copy()
            fallback[s] = 0.0
            fallback = fallback / fallback.sum() if fallback.sum() > 0 else np.eye(K)[lost]
            out.append(_pool_stage(risk_counts(ref, dest, ex, K, L), min_exits, fallback))
        return out

    tau = np.ones(n_groups)
    theta = np.zeros(n_groups)
    pools = pooled(tau)
    if n_groups > 1:
        # Backfitting: segment effects against the pooled model, then the pooled model in reference time
        # (so the pool's day bins do not mix fast and slow segments), centred on the average segment.
        for _ in range(SEGMENT_ROUNDS):
            for g in range(n_groups):
                own = [seg_spells[s][g] for s in range(n_stages)]
                tau[g] = solve_time_scale([x.ends() for x in own], [_log(p.surv) for p in pools],
                                          [p.tail_rate for p in pools], float(exits_g[g]), PSEUDO_EXITS)
            w = exits_g / max(exits_g.sum(), 1)
            tau = tau / np.exp((w * np.log(tau)).sum())
            pools = pooled(tau)
            for g in range(n_groups):
                p_lost, n_lost = [], 0.0
                for s, pool in enumerate(pools):
                    x = seg_spells[s][g]
                    ref_day = np.floor(x.dur[x.exited] / tau[g]).astype(np.int64)
                    L = pool.rc.length
                    p_lost.append(np.where(ref_day < L, pool.bin_p[pool.bins[np.minimum(ref_day, L - 1)], lost],
                                           pool.tail_p[lost]))
                    n_lost += float((x.dest[x.exited] == lost).sum())
                p_all = np.concatenate(p_lost)
                theta[g] = solve_lost_log_odds(np.ones(len(p_all)), p_all, n_lost, PSEUDO_EXITS)
            theta = theta - (w * theta).sum()

    cell_spells = np.zeros(n_groups * n_stages, np.int64)
    cell_exits = np.zeros(n_groups * n_stages, np.int64)
    cell_weight = np.zeros(n_groups * n_stages)
    strengths = np.zeros(n_stages)
    dur_strengths = np.zeros(n_stages)
    per_cell: dict[int, _CellTable] = {}
    for s, pool in enumerate(pools):
        priors = [_segment_prior(pool, float(tau[g]), float(theta[g]), lost) for g in range(n_groups)]
        groups = [risk_counts(x.dur, x.dest, x.exited, K, len(pr.surv)) for x, pr in zip(seg_spells[s], priors)]
        if n_groups == 1:
            m = m_dur = 0.0  # the pooled model is the segment's own
        elif prior_strength is not None:
            m = m_dur = prior_strength
        else:
            exit_counts = np.array([r.exits.sum(axis=0) for r in groups])
            expected = np.array([
                _shares((r.exits.sum(axis=1) @ pr.bin_p[pr.bins]) if r.n_exits else pr.bin_p[-1], pr.bin_p[-1])
                for r, pr in zip(groups, priors)
            ])
            m = dirichlet_precision(exit_counts, max_strength=MAX_STRENGTH, expected=expected, n_params=1)
            m_dur = _duration_strength(priors, groups)
        strengths[s] = m
        dur_strengths[s] = m_dur
        for g, (rc, pr) in enumerate(zip(groups, priors)):
            c = g * n_stages + s
            per_cell[c] = _trim(_segment_table(pool, pr, rc, m, m_dur))
            cell_spells[c] = rc.n_spells
            cell_exits[c] = rc.n_exits
            cell_weight[c] = rc.n_exits / (rc.n_exits + m) if rc.n_exits + m > 0 else 0.0
    surv_parts, bin_parts, bin_rows, tails_h, tails_bin, cell_len = [], [], [], [], [], []
    for c in range(n_groups * n_stages):
        t = per_cell[c]
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
    tables = StageTables.of(
        surv=np.concatenate(surv_parts),
        cell_off=np.r_[0, np.cumsum(cell_len)],
        day_bin=np.concatenate(bin_parts),
        bin_p=bin_p,
        tail_h=np.clip(np.asarray(tails_h, np.float64), 1e-9, 1.0),
        tail_bin=tails_bin,
    )
    figures = {"cell_spells": cell_spells, "cell_exits": cell_exits, "cell_weight": cell_weight,
               "prior_strength": strengths, "duration_prior_strength": dur_strengths, "entered": entered,
               "tail_rate": np.array([p.tail_rate for p in pools]),
               "segment_lost_shift": theta, "segment_time_scale": tau}
    return tables, figures


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


# ---------------------------------------------------------------------------------------------
# Arrivals and amounts


def weekday(days: np.ndarray) -> np.ndarray:
    """Monday = 0 (1970-01-01 was a Thursday)."""
    return ((np.asarray(days, np.int64) + 3) % 7).astype(np.int64)


def month_of_quarter(days: np.ndarray) -> np.ndarray:
    months = np.asarray(days, np.int64).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return (months % 12 % 3).astype(np.int64)


def fit_arrivals(data: CRMData, deal_group: np.ndarray, n_groups: int, lookback_days: int,
                 prior_strength: float | None) -> tuple[ArrivalTables, dict[str, Any]]:
    """New deals per day per group over the trailing window [as_of - lookback, as_of)."""
    assert data.as_of is not None
    n_s = len(data.stages)
    start = max(data.as_of - lookback_days, int(data.created.min()))
    span = data.as_of - start
    recent = data.created >= start
    days = np.arange(start, data.as_of)
    created = data.created[recent]
    g = deal_group[recent]
    counts = np.bincount(g, minlength=n_groups).astype(float)
    rate = counts / max(span, 1)

    # Seasonality, pooled over groups (per-group factors would rest on few deals).
    wd_days = np.bincount(weekday(days), minlength=7).astype(float)
    wd_deals = np.bincount(weekday(created), minlength=7).astype(float)
    mq_days = np.bincount(month_of_quarter(days), minlength=3).astype(float)
    mq_deals = np.bincount(month_of_quarter(created), minlength=3).astype(float)
    overall = len(created) / max(span, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        wf = np.where(wd_days > 0, wd_deals / np.where(wd_days > 0, wd_days, 1) / max(overall, 1e-300), 1.0)
        qf = np.where(mq_days > 0, mq_deals / np.where(mq_days > 0, mq_days, 1) / max(overall, 1e-300), 1.0)
    if len(created) == 0:
        wf, qf = np.ones(7), np.ones(3)
    # The two factors are fitted separately; rescale so they reproduce the window's count exactly.
    norm = (wf[weekday(days)] * qf[month_of_quarter(days)]).mean() if span > 0 else 1.0
    qf = qf / norm if norm > 0 else qf

    # Overdispersion: Pearson dispersion of 4-week block counts around their seasonal expectation.
    n_blocks = span // BLOCK_DAYS
    shape = np.inf
    phi = 1.0
    if n_blocks >= 4 and len(created):
        first = data.as_of - n_blocks * BLOCK_DAYS
        bdays = np.arange(first, data.as_of)
        expect_day = overall * wf[weekday(bdays)] * qf[month_of_quarter(bdays)]
        expect = expect_day.reshape(n_blocks, BLOCK_DAYS).sum(axis=1)
        obs = np.bincount((created[created >= first] - first) // BLOCK_DAYS, minlength=n_blocks)[:n_blocks]
        phi = float(((obs - expect) ** 2 / np.maximum(expect, 1e-12)).sum() / (n_blocks - 1))
        # Overdispersed when phi exceeds 1 by more than 2 standard errors of a chi-square/df.
        if phi > 1.0 + 2.0 * np.sqrt(2.0 / (n_blocks - 1)):
            shape = float(expect.mean() / (phi - 1.0))
    gamma_shape = np.full(n_groups, np.inf)
    if np.isfinite(shape):
        # Same dispersion phi per group: Var = mu * phi, so a group's shape scales with its volume.
        gamma_shape = np.where(rate > 0, rate * BLOCK_DAYS / (phi - 1.0), np.inf)

    # Entry stage: the first stage of each recent deal, shrunk toward the pooled entry mix.
    first_row = np.ones(len(data.h_deal), bool)
    first_row[1:] = data.h_deal[1:] != data.h_deal[:-1]
    entry_stage = np.zeros(data.n_deals, np.int64)
    entry_stage[data.h_deal[first_row]] = data.h_stage[first_row]
    e_counts = np.zeros((n_groups, n_s))
    np.add.at(e_counts, (deal_group[recent], entry_stage[recent]), 1.0)
    pooled = e_counts.sum(axis=0)
    pooled = pooled / pooled.sum() if pooled.sum() > 0 else np.eye(n_s)[0]
    m = prior_strength if prior_strength is not None else dirichlet_precision(e_counts)
    entry_p = _shares(e_counts + m * pooled, pooled)

    # Amounts: each group's recent deals; a group with none borrows the pooled pool.
    order = np.argsort(g, kind="stable")
    amounts = data.amount[recent][order]
    off = np.r_[0, np.cumsum(counts)].astype(np.int64)
    pool_parts, new_off = [], [0]
    for k in range(n_groups):
        part = amounts[off[k]:off[k + 1]]
        if len(part) == 0:
            part = data.amount[recent] if recent.any() else data.amount
        pool_parts.append(part)
        new_off.append(new_off[-1] + len(part))
    tables = ArrivalTables(
        rate=rate.astype(np.float64),
        weekday_factor=np.tile(wf, (n_groups, 1)).astype(np.float64),
        moq_factor=np.tile(qf, (n_groups, 1)).astype(np.float64),
        gamma_shape=gamma_shape.astype(np.float64),
        entry_p=entry_p.astype(np.float64),
        amount_pool=np.concatenate(pool_parts).astype(np.float64),
        amount_off=np.asarray(new_off, np.int64),
    )
    info = {"start": to_date(start).isoformat(), "days": int(span), "deals": int(len(created)),
            "dispersion": phi, "overdispersed": bool(np.isfinite(shape)), "entry_prior_strength": float(m)}
    return tables, info


# ---------------------------------------------------------------------------------------------


def fit(data: CRMData, config: Config, groups: tuple[tuple[str, ...], ...] | None = None) -> PipelineModel:
    """Fit the pipeline model from a CRM export cut at its as-of date (``data.as_of``).

    ``groups``: the segment combinations to fit (default: those in the data); a bootstrap resample
    passes the original's so that its tables line up with the original's cells."""
    if data.as_of is None:
        raise ModelError("fit needs data cut at an as-of date (data.cut)")
    n_s = len(data.stages)
    deal_group, found = group_index(data, config.segment_by)
    if groups is None:
        groups = tuple(found)
    else:
        lookup = {g: i for i, g in enumerate(groups)}
        deal_group = np.array([lookup[g] for g in found], np.int32)[deal_group]
    sp = spells(data)
    stage, figs = fit_stage_tables(sp, deal_group, len(groups), n_s, config.fit.min_bin_exits,
                                   config.fit.prior_strength)
    arrivals, arr_info = fit_arrivals(data, deal_group, len(groups), config.fit.lookback_days,
                                      config.fit.prior_strength)
    arrivals.check(stage)
    meta = {
        "version": __version__,
        "config_sha256": config.sha256,
        "data_fingerprint": data.fingerprint,
        "warnings": data.warning_counts(),
        "fit": {"lookback_days": config.fit.lookback_days, "min_bin_exits": config.fit.min_bin_exits,
                "prior_strength": config.fit.prior_strength, "stale_after_days": config.fit.stale_after_days,
                "tail_rate_per_day": figs["tail_rate"].tolist()},
        "segment_effects": {
            model_name: {"lost_log_odds_shift": float(figs["segment_lost_shift"][g]),
                         "time_scale": float(figs["segment_time_scale"][g])}
            for g, model_name in enumerate(_group_names(config.segment_by, list(groups)))
        },
        "n_deals": data.n_deals,
        "n_spells": int(len(sp.deal)),
        "arrival_window": arr_info,
    }
    return PipelineModel(
        stages=data.stages, won=config.won, lost=config.lost, segment_by=tuple(config.segment_by),
        groups=tuple(tuple(g) for g in groups), as_of=int(data.as_of), stage=stage, arrivals=arrivals,
        cell_spells=figs["cell_spells"], cell_exits=figs["cell_exits"], cell_weight=figs["cell_weight"],
        prior_strength=figs["prior_strength"], entered=figs["entered"], meta=meta,
    )


def _group_names(segment_by: tuple[str, ...], groups: list[tuple[str, ...]]) -> list[str]:
    if not segment_by:
        return ["all"]
    return [", ".join(f"{c}={v}" for c, v in zip(segment_by, g)) for g in groups]


def deal_cells(data: CRMData, model: PipelineModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the open deals of ``data``: indices, cell, age in current stage (days), group.

    A deal whose segment the model has not seen is an error: refit on the same data."""
    assert data.as_of is not None
    deal_group, groups = group_index(data, model.segment_by)
    lookup = {g: i for i, g in enumerate(model.groups)}
    remap = np.array([lookup.get(g, -1) for g in groups], np.int64)
    mg = remap[deal_group]
    stage, entered = data.current_stage()
    open_idx = np.flatnonzero(data.status == OPEN)
    if (mg[open_idx] < 0).any():
        bad = groups[deal_group[open_idx[mg[open_idx] < 0][0]]]
        raise ModelError(f"segment {bad} is not in the model (fitted on other data); refit")
    cell = mg[open_idx] * model.n_stages + stage[open_idx]
    age = data.as_of - entered[open_idx]
    return open_idx, cell.astype(np.int32), age.astype(np.int32), mg[open_idx].astype(np.int32)


__all__ = ["PipelineModel", "Spells", "deal_cells", "fit", "spells", "NO_DATE"]
