"""Commands that simulate: forecast, compare, plan, backtest, report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from forecaster.cli.common import (
    DATE,
    DateRange,
    as_of_option,
    check_csv,
    checked_config,
    command_line,
    config_argument,
    deliver,
    engine_options,
    format_option,
    forecast_command,
    handles_errors,
    output_options,
    say_if_compiling,
    with_engine_flags,
    write_report,
)
from forecaster.cli.group import main
from forecaster.errors import ConfigError

def run_and_report(cfg: Any, out_dir: Path | None, model_dir: Path | None, fmt: str, quiet: bool,
                   report_file: Path | None = None, csv: bool = False, config_path: Path | None = None,
                   explain: bool = False) -> None:
    import forecaster
    from forecaster.analysis.report_data import forecast_tables
    from forecaster.config import dump_config
    from forecaster.files import dumps
    from forecaster.report.outputs import write_forecast
    from forecaster.report.terminal import Progress, print_forecast

    say_if_compiling(quiet or fmt == "json", cfg)
    bar = Progress(quiet)
    try:
        result = forecaster.forecast(cfg, model_dir=model_dir, progress=bar, explain=explain)
    finally:
        bar.close()
    written = []
    if out_dir is not None:
        files = write_forecast(out_dir, result.summary, forecast_tables(result), dump_config(result.config), csv)
        written.append(f"{out_dir}/ ({', '.join(p.name for p in files)})")
    if write_report(report_file, forecast=result,
                    command=forecast_command("forecast", config_path or cfg.path, result.summary)):
        written.append(str(report_file))
    if fmt == "json":
        click.echo(dumps(result.summary))
    elif not quiet:
        print_forecast(result.summary)
        if explain:
            from forecaster.report.explain import print_explain

            print_explain(result.summary)
        for line in written:
            click.echo(f"wrote {line}")


@main.command()
@config_argument
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write summary.json, trials.parquet, deals.parquet and config.resolved.yaml here.")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Monte Carlo trials (default 10,000).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (same seed, same output).")
@as_of_option
@click.option("--start", type=DATE, default=None, help="First day of the forecast window (default: as-of).")
@click.option("--end", type=DATE, default=None, help="Last day of the window, inclusive (default: the end of the fiscal quarter of the start).")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Reuse a model written by `forecaster fit` instead of fitting again.")
@format_option
@click.option("--quiet", is_flag=True, help="No table and no progress bar (JSON with --format json still prints).")
@click.option("--explain", is_flag=True,
              help="Also say what makes the range wide (summary.json 'spread') and which deals to inspect ('inspect').")
@output_options
@engine_options
@handles_errors
def forecast(config: Path, out_dir: Path | None, trials: int | None, seed: int | None, as_of: dt.date | None,
             start: dt.date | None, end: dt.date | None, model_dir: Path | None, fmt: str, quiet: bool,
             explain: bool, report_file: Path | None, csv: bool, engine: str | None, scheduler: str | None,
             workers: int | None) -> None:
    """Forecast revenue and won deals in a window, as distributions.

    Simulates every open deal from its current stage and age, and new deals arriving in the window,
    through the fitted stage model. Flags override the config.

    \b
    Example:  forecaster forecast configs/example.yaml --trials 20000 -o out/ --report out/report.html
    Explain:  forecaster forecast configs/example.yaml --explain
    On Dask:  forecaster forecast configs/example.yaml --engine dask --workers 4 -o out/
    """
    cfg = checked_config(config, (engine, scheduler, workers), trials=trials, seed=seed, as_of=as_of, start=start,
                         end=end)
    check_csv(csv, out_dir)
    run_and_report(cfg, out_dir, model_dir, fmt, quiet, report_file, csv, config, explain)


@main.command()
@config_argument
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write compare.json and compare_trials.parquet (per-trial results of every scenario) here.")
@click.option("--trials", type=click.IntRange(min=2), default=None, help="Monte Carlo trials (default: the config's).")
@format_option
@output_options
@engine_options
@handles_errors
def compare(config: Path, out_dir: Path | None, trials: int | None, fmt: str, report_file: Path | None,
            csv: bool, engine: str | None, scheduler: str | None, workers: int | None) -> None:
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

    cfg = with_engine_flags(forecaster.load_config(config).with_forecast(trials=trials), engine, scheduler, workers)
    check_csv(csv, out_dir)
    say_if_compiling(fmt == "json", cfg)
    comparison = forecaster.compare(cfg)
    write_report(report_file, comparison=comparison, config=cfg,
                 command=command_line("compare", config, "--trials", comparison.result["baseline"]["trials"]))
    deliver(comparison.result, fmt, print_compare, out_dir, "compare.json", comparison.trials,
            "compare_trials.parquet", csv)


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
@engine_options
@handles_errors
def plan(config: Path, target: float, confidence: float, lever: str, stage: str | None, trials: int | None,
         fmt: str, engine: str | None, scheduler: str | None, workers: int | None) -> None:
    """How much of one lever the target needs, and the pipeline it takes.

    Solves for the lever value at which P(revenue >= TARGET) reaches the confidence (bisection on
    common random numbers), and prints the reverse funnel: how many deals must enter each stage to
    produce the wins the target needs.

    \b
    Example:  forecaster plan configs/example.yaml --target 6000000 --lever conversion --stage proposal
    """
    import forecaster
    from forecaster.report.terminal import print_plan

    cfg = with_engine_flags(forecaster.load_config(config), engine, scheduler, workers)
    say_if_compiling(fmt == "json", cfg)
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
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (default: the config's).")
@click.option("--parameter-uncertainty/--no-parameter-uncertainty", default=None,
              help="Override forecast.parameter_uncertainty (bootstrap-refitted models per block of trials).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write backtest.parquet (one row per cutoff, method and target) and backtest.json here.")
@format_option
@output_options
@engine_options
@handles_errors
def backtest(config: Path, start: dt.date, end: dt.date, every: str, window: str, trials: int | None,
             seed: int | None, parameter_uncertainty: bool | None, out_dir: Path | None, fmt: str,
             report_file: Path | None, csv: bool, engine: str | None, scheduler: str | None,
             workers: int | None) -> None:
    """Score past forecasts against what really happened (rolling origin, no leakage).

    For each cutoff the model and pipeline are rebuilt as of that date from the same export, the window
    after it is forecast, and the actual won revenue and deals are read from the export. Scores: PIT,
    CRPS, pinball losses, interval coverage, bias and WAPE, for forecaster and for the CRM weighted
    pipeline and the run-rate on the same cutoffs, with forecaster's CRPS skill against each.

    \b
    Example:  forecaster backtest configs/maven.yaml --from 2017-05-01 --to 2017-09-01 --window month
    On Dask:  add --engine dask --scheduler tcp://10.0.0.5:8786 (each cutoff runs on a worker)
    """
    import forecaster
    from forecaster.report.terminal import print_backtest

    cfg = forecaster.load_config(config).with_forecast(trials=trials, seed=seed,
                                                       parameter_uncertainty=parameter_uncertainty)
    cfg = with_engine_flags(cfg, engine, scheduler, workers)
    check_csv(csv, out_dir)
    say_if_compiling(fmt == "json", cfg)
    result = forecaster.backtest(cfg, start, end, every=every, window=window)
    write_report(report_file, backtest=result, config=cfg,
                 command=command_line("backtest", config, "--from", start, "--to", end, "--every", every,
                                      "--window", window, "--trials", result.summary["trials"]))
    deliver(result.summary, fmt, print_backtest, out_dir, "backtest.json", result.table(), "backtest.parquet", csv)


@main.command()
@config_argument
@click.option("-o", "--output", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HTML file to write (one file: inline charts and styles, no network).")
@click.option("--compare", "with_compare", is_flag=True,
              help="Add the config's scenarios against the baseline (as `forecaster compare`).")
@click.option("--backtest", "backtest_range", type=DateRange(), default=None,
              help="Add a backtest with monthly cutoffs FROM:TO and quarter windows, e.g. 2025-01-01:2025-04-01.")
@click.option("--previous", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="summary.json of an earlier run: the headline shows the change since it.")
@click.option("--since", type=DATE, default=None,
              help="An earlier forecast date: add what moved since then (the waterfall of `forecaster diff`).")
@click.option("--trials", type=click.IntRange(min=10), default=None, help="Monte Carlo trials (default: the config's).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (same seed, same report).")
@as_of_option
@handles_errors
def report(config: Path, out_file: Path, with_compare: bool, backtest_range: tuple[dt.date, dt.date] | None,
           previous: Path | None, since: dt.date | None, trials: int | None, seed: int | None,
           as_of: dt.date | None) -> None:
    """Write the report a revenue team opens: one HTML file with charts that opens offline.

    Headline (P10/P50/P90, P(quota), won so far this quarter, change since --previous), distribution,
    revenue by week, periods and groups, what makes the range wide, the deals that carry the forecast,
    the deals to inspect, the funnel; with --since what moved since that date, with --compare the
    scenarios, with --backtest the scores (docs/outputs.md). Same seed: the same file but its timestamp.

    \b
    Example:  forecaster report configs/scenarios.yaml -o report.html --compare --backtest 2025-03-01:2025-05-01
    Weekly:   forecaster report configs/example.yaml --as-of 2025-06-09 --since 2025-06-02 -o report.html
    """
    import forecaster
    from forecaster.analysis.report_data import load_previous

    prev = load_previous(previous) if previous is not None else None
    cfg = checked_config(config, trials=trials, seed=seed, as_of=as_of)
    if with_compare and not cfg.scenarios:
        raise ConfigError(f"--compare: {config} has no scenarios (add a 'scenarios:' list; see configs/scenarios.yaml)")
    say_if_compiling(False)
    result = forecaster.forecast(cfg, explain=True)
    moved = None
    if since is not None:
        s = result.summary
        now = dt.date.fromisoformat(s["as_of"])
        if since > now:
            raise ConfigError(f"--since {since} is after the forecast's as-of {now}")
        moved = forecaster.diff(cfg, since, now, end=dt.date.fromisoformat(s["window"]["end"])).result
    comparison = forecaster.compare(cfg) if with_compare else None
    bt = forecaster.backtest(cfg, *backtest_range) if backtest_range else None
    extra = ["--compare"] * with_compare + (["--backtest", ":".join(map(str, backtest_range))] if bt else [])
    extra += ["--since", since] if since is not None else []
    write_report(out_file, forecast=result, comparison=comparison, backtest=bt, previous=prev, diff=moved,
                 command=forecast_command("report", config, result.summary, "-o", out_file, *extra))
    click.echo(f"wrote {out_file}")
