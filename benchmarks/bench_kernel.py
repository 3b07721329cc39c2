"""Benchmark of the simulation kernel against a NumPy reference and an RNG-bound floor.

    python benchmarks/bench_kernel.py            # 1k / 10k / 100k open deals x 10k trials
    python benchmarks/bench_kernel.py --quick    # smaller, for a smoke run

Synthetic problem as PERFORMANCE.md: 7 stages, empirical-looking durations (tables of 180 days
from a mixture of discretised Weibulls, then a geometric tail), day-dependent destination bins,
a 90-day window, about 2.4 stage visits per deal-trial. Compile time is measured on the first call
and reported separately; timings are the best and median of N repeats. Reports ns per deal-step per
core (wall time x threads / stage visits) and writes benchmarks/results/kernel.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

import forecaster
from forecaster import engine, kernels, rng
from forecaster.tables import OpenDeals, StageTables

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


@njit(**rng.NJIT_PARALLEL)
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
            fsteps = dtrials * per_stream
            rows.append({
                "deals": n, "trials": T, "threads": threads, "deal_trials": dtrials, "deal_steps": steps,
                "steps_per_deal_trial": steps / dtrials,
                "kernel_best_s": best, "kernel_median_s": med,
                "kernel_ns_per_step_core": best * threads / steps * 1e9,
                "floor_best_s": fbest, "floor_ns_per_step_core": fbest * threads / fsteps * 1e9,
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
    out = {
        "machine": {"cpus": os.cpu_count(), "numba_threads": max_threads, "platform": platform.platform(),
                    "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
                    "forecaster": getattr(forecaster, "__version__", None)},
        "quick": quick, "repeats": repeats,
        "compile_s": {"engine_first_call": compile_s, "engine_kernel": cache, "floor_first_call": compile_floor_s},
        "kernel": rows, "numpy_reference": numpy_row,
    }  # fmt: skip
    out["targets"] = targets(rows)
    report(out)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = RESULTS.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(RESULTS)
        print(f"wrote {RESULTS}")


def targets(rows: list[dict]) -> dict:
    """The goals of the kernel brief, measured on the 10k-deal problem."""
    one = next((r for r in rows if r["deals"] == 10_000 and r["threads"] == 1), None)
    two = next((r for r in rows if r["deals"] == 10_000 and r["threads"] == 2), None)
    out = {}
    if one:
        out["numpy_over_kernel>=8"] = {"value": one["numpy_over_kernel"], "met": one["numpy_over_kernel"] >= 8}
        out["floor_over_kernel>=0.25"] = {"value": one["floor_over_kernel"], "met": one["floor_over_kernel"] >= 0.25}
    if two:
        # Scaled to 10k trials when the run used fewer (--quick).
        wall = two["kernel_best_s"] * 10_000 / two["trials"]
        out["10k_deals_x_10k_trials_2_threads_s<2"] = {"value": wall, "met": wall < 2.0}
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
              "floor ns/step/core", "NumPy/kernel", "floor/kernel"):  # fmt: skip
        tab.add_column(h, justify="right")
    for r in out["kernel"]:
        tab.add_row(
            f"{r['deals']:,}", f"{r['trials']:,}", str(r["threads"]), f"{r['steps_per_deal_trial']:.2f}",
            f"{r['kernel_best_s']:.3f}", f"{r['kernel_median_s']:.3f}", f"{r['kernel_ns_per_step_core']:.2f}",
            f"{r['floor_ns_per_step_core']:.2f}", f"{r['numpy_over_kernel']:.1f}x", f"{r['floor_over_kernel']:.0%}",
        )  # fmt: skip
    c.print(tab)
    c.print(
        f"NumPy reference: {ref['deals']:,} deals x {ref['trials']:,} trials, best {ref['best_s']:.2f} s, "
        f"{ref['ns_per_step']:.1f} ns per deal-step (1 core); mean revenue {ref['mean_revenue']:,.0f} "
        f"vs kernel {ref['kernel_mean_revenue']:,.0f}"
    )
    for name, t in out["targets"].items():
        c.print(f"target {name}: {t['value']:.3g} ({'met' if t['met'] else 'not met'})")
    cs = out["compile_s"]
    c.print(
        f"first call: engine {cs['engine_first_call']:.2f} s (kernel {cs['engine_kernel']}), "
        f"floor {cs['floor_first_call']:.2f} s"
    )


if __name__ == "__main__":
    main()
