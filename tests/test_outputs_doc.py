"""docs/outputs.md names every file, column and key the commands write (a new key without its line fails)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from forecaster.cli import main
from tests.conftest import REPO

DOC = (REPO / "docs" / "outputs.md").read_text()
SAMPLE = REPO / "src" / "forecaster" / "sample" / "forecaster.yaml"
SCENARIOS = REPO / "configs" / "scenarios.yaml"
# Maps keyed by data (segment, stage, method, warning names), whose own keys are not fields.
KEYED_BY_DATA = {"segments", "carried_over", "data_warnings", "p_exit", "bottleneck_lost_value_per_new_deal",
                 "skill", "methods", "report_by", "segment_effects", "warnings"}
DATED = re.compile(r"_\d{4}-\d{2}-\d{2}$")


def keys(x: Any, out: set[str]) -> set[str]:
    if isinstance(x, dict):
        for k, v in x.items():
            out.add(k)
            if k in KEYED_BY_DATA and isinstance(v, dict):
                for inner in v.values():
                    keys(inner, out)
            else:
                keys(v, out)
    elif isinstance(x, list):
        for v in x:
            keys(v, out)
    return out


def documented(name: str) -> bool:
    return f"`{DATED.sub('_<start>', name)}`" in DOC


def columns(path: Path, segment_by: tuple[str, ...] = ("product",)) -> set[str]:
    return {c for c in pq.read_table(path).column_names if c not in segment_by}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    from click.testing import CliRunner

    r, d = CliRunner(), tmp_path_factory.mktemp("outputs")
    for args in (["forecast", str(SAMPLE), "--trials", "100", "--as-of", "2025-05-20", "-o", str(d / "f"), "--csv",
                  "--explain"],
                 ["diff", str(SAMPLE), "--from", "2025-05-13", "--to", "2025-05-20", "--trials", "100", "-o",
                  str(d / "d"), "--csv"],
                 ["compare", str(SCENARIOS), "--trials", "50", "-o", str(d / "c")],
                 ["backtest", str(SAMPLE), "--from", "2025-03-01", "--to", "2025-04-01", "--window", "month",
                  "--trials", "50", "-o", str(d / "b")],
                 ["funnel", str(SAMPLE), "-o", str(d / "funnel.json")],
                 ["fit", str(SAMPLE), "-o", str(d / "model")]):
        res = r.invoke(main, args)
        assert res.exit_code == 0, res.output
    plan = r.invoke(main, ["plan", str(SAMPLE), "--target", "5000000", "--trials", "100", "--format", "json"])
    (d / "plan.json").write_text(plan.stdout)
    return d


def test_every_file_is_documented(outputs):
    files = {p.name for p in outputs.rglob("*") if p.is_file()}
    assert {"summary.json", "trials.parquet", "deals.parquet", "group_trials.parquet", "trials.csv", "deals.csv",
            "group_trials.csv", "config.resolved.yaml", "compare.json", "compare_trials.parquet", "backtest.json",
            "backtest.parquet", "diff.json", "diff.parquet", "diff.csv", "model.json", "days.parquet", "bins.parquet", "cells.parquet",
            "amounts.parquet"} <= files
    assert [f for f in files if not documented(f) and f not in ("funnel.json", "plan.json")] == []


@pytest.mark.parametrize("name", ["f/summary.json", "c/compare.json", "b/backtest.json", "funnel.json", "plan.json",
                                  "model/model.json", "d/diff.json"])
def test_every_json_key_is_documented(outputs, name):
    found = keys(json.loads((outputs / name).read_text()), set())
    assert sorted(k for k in found if not documented(k)) == []
    assert "won_to_date" in found or name != "f/summary.json"
    assert {"spread", "inspect", "separating", "flagged"} <= found or name != "f/summary.json"


@pytest.mark.parametrize("name", ["f/trials.parquet", "f/deals.parquet", "f/group_trials.parquet",
                                  "c/compare_trials.parquet", "b/backtest.parquet", "model/days.parquet",
                                  "model/bins.parquet", "model/cells.parquet", "model/amounts.parquet",
                                  "d/diff.parquet"])
def test_every_column_is_documented(outputs, name):
    cols = columns(outputs / name)
    if name == "model/bins.parquet":
        cols = {c for c in cols if not re.fullmatch(r"p\d+", c)} | ({"p0"} if cols else set())
    assert sorted(c for c in cols if not documented(c)) == []


def test_the_doc_says_median_close_date_is_conditional():
    assert "**conditional on winning inside the window**" in DOC
