"""The click group every command belongs to."""

from __future__ import annotations

import click

from forecaster._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="forecaster")
def main() -> None:
    """forecaster: calibrated Monte Carlo forecasts of revenue and won deals from CRM history.

    \b
    Start with:  forecaster demo
    Your data:   forecaster validate my.yaml
    """
