"""Benchmark of the Dask engine against the local one (figures in docs/scale.md).

    python benchmarks/bench_dask.py             # 200k open deals x 20k trials: local, 1, 2 and 4 workers
    python benchmarks/bench_dask.py --quick     # 20k x 2k, a smoke run

The problem is bench_kernel's synthetic 7-stage funnel (90-day window, open deals only). Per engine:
the wall time of the run (best of --repeats, with the cluster started and every worker's kernel loaded
by a warm-up run first: both timed apart), its throughput in deal-trials per second, the parallel
efficiency (throughput over k times that of one worker process), whether the result is the local one
bit for bit, and each worker's peak resident memory (VmHWM) against its memory after start. On a shared machine the wall
clock also measures the neighbours, so the workers' CPU seconds are reported too: their ratio to one
worker's ("work efficiency") is the engine's own overhead (merges, transfers). The fixed cost of a task:
blocks of one trial on one worker, for a small deal table and for the large one (whose per-deal
results, deals x window days, are merged on the workers). From the one-worker CPU rate, the task cost
and the merge cost, a projection for a cluster with a free core per worker and NETWORK_BYTES_PER_S
between machines. Writes benchmarks/results/dask.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np

from forecaster.files import write_atomic
from forecaster.sim import cluster, merge_results
from forecaster.sim.engines import SimSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernel import synthetic_problem, timed, window_kw  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "dask.json"
MACHINE_NOTE = ("a 2-core machine shared with other engineers' jobs: timings are noisy, and 4 worker "
                "processes share 2 cores")


NETWORK_BYTES_PER_S = 1e9  # an assumption of the projection: 10 Gb/s Ethernet at about 80%
PROJECTED_WORKERS = (1, 2, 4, 8, 16, 32, 64)


def cpu_s() -> float:
    """CPU seconds this process has used (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def memory_kib() -> dict[str, int]:
    """This process's resident memory now (VmRSS) and at its peak (VmHWM), KiB (Linux)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def same_result(a, b) -> bool:
    return all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
               for x, y in ((getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)))


def spec_of(n_deals: int, n_trials: int) -> SimSpec:
    stage, deals = synthetic_problem(n_deals)
    return SimSpec(stage, deals, n_trials=n_trials, seed=1, **window_kw())


def task_overhead_s(engine: cluster.DaskEngine, spec: SimSpec, tasks: int) -> float:
    """Wall seconds per task of ``tasks`` blocks of one trial each, on the engine's workers."""
    saved = cluster.MIN_BLOCK_TRIALS, cluster.BLOCKS_PER_WORKER
    cluster.MIN_BLOCK_TRIALS, cluster.BLOCKS_PER_WORKER = 1, tasks
    try:
        one = dataclasses.replace(spec, n_trials=tasks * engine.workers)
        engine.simulate(one)  # warm: the scatter path and the kernel for these inputs
        t = time.perf_counter()
        engine.simulate(one)
        return (time.perf_counter() - t) / (tasks * engine.workers)
    finally:
        cluster.MIN_BLOCK_TRIALS, cluster.BLOCKS_PER_WORKER = saved


def bench_workers(k: int, spec: SimSpec, warm: SimSpec, local, repeats: int) -> dict:
    t = time.perf_counter()
    engine = cluster.DaskEngine.start(workers=k)
    start_s = time.perf_counter() - t
    with engine:
        after_start = engine.client.run(memory_kib)
        t = time.perf_counter()
        engine.simulate(warm)
        warm_s = time.perf_counter() - t
        results = []
        load = os.getloadavg()[0]
        cpu0 = engine.client.run(cpu_s)
        best, median = timed(lambda: results.append(engine.simulate(spec)), repeats)
        cpu1 = engine.client.run(cpu_s)
        peak = engine.client.run(memory_kib)
        blocks = len(engine.blocks(spec.n_trials))
    deal_trials = spec.deals.n_deals * spec.n_trials
    return {"workers": k, "start_s": start_s, "warm_up_s": warm_s, "best_s": best, "median_s": median,
            "blocks": blocks, "deal_trials_per_s": deal_trials / best, "identical_to_local": same_result(results[-1], local),
            "worker_cpu_s_per_run": sum(cpu1[w] - cpu0[w] for w in cpu0) / repeats, "load_average_1min": load,
            "worker_rss_after_start_mib": sorted(m["VmRSS"] / 1024 for m in after_start.values()),
            "worker_peak_rss_mib": sorted(m["VmHWM"] / 1024 for m in peak.values())}


def projection(out: dict) -> dict:
    """Wall seconds of the benchmark's forecast on k workers with a free core each: rounds of blocks
    at the one-worker CPU rate plus each block's fixed cost, then the merge tree's levels (a merge's
    CPU and one block's per-deal arrays over the network)."""
    p, one = out["problem"], next(r for r in out["dask"] if r["workers"] == 1)
    rate = p["deal_trials"] / one["worker_cpu_s_per_run"]
    task_s = out["task_overhead_s"][f"deals_{p['open_deals']}"]
    payload = p["open_deals"] * (p["window_days"] + 2) * 4  # win-day histogram, won and lost counts
    rows = []
    for k in PROJECTED_WORKERS:
        blocks = cluster.block_count(p["trials"], k)
        levels = math.ceil(math.log2(blocks)) if blocks > 1 else 0
        wall = (math.ceil(blocks / k) * (p["deal_trials"] / blocks / rate + task_s)
                + levels * (out["merge_s"] + payload / NETWORK_BYTES_PER_S))
        rows.append({"workers": k, "blocks": blocks, "projected_s": wall,
                     "deal_trials_per_s": p["deal_trials"] / wall})
    for r in rows:
        r["efficiency"] = r["deal_trials_per_s"] / (r["workers"] * rows[0]["deal_trials_per_s"])
    return {"network_bytes_per_s": NETWORK_BYTES_PER_S, "one_worker_cpu_rate": rate, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=200_000)
    ap.add_argument("--trials", type=int, default=20_000)
    ap.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="20k deals x 2k trials")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--table", action="store_true", help="print docs/scale.md's tables from the results file")
    args = ap.parse_args()
    if args.table:
        print(markdown(json.loads(RESULTS.read_text())))
        return
    if args.quick:
        args.deals, args.trials = 20_000, 2_000
    spec = spec_of(args.deals, args.trials)
    warm = spec_of(1_000, 4 * cluster.MIN_BLOCK_TRIALS * max(int(k) for k in args.workers.split(",")))
    warm.run()  # this process's kernel, for the local figure
    deal_trials = args.deals * args.trials

    results = []
    load, cpu0 = os.getloadavg()[0], cpu_s()
    best, median = timed(lambda: results.append(spec.run()), args.repeats)
    local_cpu_s = (cpu_s() - cpu0) / args.repeats
    local = results[-1]
    out = {"machine": {"note": MACHINE_NOTE, "cpus": os.cpu_count(), "python": platform.python_version(),
                       "numba": numba.__version__, "platform": platform.platform()},
           "problem": {"open_deals": args.deals, "trials": args.trials, "window_days": spec.end_off + 1,
                       "stages": spec.stage.n_stages, "deal_trials": deal_trials,
                       "steps_per_deal_trial": local.deal_steps / local.deal_trials},
           "local": {"threads": numba.get_num_threads(), "best_s": best, "median_s": median,
                     "deal_trials_per_s": deal_trials / best, "cpu_s_per_run": local_cpu_s,
                     "load_average_1min": load, "peak_rss_mib": memory_kib()["VmHWM"] / 1024},
           "dask": []}
    for k in (int(k) for k in args.workers.split(",")):
        row = bench_workers(k, spec, warm, local, args.repeats)
        out["dask"].append(row)
        print(json.dumps(row), flush=True)
    one = next((r for r in out["dask"] if r["workers"] == 1), None)
    for r in out["dask"]:
        r["efficiency"] = r["deal_trials_per_s"] / (r["workers"] * one["deal_trials_per_s"]) if one else None
        r["work_efficiency"] = one["worker_cpu_s_per_run"] / r["worker_cpu_s_per_run"] if one else None
    with cluster.DaskEngine.start(workers=1) as engine:
        out["task_overhead_s"] = {"deals_1000": task_overhead_s(engine, spec_of(1_000, 1), 100),
                                  f"deals_{args.deals}": task_overhead_s(engine, spec, 10)}
    t = time.perf_counter()
    merge_results([local, local])
    out["merge_s"] = time.perf_counter() - t
    out["projection"] = projection(out) if one else None
    report(out)
    if not args.no_write:
        path = write_atomic(RESULTS, json.dumps(out, indent=1) + "\n")
        print(f"wrote {path}")


