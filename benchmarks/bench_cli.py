"""End-to-end wall time of `forecaster forecast` as a user runs it (separate processes).

- a 1M-row generated history (`generate --scale 25`): load, fit, simulate, write outputs; the first
  run with an empty numba cache (JIT compile included), the second with the cache the first wrote;
- the bundled sample: a cached second run (target: under 3 s).

Each run is a fresh `python -m forecaster` process, timed from outside; the summary.json each writes
gives the in-process split (load, fit, simulate). Reference: the same forecast with NUMBA_DISABLE_JIT
is not feasible at this size, so the reference here is the cold (compiling) run itself.

    python benchmarks/bench_cli.py [--scale 25] [--trials 10000] [--out benchmarks/results/cli.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from forecaster._version import __version__
from forecaster.synth import generate

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "forecaster" / "sample" / "forecaster.yaml"


def run(config: Path, out: Path, trials: int, cache_dir: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "forecaster", "forecast", str(config), "--trials", str(trials),
                    "-o", str(out), "--quiet"], env=env, check=True)
    wall = time.perf_counter() - t
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, **summary["timing"], "open_deals": summary["open_deals"], **summary["work"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=25.0)
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cli.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        info = generate(tmp / "crm", seed=1, scale=args.scale)
        cache = tmp / "numba-cache"
        cold = run(tmp / "crm" / "forecaster.yaml", tmp / "o1", args.trials, cache)
        warm = run(tmp / "crm" / "forecaster.yaml", tmp / "o2", args.trials, cache)
        run(SAMPLE, tmp / "s1", args.trials, cache)
        sample = run(SAMPLE, tmp / "s2", args.trials, cache)
    figures = {"version": __version__, "python": platform.python_version(), "cpus": os.cpu_count(),
               "history_rows": int(info["n_history_rows"]), "deals": int(info["n_deals"]), "trials": args.trials,
               "large_first_run": cold, "large_cached_run": warm, "sample_cached_run": sample}
    table = Table(title=f"forecaster forecast, {args.trials:,} trials")
    for col in ("run", "wall s", "load s", "fit s", "simulate s", "open deals", "deal steps"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, r in ((f"{info['n_history_rows']:,}-row history, first (JIT)", cold),
                    (f"{info['n_history_rows']:,}-row history, cached", warm), ("bundled sample, cached", sample)):
        table.add_row(name, f"{r['wall_s']:.2f}", f"{r['load_s']:.2f}", f"{r['fit_s']:.2f}", f"{r['simulate_s']:.2f}",
                      f"{r['open_deals']:,}", f"{r['deal_steps']:,}")
    Console(width=130).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
