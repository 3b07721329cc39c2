"""Regenerate docs/report.png: the top of the bundled sample's report (with its scenarios), as headless
Chromium shows it at 1280 px wide.

    python scripts/report_screenshot.py [--trials 10000] [--height 2600] [--out docs/report.png]

Runs `forecaster report configs/scenarios.yaml --compare` into a temporary file, opens it with the same
DevTools driver the browser tests use (tests/browser.py) and saves the screenshot.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forecaster.cli import main  # noqa: E402
from tests.browser import Browser, find_chromium, png_size  # noqa: E402


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--height", type=int, default=2600, help="Pixels of the page's top to keep.")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "report.png")
    args = ap.parse_args()
    exe = find_chromium()
    if exe is None:
        sys.exit("Chromium not found: install Debian's chromium package (or set FORECASTER_CHROMIUM)")
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "report.html"
        r = CliRunner().invoke(main, ["report", str(REPO / "configs" / "scenarios.yaml"), "-o", str(html),
                                      "--compare", "--trials", str(args.trials)])
        if r.exit_code != 0:
            sys.exit(r.output)
        with Browser(exe) as browser:
            page = browser.page()
            page.open(html, width=1280, height=args.height)
            if page.errors() or page.requests() != [page.url]:
                sys.exit(f"the report is not clean in the browser: {page.errors()} {page.requests()}")
            png = page.screenshot()
            page.close()
    args.out.write_bytes(png)
    width, height = png_size(png)
    print(f"wrote {args.out}: {width} x {height} px, {len(png) / 1024:,.0f} KiB (report {html.name})")


if __name__ == "__main__":
    main_()
