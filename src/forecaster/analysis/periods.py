"""Did a process change help: stage by stage, conversion and time in stage of two periods (or groups).

The spells that entered a stage inside each period (or, with ``split_by``, those of each value of a deal
column) are followed up to as_of; the ones still open then are censored, not lost, so a later period's
slow deals are not mistaken for losses. Per stage and group, with d the day since entering the stage:

- ``n(d)`` spells at risk, ``e_k(d)`` exits to k = forward (a later stage or won), back (an earlier
  stage), lost; hazards ``h_k = e_k / n``, survival ``S(d) = prod (1 - h)``, cumulative incidence
  ``F_k(H) = sum_{d <= H} S(d-1) h_k(d)`` (Kaplan-Meier and Aalen-Johansen, as the model's tables);
- shares of exits by a common horizon H, ``F_k(H) / sum_k F_k(H)``, H the last day on which every group
  still has MIN_AT_RISK spells at risk (so both periods are read over the same days in stage);
- median days in stage: the first d with ``S(d) <= 1/2`` (none when that is beyond H).

Intervals: 95%, from N_BOOT bootstrap resamples of each group's spells (seeded): normal for the shares
(estimate ± 1.96 bootstrap sd), percentiles for the medians (whole days). A stage's verdict is
"different" when its forward shares differ (Wald z on the bootstrap sd) or its times in stage differ
(log-rank test of the all-cause exit hazards up to H), each at ALPHA / 2, so a stage with no change is
called different in at most ALPHA of cases (Bonferroni).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from forecaster.calendar import to_date, to_day
from forecaster.crm import Snapshot
from forecaster.errors import ConfigError, suggest

N_BOOT = 400
ALPHA = 0.05
MIN_AT_RISK = 10
MAX_GROUPS = 20
Z95 = 1.959963984540054
FORWARD, BACK, LOST, CENSORED = 0, 1, 2, 3
KINDS = ("forward", "back", "lost")


@dataclass(frozen=True)
class StageSpells:
    """One group's spells in one stage: ``t`` int64 [n] days followed (exit day, or age at as_of), ``kind``
    int64 [n] FORWARD, BACK, LOST or CENSORED."""

    t: np.ndarray
    kind: np.ndarray

    @property
    def n(self) -> int:
        return int(self.t.shape[0])


def stage_spells(snap: Snapshot, stage: int, select: np.ndarray) -> StageSpells:
    """The spells of open stage ``stage`` among those with ``select`` (bool [n_spells])."""
    sp = snap.spells
    n_s = len(snap.stages)
    at = select & (sp.stage == stage)
    dest = sp.dest[at]
    kind = np.where(~sp.exited[at], CENSORED,
                    np.where(dest == n_s + 1, LOST, np.where(dest < stage, BACK, FORWARD)))
    return StageSpells(sp.dur[at].astype(np.int64), kind.astype(np.int64))


def at_risk_horizon(groups: list[StageSpells]) -> int:
    """The last day d on which every group has at least MIN_AT_RISK spells at risk (-1: none)."""
    h = np.inf
    for g in groups:
        if g.n == 0:
            return -1
        # At risk on day d: exited on day >= d, or censored at an age > d.
        reach = np.sort(np.where(g.kind == CENSORED, g.t - 1, g.t))[::-1]
        h = min(h, reach[MIN_AT_RISK - 1] if g.n >= MIN_AT_RISK else -1)
    return int(h)


def _estimates(counts: np.ndarray, H: int) -> tuple[np.ndarray, np.ndarray]:
    """counts [B, H + 2, 4] (exits by kind on days 0 .. H, censored by age; row H + 1: followed past H)
    -> (shares of exits by H [B, 3], median days [B], inf when not reached by H)."""
    exits = counts[:, : H + 1, :3]
    e_all = exits.sum(axis=2)
    cens = counts[:, :, 3]
    # n(d) = exits on days >= d + censored at an age > d (row H + 1: everyone followed past H).
    later_exits = np.cumsum(e_all[:, ::-1], axis=1)[:, ::-1]
    later_cens = np.cumsum(cens[:, ::-1], axis=1)[:, ::-1]
    n = later_exits + later_cens[:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where(n[:, :, None] > 0, exits / np.maximum(n, 1)[:, :, None], 0.0)
    s = np.cumprod(1.0 - h.sum(axis=2), axis=1)
    s_prev = np.concatenate([np.ones((s.shape[0], 1)), s[:, :-1]], axis=1)
    inc = (s_prev[:, :, None] * h).sum(axis=1)
    total = inc.sum(axis=1, keepdims=True)
    shares = np.where(total > 0, inc / np.where(total > 0, total, 1.0), np.nan)
    reached = s <= 0.5
    median = np.where(reached.any(axis=1), np.argmax(reached, axis=1).astype(float), np.inf)
    return shares, median


def _cells(g: StageSpells, H: int) -> np.ndarray:
    """Each spell's cell of the counts [H + 2, 4]: (day, kind), spells followed past H in row H + 1."""
    past = g.t > H
    day = np.where(past, H + 1, g.t)
    kind = np.where(past, CENSORED, g.kind)
    return day * 4 + kind


