"""click commands: each parses its arguments, calls one library function and renders the result.

Library errors (ForecasterError) become ``Error: ...`` lines on stderr (at most 20, then a count)
and exit code 2, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import click

from forecaster._version import __version__
from forecaster.errors import ConfigError, ForecasterError

MAX_LINES = 20


def fail(err: ForecasterError) -> None:
    lines = err.problems
    for line in lines[:MAX_LINES]:
        click.echo(f"Error: {line}", err=True)
    if len(lines) > MAX_LINES:
        click.echo(f"Error: ... and {len(lines) - MAX_LINES} more problems", err=True)
    sys.exit(err.exit_code)


def handles_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except ForecasterError as e:
            fail(e)

    return wrapper


class DateParam(click.ParamType):
    name = "DATE"

    def convert(self, value: Any, param: Any, ctx: Any) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"'{value}' is not a date YYYY-MM-DD", param, ctx)


DATE = DateParam()
config_argument = click.argument("config", type=click.Path(dir_okay=False, path_type=Path))


def as_of_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--as-of", type=DATE, default=None,
        help="Forecast date: the first day of the future; nothing dated on or after it is used. "
             "Default: the config's forecast.as_of, else the day after the data's last date.",
    )(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="forecaster")
def main() -> None:
    """forecaster: calibrated Monte Carlo forecasts of revenue and won deals from CRM history.

    \b
    Start with:  forecaster demo
    Your data:   forecaster validate my.yaml
    """


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
@handles_errors
def generate(out_dir: Path, seed: int, start: dt.date, end: dt.date, scale: float) -> None:
    """Write a synthetic CRM export with known truth (for demos, tests and benchmarks).

    Writes deals.parquet, stage_history.parquet, forecaster.yaml (a config for them) and
    truth.json (the generating parameters) into OUT_DIR.

    \b
    Example:  forecaster generate /tmp/crm --seed 1 --scale 2
    """
    from forecaster.synth import generate as gen

    summary = gen(out_dir, seed=seed, start=start, end=end, scale=scale)
    click.echo(
        f"wrote {out_dir}: {summary['n_deals']:,} deals ({summary['n_open']:,} open, "
        f"{summary['n_won']:,} won, {summary['n_lost']:,} lost), "
        f"{summary['n_history_rows']:,} stage rows; config {Path(out_dir) / 'forecaster.yaml'}"
    )


def format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="Terminal table, or exactly one JSON object on stdout.")(f)


def deliver(result: dict[str, Any], fmt: str, printer: Callable[[dict[str, Any]], None],
            out_dir: Path | None = None, json_name: str = "", table: Any = None, table_name: str = "") -> None:
    """Write the result (JSON, and a Parquet table when given) into out_dir atomically, then print it:
    exactly one JSON object with --format json, else the table."""
    from forecaster.files import dumps
    from forecaster.report.outputs import write_result

    if out_dir is not None:
        write_result(Path(out_dir), json_name, result, table, table_name)
    if fmt == "json":
        click.echo(dumps(result))
    else:
        printer(result)


def load_and_fit(config: Path, as_of: dt.date | None):
    """Config -> snapshot as of -> fitted model."""
    import forecaster

    cfg = forecaster.load_config(config)
    snap = forecaster.load(cfg, as_of)
    return cfg, snap, forecaster.fit(snap, cfg)


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


class _Progress:
    """A rich progress bar on stderr, shown only on a terminal and only once a run passes a second."""

    def __init__(self, quiet: bool):
        import time

        self.enabled = not quiet and sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.bar = None
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        import time

        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.t0 < 1.0 or done >= total:
                return
            from rich.progress import Progress

            from forecaster.report.terminal import console

            self.bar = Progress(console=console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("simulating", total=total)
        self.bar.update(self.task, completed=done)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def say_if_compiling(quiet: bool) -> None:
    """On a terminal, say so before a run that must first compile the kernels (no frozen progress bar)."""
    from forecaster.sim import kernels_compiled
    from forecaster.sim.cache import COLD_COMPILE_S

    if not quiet and sys.stderr.isatty() and not kernels_compiled():
        click.echo(f"compiling the simulation kernels (first run only, ~{COLD_COMPILE_S} s)", err=True)


def run_and_report(cfg: Any, out_dir: Path | None, model_dir: Path | None, fmt: str, quiet: bool) -> None:
    import forecaster
    from forecaster.analysis.summary import deals_table, trials_table
    from forecaster.config import dump_config
    from forecaster.files import dumps
    from forecaster.report.outputs import write_forecast
    from forecaster.report.terminal import print_forecast

    say_if_compiling(quiet or fmt == "json")
    bar = _Progress(quiet)
    try:
        result = forecaster.forecast(cfg, model_dir=model_dir, progress=bar)
    finally:
        bar.close()
    if out_dir is not None:
        write_forecast(out_dir, result.summary, trials_table(result.sim, result.summary), deals_table(result),
                       dump_config(result.config))
    if fmt == "json":
        click.echo(dumps(result.summary))
    elif not quiet:
        print_forecast(result.summary)
        if out_dir is not None:
            click.echo(f"wrote {out_dir}/summary.json, trials.parquet, deals.parquet, config.resolved.yaml")


@main.command()
@config_argument
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write summary.json, trials.parquet, deals.parquet and config.resolved.yaml here.")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Monte Carlo trials (default 10,000).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (same seed, same output).")
@as_of_option
@click.option("--start", type=DATE, default=None, help="First day of the forecast window (default: as-of).")
@click.option("--end", type=DATE, default=None, help="Last day of the window, inclusive (default: start + 89 days).")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Reuse a model written by `forecaster fit` instead of fitting again.")
@format_option
@click.option("--quiet", is_flag=True, help="No table and no progress bar (JSON with --format json still prints).")
@handles_errors
def forecast(config: Path, out_dir: Path | None, trials: int | None, seed: int | None, as_of: dt.date | None,
             start: dt.date | None, end: dt.date | None, model_dir: Path | None, fmt: str, quiet: bool) -> None:
    """Forecast revenue and won deals in a window, as distributions.

    Simulates every open deal from its current stage and age, and new deals arriving in the window,
    through the fitted stage model. Flags override the config.

    \b
    Example:  forecaster forecast configs/example.yaml --trials 20000 -o out/
    """
    from forecaster.config import check_window, load_config
    from forecaster.errors import Problems

    cfg = load_config(config).with_forecast(trials=trials, seed=seed, as_of=as_of, start=start, end=end)
    problems = Problems(ConfigError)
    check_window(cfg.forecast, problems)
    problems.raise_if_any()
    run_and_report(cfg, out_dir, model_dir, fmt, quiet)


@main.command()
@config_argument
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write compare.json and compare_trials.parquet (per-trial results of every scenario) here.")
@click.option("--trials", type=click.IntRange(min=2), default=None, help="Monte Carlo trials (default: the config's).")
@format_option
@handles_errors
def compare(config: Path, out_dir: Path | None, trials: int | None, fmt: str) -> None:
    """Compare the scenarios of the config with the baseline, on common random numbers.

    Every scenario runs the same trials with the same seed, so each deal sees the same luck in every
    scenario: the paired per-trial differences make a few-percent effect visible with a few thousand
    trials. Reports each scenario's distribution, its mean difference from the baseline with a 95%
    interval, and the probability it beats the baseline.

    \b
    Example:  forecaster compare configs/scenarios.yaml --trials 4000 -o out/
    """
    import forecaster
    from forecaster.report.terminal import print_compare

    cfg = forecaster.load_config(config).with_forecast(trials=trials)
    say_if_compiling(fmt == "json")
    comparison = forecaster.compare(cfg)
    deliver(comparison.result, fmt, print_compare, out_dir, "compare.json", comparison.trials,
            "compare_trials.parquet")


@main.command()
@config_argument
@click.option("--target", type=float, required=True, help="Revenue to reach in the forecast window.")
@click.option("--confidence", type=float, default=0.8, show_default=True,
              help="Required probability of reaching the target.")
@click.option("--lever", type=click.Choice(["new_deals", "conversion", "duration", "amount"]), default="new_deals",
              show_default=True, help="The lever to solve for.")
@click.option("--stage", default=None, help="For conversion or duration: one stage only (default: every stage).")
@click.option("--trials", type=click.IntRange(min=100), default=None,
              help="Trials per evaluation (default: the config's, at most 4,000).")
@format_option
@handles_errors
def plan(config: Path, target: float, confidence: float, lever: str, stage: str | None, trials: int | None,
         fmt: str) -> None:
    """How much of one lever the target needs, and the pipeline it takes.

    Solves for the lever value at which P(revenue >= TARGET) reaches the confidence (bisection on
    common random numbers), and prints the reverse funnel: how many deals must enter each stage to
    produce the wins the target needs.

    \b
    Example:  forecaster plan configs/example.yaml --target 6000000 --lever conversion --stage proposal
    """
    import forecaster
    from forecaster.report.terminal import print_plan

    cfg = forecaster.load_config(config)
    say_if_compiling(fmt == "json")
    result = forecaster.plan(cfg, target, confidence=confidence, lever=lever, stage=stage, trials=trials)
    deliver(result, fmt, print_plan)


@main.command()
@config_argument
@click.option("--from", "start", type=DATE, required=True, help="First cutoff (as-of date of the first forecast).")
@click.option("--to", "end", type=DATE, required=True, help="Last cutoff.")
@click.option("--every", type=click.Choice(["week", "month", "quarter"]), default="month", show_default=True,
              help="Step between cutoffs.")
@click.option("--window", default="quarter", show_default=True,
              help="Forecast window from each cutoff: a number of days like 90d, or month, or quarter.")
@click.option("--trials", type=click.IntRange(min=10), default=None, help="Trials per forecast (default: the config's).")
@click.option("--parameter-uncertainty/--no-parameter-uncertainty", default=None,
              help="Override forecast.parameter_uncertainty (bootstrap-refitted models per block of trials).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write backtest.parquet (one row per cutoff, method and target) and backtest.json here.")
@format_option
@handles_errors
def backtest(config: Path, start: dt.date, end: dt.date, every: str, window: str, trials: int | None,
             parameter_uncertainty: bool | None, out_dir: Path | None, fmt: str) -> None:
    """Score past forecasts against what really happened (rolling origin, no leakage).

    For each cutoff the model and pipeline are rebuilt as of that date from the same export, the window
    after it is forecast, and the actual won revenue and deals are read from the export. Scores: PIT,
    CRPS, pinball losses, interval coverage, bias and WAPE, for forecaster and for the CRM weighted
    pipeline and the run-rate on the same cutoffs, with forecaster's CRPS skill against each.

    \b
    Example:  forecaster backtest configs/maven.yaml --from 2017-05-01 --to 2017-09-01 --window month
    """
    import forecaster
    from forecaster.report.terminal import print_backtest

    cfg = forecaster.load_config(config).with_forecast(trials=trials, parameter_uncertainty=parameter_uncertainty)
    say_if_compiling(fmt == "json")
    result = forecaster.backtest(cfg, start, end, every=every, window=window)
    deliver(result.summary, fmt, print_backtest, out_dir, "backtest.json", result.table(), "backtest.parquet")


def sample_config() -> Path:
    """The bundled sample's config (package data)."""
    path = Path(str(resources.files("forecaster") / "sample" / "forecaster.yaml"))
    if not path.is_file():
        raise ConfigError(f"{path}: the bundled sample is missing from this installation")
    return path


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
    run_and_report(cfg, None, None, "table", False)
    click.echo("\nNext: `forecaster funnel CONFIG` for conversion and time in stage;\n"
               "      `forecaster forecast CONFIG -o OUT` for files; your own data: docs/data.md")


if __name__ == "__main__":  # pragma: no cover
    main()