def markdown(out: dict) -> str:
    """docs/scale.md's tables: the measured runs, the fixed costs, the projection."""
    loc = out["local"]
    lines = ["| engine | wall s | deal-trials/s | parallel efficiency | work efficiency | load avg | "
             "peak memory per process |", "|---|---|---|---|---|---|---|",
             f"| local, {loc['threads']} numba threads | {loc['best_s']:.1f} | {loc['deal_trials_per_s']:.3g} | | | "
             f"{loc.get('load_average_1min', float('nan')):.1f} | {loc['peak_rss_mib']:.0f} MiB (whole process) |"]
    for r in out["dask"]:
        lines.append(f"| dask, {r['workers']} worker process{'es' if r['workers'] > 1 else ''} ({r['blocks']} blocks) | "
                     f"{r['best_s']:.1f} | {r['deal_trials_per_s']:.3g} | {r['efficiency']:.0%} | "
                     f"{r['work_efficiency']:.0%} | {r['load_average_1min']:.1f} | "
                     f"{max(r['worker_peak_rss_mib']):.0f} MiB (after start {max(r['worker_rss_after_start_mib']):.0f}) |")
    n = out["problem"]["open_deals"]
    cost, large = out["task_overhead_s"], out["task_overhead_s"][f"deals_{n}"]
    lines += ["", f"Fixed costs: a task of one trial {cost['deals_1000'] * 1000:.0f} ms with 1,000 deals and "
              f"{large * 1000:.0f} ms with {n:,}; a merge of two results {out['merge_s'] * 1000:.0f} ms; starting "
              "a local cluster " + ", ".join(f"{r['start_s']:.1f} s ({r['workers']} worker{'s' * (r['workers'] > 1)})"
                                              for r in out["dask"])
              + ", and its first run (each worker loads the kernel) "
              + ", ".join(f"{r['warm_up_s']:.1f} s" for r in out["dask"]) + ".",
              "", "| workers (a free core each) | blocks | projected wall s | parallel efficiency |", "|---|---|---|---|"]
    for r in out["projection"]["rows"]:
        lines.append(f"| {r['workers']} | {r['blocks']} | {r['projected_s']:.1f} | {r['efficiency']:.0%} |")
    return "\n".join(lines)


