"""Benchmark of the simulation kernel against a NumPy reference and an RNG-bound floor.

    python benchmarks/bench_kernel.py            # 1k / 10k / 100k open deals x 10k trials
    python benchmarks/bench_kernel.py --quick    # smaller, for a smoke run

Synthetic problem as PERFORMANCE.md: 7 stages, empirical-looking durations (tables of 180 days
from a mixture of discretised Weibulls, then a geometric tail), day-dependent destination bins,
a 90-day window, about 2.4 stage visits per deal-trial. Then a real fitted model: the generator's
data (``--real-scale``, 25 = about 1M stage rows), fitted as `forecaster forecast` does, its open
deals alone, its new deals alone, and both. Compile time is measured on the first call (and cold,
in a fresh process with an empty cache) and reported separately; timings are the best and median
of N repeats. Reports ns per deal-step per core (wall time x threads / stage visits) and writes
benchmarks/results/kernel.json.

The floor: the same counter-based draws as the kernel (one key per stream, one 64-bit draw per
step, both halves used) and nothing else, with the rng helpers called as the kernel calls them
(the definition of PERFORMANCE.md), and with them forced inline ("floor_inlined_*"), which is
faster still: both ratios are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

import forecaster
from forecaster.calendar import calendar_days
from forecaster.model import MixEffects, OpenDeals, StageTables
from forecaster.sim import engine, kernels, rng

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy_reference  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "kernel.json"
N_STAGES = 7
TABLE_DAYS = 180
WINDOW_DAYS = 90


def synthetic_problem(n_deals: int, seed: int = 0, median_days=None) -> tuple[StageTables, OpenDeals]:
    """7-stage funnel with empirical-looking spell tables and ``n_deals`` open deals."""
    r = np.random.default_rng(seed)
    S = N_STAGES
    K = S + 2
    median_days = np.array([4, 6, 8, 10, 12, 8, 6], float) if median_days is None else median_days
    advance = np.array([0.62, 0.64, 0.64, 0.62, 0.58, 0.5, 0.0])
    win = np.array([0.0, 0.0, 0.03, 0.06, 0.12, 0.3, 0.7])
    back = np.array([0.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    surv, off, day_bin, bin_p, tail_h, tail_bin = [], [0], [], [], [], []
    d = np.arange(TABLE_DAYS)
    for s in range(S):
        # A mixture of a quick and a slow Weibull, discretised on days: bumpy, heavy-ish tail.
        k1, k2 = r.uniform(0.8, 1.6), r.uniform(0.6, 1.1)
        lam1, lam2 = median_days[s], median_days[s] * r.uniform(3, 6)
        w = r.uniform(0.55, 0.8)
        sv = w * np.exp(-(((d + 1) / lam1) ** k1)) + (1 - w) * np.exp(-(((d + 1) / lam2) ** k2))
        sv = np.minimum.accumulate(np.maximum(np.round(sv, 4), 1e-3))  # like counts from ~1000 spells
        surv.extend(sv)
        off.append(off[-1] + TABLE_DAYS)
        tail_h.append(float(r.uniform(0.01, 0.03)))
        # Destination bins: early, middle, late exits, each its own mix (late exits lose more).
        edges = [0, 7, 30, TABLE_DAYS]
        b0 = len(bin_p)
        for j in range(3):
            p = np.zeros(K)
            if s + 1 < S:
                p[s + 1] = advance[s] * (1.0 - 0.1 * j)
            if s > 0:
                p[s - 1] = back[s]
            p[S] = win[s] * (1.0 - 0.2 * j)
            p[S + 1] = 1.0 - p.sum()
            bin_p.append(p)
            day_bin.extend([b0 + j] * (edges[j + 1] - edges[j]))
        tail_bin.append(b0 + 2)
    stage = StageTables.of(
        surv=surv,
        cell_off=off,
        day_bin=day_bin,
        bin_p=bin_p,
        tail_h=tail_h,
        tail_bin=tail_bin,
    )
    mix = np.array([0.3, 0.22, 0.16, 0.12, 0.09, 0.07, 0.04])
    cell = r.choice(S, n_deals, p=mix).astype(np.int32)
    age = np.minimum(r.exponential(median_days[cell] * 1.5), 400).astype(np.int32)
    amount = np.round(r.lognormal(9, 1, n_deals), 2)
    deals = OpenDeals(cell, age, amount, np.zeros(n_deals, np.int32)).check(stage)
    return stage, deals


def window_kw() -> dict:
    return {
        "start_off": 0,
        "end_off": WINDOW_DAYS - 1,
        "period_start": np.array([0, 30, 60, WINDOW_DAYS], np.int32),
    }


# Every component of model.shocks on: month-of-quarter exit rates (R = 1.4: every exit drawn 1.4x as often
# and thinned), lost-odds shifts and a shared shock.
EFFECTS = MixEffects(np.array([0.8, 0.9, 1.4]), np.array([0.3, 0.1, -0.4]), 0.1, 1)


def effects_kw() -> dict:
    """window_kw with EFFECTS and the month of the quarter of each window day (from 2025-01-01)."""
    _, moq = calendar_days(20089, WINDOW_DAYS - 1)
    return {**window_kw(), "effects": EFFECTS, "day_moq": moq}


# Not cached: a cached floor would not notice a change of rng.py (numba watches this file only).
_FLOOR_NJIT = {**rng.NJIT_PARALLEL, "cache": False}


@njit(**_FLOOR_NJIT)
def _floor_nb(base, n_streams, draws_per_stream, n_blocks):
    """RNG-bound floor: the same counter-based draws (one key per stream, one 64-bit draw per
    step, both halves used) and nothing else; blocks summed in order."""
    part = np.zeros(n_blocks)
    for b in prange(n_blocks):
        lo = (b * n_streams) // n_blocks
        hi = ((b + 1) * n_streams) // n_blocks
        acc = 0.0
        for i in range(lo, hi):
            key = rng.stream_key(base, i)
            for n in range(draws_per_stream):
                x = rng.draw(key, n)
                acc += rng.hi_uniform(x) + np.float64(rng.lo32(x))
        part[b] = acc
    return part.sum()


@njit(inline="always")
def _mix_inline(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(**_FLOOR_NJIT)
def _floor_inlined_nb(base, n_streams, draws_per_stream, n_blocks):
    """_floor_nb with the hash written inline: the same numbers (checked in main)."""
    part = np.zeros(n_blocks)
    g = rng.GOLDEN
    for b in prange(n_blocks):
        lo = (b * n_streams) // n_blocks
        hi = ((b + 1) * n_streams) // n_blocks
        acc = 0.0
        for i in range(lo, hi):
            key = _mix_inline(np.uint64(base) ^ (np.uint64(i) * rng.KEYMUL))
            state = key
            for n in range(draws_per_stream):
                state += g
                x = _mix_inline(state)
                acc += np.float64(x >> np.uint64(32)) * rng.TWO_M32 + np.float64(x & np.uint64(0xFFFFFFFF))
        part[b] = acc
    return part.sum()


def real_model(scale: float, seed: int = 1):
    """A fitted model of generated data, as `forecaster forecast` builds it: (Base, summary)."""
    from forecaster.analysis.forecast import prepare
    from forecaster.config import load_config
    from forecaster.synth import generate

    tmp = Path(tempfile.mkdtemp(prefix="bench_kernel_"))
    summary = generate(tmp, seed=seed, scale=scale)
    base = prepare(load_config(tmp / "forecaster.yaml"))
    return base, summary


def cold_compile_s() -> float | None:
    """Seconds of the first call in a fresh process with an empty numba cache."""
    code = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from bench_kernel import synthetic_problem, window_kw\n"
        "from forecaster.sim import engine\n"
        "st, d = synthetic_problem(50)\n"
        "t = time.perf_counter(); engine.simulate(st, d, n_trials=3, seed=0, **window_kw())\n"
        "print(time.perf_counter() - t)\n"
    ) % str(Path(__file__).resolve().parent)
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NUMBA_CACHE_DIR=cache),
                             capture_output=True, text=True)  # fmt: skip
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):  # pragma: no cover
        return None


def timed(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and fewer repeats (smoke run)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default 3, quick 2)")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/kernel.json")
    ap.add_argument("--real-scale", type=float, default=25.0, help="generator scale of the real model (0: skip)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-compile measurement")
    args = ap.parse_args()
    quick = args.quick
    repeats = args.repeats or (2 if quick else 3)
    trials = 2_000 if quick else 10_000
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    max_threads = numba.config.NUMBA_NUM_THREADS
    thread_counts = sorted({1, min(2, max_threads)})

    # Compile (or load from cache) on a tiny problem; report it separately.
    stage, deals = synthetic_problem(50)
    t = time.perf_counter()
    engine.simulate(stage, deals, n_trials=3, seed=0, **window_kw())
    compile_s = time.perf_counter() - t
    stats = kernels.simulate_chunk_nb.stats
    cache = "loaded from cache" if stats.cache_hits else "compiled"
    t = time.perf_counter()
    _floor_nb(np.uint64(1), 10, 2, 2)
    compile_floor_s = time.perf_counter() - t
    _floor_inlined_nb(np.uint64(1), 10, 2, 2)
    assert _floor_nb(np.uint64(5), 1000, 3, 4) == _floor_inlined_nb(np.uint64(5), 1000, 3, 4)
    cold_s = None if args.no_cold else cold_compile_s()

    rows = []
    for n in sizes:
        stage, deals = synthetic_problem(n, seed=1)
        T = trials
        res = engine.simulate(stage, deals, n_trials=T, seed=7, **window_kw())
        steps, dtrials = res.deal_steps, res.deal_trials
        for threads in thread_counts:
            numba.set_num_threads(threads)
            best, med = timed(lambda: engine.simulate(stage, deals, n_trials=T, seed=7, **window_kw()), repeats)
            base = rng.domain_key(7, rng.DOMAIN_OPEN)
            per_stream = max(1, round(steps / dtrials))
            fbest, fmed = timed(lambda: _floor_nb(base, dtrials, per_stream, 64), repeats)
            ibest, imed = timed(lambda: _floor_inlined_nb(base, dtrials, per_stream, 64), repeats)
            fsteps = dtrials * per_stream
            ebest, _ = timed(lambda: engine.simulate(stage, deals, n_trials=T, seed=7, **effects_kw()), repeats)
            esteps = engine.simulate(stage, deals, n_trials=T, seed=7, **effects_kw()).deal_steps
            rows.append({
                "deals": n, "trials": T, "threads": threads, "deal_trials": dtrials, "deal_steps": steps,
                "steps_per_deal_trial": steps / dtrials,
                "kernel_best_s": best, "kernel_median_s": med,
                "kernel_ns_per_step_core": best * threads / steps * 1e9,
                "floor_best_s": fbest, "floor_ns_per_step_core": fbest * threads / fsteps * 1e9,
                "floor_inlined_ns_per_step_core": ibest * threads / fsteps * 1e9,
                "effects_best_s": ebest, "effects_deal_steps": esteps,
                "effects_ns_per_step_core": ebest * threads / esteps * 1e9,
                "effects_over_plain": (ebest / esteps) / (best / steps),
                "mean_revenue": float(res.revenue.mean()), "mean_wins": float(res.won_deals.mean()),
            })  # fmt: skip
        numba.set_num_threads(max_threads)

    # NumPy reference on the 10k-deal problem (fewer trials: it is slow), single-threaded by nature.
    n_ref = 10_000
    T_ref = 500 if quick else 2_000
    stage, deals = synthetic_problem(n_ref, seed=1)
    ref = numpy_reference.simulate_open_deals(stage, deals, n_trials=T_ref, seed=3, **window_kw())
    best_ref, med_ref = timed(lambda: numpy_reference.simulate_open_deals(stage, deals, n_trials=T_ref, seed=3, **window_kw()), max(1, repeats - 1))
    ref_ns = best_ref / ref.deal_steps * 1e9
    k10 = next(r for r in rows if r["deals"] == n_ref and r["threads"] == 1)
    # Same model, independent randomness: mean revenues agree within Monte Carlo error.
    numpy_row = {
        "deals": n_ref, "trials": T_ref, "deal_steps": ref.deal_steps, "best_s": best_ref, "median_s": med_ref,
        "ns_per_step": ref_ns, "steps_per_deal_trial": ref.deal_steps / (n_ref * T_ref),
        "mean_revenue": float(ref.revenue.mean()), "mean_wins": float(ref.won_deals.mean()),
        "kernel_mean_revenue": k10["mean_revenue"],
    }  # fmt: skip

    for r in rows:
        r["numpy_over_kernel"] = ref_ns / r["kernel_ns_per_step_core"]
        r["floor_over_kernel"] = r["floor_ns_per_step_core"] / r["kernel_ns_per_step_core"]
        r["floor_inlined_over_kernel"] = r["floor_inlined_ns_per_step_core"] / r["kernel_ns_per_step_core"]

    real = None
    if args.real_scale > 0:
        real = bench_real(args.real_scale, 500 if quick else 2_000, thread_counts, repeats)
    out = {
        "machine": {"cpus": os.cpu_count(), "numba_threads": max_threads, "platform": platform.platform(),
                    "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
                    "forecaster": getattr(forecaster, "__version__", None)},
        "quick": quick, "repeats": repeats,
        "compile_s": {"engine_first_call": compile_s, "engine_kernel": cache, "floor_first_call": compile_floor_s,
                      "engine_cold": cold_s},
        "kernel": rows, "numpy_reference": numpy_row, "real_model": real,
    }  # fmt: skip
    out["targets"] = targets(rows)
    report(out)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = RESULTS.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(RESULTS)
        print(f"wrote {RESULTS}")


def bench_real(scale: float, trials: int, thread_counts: list[int], repeats: int) -> dict:
    """A generated and fitted model: open deals alone, new deals alone, and both."""
    base, summary = real_model(scale)
    stage, deals, arrivals = base.stage, base.deals, base.model.arrivals
    kw = dict(n_trials=trials, seed=7, start_off=base.start_off, end_off=base.end_off, period_start=base.period_start,
              day_weekday=base.weekday, day_moq=base.moq)  # fmt: skip
    cases = {
        "open": lambda: engine.simulate(stage, deals, **kw),
        "new": lambda: engine.simulate(stage, OpenDeals.empty(), arrivals=arrivals, **kw),
        "open+new": lambda: engine.simulate(stage, deals, arrivals=arrivals, **kw),
    }
    rows = []
    for name, f in cases.items():
        res = f()
        for threads in thread_counts:
            numba.set_num_threads(threads)
            best, med = timed(f, repeats)
            rows.append({
                "path": name, "trials": trials, "threads": threads, "deal_trials": res.deal_trials,
                "deal_steps": res.deal_steps, "steps_per_deal_trial": res.deal_steps / res.deal_trials,
                "best_s": best, "median_s": med, "ns_per_step_core": best * threads / res.deal_steps * 1e9,
            })  # fmt: skip
        numba.set_num_threads(max(thread_counts))
    return {
        "scale": scale, "history_rows": summary.get("n_history_rows"), "open_deals": deals.n_deals,
        "cells": stage.n_cells, "stages": stage.n_stages, "bins": int(stage.bin_p.shape[0]),
        "table_days_max": int(stage.cell_len.max()), "window_days": base.end_off - base.start_off + 1,
        "median_age_days": float(np.median(deals.age)), "rows": rows,
    }  # fmt: skip


def targets(rows: list[dict]) -> dict:
    """The goals of the kernel brief, measured on the 10k-deal problem."""
    one = next((r for r in rows if r["deals"] == 10_000 and r["threads"] == 1), None)
    two = next((r for r in rows if r["deals"] == 10_000 and r["threads"] == 2), None)
    out = {}
    if one:
        out["numpy_over_kernel>=8"] = {"value": one["numpy_over_kernel"], "met": one["numpy_over_kernel"] >= 8}
        out["floor_over_kernel>=0.25"] = {"value": one["floor_over_kernel"], "met": one["floor_over_kernel"] >= 0.25}
        v = one["floor_inlined_over_kernel"]
        out["floor_inlined_over_kernel>=0.25"] = {"value": v, "met": v >= 0.25}
    if two:
        # Scaled to 10k trials when the run used fewer (--quick).
        wall = two["kernel_best_s"] * 10_000 / two["trials"]
        out["10k_deals_x_10k_trials_2_threads_s<2"] = {"value": wall, "met": wall < 2.0}
    if one:
        v = one["effects_over_plain"]
        out["effects_over_plain_ns_per_step<=1.3"] = {"value": v, "met": v <= 1.3}
    return out


def report(out: dict) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(json.dumps(out, indent=2))
        return
    c = Console(width=150)
    ref = out["numpy_reference"]
    tab = Table(title="Simulation kernel (open deals, 7 stages, 90-day window)")
    for h in ("deals", "trials", "threads", "steps/deal-trial", "best s", "median s", "ns/step/core",
              "floor ns/step/core", "NumPy/kernel", "floor/kernel", "inlined floor/kernel",
              "effects ns/step/core", "effects/plain"):  # fmt: skip
        tab.add_column(h, justify="right")
    for r in out["kernel"]:
        tab.add_row(
            f"{r['deals']:,}", f"{r['trials']:,}", str(r["threads"]), f"{r['steps_per_deal_trial']:.2f}",
            f"{r['kernel_best_s']:.3f}", f"{r['kernel_median_s']:.3f}", f"{r['kernel_ns_per_step_core']:.2f}",
            f"{r['floor_ns_per_step_core']:.2f}", f"{r['numpy_over_kernel']:.1f}x", f"{r['floor_over_kernel']:.0%}",
            f"{r['floor_inlined_over_kernel']:.0%} ({r['floor_inlined_ns_per_step_core']:.2f})",
            f"{r['effects_ns_per_step_core']:.2f}", f"{r['effects_over_plain']:.2f}x",
        )  # fmt: skip
    c.print(tab)
    real = out.get("real_model")
    if real:
        tab = Table(title=(
            f"Real fitted model (generator scale {real['scale']:g}: {real['open_deals']:,} open deals, "
            f"{real['cells']} cells, {real['bins']:,} bins, tables up to {real['table_days_max']} days, "
            f"{real['window_days']}-day window)"
        ))  # fmt: skip
        for h in ("path", "trials", "threads", "steps/deal-trial", "best s", "ns/step/core"):
            tab.add_column(h, justify="right")
        for r in real["rows"]:
            tab.add_row(r["path"], f"{r['trials']:,}", str(r["threads"]), f"{r['steps_per_deal_trial']:.2f}",
                        f"{r['best_s']:.3f}", f"{r['ns_per_step_core']:.2f}")  # fmt: skip
        c.print(tab)
    c.print(
        f"NumPy reference: {ref['deals']:,} deals x {ref['trials']:,} trials, best {ref['best_s']:.2f} s, "
        f"{ref['ns_per_step']:.1f} ns per deal-step (1 core); mean revenue {ref['mean_revenue']:,.0f} "
        f"vs kernel {ref['kernel_mean_revenue']:,.0f}"
    )
    for name, t in out["targets"].items():
        c.print(f"target {name}: {t['value']:.3g} ({'met' if t['met'] else 'not met'})")
    cs = out["compile_s"]
    cold = f", cold compile {cs['engine_cold']:.1f} s" if cs.get("engine_cold") else ""
    c.print(
        f"first call: engine {cs['engine_first_call']:.2f} s (kernel {cs['engine_kernel']}), "
        f"floor {cs['floor_first_call']:.2f} s{cold}"
    )


if __name__ == "__main__":
    main()
