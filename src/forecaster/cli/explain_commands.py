"""Commands that explain a forecast: diff (what moved between two forecast dates)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from forecaster.cli.common import (
    DATE,
    check_csv,
    command_line,
    config_argument,
    deliver,
    format_option,
    handles_errors,
    output_options,
    say_if_compiling,
    write_report,
)
from forecaster.cli.group import main


@main.command()
@config_argument
@click.option("--from", "d_from", type=DATE, required=True, help="The earlier forecast date (e.g. last week's as-of).")
@click.option("--to", "d_to", type=DATE, required=True, help="The later forecast date (on or after --from).")
@click.option("--start", type=DATE, default=None,
              help="First day of the window (default: the first day of the fiscal quarter that contains --to).")
@click.option("--end", type=DATE, default=None,
              help="Last day of the window, inclusive (default: the end of the start's fiscal quarter).")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Monte Carlo trials (default: the config's).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (default: the config's).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write diff.json and diff.parquet (one row per deal and component) here.")
@format_option
@output_options
@handles_errors
def diff(config: Path, d_from: dt.date, d_to: dt.date, start: dt.date | None, end: dt.date | None,
         trials: int | None, seed: int | None, out_dir: Path | None, fmt: str, report_file: Path | None,
         csv: bool) -> None:
    """What moved between the forecast as of --from and as of --to, for one window.

    Both forecasts see only what was known before their date. The change of the expected revenue and won
    deals is split into parts that add up exactly: won, lost, created (against the new-deal allowance
    of the first forecast), progressed, moved back, aged, amount, pushed and pulled in (the CRM's close
    date), and model (the refit), each with its deals (docs/explain.md).

    \b
    Example:  forecaster diff configs/example.yaml --from 2025-06-02 --to 2025-06-09 -o out/
    """
    import forecaster
    from forecaster.report.explain import print_diff

    cfg = forecaster.load_config(config).with_forecast(trials=trials, seed=seed)
    check_csv(csv, out_dir)
    say_if_compiling(fmt == "json", cfg)
    result = forecaster.diff(cfg, d_from, d_to, start=start, end=end)
    w = result.result["window"]
    write_report(report_file, diff=result.result, config=cfg,
                 command=command_line("diff", config, "--from", d_from, "--to", d_to, "--start", w["start"],
                                      "--end", w["end"], "--trials", result.result["trials"],
                                      "--seed", result.result["seed"]))
    deliver(result.result, fmt, print_diff, out_dir, "diff.json", result.rows, "diff.parquet", csv)
