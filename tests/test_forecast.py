"""`forecaster forecast` end to end: the output contract, flags over config, determinism, no leakage."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from forecaster.cli import main
from forecaster.config import load_config
from forecaster.analysis.forecast import run_forecast
from forecaster.calendar import period_bounds
from tests.conftest import REPO, shared_data
from tests.test_asof import truncate, write

DIST_KEYS = {"mean", "std", "p5", "p10", "p25", "p50", "p75", "p90", "p95"}
SUMMARY_KEYS = {"as_of", "window", "trials", "seed", "open_deals", "open_amount", "revenue", "won_deals", "p_quota",
                "quota", "periods", "segments", "from_new_deals", "timing", "work", "config_sha256", "version"}


@pytest.fixture(scope="module")
def sample_config():
    return REPO / "src" / "forecaster" / "sample" / "forecaster.yaml"


def test_outputs_and_json_contract(runner, tmp_path, sample_config):
    out = tmp_path / "out"
    res = runner.invoke(main, ["forecast", str(sample_config), "--trials", "500", "--seed", "3", "-o", str(out),
                               "--format", "json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["trials"] == 500 and summary["seed"] == 3
    assert set(summary["window"]) == {"start", "end"}
    for block in (summary["revenue"], summary["won_deals"], summary["from_new_deals"]["revenue"]):
        assert set(block) == DIST_KEYS
        assert block["p5"] <= block["p10"] <= block["p50"] <= block["p90"] <= block["p95"]
    assert summary["quota"] == 4_200_000 and 0 <= summary["p_quota"] <= 1
    assert {"load_s", "fit_s", "simulate_s", "total_s"} <= set(summary["timing"])
    assert summary["work"]["deal_trials"] >= summary["open_deals"] * 500
    assert summary["work"]["deal_steps"] >= summary["work"]["deal_trials"]

    trials = pq.read_table(out / "trials.parquet")
    assert trials.num_rows == 500
    assert {"trial", "revenue", "won_deals"} <= set(trials.column_names)
    period_cols = [c for c in trials.column_names if c.startswith("revenue_")]
    assert len(period_cols) == len(summary["periods"])
    np.testing.assert_allclose(sum(trials[c].to_numpy() for c in period_cols), trials["revenue"].to_numpy())
    assert trials["revenue"].to_numpy().mean() == pytest.approx(summary["revenue"]["mean"])

    deals = pq.read_table(out / "deals.parquet")
    assert deals.num_rows == summary["open_deals"]
    assert {"deal_id", "stage", "age_days", "amount", "product", "p_win", "p_lost", "expected_revenue",
            "median_close_date"} <= set(deals.column_names)
    p_win = deals["p_win"].to_numpy()
    assert ((0 <= p_win) & (p_win <= 1)).all()
    # never won -> no close date; won at least once -> a date inside the window
    med = deals["median_close_date"].to_pylist()
    assert all((m is None) == (p == 0) for m, p in zip(med, p_win))
    start, end = (dt.date.fromisoformat(summary["window"][k]) for k in ("start", "end"))
    assert all(start <= m <= end for m in med if m is not None)
    # open-deal wins plus new-deal wins make the total
    open_rev = float((deals["expected_revenue"].to_numpy()).sum())
    assert open_rev + summary["from_new_deals"]["revenue"]["mean"] == pytest.approx(summary["revenue"]["mean"])
    # the resolved config is a valid config that reproduces the run
    resolved = load_config(out / "config.resolved.yaml")
    assert resolved.forecast.trials == 500 and resolved.forecast.seed == 3
    assert resolved.forecast.as_of == dt.date(2025, 7, 1) and resolved.forecast.end == end
    again = run_forecast(resolved).summary
    assert again["revenue"] == summary["revenue"]


def test_flags_override_config_and_windows(runner, sample_config):
    res = runner.invoke(main, ["forecast", str(sample_config), "--trials", "200", "--as-of", "2025-04-01",
                               "--start", "2025-05-01", "--end", "2025-06-30", "--format", "json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["as_of"] == "2025-04-01" and s["window"] == {"start": "2025-05-01", "end": "2025-06-30"}
    assert [p["start"] for p in s["periods"]] == ["2025-05-01", "2025-06-01"]
    far = runner.invoke(main, ["forecast", str(sample_config), "--end", "2040-01-01"])
    assert far.exit_code == 2 and "more than 3,660 days after as_of 2025-07-01" in far.stderr
    bad = runner.invoke(main, ["forecast", str(sample_config), "--as-of", "2025-04-01", "--start", "2025-03-01"])
    assert bad.exit_code == 2
    assert "Error: config key 'forecast.start': 2025-03-01 is before forecast.as_of 2025-04-01" in bad.stderr


def test_same_seed_same_output_and_different_seed_differs(sample_config):
    cfg = load_config(sample_config).with_forecast(trials=300)
    a, b = run_forecast(cfg), run_forecast(cfg)
    c = run_forecast(cfg.with_forecast(seed=cfg.forecast.seed + 1))
    assert np.array_equal(a.sim.revenue, b.sim.revenue) and np.array_equal(a.sim.deal_won_trials, b.sim.deal_won_trials)
    assert not np.array_equal(a.sim.revenue, c.sim.revenue)


def test_thread_count_does_not_change_the_output(tmp_path, sample_config):
    sums = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}"
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        subprocess.run([sys.executable, "-m", "forecaster", "forecast", str(sample_config), "--trials", "700",
                        "-o", str(out), "--quiet"], env=env, check=True)
        sums.append(((out / "trials.parquet").read_bytes(), (out / "deals.parquet").read_bytes()))
    assert sums[0] == sums[1]


def test_full_export_and_truncated_export_give_identical_forecasts(tmp_path):
    """No leakage: everything on or after as_of is invisible, so both exports forecast the same."""
    from tests.test_asof import BASE

    rng = np.random.default_rng(0)
    deals, rows = [], []
    for i in range(150):
        created = int(rng.integers(0, 200))
        status = rng.choice(["open", "won", "lost"], p=[0.2, 0.35, 0.45])
        closed = created + int(rng.integers(1, 90)) if status != "open" else None
        deals.append((f"D{i}", created, int(rng.integers(100, 5000)), status, closed, rng.choice(["EU", "US"])))
        day = created
        for stage in ("s0", "s1", "s2")[: int(rng.integers(1, 4))]:
            rows.append((f"D{i}", stage, day))
            day += int(rng.integers(0, 20))
    as_of = 150
    d = BASE + dt.timedelta(days=as_of)
    outs = []
    for name, (dd, rr) in (("full", (deals, rows)), ("cut", truncate(deals, rows, as_of))):
        cfg = load_config(write(tmp_path / name, dd, rr)).with_forecast(as_of=d, trials=400, seed=5)
        s = run_forecast(cfg).summary
        outs.append({k: v for k, v in s.items() if k not in ("timing", "config_sha256", "data_warnings", "data_fingerprint")})
    assert outs[0] == outs[1]


def test_period_bounds():
    assert period_bounds(dt.date(2025, 7, 1), dt.date(2025, 9, 28), "month") == [
        (dt.date(2025, 7, 1), dt.date(2025, 7, 31)), (dt.date(2025, 8, 1), dt.date(2025, 8, 31)),
        (dt.date(2025, 9, 1), dt.date(2025, 9, 28))]
    assert period_bounds(dt.date(2025, 11, 15), dt.date(2026, 2, 2), "quarter") == [
        (dt.date(2025, 11, 15), dt.date(2025, 12, 31)), (dt.date(2026, 1, 1), dt.date(2026, 2, 2))]
    weeks = period_bounds(dt.date(2025, 7, 2), dt.date(2025, 7, 20), "week")  # a Wednesday
    assert weeks[0] == (dt.date(2025, 7, 2), dt.date(2025, 7, 6)) and weeks[-1] == (dt.date(2025, 7, 14), dt.date(2025, 7, 20))


def test_model_reuse_gives_the_same_forecast(runner, tmp_path, sample_config):
    assert runner.invoke(main, ["fit", str(sample_config), "-o", str(tmp_path / "m")]).exit_code == 0
    a = runner.invoke(main, ["forecast", str(sample_config), "--trials", "300", "--format", "json"])
    b = runner.invoke(main, ["forecast", str(sample_config), "--trials", "300", "--format", "json",
                             "--model", str(tmp_path / "m")])
    sa, sb = json.loads(a.stdout), json.loads(b.stdout)
    assert sa["revenue"] == sb["revenue"] and sa["won_deals"] == sb["won_deals"]
    other = runner.invoke(main, ["forecast", str(sample_config), "--as-of", "2025-03-01", "--model", str(tmp_path / "m")])
    assert other.exit_code == 2 and "the model was fitted as of 2025-07-01" in other.stderr


def test_deal_level_real_data_forecast(runner):
    shared_data("maven_crm")
    res = runner.invoke(main, ["forecast", str(REPO / "configs" / "maven.yaml"), "--trials", "300", "--format", "json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["open_deals"] == 1686 and s["revenue"]["mean"] > 0


def test_demo_runs_the_forecast(runner):
    res = runner.invoke(main, ["demo"])
    assert res.exit_code == 0, res.output
    assert "Open pipeline as of 2025-07-01" in res.stdout
    assert "Forecast as of 2025-07-01" in res.stdout and "P(revenue >= quota" in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 100


def test_kernel_equals_the_naive_twin_on_the_real_sample_model(sample_config):
    """The fitted sample model (tables of hundreds of days, thousands of destination rows, deals far
    older than most spells, arrivals) drives the kernel and the pure-Python twin to identical results."""
    from forecaster.analysis.forecast import prepare
    from tests import naive

    base = prepare(load_config(sample_config).with_forecast(trials=6))
    kw = dict(n_trials=6, seed=11, start_off=base.start_off, end_off=base.end_off, period_start=base.period_start,
              arrivals=base.arrivals, day_weekday=base.weekday, day_moq=base.moq)
    from forecaster.sim import simulate

    res = simulate(base.stage, base.deals, **kw)
    ref = naive.simulate(base.stage, base.deals, **kw)
    assert np.array_equal(res.revenue, ref["revenue"]) and np.array_equal(res.won_deals, ref["won_deals"])
    assert np.array_equal(res.deal_won_trials, ref["deal_won_trials"])
    assert res.won_deals.sum() > 0