def report(out: dict) -> None:
    p, loc = out["problem"], out["local"]
    print(f"{p['open_deals']:,} open deals x {p['trials']:,} trials ({p['deal_trials']:.3g} deal-trials, "
          f"{p['steps_per_deal_trial']:.2f} steps each) on {out['machine']['note']}")
    print(f"local, {loc['threads']} numba threads: {loc['best_s']:.1f} s, {loc['deal_trials_per_s']:.3g} deal-trials/s, "
          f"peak {loc['peak_rss_mib']:.0f} MiB")
    for r in out["dask"]:
        eff = f"{r['efficiency']:.0%}, work {r['work_efficiency']:.0%}" if r["efficiency"] is not None else "-"
        print(f"dask, {r['workers']} workers: {r['best_s']:.1f} s, {r['deal_trials_per_s']:.3g} deal-trials/s, "
              f"efficiency {eff}, {r['blocks']} blocks, identical {r['identical_to_local']}, start {r['start_s']:.1f} s, "
              f"warm-up {r['warm_up_s']:.1f} s, worker peak {max(r['worker_peak_rss_mib']):.0f} MiB "
              f"(after start {max(r['worker_rss_after_start_mib']):.0f}), load {r['load_average_1min']:.1f}")
    for name, s in out["task_overhead_s"].items():
        print(f"one task of one trial, {name.replace('_', ' ')}: {s * 1000:.1f} ms")
    print(f"merge of two results: {out['merge_s'] * 1000:.0f} ms")
    for r in (out["projection"] or {}).get("rows", []):
        print(f"projected, {r['workers']} workers with a free core each: {r['projected_s']:.1f} s "
              f"({r['blocks']} blocks, efficiency {r['efficiency']:.0%})")


if __name__ == "__main__":
    main()
