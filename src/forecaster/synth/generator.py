"""Synthetic B2B CRM exports with known truth, for demos, tests and benchmarks.

The process is a semi-Markov chain over the open stages, one chain per deal, segmented by product:

- Arrivals: Poisson counts per day and product with rate ``base_rate * scale * weekday_factor *
  month_of_quarter_factor * g_month``, where ``g_month ~ Gamma(shape, 1/shape)`` is one draw per
  calendar month shared by all products (mild overdispersion).
- A new deal gets region, owner (each owner belongs to one region), source and an entry stage (mostly
  prospecting; some inbound and partner deals start in qualification), and a lognormal amount per product.
- Each spell in a stage first draws its destination from ``p_exit[product][stage]`` (a later stage,
  one stage back, won or lost), then its duration in whole days ``floor(X)``: with probability
  ``stall_prob`` X comes from the stall lognormal (deals that sit for months), otherwise from the
  lognormal of the exit kind (forward, back, won, lost) for that product and stage.

Everything after ``end`` is unobserved: such deals are open and their history stops at the last stage
entered on or before ``end``. truth.json records every parameter, plus the expected won amount of the 90
days after ``end`` given what is observed (Monte Carlo from the true process, conditioned on each open
deal's stage and age), which sets the config's quota.

All randomness comes from one seed through ``numpy.random.SeedSequence(seed).spawn``; the work is
vectorised over deals (one numpy step advances every active deal by one spell).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from forecaster.calendar import as_date, month_start, to_day
from forecaster.errors import ConfigError
from forecaster.files import write_atomic, write_with
from forecaster.synth.effects import (
    Effects,
    crm_columns,
    forecast_category,
    lost_odds_for,
    push_for,
    truncate_history,
)
from forecaster.synth.process import arrivals, attributes, run_chains, true_future
from forecaster.synth.params import (
    DESTINATIONS,
    ENTRY_STAGE,
    EXIT_KINDS,
    FORMAT_VERSION,
    LOST,
    MONTH_GAMMA_SHAPE,
    OWNERS,
    PRODUCTS,
    PRODUCT_PARAMS,
    REGIONS,
    SOURCES,
    STAGES,
    Tables,
    WON,
    absorption,
    tables,
)

__all__ = ["generate"]

EFFECTS_STREAM = 0x45FFEC75  # the effects' random streams, apart from the plain process's
EFFECTS_NOTE = ("All zero / null / false: the plain process above. With effects on, the forecast above is the true "
                "process's future given this world's realised quarter shocks; with the quarter-end push its first "
                "spells of open deals ignore that a push may be why they are still open (slightly low).")


# ---------------------------------------------------------------------------------------------
# Public entry point


def generate(out_dir: str | Path, *, seed: int = 0, start: dt.date = dt.date(2023, 1, 1),
             end: dt.date = dt.date(2025, 12, 31), scale: float = 1.0, effects: Effects | None = None) -> dict:
    """Write deals.parquet, stage_history.parquet, forecaster.yaml and truth.json into ``out_dir``.

    Deals are created on days ``start``..``end`` (both included) and observed up to ``end``; ``scale``
    multiplies the arrival rate (1.0: about 10,000 deals and 43,000 stage rows over three years);
    ``effects``: what real pipelines have (synth.effects; default none). The same arguments give
    byte-identical files. Returns a summary: n_deals, n_history_rows, n_open, n_won, n_lost, as_of, quota
    and paths (name -> str).
    """
    seed, start, end, scale = _check_args(seed, start, end, scale)
    effects = effects or Effects()
    _check_effects(effects, start, end)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create output folder {out}: {e.strerror or e}") from None
    t = tables(scale)
    rng_arrivals, rng_attrs, rng_walk, rng_future = (
        np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(4)
    )
    d0, d1 = to_day(start), to_day(end)

    month_g: dict[int, float] = {}

    def month_factor(months: np.ndarray) -> np.ndarray:
        g = rng_arrivals.gamma(MONTH_GAMMA_SHAPE, 1.0 / MONTH_GAMMA_SHAPE, size=months.size)
        month_g.update({int(m): float(x) for m, x in zip(months, g)})
        return g[None, :]

    _, created, seg = arrivals(rng_arrivals, t, d0, d1, month_factor)
    attrs = attributes(rng_attrs, t, seg)
    rng_odds, rng_push, rng_crm = (np.random.Generator(np.random.PCG64(s))
                                   for s in np.random.SeedSequence([seed, EFFECTS_STREAM]).spawn(3))
    lost_odds = lost_odds_for(effects, rng_odds, d0)
    push = push_for(effects, rng_push, len(STAGES))
    ch = run_chains(rng_walk, t, seg, attrs["entry"], created, d1, record=True, lost_odds=lost_odds, push=push)
    open_ = ch.status == 0
    reps = int(np.clip(round(200 / scale), 16, 200))
    future = true_future(rng_future, t, d1, month_g, seg[open_], ch.stage[open_], ch.entered[open_],
                         attrs["amount"][open_], reps, lost_odds=lost_odds, push=push)
    deals, history, n_pushes = _tables(effects, rng_crm, t, seg, created, attrs, ch, d1)

    n = deals.num_rows
    h_deal = history.column("deal_id")

    paths = {name: out / file for name, file in (
        ("deals", "deals.parquet"), ("stage_history", "stage_history.parquet"),
        ("config", "forecaster.yaml"), ("truth", "truth.json"))}
    write_with(paths["deals"], lambda p: pq.write_table(deals, p, compression="zstd"))
    write_with(paths["stage_history"], lambda p: pq.write_table(history, p, compression="zstd"))
    realized = {month_start(m).strftime("%Y-%m"): g for m, g in sorted(month_g.items())}
    truth = _truth(t, seed, start, end, scale, future, realized)
    truth["effects"] = {**effects.to_dict(), "quarter_shock_realized": lost_odds.realized() if lost_odds else {},
                        "close_date_pushes": n_pushes, "note": EFFECTS_NOTE}
    _write_text(paths["truth"], json.dumps(truth, indent=2) + "\n")
    _write_text(paths["config"], _config_text(future))
    status = deals.column("status").to_numpy(zero_copy_only=False)
    return {
        "n_deals": int(n),
        "n_history_rows": int(len(h_deal)),
        "n_open": int((status == "open").sum()),
        "n_won": int((status == WON).sum()),
        "n_lost": int((status == LOST).sum()),
        "as_of": future["as_of"],
        "quota": future["quota"],
        "paths": {k: str(v) for k, v in paths.items()},
    }


def _tables(effects: Effects, rng: np.random.Generator, t: Tables, seg: np.ndarray, created: np.ndarray,
            attrs: dict[str, np.ndarray], ch: Any, end_day: int) -> tuple[pa.Table, pa.Table, int]:
    """The deals and stage_history tables, after the CRM's adoption and with its expected close dates and
    probabilities when those effects are on."""
    n = seg.size
    width = max(6, len(str(n)))
    ids = np.array([f"D{i:0{width}d}" for i in range(1, n + 1)], dtype=object)
    assert ch.rows is not None
    rows = ch.rows
    keep = np.ones(n, bool)
    if effects.crm_start is not None:
        keep, rows = truncate_history(rows, ch.status, ch.closed, effects.crm_start, len(STAGES))
    open_ = ch.status == 0
    deal_cols: dict[str, Any] = {
        "deal_id": pa.array(ids, type=pa.string()),
        "created_at": _date_array(created),
        "amount": pa.array(attrs["amount"], type=pa.float64()),
        "status": _labels(ch.status, ("open", WON, LOST)),
        "closed_at": _date_array(ch.closed, mask=open_),
        "product": _labels(seg, PRODUCTS),
        "region": _labels(attrs["region"], tuple(REGIONS)),
        "owner": _labels(attrs["owner"], tuple(o for r in REGIONS for o in OWNERS[r])),
        "source": _labels(attrs["source"], tuple(SOURCES)),
    }
    hist_extra: dict[str, Any] = {}
    pushes = 0
    if effects.crm_fields:
        cycle = np.exp(t.mu[:, :, 0]).sum(axis=1)[seg]  # the reps' idea of a cycle: forward medians summed
        crm = crm_columns(effects, rng, rows, created, ch.status, ch.closed, cycle, end_day, STAGES)
        rows, pushes = crm["rows"], crm["pushes"]
        if effects.optimistic_close > 0:
            deal_cols["expected_close_at"] = _date_array(crm["deal_expected_close"], mask=crm["deal_expected_close"] < 0)
            hist_extra["expected_close_at"] = _date_array(crm["expected_close"], mask=crm["expected_close"] < 0)
        if effects.crm_probability:
            deal_dest = np.where(open_, ch.stage, np.where(ch.status == 1, len(STAGES), len(STAGES) + 1))
            deal_cols["probability"] = pa.array(crm["deal_probability"], type=pa.float64())
            deal_cols["forecast_category"] = pa.array(
                forecast_category(crm["deal_probability"], deal_dest, len(STAGES)), type=pa.string())
            hist_extra["probability"] = pa.array(crm["probability"], type=pa.float64())
            hist_extra["forecast_category"] = pa.array(forecast_category(crm["probability"], rows[1], len(STAGES)),
                                                       type=pa.string())
    h_deal, h_stage, h_day = rows
    deal_id = deal_cols["deal_id"]
    history = pa.table({
        "deal_id": deal_id.take(pa.array(h_deal, type=pa.int64())),
        "stage": _labels(h_stage, DESTINATIONS),
        "entered_at": _date_array(h_day),
        **hist_extra,
    })
    deals = pa.table(deal_cols)
    if not keep.all():
        deals = deals.filter(pa.array(keep))
    return deals, history, pushes


def _check_effects(e: Effects, start: dt.date, end: dt.date) -> None:
    for name in ("quarter_end_push", "stale_close_dates"):
        v = getattr(e, name)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"generate: {name.replace('_', '-')} must be a share in [0, 1], got {v}")
    for name in ("quarter_shock", "optimistic_close"):
        if getattr(e, name) < 0:
            raise ConfigError(f"generate: {name.replace('_', '-')} must be >= 0, got {getattr(e, name)}")
    if not 1 <= e.push_days <= 60:
        raise ConfigError(f"generate: push days must be between 1 and 60, got {e.push_days}")
    if e.crm_start is not None and not start < e.crm_start <= end:
        raise ConfigError(f"generate: crm-start {e.crm_start} must lie after start {start} and not after end {end}")


def _check_args(seed: Any, start: Any, end: Any, scale: Any) -> tuple[int, dt.date, dt.date, float]:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"generate: seed must be a whole number >= 0, got {seed!r}")
    if seed < 0:
        raise ConfigError(f"generate: seed must be >= 0, got {seed}")
    start, end = _as_date(start, "start"), _as_date(end, "end")
    if end < start:
        raise ConfigError(f"generate: end {end} is before start {start}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
        raise ConfigError(f"generate: scale must be a finite number > 0, got {scale!r}")
    if scale <= 0:
        raise ConfigError(f"generate: scale must be > 0, got {scale}")
    return int(seed), start, end, float(scale)


def _as_date(value: Any, name: str) -> dt.date:
    parsed = as_date(value)
    if parsed is not None:
        return parsed
    raise ConfigError(f"generate: {name} must be a date YYYY-MM-DD, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Output helpers


def _date_array(days: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    arr = pa.array(days.astype(np.int32), type=pa.int32(), mask=mask)
    return arr.cast(pa.date32())


def _labels(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    dictionary = pa.array(list(names), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), dictionary).cast(pa.string())


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, text)


def _config_text(future: dict[str, Any]) -> str:
    return (
        "data:\n"
        "  deals: deals.parquet\n"
        "  stage_history: stage_history.parquet\n"
        f"stages: [{', '.join(STAGES)}]\n"
        f"won: {WON}\n"
        f"lost: {LOST}\n"
        "segment_by: [product]\n"
        "forecast:\n"
        f"  as_of: {future['as_of']}\n"
        "  trials: 10000\n"
        "  seed: 42\n"
        "  period: month\n"
        f"  quota: {future['quota']}\n"
    )


def _truth(t: Tables, seed: int, start: dt.date, end: dt.date, scale: float,
           future: dict[str, Any], month_g: dict[str, float]) -> dict[str, Any]:
    """Every generating parameter, keyed by name (layout documented in the keys themselves)."""
    segments: dict[str, Any] = {}
    for g, name in enumerate(PRODUCTS):
        prod = PRODUCT_PARAMS[name]
        absorb = absorption(t.p_exit[g])
        stages: dict[str, Any] = {}
        for i, stage in enumerate(STAGES):
            p_exit = {DESTINATIONS[k]: float(t.p_exit[g, i, k]) for k in range(len(DESTINATIONS))
                      if t.p_exit[g, i, k] > 0}
            kinds = sorted({int(t.kind[i, k]) for k in range(len(DESTINATIONS)) if t.p_exit[g, i, k] > 0})
            durations = {
                EXIT_KINDS[j]: {
                    "family": "lognormal",
                    "mu": float(t.mu[g, i, j]),
                    "sigma": float(t.sigma[g, i, j]),
                    "median_days": float(math.exp(t.mu[g, i, j])),
                    "stall_prob": float(t.stall_p[g, i, j]),
                }
                for j in kinds
            }
            stages[stage] = {
                "p_exit": p_exit,
                "durations": durations,
                "p_won": float(absorb[i, 0]),
                "p_lost": float(absorb[i, 1]),
            }
        entry = {st: sum(SOURCES[s] * ENTRY_STAGE[s].get(st, 0.0) for s in SOURCES) for st in STAGES}
        segments[name] = {
            "share": prod.share,
            "arrival_rate_per_day": float(t.arrival_rate[g]),
            "amount": {"family": "lognormal", "mu": float(t.amount_mu[g]), "sigma": float(t.amount_sigma[g]),
                       "median": prod.amount_median,
                       "mean": float(math.exp(t.amount_mu[g] + 0.5 * t.amount_sigma[g] ** 2)),
                       "rounding": "nearest whole unit"},
            "stall": {"family": "lognormal", "mu": float(t.stall_mu[g]), "sigma": t.stall_sigma,
                      "median_days": float(math.exp(t.stall_mu[g]))},
            "p_won_from_entry": float(sum(entry[st] * absorb[i, 0] for i, st in enumerate(STAGES))),
            "stages": stages,
        }
    return {
        "format_version": FORMAT_VERSION,
        "generator": "forecaster.generate",
        "seed": seed,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "scale": scale,
        "stages": list(STAGES),
        "won": WON,
        "lost": LOST,
        "segment_by": ["product"],
        "process": (
            "Each spell draws its destination from segments.<product>.stages.<stage>.p_exit, then whole days "
            "floor(X): with probability durations.<kind>.stall_prob X ~ segments.<product>.stall, else "
            "X ~ lognormal(durations.<kind>.mu, sigma). kind: forward (a later stage), back (an earlier "
            "stage), won, lost. p_won/p_lost: absorption probabilities from that stage."
        ),
        "exit_kinds": list(EXIT_KINDS),
        "arrivals": {
            "model": "Poisson per day and product: rate_per_day[product] * weekday_factor[weekday] * "
                     "month_of_quarter_factor[(month-1) % 3] * g, g ~ Gamma(shape, 1/shape) per calendar month",
            "rate_per_day": {name: float(t.arrival_rate[g]) for g, name in enumerate(PRODUCTS)},
            "weekday_factor": [float(x) for x in t.weekday],
            "weekday_order": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
            "month_of_quarter_factor": [float(x) for x in t.month_of_quarter],
            "month_gamma_shape": MONTH_GAMMA_SHAPE,
            "month_gamma_realized": month_g,
        },
        "attributes": {
            "region": dict(REGIONS),
            "owners": {r: list(o) for r, o in OWNERS.items()},
            "owner_within_region": "uniform",
            "source": dict(SOURCES),
            "entry_stage_by_source": {s: dict(v) for s, v in ENTRY_STAGE.items()},
            "note": "region and owner do not affect outcomes; source sets only the entry stage",
        },
        "segments": segments,
        "forecast": future,
    }