def bootstrap(g: StageSpells, H: int, rng: np.random.Generator, n_boot: int) -> dict[str, np.ndarray]:
    """The estimates on the spells themselves (row 0) and on n_boot resamples (rows 1 ..)."""
    cells = _cells(g, H)
    idx = np.vstack([np.arange(g.n), rng.integers(0, g.n, (n_boot, g.n))])
    flat = (np.arange(n_boot + 1)[:, None] * (H + 2) * 4 + cells[idx]).ravel()
    counts = np.bincount(flat, minlength=(n_boot + 1) * (H + 2) * 4).reshape(n_boot + 1, H + 2, 4)
    shares, median = _estimates(counts.astype(np.float64), H)
    return {"shares": shares, "median": median}


def logrank_p(a: StageSpells, b: StageSpells, H: int) -> float:
    """Two-sided p of the log-rank test of the all-cause exit hazards of two groups on days 0 .. H."""
    counts = []
    for g in (a, b):
        c = np.bincount(_cells(g, H), minlength=(H + 2) * 4).reshape(H + 2, 4).astype(np.float64)
        e = c[: H + 1, :3].sum(axis=1)
        later_e = np.cumsum(e[::-1])[::-1]
        later_c = np.cumsum(c[::-1, 3])[::-1]
        counts.append((e, later_e + later_c[1:]))
    (e1, n1), (e2, n2) = counts
    n, e = n1 + n2, e1 + e2
    ok = (n > 1) & (e > 0)
    o_minus_e = float(np.sum(e1[ok] - n1[ok] * e[ok] / n[ok]))
    var = float(np.sum(n1[ok] * n2[ok] * e[ok] * (n[ok] - e[ok]) / (n[ok] ** 2 * (n[ok] - 1))))
    return math.erfc(abs(o_minus_e) / math.sqrt(2.0 * var)) if var > 0 else 1.0


def _interval(x: np.ndarray, percentile: bool) -> dict[str, float | None]:
    """{"value", "lo95", "hi95"} from row 0 (the estimate) and the bootstrap rows."""
    est, reps = float(x[0]), x[1:]
    if not math.isfinite(est):
        return {"value": None, "lo95": None, "hi95": None}
    if percentile:
        lo, hi = np.quantile(reps, [0.025, 0.975], method="inverted_cdf")
        return {"value": est, "lo95": float(lo) if math.isfinite(lo) else None,
                "hi95": float(hi) if math.isfinite(hi) else None}
    sd = float(np.nanstd(reps, ddof=1))
    return {"value": est, "lo95": est - Z95 * sd, "hi95": est + Z95 * sd}


