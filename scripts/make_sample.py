"""Regenerate the bundled sample CRM (src/forecaster/sample/) that `forecaster demo` uses.

Run from anywhere:  python scripts/make_sample.py
The arguments are fixed so the files are reproducible byte for byte; tests/test_generate.py checks
that the committed files match what this script writes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from forecaster.synth import generate

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "src" / "forecaster" / "sample"
SAMPLE_ARGS = {"seed": 7, "start": dt.date(2024, 1, 1), "end": dt.date(2025, 6, 30), "scale": 0.5}


def main() -> None:
    summary = generate(SAMPLE_DIR, **SAMPLE_ARGS)
    size = sum(Path(p).stat().st_size for p in summary["paths"].values())
    print(
        f"wrote {SAMPLE_DIR}: {summary['n_deals']:,} deals ({summary['n_open']:,} open, "
        f"{summary['n_won']:,} won, {summary['n_lost']:,} lost), {summary['n_history_rows']:,} stage rows, "
        f"{size / 1024:.0f} KiB in all; quota {summary['quota']:,}"
    )


if __name__ == "__main__":
    main()
