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


# ---------------------------------------------------------------------------------------------
# Public entry point


def generate(out_dir: str | Path, *, seed: int = 0, start: dt.date = dt.date(2023, 1, 1),
             end: dt.date = dt.date(2025, 12, 31), scale: float = 1.0) -> dict:
    """Write deals.parquet, stage_history.parquet, forecaster.yaml and truth.json into ``out_dir``.

    Deals are created on days ``start``..``end`` (both included) and observed up to ``end``; ``scale``
    multiplies the arrival rate (1.0: about 10,000 deals and 43,000 stage rows over three years). The
    same arguments give byte-identical files. Returns a summary: n_deals, n_history_rows, n_open,
    n_won, n_lost, as_of, quota and paths (name -> str).
    """
    seed, start, end, scale = _check_args(seed, start, end, scale)
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
    ch = run_chains(rng_walk, t, seg, attrs["entry"], created, d1, record=True)
    open_ = ch.status == 0
    reps = int(np.clip(round(200 / scale), 16, 200))
    future = true_future(rng_future, t, d1, month_g, seg[open_], ch.stage[open_], ch.entered[open_],
                     attrs["amount"][open_], reps)

    n = seg.size
    width = max(6, len(str(n)))
    deal_id = pa.array([f"D{i:0{width}d}" for i in range(1, n + 1)], type=pa.string())
    deals = pa.table({
        "deal_id": deal_id,
        "created_at": _date_array(created),
        "amount": pa.array(attrs["amount"], type=pa.float64()),
        "status": _labels(ch.status, ("open", WON, LOST)),
        "closed_at": _date_array(ch.closed, mask=open_),
        "product": _labels(seg, PRODUCTS),
        "region": _labels(attrs["region"], tuple(REGIONS)),
        "owner": _labels(attrs["owner"], tuple(o for r in REGIONS for o in OWNERS[r])),
        "source": _labels(attrs["source"], tuple(SOURCES)),
    })
    assert ch.rows is not None
    h_deal, h_stage, h_day = ch.rows
    history = pa.table({
        "deal_id": deal_id.take(pa.array(h_deal, type=pa.int64())),
        "stage": _labels(h_stage, DESTINATIONS),
        "entered_at": _date_array(h_day),
    })

    paths = {name: out / file for name, file in (
        ("deals", "deals.parquet"), ("stage_history", "stage_history.parquet"),
        ("config", "forecaster.yaml"), ("truth", "truth.json"))}
    write_with(paths["deals"], lambda p: pq.write_table(deals, p, compression="zstd"))
    write_with(paths["stage_history"], lambda p: pq.write_table(history, p, compression="zstd"))
    realized = {month_start(m).strftime("%Y-%m"): g for m, g in sorted(month_g.items())}
    truth = _truth(t, seed, start, end, scale, future, realized)
    _write_text(paths["truth"], json.dumps(truth, indent=2) + "\n")
    _write_text(paths["config"], _config_text(future))
    return {
        "n_deals": int(n),
        "n_history_rows": int(h_deal.size),
        "n_open": int(open_.sum()),
        "n_won": int((ch.status == 1).sum()),
        "n_lost": int((ch.status == 2).sum()),
        "as_of": future["as_of"],
        "quota": future["quota"],
        "paths": {k: str(v) for k, v in paths.items()},
    }


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