def _difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray], sa: StageSpells, sb: StageSpells, H: int
                ) -> dict[str, Any]:
    """Group b minus group a: forward share (normal interval, Wald p), median days (percentile interval),
    log-rank p, and the verdict."""
    fa, fb = a["shares"][:, FORWARD], b["shares"][:, FORWARD]
    if not (np.isfinite(fa[0]) and np.isfinite(fb[0])):
        return {"forward_share": None, "median_days": None, "verdict": "no data", "p_forward": None,
                "p_time": None}
    diff = float(fb[0] - fa[0])
    se = math.sqrt(float(np.nanvar(fa[1:], ddof=1) + np.nanvar(fb[1:], ddof=1)))
    p_fwd = math.erfc(abs(diff) / (se * math.sqrt(2.0))) if se > 0 else (0.0 if diff else 1.0)
    fwd = {"diff": diff, "lo95": diff - Z95 * se, "hi95": diff + Z95 * se}
    ma, mb = a["median"], b["median"]
    med: dict[str, float | None] = {"diff": None, "lo95": None, "hi95": None}
    if math.isfinite(ma[0]) and math.isfinite(mb[0]):
        d = mb[1:] - ma[1:]
        d = np.where(np.isnan(d), np.inf, d)  # both unreached: unknown, kept out of range
        lo, hi = np.quantile(d, [0.025, 0.975], method="inverted_cdf")
        med = {"diff": float(mb[0] - ma[0]), "lo95": float(lo) if math.isfinite(lo) else None,
               "hi95": float(hi) if math.isfinite(hi) else None}
    p_time = logrank_p(sa, sb, H)
    what = [name for name, p in (("forward share", p_fwd), ("time in stage", p_time)) if p < ALPHA / 2]
    return {"forward_share": fwd, "median_days": med, "p_forward": p_fwd, "p_time": p_time,
            "verdict": "different" if what else "no difference beyond noise", "what_differs": what}


def compare_stage(groups: list[StageSpells], seed: tuple[int, ...], n_boot: int = N_BOOT
                  ) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """One stage across groups: (horizon H, per group its shares and median with intervals, per later
    group its difference from the first with the verdict)."""
    H = at_risk_horizon(groups)
    none = {"value": None, "lo95": None, "hi95": None}
    boots = [bootstrap(g, H, np.random.default_rng([*seed, j]), n_boot) if H >= 0 else None
             for j, g in enumerate(groups)]
    entries = []
    for g, b in zip(groups, boots):
        entry: dict[str, Any] = {"spells": g.n, "exits": int((g.kind != CENSORED).sum()), "horizon_days": H}
        for k, name in enumerate(KINDS):
            entry[f"{name}_share"] = _interval(b["shares"][:, k], False) if b is not None else dict(none)
        entry["median_days"] = _interval(b["median"], True) if b is not None else dict(none)
        entries.append(entry)
    diffs = []
    for j in range(1, len(groups)):
        if boots[0] is None:
            diffs.append({"forward_share": None, "median_days": None, "verdict": "no data", "p_forward": None,
                          "p_time": None, "what_differs": []})
        else:
            diffs.append(_difference(boots[0], boots[j], groups[0], groups[j], H))
    return H, entries, diffs


