"""Backtest: baselines by hand, calendar, no leakage, and calibration on generated data."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forecaster.analysis.backtest import actuals, backtest, cutoffs, run_rate, weighted_pipeline, window_last_day
from forecaster.cli import main
from forecaster.config import load_config
from forecaster.calendar import to_day
from forecaster.crm import cut, load
from forecaster.synth import generate
from tests.conftest import REPO, shared_data

DEALS = """deal_id,created_at,amount,status,closed_at
D1,2024-01-01,500,won,2024-02-01
D2,2024-01-02,700,lost,2024-01-20
D3,2024-01-03,900,lost,2024-02-10
D4,2024-01-04,300,won,2024-01-25
D5,2024-02-01,1000,open,
D6,2024-02-02,2000,open,
D7,2024-02-03,4000,won,2024-03-10
"""
HISTORY = """deal_id,stage,entered_at
D1,qual,2024-01-01
D1,proposal,2024-01-15
D2,qual,2024-01-02
D3,qual,2024-01-03
D3,proposal,2024-01-20
D4,qual,2024-01-04
D5,qual,2024-02-01
D6,qual,2024-02-02
D6,proposal,2024-02-20
D7,qual,2024-02-03
D7,proposal,2024-02-05
"""
CONFIG = "data: {deals: deals.csv, stage_history: history.csv}\nstages: [qual, proposal]\n"


def test_weighted_pipeline_by_hand(crm):
    data = load(load_config(crm.write(deals=DEALS, history=HISTORY, config=CONFIG)))
    snap = cut(data, to_day(dt.date(2024, 3, 1)))
    # As of 2024-03-01, closed: D1 (qual, proposal; won), D2 (qual; lost), D3 (qual, proposal; lost),
    # D4 (qual; won). Win rate of qual: 2 of 4; of proposal: 1 of 2. D7 closes later: open, in proposal.
    # Open: D5 1000 in qual, D6 2000 in proposal, D7 4000 in proposal.
    revenue, wins = weighted_pipeline(snap)
    assert revenue == pytest.approx(1000 * 0.5 + 2000 * 0.5 + 4000 * 0.5)
    assert wins == pytest.approx(1.5)


def test_actuals_and_run_rate_by_hand(crm):
    data = load(load_config(crm.write(deals=DEALS, history=HISTORY, config=CONFIG)))
    assert actuals(data, dt.date(2024, 1, 25), dt.date(2024, 2, 1)) == (800.0, 2)
    # Trailing 14-day windows before 2024-02-12: [01-29, 02-11] has D1 (500); [01-15, 01-28] has D4 (300);
    # [01-01, 01-14] has none; nothing before the first deal.
    rev, won = run_rate(data, dt.date(2024, 2, 12), dt.date(2024, 2, 25))
    assert rev.tolist() == [500.0, 300.0, 0.0] and won.tolist() == [1, 1, 0]


def test_calendar():
    assert cutoffs(dt.date(2024, 1, 31), dt.date(2024, 5, 1), "month") == [
        dt.date(2024, 1, 31), dt.date(2024, 2, 29), dt.date(2024, 3, 29), dt.date(2024, 4, 29)]
    assert window_last_day(dt.date(2024, 1, 1), "quarter") == dt.date(2024, 3, 31)
    assert window_last_day(dt.date(2024, 1, 15), "month") == dt.date(2024, 2, 14)
    assert window_last_day(dt.date(2024, 1, 1), "90d") == dt.date(2024, 3, 30)


def perturb_after(folder, d: dt.date, seed: int = 0) -> None:
    """Rewrite everything dated on or after d: new amounts and outcomes for deals created then, other
    outcomes and close dates for deals closing then, shuffled stages for rows entered then."""
    rng = np.random.default_rng(seed)
    deals = pq.read_table(folder / "deals.parquet").to_pydict()
    hist = pq.read_table(folder / "stage_history.parquet").to_pydict()
    late_ids = set()
    for i in range(len(deals["deal_id"])):
        if deals["created_at"][i] >= d:
            late_ids.add(deals["deal_id"][i])
            deals["amount"][i] = float(rng.integers(1, 10**6))
        if deals["closed_at"][i] is not None and deals["closed_at"][i] >= d:
            deals["status"][i] = str(rng.choice(["won", "lost"]))
            deals["closed_at"][i] = deals["closed_at"][i] + dt.timedelta(days=int(rng.integers(0, 30)))
    stages = ["prospecting", "qualification", "discovery", "demo", "proposal", "negotiation"]
    for i in range(len(hist["deal_id"])):
        if hist["entered_at"][i] >= d and hist["stage"][i] in stages:
            hist["stage"][i] = str(rng.choice(stages))
    pq.write_table(pa.table(deals, schema=pq.read_schema(folder / "deals.parquet")), folder / "deals.parquet")
    pq.write_table(pa.table(hist, schema=pq.read_schema(folder / "stage_history.parquet")),
                   folder / "stage_history.parquet")


def test_nothing_after_the_cutoff_reaches_the_forecast(tmp_path):
    d = dt.date(2025, 1, 1)
    for name in ("a", "b"):
        generate(tmp_path / name, seed=2, start=dt.date(2024, 1, 1), end=dt.date(2025, 6, 30), scale=0.3)
    perturb_after(tmp_path / "b", d)
    results = []
    for name in ("a", "b"):
        cfg = load_config(tmp_path / name / "forecaster.yaml").with_forecast(trials=300)
        rows, _ = backtest(cfg, d, d, "month", "quarter")
        results.append(rows)
    changed_actual = False
    for ra, rb in zip(*results):
        assert ra["method"] == rb["method"] and ra["target"] == rb["target"]
        if ra["method"] != "run_rate":  # the run-rate reads only windows before d as well
            for key in ("mean", "p5", "p10", "p50", "p90", "p95"):
                assert ra[key] == rb[key], (ra["method"], key)
        else:
            assert ra["mean"] == rb["mean"]
        changed_actual |= ra["actual"] != rb["actual"]
    assert changed_actual  # the perturbation did reach the outcome


def test_backtest_cli_outputs_and_json(runner, tmp_path):
    cfg = REPO / "src" / "forecaster" / "sample" / "forecaster.yaml"
    res = runner.invoke(main, ["backtest", str(cfg), "--from", "2024-11-01", "--to", "2025-02-01", "--window", "month",
                               "--trials", "300", "-o", str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out == json.loads((tmp_path / "backtest.json").read_text())
    assert out["cutoffs"] == 4 and out["window"] == "month" and out["target"] == "revenue"
    for block in (out, out["won_deals"]):
        assert {"forecaster", "weighted_pipeline", "run_rate"} <= set(block["methods"])
        for m in block["methods"].values():
            assert {"coverage_80", "coverage_90", "crps", "pinball_50", "bias", "wape"} <= set(m)
        assert {"weighted_pipeline", "run_rate"} <= set(block["skill"])
    table = pq.read_table(tmp_path / "backtest.parquet")
    assert table.num_rows == 4 * 5 * 2  # cutoffs x methods x targets
    bad = runner.invoke(main, ["backtest", str(cfg), "--from", "2025-02-01", "--to", "2024-11-01"])
    assert bad.exit_code == 2 and "--to 2024-11-01 is before --from 2025-02-01" in bad.stderr
    bad = runner.invoke(main, ["backtest", str(cfg), "--from", "2024-11-01", "--to", "2025-02-01", "--window", "6w"])
    assert bad.exit_code == 2 and "--window '6w'" in bad.stderr


def test_maven_backtest_runs(runner):
    shared_data("maven_crm")
    res = runner.invoke(main, ["backtest", str(REPO / "configs" / "maven.yaml"), "--from", "2017-04-01",
                               "--to", "2017-07-01", "--every", "quarter", "--window", "quarter", "--trials", "300",
                               "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["cutoff_dates"] == ["2017-04-01", "2017-07-01"]


@pytest.mark.slow
def test_calibration_on_generated_data_over_many_cutoffs(tmp_path):
    """Known truth, 29 monthly cutoffs with non-overlapping monthly windows: the P10-P90 coverage lies in
    its binomial band around 80% and the PIT histogram passes the chi-square test of uniformity."""
    generate(tmp_path, seed=11, start=dt.date(2022, 1, 1), end=dt.date(2025, 12, 31))
    cfg = load_config(tmp_path / "forecaster.yaml").with_forecast(trials=2000)
    _, summary = backtest(cfg, dt.date(2023, 7, 1), dt.date(2025, 11, 1), "month", "month")
    for block in (summary, summary["won_deals"]):
        f = block["methods"]["forecaster"]
        assert f["cutoffs"] == 29
        assert f["coverage_80_interval"]["consistent"], f["coverage_80_interval"]
        assert f["pit_histogram"]["verdict"] == "calibrated", f["pit_histogram"]
        assert block["skill"]["weighted_pipeline"] > 0 and block["skill"]["run_rate"] > 0
