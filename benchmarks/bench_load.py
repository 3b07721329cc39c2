"""Loading CRM exports: peak memory and seconds of `forecaster.load` in a fresh process.

- a 1M-deal CSV (about 62 MB: id, two dates, amount, status and three attribute columns, deal-level);
  target: under 300 MB peak RSS and under 3 s;
- the 1M-row generated stage history (`generate --scale 25`, Parquet).

Each measurement runs `load` (read, validate, the as-of cut) in its own process, best of --repeat runs;
peak RSS is the child's VmHWM, so the interpreter, numpy and pyarrow are included (measured alone
with the imports only, as `baseline`).

    python benchmarks/bench_load.py [--deals 1000000] [--scale 25] [--repeat 3] [--out benchmarks/results/load.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from forecaster._version import __version__

CHILD = """
import sys, time
import forecaster, forecaster.crm


def peak_rss_mb():
    # VmHWM belongs to this process's address space (ru_maxrss would carry the parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
t = time.perf_counter()
if sys.argv[1] != "-":
    snap = forecaster.load(sys.argv[1])
    n = snap.n_deals
else:
    n = 0
s = time.perf_counter() - t
print(s, peak_rss_mb(), n)
"""

PRODUCTS = np.array(["Core", "Pro", "Enterprise"])
REGIONS = np.array(["NA", "EMEA", "APAC", "LATAM"])


def write_deals_csv(path: Path, n: int, seed: int = 1) -> None:
    """n deals: created over three years, two thirds closed within 200 days, amounts 1k-200k."""
    rng = np.random.default_rng(seed)
    created = np.datetime64("2022-01-01") + rng.integers(0, 1095, n).astype("timedelta64[D]")
    status = rng.choice(np.array(["open", "won", "lost"]), n, p=[0.34, 0.22, 0.44])
    closed = created + rng.integers(0, 200, n).astype("timedelta64[D]")
    closed_s = np.where(status == "open", "", closed.astype(str))
    amount = np.round(rng.lognormal(9.5, 1.0, n), 2)
    owner = np.array([f"Rep {i:03d}" for i in range(120)])[rng.integers(0, 120, n)]
    cols = [np.char.add("D", np.char.zfill(np.arange(1, n + 1).astype(str), 7)), created.astype(str),
            amount.astype(str), status, closed_s, PRODUCTS[rng.integers(0, 3, n)],
            REGIONS[rng.integers(0, 4, n)], owner]
    with open(path, "w", newline="") as fh:
        fh.write("deal_id,created_at,amount,status,closed_at,product,region,owner\n")
        step = 100_000
        for lo in range(0, n, step):
            rows = zip(*(c[lo:lo + step] for c in cols))
            fh.write("".join(",".join(r) + "\n" for r in rows))
    path.with_name("deals.yaml").write_text(f"data: {{deals: {path.name}}}\nsegment_by: [product]\n"
                                            f"forecast: {{as_of: 2025-01-01}}\n")


def measure(config: str, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", CHILD, config], check=True, capture_output=True, text=True)
        s, rss, n = out.stdout.split()
        runs.append((float(s), float(rss), int(n)))
    best = min(runs)
    return {"seconds": best[0], "peak_rss_mb": min(r[1] for r in runs), "deals": best[2],
            "runs": [{"seconds": s, "peak_rss_mb": m} for s, m, _ in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=1_000_000)
    ap.add_argument("--scale", type=float, default=25.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "load.json")
    args = ap.parse_args()
    from forecaster.synth import generate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = tmp / "deals.csv"
        write_deals_csv(csv, args.deals)
        info = generate(tmp / "crm", seed=1, scale=args.scale)
        figures = {
            "version": __version__, "python": platform.python_version(), "cpus": os.cpu_count(),
            "baseline": measure("-", args.repeat),
            "deals_csv": {"rows": args.deals, "mb": csv.stat().st_size / 1e6,
                          **measure(str(tmp / "deals.yaml"), args.repeat)},
            "history": {"history_rows": int(info["n_history_rows"]), "deals_in_export": int(info["n_deals"]),
                        **measure(str(tmp / "crm" / "forecaster.yaml"), args.repeat)},
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    for key in ("baseline", "deals_csv", "history"):
        f = figures[key]
        print(f"{key:10s} {f['seconds']:6.2f} s  peak RSS {f['peak_rss_mb']:6.0f} MB")


if __name__ == "__main__":
    main()
