"""Regenerate docs/pipedrive_cost.md: what forecasting from a Pipedrive-style export costs, against the same
deals with their full stage history.

Pipedrive's deals export has no stage history, only each deal's stage at export time (an open deal's
current stage, a closed deal's stage when it closed). The pipedrive preset places each deal in that stage
from its creation (crm/formats/pipedrive.py). This script takes a generated CRM with known truth and
backtests, on the same cutoffs: its full history; at each cutoff, the Pipedrive export taken that day
(what the approximation costs a forecast made now); and one Pipedrive export taken at the end, backtested
as a user would (optimistic: every past forecast sees each deal's final stage).

    python scripts/pipedrive_cost.py [--trials 1000] [--seed 4] [--out docs/pipedrive_cost.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from forecaster.analysis.backtest import backtest, cutoffs, summarize_backtest
from forecaster.config import load_config
from forecaster.synth import generate
from forecaster.synth.params import STAGES

REPO = Path(__file__).resolve().parents[1]
START, END = dt.date(2024, 7, 1), dt.date(2025, 8, 1)


def current_stage_history(folder: Path, full: pa.Table, day: dt.date | None = None, changed: bool = False) -> None:
    """stage_history.parquet as the pipedrive preset builds it from an export taken on ``day`` (default:
    the end): one row per deal, its last open stage before that day (the stage the export shows),
    entered on its creation day."""
    deals = pq.read_table(folder / "deals.parquet")
    hist = full if day is None else full.filter(pc.less(full["entered_at"], pa.scalar(day, pa.date32())))
    open_rows = hist.filter(pc.is_in(hist["stage"], value_set=pa.array(list(STAGES))))
    last: dict[str, str] = {}
    for d, s in zip(open_rows["deal_id"].to_pylist(), open_rows["stage"].to_pylist()):
        last[d] = s  # rows are in time order per deal
    ids = deals["deal_id"].to_pylist()
    if changed:  # the export's "Last stage change": the first stage from creation, then the current one
        when = dict(zip(open_rows["deal_id"].to_pylist(), open_rows["entered_at"].to_pylist()))  # the last entry
        moves = dict(zip(*np.unique(open_rows["deal_id"].to_numpy(zero_copy_only=False), return_counts=True)))
        rows: dict[str, list] = {"deal_id": [], "stage": [], "entered_at": []}
        for d, c in zip(ids, deals["created_at"].to_pylist()):
            stage = last.get(d, STAGES[0])
            pairs = ((STAGES[0], c), (stage, when[d])) if moves.get(d, 0) > 1 else ((stage, c),)  # never moved: empty
            for st, at in pairs:
                rows["deal_id"].append(d)
                rows["stage"].append(st)
                rows["entered_at"].append(at)
        table = pa.table(rows)
    else:
        table = pa.table({"deal_id": ids, "stage": [last.get(d, STAGES[0]) for d in ids],
                          "entered_at": deals["created_at"]})
    pq.write_table(table, folder / "stage_history.parquet")


FULL = "full history"
AT_CUTOFF = "Pipedrive export taken at each cutoff"
AT_END = "one Pipedrive export taken at the end (a user's backtest)"
ONE_STAGE = "no stages at all (deal-level: one 'open' stage)"


def run(cfg, start: dt.date, end: dt.date) -> dict:
    return backtest(cfg, start, end, "month", "quarter")[1]


def scores(summary: dict, target: str) -> dict:
    block = summary if target == "revenue" else summary["won_deals"]
    m = block["methods"]["forecaster"]
    return {"crps": m["crps"], "coverage_80": m["coverage_80"], "bias": m["bias"], "wape": m["wape"],
            "skill_vs_weighted_pipeline": block["skill"].get("weighted_pipeline")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "pipedrive_cost.md")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "crm"
        info = generate(folder, seed=args.seed, start=dt.date(2023, 1, 1), end=dt.date(2025, 12, 31))
        full = pq.read_table(folder / "stage_history.parquet")
        cfg = load_config(folder / "forecaster.yaml").with_forecast(trials=args.trials, seed=1)
        results[FULL] = run(cfg, START, END)
        rows = []
        for d in cutoffs(START, END, "month"):
            current_stage_history(folder, full, d)
            rows += backtest(cfg, d, d, "month", "quarter")[0]
        results[AT_CUTOFF] = summarize_backtest(rows, "quarter")
        rows = []
        for d in cutoffs(START, END, "month"):
            current_stage_history(folder, full, d, changed=True)
            rows += backtest(cfg, d, d, "month", "quarter")[0]
        results[AT_CUTOFF + ", with its last stage change"] = summarize_backtest(rows, "quarter")
        current_stage_history(folder, full)
        results[AT_END] = run(cfg, START, END)
        one = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, stage_history=None), stages=("open",))
        results[ONE_STAGE] = run(one, START, END)
    lines = ["# What a Pipedrive export costs the forecast", "",
             "Generated by `python scripts/pipedrive_cost.py` (do not edit by hand). One generated CRM "
             f"({info['n_deals']:,} deals, 2023-2025, seed {args.seed}) backtested with its full stage history, "
             "with what the pipedrive preset sees (each deal in the stage the export shows, from its creation), "
             f"and read deal-level (no stages). Rolling backtest: monthly cutoffs {START} .. {END}, a quarter ahead, "
             f"{args.trials:,} trials; scores of the forecaster (docs/backtests.md explains them). The export "
             "taken at each cutoff is what the approximation costs a forecast made today; one export taken at "
             "the end and backtested is what a Pipedrive user's backtest shows, flattered because every past "
             "forecast sees each deal's final stage. 'With its last stage change': the export's "
             "`Deal - Last stage change` places each deal in the first stage from its creation, then in its "
             "current stage from that day (what the preset does when the column is there).", ""]
    for target, kind in (("revenue", "money"), ("won_deals", "num")):
        lines += [f"## {target.replace('_', ' ')}", "",
                  "| history | cutoffs | CRPS | P10-P90 coverage (80%) | median bias | WAPE | CRPS skill vs weighted pipeline |",
                  "|---|---|---|---|---|---|---|"]
        for name, summary in results.items():
            s = scores(summary, target)
            crps = f"{s['crps'] / 1e3:,.0f}k" if kind == "money" else f"{s['crps']:,.1f}"
            skill = "-" if s["skill_vs_weighted_pipeline"] is None else f"{100 * s['skill_vs_weighted_pipeline']:+.0f}%"
            lines.append(f"| {name} | {summary['cutoffs']} | {crps} | {100 * s['coverage_80']:.0f}% | "
                         f"{100 * s['bias']:+.0f}% | {100 * s['wape']:.0f}% | {skill} |")
        lines.append("")
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
