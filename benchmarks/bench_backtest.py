"""Speed of a backtest: 24 monthly cutoffs on a ~100k-deal history, 5,000 trials per forecast.

Each cutoff cuts the export (loaded once), fits the model as of that date (vectorised), and runs three
forecasts (forecaster, no new deals, no age conditioning) plus the two baselines; the kernel is compiled
once per process. Prints a table and writes benchmarks/results/backtest.json. The reference in the same
process is one forecast at one cutoff (`forecaster forecast` on the same data), so the per-cutoff cost
can be read against a single forecast.

    python benchmarks/bench_backtest.py [--scale 10] [--trials 5000] [--cutoffs 24]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from forecaster._version import __version__
from forecaster.analysis.backtest import backtest
from forecaster.analysis.forecast import run_forecast
from forecaster.calendar import add_months
from forecaster.config import load_config
from forecaster.synth import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--trials", type=int, default=5000)
    ap.add_argument("--cutoffs", type=int, default=24)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "backtest.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        info = generate(tmp, seed=5, start=dt.date(2022, 1, 1), end=dt.date(2025, 12, 31), scale=args.scale)
        cfg = load_config(Path(tmp) / "forecaster.yaml").with_forecast(trials=args.trials)
        first = dt.date(2023, 9, 1)
        last = add_months(first, args.cutoffs - 1)
        run_forecast(cfg.with_forecast(as_of=first, trials=100))  # compile (or load the cache) once
        t = time.perf_counter()
        one = run_forecast(cfg.with_forecast(as_of=first))
        single = time.perf_counter() - t
        t = time.perf_counter()
        _, summary = backtest(cfg, first, last, "month", "month")
        total = time.perf_counter() - t
    figures = {"version": __version__, "deals": int(info["n_deals"]), "history_rows": int(info["n_history_rows"]),
               "cutoffs": summary["cutoffs"], "trials": args.trials, "backtest_s": total,
               "per_cutoff_s": total / summary["cutoffs"], "single_forecast_s": single,
               "single_forecast_timing": one.summary["timing"]}
    table = Table(title=f"backtest, {figures['deals']:,} deals ({figures['history_rows']:,} stage rows)")
    for col in ("cutoffs", "trials", "total s", "per cutoff s", "one forecast s"):
        table.add_column(col, justify="right")
    table.add_row(str(figures["cutoffs"]), f"{args.trials:,}", f"{total:.1f}", f"{total / summary['cutoffs']:.2f}",
                  f"{single:.2f}")
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
