"""Rates of `forecaster funnel --period`'s verdict on generated pairs of periods (docs/scenarios.md).

    python benchmarks/bench_periods.py            # 1,000 pairs with no change, 200 with each change

Each pair: one stage, 300 spells a period, forward exits slow (daily hazard 0.012) and losses fast (0.15),
the later period followed for only 3 .. 182 days (the generator of tests/test_periods.py). Reports the share
called "different" (the false-positive rate when nothing changed, the power when the forward share moves
from 45% to 50% or 65%), the share of censored spells in the later period, and how far the naive share
(exits seen only) moves. Writes benchmarks/results/periods.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from forecaster.files import write_atomic  # noqa: E402
from tests.test_periods import verdicts  # noqa: E402  (one generator, shared with the tests)

RESULTS = REPO / "benchmarks" / "results" / "periods.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--null-pairs", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=200)
    args = ap.parse_args()
    rows = []
    for after, reps, seed in ((0.45, args.null_pairs, 11), (0.50, args.pairs, 13), (0.65, args.pairs, 12)):
        called, censored, naive = verdicts(0.45, after, reps, seed)
        rows.append({"forward_before": 0.45, "forward_after": after, "pairs": reps, "called_different": float(called.mean()),
                     "censored_later": censored, "naive_share_change": naive})
        print(f"forward 45% -> {after:.0%}: {called.mean():.1%} of {reps} pairs called different "
              f"(later period {censored:.0%} censored; naive share moves {100 * naive:+.1f} points)")
    write_atomic(RESULTS, json.dumps({"rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