def parse_period(text: str) -> tuple[dt.date, dt.date]:
    """'YYYY-MM-DD:YYYY-MM-DD' -> (start, end), both included."""
    parts = str(text).split(":")
    try:
        start, end = (dt.date.fromisoformat(p.strip()) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        start = end = None
    if start is None or end is None:
        raise ConfigError(f"--period '{text}': expected START:END as YYYY-MM-DD:YYYY-MM-DD")
    if end < start:
        raise ConfigError(f"--period '{text}': ends {end}, before it starts {start}")
    return start, end


def _groups(snap: Snapshot, periods: list[tuple[dt.date, dt.date]], split_by: str | None,
            segment: dict[str, str]) -> list[tuple[dict[str, Any], np.ndarray]]:
    """(label, bool mask over spells) per group; every problem as a ConfigError naming the option."""
    sp = snap.spells
    as_of = to_date(snap.as_of)
    keep = np.ones(len(sp.deal), bool)
    for col, value in segment.items():
        keep &= _column(snap, col, "--segment")[sp.deal] == value
    for i, (a, b) in enumerate(periods):
        if b >= as_of:
            raise ConfigError(f"--period {a}:{b}: ends on or after as_of {as_of}; its spells cannot be followed up")
        for a2, b2 in periods[:i]:
            if a <= b2 and a2 <= b:
                raise ConfigError(f"--period {a}:{b} overlaps --period {a2}:{b2}; periods must be disjoint")
    in_period = [(sp.entered >= to_day(a)) & (sp.entered <= to_day(b)) for a, b in periods]
    if split_by is None:
        if len(periods) < 2:
            raise ConfigError("--period: give at least two periods to compare (or one with --split-by COLUMN)")
        return [({"start": a.isoformat(), "end": b.isoformat()}, keep & m) for (a, b), m in zip(periods, in_period)]
    if len(periods) > 1:
        raise ConfigError("--split-by compares groups within one window: give at most one --period")
    window = in_period[0] if periods else np.ones(len(sp.deal), bool)
    col = _column(snap, split_by, "--split-by")
    values = sorted(set(col[sp.deal[keep & window]].tolist()))
    if len(values) < 2:
        raise ConfigError(f"--split-by {split_by}: only {len(values)} value in the deals compared; nothing to split")
    if len(values) > MAX_GROUPS:
        raise ConfigError(f"--split-by {split_by}: {len(values)} values, at most {MAX_GROUPS} can be compared")
    label = {"start": periods[0][0].isoformat(), "end": periods[0][1].isoformat()} if periods else {}
    return [({"column": split_by, "value": v, **label}, keep & window & (col[sp.deal] == v)) for v in values]


def _column(snap: Snapshot, name: str, option: str) -> np.ndarray:
    """A deal attribute column as str objects [n_deals]."""
    cols = snap.attrs.column_names
    if name not in cols:
        raise ConfigError(f"{option} {name}: no such deal column{suggest(name, cols)}; columns: {', '.join(cols) or 'none'}")
    return np.array(snap.attrs[name].to_pylist(), dtype=object)


def compare_periods(snap: Snapshot, periods: list[tuple[dt.date, dt.date]] = (), split_by: str | None = None,
                    segment: dict[str, str] | None = None, seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """The before/after (or A/B) comparison as the JSON of `forecaster funnel --period/--split-by`:
    ``{"periods" | "groups": [{..., "stages": [...]}], "differences": [...], ...}`` (module docstring);
    differences are each group against the first."""
    groups = _groups(snap, list(periods), split_by, dict(segment or {}))
    per_group: list[list[dict[str, Any]]] = [[] for _ in groups]
    differences = []
    for s, name in enumerate(snap.stages):
        _, entries, diffs = compare_stage([stage_spells(snap, s, mask) for _, mask in groups], (seed, s), n_boot)
        for j, entry in enumerate(entries):
            per_group[j].append({"stage": name, **entry})
        differences += [{"stage": name, "between": [0, j + 1], **d} for j, d in enumerate(diffs)]
    key = "groups" if split_by is not None else "periods"
    return {
        "as_of": to_date(snap.as_of).isoformat(),
        "segment": ", ".join(f"{c}={v}" for c, v in (segment or {}).items()) or "all",
        key: [{**label, "stages": stages} for (label, _), stages in zip(groups, per_group)],
        "differences": differences,
        "test": {"alpha": ALPHA, "bootstrap": n_boot, "min_at_risk": MIN_AT_RISK,
                 "rule": "different when the forward shares (Wald, bootstrap sd) or the times in stage (log-rank) "
                         f"differ at {ALPHA / 2:g} each: at most {ALPHA:.0%} of unchanged stages are called different"},
    }


__all__ = ["compare_periods", "compare_stage", "parse_period", "stage_spells", "StageSpells", "N_BOOT", "ALPHA"]
