"""Speed of loading and fitting a large stage history (issue: fit a 1M-row history in seconds).

Generates a history with `forecaster generate --scale` (default 25: about 1.1M stage rows), then times,
best of N runs: loading + validation + as-of cut, and the fit (stage tables for every segment x stage,
arrivals, amounts). A reference implementation in the same process - a plain Python loop over the rows
that builds spells and counts at-risk/exits per day in dicts, the way one would write it without numpy -
runs on the same spells against the vectorised core step (spells + per-stage counts) for a ratio.

    python benchmarks/bench_fit.py [--scale 25] [--repeat 3] [--out benchmarks/results/fit.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from forecaster._version import __version__
from forecaster.config import load_config
from forecaster.crm import cut, default_as_of, load
from forecaster.crm.snapshot import stage_spells
from forecaster.model import fit
from forecaster.model.survival import risk_counts
from forecaster.synth import generate


def reference_counts(h_deal, h_stage, h_entered, status, closed, as_of, n_stages):
    """Pure-Python twin of the spells + risk_counts() for every stage (pooled): dict of per-day counts."""
    at_risk_end = [defaultdict(int) for _ in range(n_stages)]
    exits = [defaultdict(int) for _ in range(n_stages)]
    rows = list(zip(h_deal.tolist(), h_stage.tolist(), h_entered.tolist()))
    for i, (d, s, e) in enumerate(rows):
        if i + 1 < len(rows) and rows[i + 1][0] == d:
            dur, dest = rows[i + 1][2] - e, rows[i + 1][1]
        elif status[d] != 0:
            dur, dest = closed[d] - e, n_stages + (status[d] - 1)
        else:
            at_risk_end[s][as_of - e - 1] += 1
            continue
        at_risk_end[s][dur] += 1
        exits[s][(dur, dest)] += 1
    out = []
    for s in range(n_stages):
        last = max(at_risk_end[s]) if at_risk_end[s] else 0
        n, running = {}, 0
        for day in range(last, -1, -1):
            running += at_risk_end[s].get(day, 0)
            n[day] = running
        out.append((n, exits[s]))
    return out


def numpy_counts(snap):
    """The same core step as the reference, vectorised as in forecaster: spells + pooled counts per stage."""
    sp = stage_spells(snap.h_deal, snap.h_stage, snap.h_entered, snap.status, snap.closed, len(snap.stages),
                      snap.as_of)
    out = []
    for s in range(len(snap.stages)):
        m = sp.stage == s
        length = int(sp.dur[m & sp.exited].max()) + 1
        out.append(risk_counts(sp.dur[m], sp.dest[m], sp.exited[m], len(snap.stages) + 2, length))
    return out


def best(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), float(np.median(times)), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=25.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fit.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        info = generate(tmp, seed=1, scale=args.scale)
        gen_s = time.perf_counter() - t
        cfg = load_config(Path(tmp) / "forecaster.yaml")
        load_best, load_med, full = best(lambda: load(cfg), args.repeat)
        as_of = default_as_of(full)
        cut_best, cut_med, snap = best(lambda: cut(full, as_of), args.repeat)
        fit_best, fit_med, model = best(lambda: fit(snap, cfg), args.repeat)
        sp_best, _, _ = best(lambda: numpy_counts(snap), args.repeat)
        ref_best, _, _ = best(lambda: reference_counts(snap.h_deal, snap.h_stage, snap.h_entered, snap.status.tolist(),
                                                       snap.closed.tolist(), snap.as_of, len(snap.stages)), 1)
    rows = int(info["n_history_rows"])
    figures = {
        "version": __version__, "python": platform.python_version(), "machine": platform.machine(),
        "scale": args.scale, "deals": int(info["n_deals"]), "history_rows": rows, "spells": int(len(snap.h_deal)),
        "cells": int(model.stage.n_cells), "generate_s": gen_s,
        "load_validate_s": {"best": load_best, "median": load_med},
        "as_of_cut_s": {"best": cut_best, "median": cut_med},
        "fit_s": {"best": fit_best, "median": fit_med},
        "load_cut_fit_s": load_best + cut_best + fit_best,
        "spells_and_counts_numpy_s": sp_best,
        "reference_python_spells_and_counts_s": ref_best,
        "ratio_reference_over_numpy_core": ref_best / sp_best,
    }
    table = Table(title=f"fit on {rows:,} stage rows ({figures['deals']:,} deals, {figures['cells']} cells)")
    table.add_column("step")
    table.add_column("best s", justify="right")
    table.add_column("median s", justify="right")
    table.add_row("load + validate", f"{load_best:.2f}", f"{load_med:.2f}")
    table.add_row("as-of cut", f"{cut_best:.3f}", f"{cut_med:.3f}")
    table.add_row("fit (all cells, arrivals)", f"{fit_best:.2f}", f"{fit_med:.2f}")
    table.add_row("total", f"{figures['load_cut_fit_s']:.2f}", "")
    table.add_row("core step (spells + counts), numpy", f"{sp_best:.3f}", "")
    table.add_row("core step, reference Python loop", f"{ref_best:.2f}", "")
    Console(width=120).print(table)
    Console(width=120).print(f"core step: numpy {figures['ratio_reference_over_numpy_core']:.0f}x faster than the Python loop")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
