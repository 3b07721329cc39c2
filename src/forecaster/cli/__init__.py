"""click commands: each parses its arguments, calls one library function (forecaster.api) and renders the
result; library errors (ForecasterError) become ``Error: ...`` lines on stderr and exit code 2, never a
traceback. common (shared options, errors, outputs), group (the click group), data_commands (validate,
generate, fit, funnel, demo), run_commands (forecast, compare, plan, backtest, report), explain_commands
(diff)."""

from forecaster.cli import data_commands, explain_commands, run_commands  # noqa: F401  (they register their commands)
from forecaster.cli.group import main

__all__ = ["main"]
