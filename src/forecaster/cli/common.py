"""What every command shares: the one-line error rule, option decorators, the engine flags, writing
outputs and reports. Rendering lives in report/, computation in the library (forecaster.api)."""

from __future__ import annotations

import datetime as dt
import functools
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import click

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


def format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="Terminal table, or exactly one JSON object on stdout.")(f)


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--report FILE and --csv, shared by forecast, compare and backtest."""
    f = click.option("--csv", "csv", is_flag=True, help="Also write a CSV copy next to each Parquet file (needs -o).")(f)
    return click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Also write the HTML report here (one file that opens offline).")(f)


def check_csv(csv: bool, out_dir: Path | None) -> None:
    if csv and out_dir is None:
        raise ConfigError("--csv: the CSV files go next to the Parquet files; give -o/--output too")


def command_line(*args: Any) -> str:
    """The shell command that reproduces a run (its resolved as-of, window, trials and seed)."""
    import shlex

    return shlex.join(["forecaster", *[str(a) for a in args if a is not None]])


def write_report(report_file: Path | None, **parts: Any) -> Path | None:
    """Render the HTML report of finished results (forecaster.api.report) and write it atomically."""
    if report_file is None:
        return None
    import forecaster
    from forecaster.files import write_atomic

    return write_atomic(report_file, forecaster.html_report(**parts))


def deliver(result: dict[str, Any], fmt: str, printer: Callable[[dict[str, Any]], None],
            out_dir: Path | None = None, json_name: str = "", table: Any = None, table_name: str = "",
            csv: bool = False) -> None:
    """Write the result (JSON, and a Parquet table when given) into out_dir atomically, then print it:
    exactly one JSON object with --format json, else the table."""
    from forecaster.files import dumps
    from forecaster.report.outputs import write_result

    if out_dir is not None:
        currency = result.get("currency", result.get("baseline", {}).get("currency"))
        write_result(Path(out_dir), json_name, result, table, table_name, csv, currency)
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


ENGINE_FLAGS = {"kind": "--engine", "address": "--scheduler", "workers": "--workers"}


def engine_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--engine, --scheduler, --workers: where the simulations run (config key engine; docs/scale.md)."""
    f = click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="With --engine dask: worker processes of the local cluster (default: one per core), "
                          "or with --scheduler how many workers to wait for.")(f)
    f = click.option("--scheduler", metavar="ADDRESS", default=None,
                     help="With --engine dask: the Dask scheduler to run on, e.g. tcp://10.0.0.5:8786 "
                          "(default: a local cluster of --workers processes).")(f)
    return click.option("--engine", type=click.Choice(["local", "dask"]), default=None,
                        help="Where the simulations run: local (numba threads; the default) or dask "
                             "(dask.distributed workers); the same results either way.")(f)


def with_engine_flags(cfg: Any, engine: str | None, scheduler: str | None, workers: int | None) -> Any:
    """The config with the engine flags applied (they override engine: in the YAML), checked."""
    from forecaster.config import check_engine
    from forecaster.errors import Problems

    cfg = cfg.with_engine(engine, scheduler, workers)
    problems = Problems(ConfigError)
    check_engine(cfg.engine, problems, ENGINE_FLAGS.__getitem__)
    problems.raise_if_any()
    return cfg


def say_if_compiling(quiet: bool, cfg: Any = None) -> None:
    """On a terminal, say so before a run that must first compile the kernels (no frozen progress bar);
    on a Dask engine the workers compile, not this process."""
    from forecaster.sim import kernels_compiled
    from forecaster.sim.cache import COLD_COMPILE_S

    if cfg is not None and cfg.engine.kind != "local":
        return
    if not quiet and sys.stderr.isatty() and not kernels_compiled():
        click.echo(f"compiling the simulation kernels (first run only, ~{COLD_COMPILE_S} s)", err=True)


def forecast_command(name: str, config: Path, s: dict[str, Any], *extra: Any) -> str:
    """`forecaster forecast` (or report) with the run's resolved as-of, window, trials and seed."""
    w = s["window"]
    return command_line(name, config, "--as-of", s["as_of"], "--start", w["start"], "--end", w["end"],
                        "--trials", s["trials"], "--seed", s["seed"], *extra)


def checked_config(config: Path, engine: tuple[str | None, str | None, int | None] = (None, None, None),
                   **forecast: Any) -> Any:
    """The config with the forecast (and engine) flags over it, its window checked."""
    from forecaster.config import check_window, load_config
    from forecaster.errors import Problems

    cfg = with_engine_flags(load_config(config).with_forecast(**forecast), *engine)
    problems = Problems(ConfigError)
    check_window(cfg.forecast, problems)
    problems.raise_if_any()
    return cfg


class DateRange(click.ParamType):
    name = "FROM:TO"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[dt.date, dt.date]:
        try:
            first, last = (dt.date.fromisoformat(p.strip()) for p in str(value).split(":"))
        except ValueError:
            self.fail(f"'{value}' is not FROM:TO, two dates YYYY-MM-DD like 2025-01-01:2025-06-01", param, ctx)
        if last < first:
            self.fail(f"'{value}': TO {last} is before FROM {first}", param, ctx)
        return first, last


def sample_config() -> Path:
    """The bundled sample's config (package data)."""
    path = Path(str(resources.files("forecaster") / "sample" / "forecaster.yaml"))
    if not path.is_file():
        raise ConfigError(f"{path}: the bundled sample is missing from this installation")
    return path
