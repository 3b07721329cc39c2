"""Commands about the data and the model: validate, generate, fit, funnel, demo."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from forecaster.cli.common import (
    DATE,
    as_of_option,
    config_argument,
    deliver,
    format_option,
    handles_errors,
    load_and_fit,
    sample_config,
)
from forecaster.cli.group import main

@main.command()
@config_argument
@as_of_option
@handles_errors
def validate(config: Path, as_of: dt.date | None) -> None:
    """Check a config and its CRM files; print a summary of the data.

    Runs every check of the data contract (docs/data.md) and exits 0 when the data can be used,
    2 with one line per problem when it cannot.

    \b
    Example:  forecaster validate configs/example.yaml --as-of 2025-04-01
    """
    import forecaster
    from forecaster.crm import pipeline_view
    from forecaster.report.terminal import print_validation

    cfg = forecaster.load_config(config)
    snap = forecaster.load(cfg, as_of)
    print_validation(cfg.path, snap.export, pipeline_view(snap, cfg.segment_by), snap.warnings)


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed.")
@click.option("--start", type=DATE, default="2023-01-01", show_default=True, help="First creation date.")
@click.option("--end", type=DATE, default="2025-12-31", show_default=True, help="Last date observed (data end).")
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="Volume multiplier (25 gives a history of over 1M stage rows).")
@click.option("--effects", "preset", type=click.Choice(["none", "realistic"]), default="none", show_default=True,
              help="What real pipelines have and the plain process does not: 'realistic' switches every effect "
                   "below on (each can be set on its own too).")
@click.option("--quarter-end-push", type=float, default=None, help="Share of wins delayed to the quarter's last days.")
@click.option("--push-days", type=int, default=None, help="Last days of the quarter the pushed wins land in (10).")
@click.option("--quarter-shock", type=float, default=None, help="SD of a per-quarter log factor on the odds of losing.")
@click.option("--win-drift", type=float, default=None, help="Change of the log odds of losing per year.")
@click.option("--crm-start", type=DATE, default=None, help="CRM adopted on this date: no close recorded before it.")
@click.option("--optimistic-close", type=float, default=None,
              help="Reps' first expected close = created + this share of the median cycle, pushed when it passes.")
@click.option("--stale-close-dates", type=float, default=None,
              help="Share of lost deals whose expected close date is never updated.")
@click.option("--crm-probability/--no-crm-probability", default=None,
              help="Write the stage's CRM probability and forecast category per deal and history row.")
@handles_errors
def generate(out_dir: Path, seed: int, start: dt.date, end: dt.date, scale: float, preset: str, **effects: Any) -> None:
    """Write a synthetic CRM export with known truth (for demos, tests and benchmarks).

    Writes deals.parquet, stage_history.parquet, forecaster.yaml (a config for them) and
    truth.json (the generating parameters, the effects switched on) into OUT_DIR.

    \b
    Example:  forecaster generate /tmp/crm --seed 1 --scale 2
              forecaster generate /tmp/real --effects realistic --win-drift 0.2
    """
    import dataclasses

    from forecaster.synth import Effects, generate as gen, realistic

    base = realistic(start, end) if preset == "realistic" else Effects()
    chosen = dataclasses.replace(base, **{k: v for k, v in effects.items() if v is not None})
    summary = gen(out_dir, seed=seed, start=start, end=end, scale=scale, effects=chosen)
    click.echo(
        f"wrote {out_dir}: {summary['n_deals']:,} deals ({summary['n_open']:,} open, "
        f"{summary['n_won']:,} won, {summary['n_lost']:,} lost), "
        f"{summary['n_history_rows']:,} stage rows; config {Path(out_dir) / 'forecaster.yaml'}"
    )


@main.command()
@config_argument
@as_of_option
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the model (model.json + Parquet tables).")
@handles_errors
def fit(config: Path, as_of: dt.date | None, out_dir: Path) -> None:
    """Fit the pipeline model as of a date and write it to a directory.

    The model holds, per stage and segment, the censoring-aware time-in-stage and destination tables,
    the arrival model of new deals and their amounts. `forecast --model DIR` reuses it.

    \b
    Example:  forecaster fit configs/example.yaml --as-of 2025-04-01 -o model/
    """
    from forecaster.report.terminal import print_fit

    cfg, snap, model = load_and_fit(config, as_of)
    model.save(out_dir)
    print_fit(model, out_dir)


@main.command()
@config_argument
@as_of_option
@click.option("--segment", multiple=True, metavar="COL=VALUE",
              help="Only this segment (repeat for several columns), e.g. --segment product=Pro.")
@click.option("--period", "periods", multiple=True, metavar="START:END",
              help="Compare the spells that entered each stage in these periods (repeat; at least two, or "
                   "one with --split-by), e.g. --period 2024-01-01:2024-06-30.")
@click.option("--split-by", default=None, metavar="COLUMN",
              help="Compare the groups of a deal column (an A/B test), e.g. --split-by playbook.")
@format_option
@click.option("-o", "--output", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the JSON object to this file.")
@handles_errors
def funnel(config: Path, as_of: dt.date | None, segment: tuple[str, ...], periods: tuple[str, ...],
           split_by: str | None, fmt: str, out_file: Path | None) -> None:
    """Funnel metrics per stage: conversion, win rate, time in stage, stuck deals, velocity.

    All figures are censoring-aware (deals still open count as at risk, not as exits). With --period
    or --split-by: did a process change help? Per stage each period's (group's) shares of exits
    forward, back and lost and its median days in stage, with 95% intervals, the difference from the
    first period, and a verdict (docs/scenarios.md).

    \b
    Example:  forecaster funnel configs/example.yaml --segment product=Pro --format json
              forecaster funnel configs/example.yaml --period 2024-07-01:2024-12-31 --period 2025-01-01:2025-05-31
    """
    import forecaster
    from forecaster.files import dumps, write_atomic
    from forecaster.report.terminal import print_funnel, print_funnel_change

    if periods or split_by is not None:
        cfg = forecaster.load_config(config)
        snap = forecaster.load(cfg, as_of)
        result = forecaster.funnel_change(snap, periods=periods, split_by=split_by, segment=segment,
                                          seed=cfg.forecast.seed)
        printer = print_funnel_change
    else:
        _, snap, model = load_and_fit(config, as_of)
        result = forecaster.funnel(model, snap, segment)
        printer = print_funnel
    if out_file is not None:
        write_atomic(out_file, dumps(result))
    deliver(result, fmt, printer)


@main.command()
@handles_errors
def demo() -> None:
    """Show what forecaster does on the bundled sample CRM (no arguments, no files needed).

    \b
    Example:  forecaster demo
    """
    import forecaster
    from forecaster.crm import pipeline_view
    from forecaster.report.terminal import print_validation

    cfg = forecaster.load_config(sample_config())
    snap = forecaster.load(cfg)
    click.echo("forecaster demo: a synthetic B2B CRM bundled with the package\n")
    print_validation(cfg.path, snap.export, pipeline_view(snap, cfg.segment_by), snap.warnings)
    click.echo("")
    from forecaster.cli.run_commands import run_and_report

    run_and_report(cfg, None, None, "table", False)
    click.echo("\nNext: `forecaster report CONFIG -o report.html` for a report with charts to share;\n"
               "      `forecaster funnel CONFIG` for conversion and time in stage;\n"
               "      `forecaster forecast CONFIG -o OUT` for files; your own data: docs/data.md")
