"""report_by: rollups by reporting columns that are not model segments, exact per trial."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import forecaster
from forecaster.cli import main
from tests.conftest import REPO

SAMPLE = REPO / "src" / "forecaster" / "sample"


def sample_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "forecaster.yaml"
    path.write_text(f"data: {{deals: {SAMPLE / 'deals.parquet'}, stage_history: {SAMPLE / 'stage_history.parquet'}}}\n"
                    "stages: [prospecting, qualification, discovery, demo, proposal, negotiation]\n"
                    "segment_by: [product]\nreport_by: [owner, product]\n"
                    f"forecast: {{as_of: 2025-07-01, trials: 400, seed: 3{extra}}}\n")
    return path


@pytest.mark.parametrize("uncertainty", [False, True], ids=["plain", "parameter_uncertainty"])
def test_groups_add_up_per_trial_and_each_deal_does_what_it_did_in_the_forecast(tmp_path, uncertainty):
    f = forecaster.forecast(sample_config(tmp_path, ", parameter_uncertainty: true" if uncertainty else ""))
    owner, product = f.rollups
    parts = [r for v, r in zip(owner.values, owner.revenue) if v != "(total)"]
    assert owner.values[-2:] == ("(new deals)", "(total)")
    assert np.allclose(np.sum(parts, axis=0), f.sim.revenue, rtol=1e-12, atol=1e-6)
    wins = [w for v, w in zip(owner.values, owner.wins) if v != "(total)"]
    assert np.array_equal(np.sum(wins, axis=0), f.sim.won_deals)
    # a group's mean revenue is the sum of its deals' P(win) x amount in the forecast itself: each deal,
    # simulated with its group only, was won in exactly the same trials
    names = f.data.attrs["owner"].to_numpy(zero_copy_only=False)[f.open_idx]
    expected = f.sim.deal_won_trials * f.data.amount[f.open_idx]
    for v, rev in zip(owner.values, owner.revenue):
        if v not in ("(new deals)", "(total)"):
            assert rev.sum() == pytest.approx(expected[names == v].sum(), rel=1e-12)
    # a segment column is rolled up from the segments themselves, new deals included
    assert product.values == ("Core", "Enterprise", "Pro", "(total)")
    assert np.allclose(np.sum(product.revenue[:-1], axis=0), f.sim.revenue, rtol=1e-12)


def test_outputs_carry_the_groups(tmp_path, runner):
    out = tmp_path / "out"
    r = runner.invoke(main, ["forecast", str(sample_config(tmp_path)), "-o", str(out), "--format", "json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert set(s["report_by"]) == {"owner", "product"}
    assert set(s["report_by"]["owner"]["(total)"]) == {"revenue", "won_deals"}
    assert s["report_by"]["owner"]["(total)"]["revenue"] == s["revenue"]
    deals = pq.read_table(out / "deals.parquet")
    assert {"owner", "product"} <= set(deals.column_names)
    trials = pq.read_table(out / "trials.parquet")
    owners = [c for c in trials.column_names if c.startswith("revenue_owner=")]
    assert len(owners) == len(s["report_by"]["owner"]) - 1  # every group but the total
    table = runner.invoke(main, ["forecast", str(sample_config(tmp_path))])
    assert "(new deals)" in table.stdout and "(total)" in table.stdout


def test_blank_values_are_a_group(crm, runner):
    from tests.conftest import CONFIG, DEALS

    deals = DEALS.replace("product", "product,owner").replace(",A\n", ",A,Ann\n").replace(",B\n", ",B,\n")
    path = crm.write(deals=deals, config=CONFIG + "report_by: [owner]\nforecast: {trials: 50}\n")
    r = runner.invoke(main, ["forecast", str(path), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)["report_by"]["owner"]) == {"Ann", "(blank)", "(new deals)", "(total)"}


def test_unknown_report_by_column_is_one_error_and_writes_nothing(crm, runner, tmp_path):
    from tests.conftest import CONFIG

    path = crm.write(config=CONFIG + "report_by: [prodct]\n")
    out = tmp_path / "out"
    r = runner.invoke(main, ["forecast", str(path), "-o", str(out)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert [x for x in r.stderr.splitlines() if x.startswith("Error:")] == [
        "Error: deals.csv: report_by column 'prodct' not found (did you mean 'product'?)"]
    assert not out.exists()
