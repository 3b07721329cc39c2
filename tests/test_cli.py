"""CLI surface: every command documented with an example; errors are one line, exit 2."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from forecaster.cli import main


def commands():
    return sorted(main.commands)


@pytest.mark.parametrize("name", commands())
def test_every_command_has_help_with_an_example(runner, name):
    cmd = main.commands[name]
    assert cmd.help and len(cmd.help.strip()) > 20, f"{name} lacks help text"
    result = runner.invoke(main, [name, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output, f"{name} --help shows no example"
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} lacks help"


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "forecaster", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "forecaster demo" in out.stdout


def test_validate_through_a_real_process_has_no_traceback(crm):
    path = crm.write(deals="deal_id,created_at\nD1,2024-01-01\n", history=None, config="data: {deals: deals.csv}\n")
    out = subprocess.run([sys.executable, "-m", "forecaster", "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines()[0].startswith("Error: ")
    assert "missing required column 'amount'" in out.stderr


def test_bad_flag_value_is_a_usage_error(runner, crm):
    result = runner.invoke(main, ["validate", str(crm.write()), "--as-of", "yesterday"])
    assert result.exit_code == 2
    assert "'yesterday' is not a date YYYY-MM-DD" in result.output
