"""How well scenario comparisons pair: paired vs independent spread of the difference, and monotonicity.

    python benchmarks/bench_pairing.py              # 10,000 trials, bundled sample + a generated CRM
    python benchmarks/bench_pairing.py --docs       # also rewrite the table in docs/scenarios.md
    python benchmarks/bench_pairing.py --trials 2000 --no-write

For each dataset and lever (conversion x1.1 at proposal and at every stage, new deals x1.2, a campaign of
100 deals, duration x0.8) the scenario runs on the baseline's seed and on another seed, with the same
number of trials:

- ratio = sd(scenario - baseline, same seed) / sd(scenario - baseline, other seed): what pairing buys
  (1 = nothing; the target for the levers monotone per trial is at most 0.25);
- violations = trials in which the scenario's revenue or won deals are below the baseline's (target 0
  for the monotone levers; duration is not monotone, its count is shown for information);
- P(better) and the mean difference.

Also the issue's one-stage example (P(won) 0.45, conversion x1.3; 400 open deals), where the former
most-likely-first coupling gave a paired sd above the independent one. Prints a table and writes
benchmarks/results/pairing.json. Timings are not the point here; the figures are exact functions of the
seed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from forecaster.analysis.compare import run_scenario  # noqa: E402
from forecaster.analysis.forecast import Base, prepare, simulate_base  # noqa: E402
from forecaster.analysis.scenarios import Campaign, Scenario  # noqa: E402
from forecaster.config import load_config  # noqa: E402
from forecaster.files import write_atomic  # noqa: E402
from forecaster.model import OpenDeals, StageTables  # noqa: E402
from forecaster.sim import simulate  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "pairing.json"
DOCS = REPO / "docs" / "scenarios.md"
MARK_START, MARK_END = "<!-- pairing:start -->", "<!-- pairing:end -->"
SEED = 42
RATIO_TARGET = 0.25


def levers(base: Base) -> dict[str, tuple[Scenario, bool]]:
    """name -> (scenario, monotone per trial)."""
    start = base.start
    campaign = Campaign(100, "qualification", start, min(base.end, start + dt.timedelta(days=30)))
    return {
        "conversion x1.1 at proposal": (Scenario("c1", conversion={"proposal": 1.1}), True),
        "conversion x1.1 everywhere": (Scenario("c2", conversion={"all": 1.1}), True),
        "new deals x1.2": (Scenario("n", rate=1.2), True),
        "campaign of 100 deals": (Scenario("k", campaigns=(campaign,)), True),
        "duration x0.8": (Scenario("d", duration={"all": 0.8}), False),
    }


def measure(base: Base, other: Base, sc: Scenario, b_rev: np.ndarray, b_won: np.ndarray) -> dict:
    paired, _ = run_scenario(base, sc)
    indep, _ = run_scenario(other, sc)
    d = paired.revenue - b_rev
    sd_p, sd_i = float(np.std(d, ddof=1)), float(np.std(indep.revenue - b_rev, ddof=1))
    worse = (paired.revenue < b_rev) | (paired.won_deals < b_won)
    return {"paired_sd": sd_p, "independent_sd": sd_i, "ratio": sd_p / sd_i, "violations": int(worse.sum()),
            "p_better": float(np.mean(d > 0) + 0.5 * np.mean(d == 0)), "mean_delta": float(d.mean())}


def dataset_rows(name: str, config: Path, trials: int, as_of: str | None = None) -> list[dict]:
    cfg = load_config(config).with_forecast(trials=trials, seed=SEED)
    if as_of is not None:
        cfg = cfg.with_forecast(as_of=dt.date.fromisoformat(as_of))
    base = prepare(cfg)
    other = prepare(cfg.with_forecast(seed=SEED + 1))
    b = simulate_base(base)
    rows = []
    for lever, (sc, monotone) in levers(base).items():
        rows.append({"dataset": name, "lever": lever, "monotone": monotone, "trials": trials,
                     **measure(base, other, sc, b.revenue, b.won_deals)})
        print(f"  {name}: {lever} done", file=sys.stderr)
    return rows


def one_stage_example(trials: int) -> dict:
    """One stage, exits geometric (h = 0.05 a day), P(won) 0.45; 400 fresh deals; conversion x1.3."""
    from forecaster.analysis.levers import apply_conversion

    days = 400
    surv = (1 - 0.05) ** np.arange(1, days + 1)
    stage = StageTables.of(surv=surv, cell_off=[0, days], day_bin=np.zeros(days), bin_p=[[0.0, 0.45, 0.55]],
                           tail_h=[0.05], tail_bin=[0])
    n = 400
    deals = OpenDeals(np.zeros(n, np.int32), np.zeros(n, np.int32), np.full(n, 1000.0), np.zeros(n, np.int32),
                      np.arange(n, dtype=np.int64))
    kw = dict(n_trials=trials, start_off=0, end_off=89, period_start=np.array([0, 90], np.int32))
    up = apply_conversion(stage, {0: 1.3})
    b = simulate(stage, deals, seed=SEED, **kw)
    s = simulate(up, deals, seed=SEED, **kw)
    s2 = simulate(up, deals, seed=SEED + 1, **kw)
    d = s.won_deals.astype(float) - b.won_deals
    sd_p, sd_i = float(np.std(d, ddof=1)), float(np.std(s2.won_deals.astype(float) - b.won_deals, ddof=1))
    return {"dataset": "one stage (P(won) 0.45)", "lever": "conversion x1.3 (won deals)", "monotone": True,
            "trials": trials, "paired_sd": sd_p, "independent_sd": sd_i, "ratio": sd_p / sd_i,
            "violations": int((s.won_deals < b.won_deals).sum()), "p_better": float(np.mean(d > 0) + 0.5 * np.mean(d == 0)),
            "mean_delta": float(d.mean())}


def markdown(rows: list[dict]) -> str:
    out = ["| dataset | lever | paired sd / independent sd | trials below the baseline | P(better) | mean delta |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['dataset']} | {r['lever']} | {r['ratio']:.3f} | {r['violations']:,} of {r['trials']:,}"
                   f"{'' if r['monotone'] else ' (not monotone)'} | {r['p_better']:.1%} | {r['mean_delta']:,.0f} |")
    return "\n".join(out)


def update_docs(table: str) -> None:
    text = DOCS.read_text()
    if MARK_START not in text:
        raise SystemExit(f"{DOCS}: no {MARK_START} ... {MARK_END} block to fill")
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    DOCS.write_text(f"{head}{MARK_START}\n{table}\n{MARK_END}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/pairing.json")
    ap.add_argument("--docs", action="store_true", help="rewrite the table in docs/scenarios.md")
    args = ap.parse_args()
    from forecaster.synth import generate

    rows = dataset_rows("bundled sample", REPO / "configs" / "scenarios.yaml", args.trials)
    with tempfile.TemporaryDirectory(prefix="bench_pairing_") as tmp:
        generate(tmp, seed=5, start=dt.date(2023, 1, 1), end=dt.date(2024, 12, 31), scale=1.0)
        rows += dataset_rows("generated (seed 5)", Path(tmp) / "forecaster.yaml", args.trials)
    rows.append(one_stage_example(args.trials))
    table = markdown(rows)
    print(table)
    monotone = [r for r in rows if r["monotone"] and r["dataset"] != "one stage (P(won) 0.45)"]
    out = {"seed": SEED, "trials": args.trials, "rows": rows,
           "targets": {"ratio<=0.25 (monotone levers)": all(r["ratio"] <= RATIO_TARGET for r in monotone),
                       "no trial below the baseline (monotone levers)": all(r["violations"] == 0 for r in monotone)}}
    for k, v in out["targets"].items():
        print(f"target {k}: {'met' if v else 'not met'}")
    if not args.no_write:
        write_atomic(RESULTS, json.dumps(out, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    if args.docs:
        update_docs(table)
        print(f"updated {DOCS}")


if __name__ == "__main__":
    main()
