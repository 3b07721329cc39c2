"""What the report and the BI files show, computed in analysis: the fan chart is the forecast's own trials
(exactly), won to date is what the CRM says, per-deal and per-group figures add up."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

import forecaster
from forecaster.analysis import report_data as R
from forecaster.analysis.actuals import won_by_week, won_to_date
from forecaster.analysis.forecast import run_forecast
from forecaster.analysis.summary import deals_table
from forecaster.errors import ConfigError
from tests.conftest import REPO

SAMPLE = REPO / "src" / "forecaster" / "sample" / "forecaster.yaml"


@pytest.fixture(scope="module")
def monthly():
    return run_forecast(forecaster.load_config(SAMPLE).with_forecast(trials=400, seed=5, as_of=dt.date(2025, 5, 20)))


def test_weekly_rerun_is_exactly_the_forecasts_trials(monthly):
    """Same seed and streams with weekly periods: bit-identical to a forecast whose periods are weeks,
    and each trial's weeks add up to its revenue."""
    weekly = R.weekly_trials(monthly)
    as_weeks = run_forecast(monthly.config.with_forecast(period="week"))
    assert np.array_equal(weekly, as_weeks.sim.period_revenue)
    assert np.array_equal(as_weeks.sim.revenue, monthly.sim.revenue)
    np.testing.assert_allclose(weekly.sum(axis=1), monthly.sim.revenue, rtol=1e-12, atol=1e-6)
    assert np.array_equal(R.weekly_trials(as_weeks), as_weeks.sim.period_revenue)  # no rerun needed


def test_weekly_rerun_with_parameter_uncertainty_is_exact():
    cfg = forecaster.load_config(SAMPLE).with_forecast(trials=60, seed=2, parameter_uncertainty=True)
    f = run_forecast(cfg)
    weekly = R.weekly_trials(f)
    assert np.array_equal(weekly, run_forecast(cfg.with_forecast(period="week")).sim.period_revenue)
    np.testing.assert_allclose(weekly.sum(axis=1), f.sim.revenue, rtol=1e-12, atol=1e-6)


def test_fan_without_new_deals_has_the_mean_of_the_deal_histograms():
    """Open deals only: the mean cumulative revenue by week is sum_i amount_i P(deal i won by then), read
    from the per-deal win-day histograms (an exact identity of the same trials)."""
    f = run_forecast(forecaster.load_config(SAMPLE).with_forecast(trials=300, seed=8, new_deals=False))
    fan = R.cumulative_by_week(f)
    hist, amount = f.sim.deal_win_hist, f.base.deals.amount
    for week in fan["weeks"]:
        last = (dt.date.fromisoformat(week["end"]) - f.base.as_of).days - f.sim.start_off
        expected = float(amount @ hist[:, : last + 1].sum(axis=1)) / f.sim.n_trials
        assert week["mean"] == pytest.approx(expected, rel=1e-12)


def test_fan_quantiles_rise_and_end_at_the_revenue_distribution(monthly):
    fan = R.cumulative_by_week(monthly)
    weeks = fan["weeks"]
    ends = [w["end"] for w in weeks]
    assert ends[-1] == monthly.summary["window"]["end"]
    assert all(dt.date.fromisoformat(e).weekday() == 6 for e in ends[:-1])  # calendar weeks end on Sunday
    for key in ("p10", "p50", "p90"):
        values = [w[key] for w in weeks]
        assert values == sorted(values)
        assert values[-1] == pytest.approx(monthly.summary["revenue"][key], rel=1e-12)
    # the window's quarter began on 2025-04-01, before as-of 2025-05-20: actuals by week up to as-of
    wtd = monthly.summary["won_to_date"]
    assert wtd["since"] == "2025-04-01" and fan["actual"][-1]["end"] == "2025-05-19"
    assert fan["actual"][-1]["revenue"] == pytest.approx(wtd["revenue"])
    assert fan["actual"][-1]["won_deals"] == wtd["won_deals"]


def test_won_to_date_counts_the_deals_won_since_the_quarter_began(crm):
    from tests.conftest import DEALS, HISTORY

    # D1 won 2024-02-10 (1000); D2 lost; D5 (open, created 2024-03-20) keeps as-of 2024-04-01 near the data
    cfg = forecaster.load_config(crm.write(DEALS + "D5,2024-03-20,300,open,,A\n", HISTORY + "D5,qual,2024-03-20\n"))
    snap = forecaster.load(cfg, dt.date(2024, 3, 15))
    assert won_to_date(snap, dt.date(2024, 3, 15), dt.date(2024, 3, 15)) == \
        {"since": "2024-01-01", "revenue": 1000.0, "won_deals": 1}
    assert won_to_date(snap, dt.date(2024, 3, 15), dt.date(2024, 4, 2)) is None  # window in the next quarter
    assert won_to_date(forecaster.load(cfg, dt.date(2024, 2, 10)), dt.date(2024, 2, 10), dt.date(2024, 2, 10)) == \
        {"since": "2024-01-01", "revenue": 0.0, "won_deals": 0}  # won on as-of itself: not known yet
    april = forecaster.load(cfg, dt.date(2024, 4, 1))
    assert won_to_date(april, dt.date(2024, 4, 1), dt.date(2024, 4, 1)) is None  # the quarter starts at as-of
    weeks = won_by_week(snap, dt.date(2024, 1, 1), dt.date(2024, 3, 15))
    assert weeks[0]["end"] == "2024-01-07" and weeks[-1]["end"] == "2024-03-14"
    assert [w["won_deals"] for w in weeks if w["end"] < "2024-02-10"] == [0] * 5
    assert weeks[-1] == {"end": "2024-03-14", "revenue": 1000.0, "won_deals": 1}


def test_deal_probabilities_add_up(monthly):
    t = deals_table(monthly)
    p_win, p_lost, p_open = (t[c].to_numpy() for c in ("p_win", "p_lost", "p_open"))
    assert ((p_open >= 0) & (p_open <= 1)).all()
    np.testing.assert_allclose(p_win + p_lost + p_open, 1.0, rtol=0, atol=1e-12)
    by_period = [c for c in t.column_names if c.startswith("p_win_by_period_")]
    assert by_period == [f"p_win_by_period_{p['start']}" for p in monthly.summary["periods"]]
    np.testing.assert_allclose(sum(t[c].to_numpy() for c in by_period), p_win, rtol=0, atol=1e-12)
    # the first period straight from the histograms
    ps = monthly.sim.period_start - monthly.sim.start_off
    first = monthly.sim.deal_win_hist[:, ps[0]:ps[1]].sum(axis=1) / monthly.sim.n_trials
    assert np.array_equal(t[by_period[0]].to_numpy(), first)


def test_group_trials_add_the_combinations_that_carry_a_value():
    groups = [("EU", "Pro"), ("EU", "Core"), ("US", "Pro")]
    sim = SimpleNamespace(n_trials=2, group_revenue=np.array([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]]),
                          group_wins=np.array([[1, 2, 3], [4, 5, 6]], np.int32))
    t = R.group_trials_table(sim, ("region", "product"), groups).to_pylist()
    got = {(r["column"], r["value"], r["trial"]): (r["revenue"], r["won_deals"]) for r in t}
    assert got == {("region", "EU", 0): (3.0, 3), ("region", "EU", 1): (24.0, 9),
                   ("region", "US", 0): (4.0, 3), ("region", "US", 1): (32.0, 6),
                   ("product", "Core", 0): (2.0, 2), ("product", "Core", 1): (16.0, 5),
                   ("product", "Pro", 0): (5.0, 4), ("product", "Pro", 1): (40.0, 10)}
    empty = R.group_trials_table(sim, (), [()])
    assert empty.num_rows == 0 and empty.column_names == ["trial", "column", "value", "revenue", "won_deals"]


def test_group_trials_of_a_forecast_match_its_segments(monthly):
    t = R.forecast_tables(monthly)["group_trials"]
    assert t.num_rows == monthly.sim.n_trials * monthly.model.n_groups
    for g, values in enumerate(monthly.model.groups):
        rows = t.filter(pa.compute.equal(t["value"], values[0]))
        assert np.array_equal(rows["revenue"].to_numpy(), monthly.sim.group_revenue[:, g])
        assert np.array_equal(rows["trial"].to_numpy(), np.arange(monthly.sim.n_trials))


def test_histogram_and_top_deals(monthly):
    h = R.revenue_histogram(monthly.sim.revenue)
    assert sum(h["counts"]) == monthly.sim.n_trials and len(h["edges"]) == len(h["counts"]) + 1 == 41
    table = pa.table({"deal_id": ["b", "a", "c", "d"], "expected_revenue": [5.0, 5.0, 9.0, 1.0]})
    assert [r["deal_id"] for r in R.top_deals(table, 3)] == ["c", "a", "b"]
    assert R.top_deals(table.slice(0, 0)) == []
    top = R.top_deals(deals_table(monthly))
    assert len(top) == min(25, monthly.summary["open_deals"])
    assert [r["expected_revenue"] for r in top] == sorted((r["expected_revenue"] for r in top), reverse=True)


def test_change_since_a_previous_summary(tmp_path):
    now = {"revenue": {"mean": 110.0, "p10": 50.0, "p50": 100.0, "p90": 150.0},
           "won_deals": {"mean": 9.0, "p10": 5.0, "p50": 9.0, "p90": 12.0}, "p_quota": 0.6}
    then = {"as_of": "2025-06-01", "window": {"start": "2025-06-01", "end": "2025-08-29"},
            "revenue": {"mean": 100.0, "p10": 40.0, "p50": 90.0, "p90": 160.0},
            "won_deals": {"mean": 10.0, "p50": 10.0}, "p_quota": 0.5}
    c = R.change_since(then, now)
    assert c["as_of"] == "2025-06-01" and c["revenue"] == {"mean": 10.0, "p10": 10.0, "p50": 10.0, "p90": -10.0}
    assert c["won_deals"] == {"mean": -1.0, "p50": -1.0} and c["p_quota"] == pytest.approx(0.1)
    assert R.change_since({**then, "p_quota": None}, now)["p_quota"] is None
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(then))
    assert R.load_previous(path) == then


@pytest.mark.parametrize("text, message", [
    (None, "file not found"),
    ("{not json", "not a JSON file"),
    (json.dumps({"as_of": "2025-01-01", "revenue": {"p50": 1}}), "not a forecaster summary.json (no 'revenue.mean')"),
    (json.dumps([1, 2]), "(no 'as_of')"),
])
def test_previous_summary_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "old.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as e:
        R.load_previous(path)
    assert len(e.value.problems) == 1
    assert e.value.problems[0].startswith(f"--previous {path}: ") and message in e.value.problems[0]


def test_weekly_trials_needs_the_prepared_base(monthly):
    with pytest.raises(ValueError, match="no prepared base"):
        R.weekly_trials(dataclasses.replace(monthly, base=None))
