"""Backtest: baselines by hand, calendar, no leakage, and calibration on generated data."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forecaster.analysis import baselines
from forecaster.analysis.backtest import actuals, backtest, cutoffs, window_last_day
from forecaster.cli import main
from forecaster.config import load_config
from forecaster.calendar import NO_DATE, to_day
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
    # Days from entering a stage to the close: qual 18 (D2), 21 (D4), 31 (D1), 38 (D3); proposal 17 (D1),
    # 21 (D3). Open: D5 1000 in qual, age 29: of the qual spells longer than 29 (31, 38) the remaining
    # 2 and 9 days have median 5.5 -> due 03-01 + 6 = 03-07. D6 2000 in proposal, age 10: remaining 7 and
    # 11, median 9 -> due 03-10. D7 4000 in proposal, age 25: no closed proposal spell lasted that long,
    # so it has no expected close (stale).
    view = baselines.pipeline_view(snap)
    assert view.expected_close.tolist() == [to_day(dt.date(2024, 3, 7)), to_day(dt.date(2024, 3, 10)), NO_DATE]
    assert baselines.weighted_pipeline_all(view) == pytest.approx((1000 * 0.5 + 2000 * 0.5 + 4000 * 0.5, 1.5))
    assert baselines.weighted_pipeline(view, dt.date(2024, 3, 1), dt.date(2024, 3, 31)) == pytest.approx((1500, 1.0))
    # A window to 03-08 leaves D6 (due 03-10) out too.
    assert baselines.weighted_pipeline(view, dt.date(2024, 3, 1), dt.date(2024, 3, 8)) == pytest.approx((500, 0.5))


CRM_DEALS = DEALS.replace("closed_at\n", "closed_at,expected_close_at,probability,forecast_category\n").replace(
    "D5,2024-02-01,1000,open,\n", "D5,2024-02-01,1000,open,,2024-03-20,0.4,Commit\n").replace(
    "D6,2024-02-02,2000,open,\n", "D6,2024-02-02,2000,open,,2024-05-10,0.8,Best Case\n").replace(
    "D7,2024-02-03,4000,won,2024-03-10\n", "D7,2024-02-03,4000,won,2024-03-10,2024-03-10,1.0,Closed\n")
CRM_DEALS = "\n".join(line + (",,," if line.count(",") == 4 else "") for line in CRM_DEALS.splitlines()) + "\n"


def test_crm_forecast_commit_and_best_case_by_hand(crm):
    """As of the export's present (2024-03-11, after D7's win) the deals table's CRM fields are what the
    reps say now: D5 1000 due 03-20 at 40% (commit), D6 2000 due 05-10 at 80% (best case)."""
    data = load(load_config(crm.write(deals=CRM_DEALS, history=HISTORY, config=CONFIG)))
    snap = cut(data, to_day(dt.date(2024, 3, 11)))
    view = baselines.pipeline_view(snap)
    assert view.expected_close.tolist() == [to_day(dt.date(2024, 3, 20)), to_day(dt.date(2024, 5, 10))]
    march = baselines.crm_forecast(snap, view, dt.date(2024, 3, 11), dt.date(2024, 3, 31))
    assert march == pytest.approx({"revenue": 400.0, "won_deals": 0.4, "commit_revenue": 1000.0, "commit_deals": 1.0,
                                   "best_case_revenue": 1000.0, "best_case_deals": 1.0})
    to_may = baselines.crm_forecast(snap, view, dt.date(2024, 3, 11), dt.date(2024, 5, 31))
    assert to_may == pytest.approx({"revenue": 2000.0, "won_deals": 1.2, "commit_revenue": 1000.0,
                                    "commit_deals": 1.0, "best_case_revenue": 3000.0, "best_case_deals": 2.0})
    assert baselines.crm_probabilities(snap, view).tolist() == [0.4, 0.8]


def test_the_deals_tables_crm_fields_do_not_leak_into_a_past_cutoff(crm):
    """Planted leak: D7's deals row says probability 100% and category Closed (it was won on 03-10). As of
    03-01 that is the future: without a field history the CRM's fields are unknown then (and the CRM
    baselines are left out); with one, each deal's value is its last history row before as-of."""
    cfg = load_config(crm.write(deals=CRM_DEALS, history=HISTORY, config=CONFIG))
    snap = cut(load(cfg), to_day(dt.date(2024, 3, 1)))
    assert np.isnan(snap.crm_probability).all() and (snap.expected_close == NO_DATE).all()
    assert all(c is None for c in snap.forecast_category)
    assert [w.key for w in snap.warnings if w.key == "crm_fields_set_aside"] == ["crm_fields_set_aside"]
    assert baselines.crm_forecast(snap, baselines.pipeline_view(snap), dt.date(2024, 3, 1), dt.date(2024, 3, 31)) is None
    hist = HISTORY.replace("deal_id,stage,entered_at\n", "deal_id,stage,entered_at,probability\n")
    hist = "\n".join(line + ("" if line.startswith("deal_id") else ",0.2") for line in hist.splitlines()) + "\n"
    hist = hist.replace("D7,proposal,2024-02-05,0.2", "D7,proposal,2024-02-05,0.6") + "D7,won,2024-03-10,1.0\n"
    snap = cut(load(load_config(crm.write(deals=CRM_DEALS, history=hist, config=CONFIG))), to_day(dt.date(2024, 3, 1)))
    p = dict(zip(snap.deal_id[snap.open_idx].tolist(), snap.crm_probability[snap.open_idx].tolist()))
    assert p == {"D5": 0.2, "D6": 0.2, "D7": 0.6}


def test_actuals_run_rate_and_seasonal_naive_by_hand(crm):
    data = load(load_config(crm.write(deals=DEALS, history=HISTORY, config=CONFIG)))
    start = baselines.history_start(data)
    assert actuals(data, dt.date(2024, 1, 25), dt.date(2024, 2, 1)) == (800.0, 2)
    # Trailing 14-day windows before 2024-02-12: [01-29, 02-11] has D1 (500); [01-15, 01-28] has D4 (300);
    # [01-01, 01-14] has none; nothing before the first deal.
    rev, won = baselines.run_rate(data, dt.date(2024, 2, 12), dt.date(2024, 2, 25), start)
    assert rev.tolist() == [500.0, 300.0, 0.0] and won.tolist() == [1, 1, 0]
    # April: a year earlier is before the data, a quarter earlier is January (D4, 300).
    assert baselines.seasonal_naive(data, dt.date(2024, 4, 1), dt.date(2024, 4, 30), start) == (300.0, 1.0, "quarter")
    assert baselines.seasonal_naive(data, dt.date(2024, 2, 12), dt.date(2024, 2, 25), start) is None
    # Blocks of 14 days before 02-12: [01-01, 01-14] 0, [01-15, 01-28] 300, [01-29, 02-11] 500.
    rev, won = baselines.block_series(data, dt.date(2024, 2, 12), dt.date(2024, 2, 25), start)
    assert rev.tolist() == [0.0, 300.0, 500.0] and won.tolist() == [0, 1, 1]


def test_ets_baseline_recovers_a_stationary_level():
    """AutoETS on iid N(100, 10^2) bookings: its one-step distribution is centred near 100 with sd near 10
    (the level estimate averages about 2/alpha blocks, so within 4 of their standard errors)."""
    rng = np.random.default_rng(3)
    y = 100 + 10 * rng.standard_normal(400)
    q = baselines.ets_sample(y, 52)
    assert q is not None and len(q) == baselines.ETS_QUANTILES and np.all(np.diff(q) >= 0)
    assert abs(q.mean() - 100) < 4 * 10 / np.sqrt(20)
    assert 8.0 < q.std() < 12.5
    assert baselines.ets_sample(y[:5], 52) is None  # too short a history
    assert np.all(baselines.ets_sample(np.full(12, 7.0), 1) == 7.0)


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
    methods = ["forecaster", "forecaster_no_calendar", "forecaster_no_shock", "forecaster_no_new_deals",
               "forecaster_no_age", "weighted_pipeline", "weighted_pipeline_all", "seasonal_naive", "run_rate", "ets"]  # the sample has no CRM probabilities
    for block in (out, out["won_deals"]):
        assert list(block["methods"]) == methods
        for m in block["methods"].values():
            assert {"coverage_80", "coverage_90", "crps", "pinball_50", "bias", "wape", "kind"} <= set(m)
        assert set(block["skill"]) == set(methods) - {"forecaster"}
        assert block["methods"]["ets"]["kind"] == "distribution" and block["methods"]["seasonal_naive"]["kind"] == "point"
    assert set(out["deal_scores"]) == {"forecaster", "stage_win_rate"}
    for s in out["deal_scores"].values():
        assert {"brier", "log_loss", "auc", "reliability"} <= set(s) and len(s["reliability"]) == 10
        assert sum(b["n"] for b in s["reliability"]) == s["deals"]
    table = pq.read_table(tmp_path / "backtest.parquet")
    assert table.num_rows == 4 * len(methods) * 2  # cutoffs x methods x targets
    bad = runner.invoke(main, ["backtest", str(cfg), "--from", "2025-02-01", "--to", "2024-11-01"])
    assert bad.exit_code == 2 and "--to 2024-11-01 is before --from 2025-02-01" in bad.stderr
    bad = runner.invoke(main, ["backtest", str(cfg), "--from", "2024-11-01", "--to", "2025-02-01", "--window", "6w"])
    assert bad.exit_code == 2 and "--window '6w'" in bad.stderr


def test_windows_past_the_data_end_are_left_out_and_failed_cutoffs_reported(runner):
    """The sample's data end 2025-06-30: monthly windows from 2025-05-01 and 2025-06-01 are scored, the one
    from 2025-07-01 is left out (its outcome is unknown) and counted; a cutoff before the first deal fails
    with its error in the output, not silently."""
    cfg = REPO / "src" / "forecaster" / "sample" / "forecaster.yaml"
    res = runner.invoke(main, ["backtest", str(cfg), "--from", "2025-05-01", "--to", "2025-07-01", "--window", "month",
                               "--trials", "100", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["cutoff_dates"] == ["2025-05-01", "2025-06-01"]
    assert out["left_out"]["after_data_end"] == 1 and out["left_out"]["data_end"] == "2025-06-30"
    args = ["backtest", str(cfg), "--from", "2023-12-01", "--to", "2024-03-01", "--window", "month", "--trials", "100"]
    res = runner.invoke(main, args + ["--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["cutoff_dates"] == ["2024-02-01", "2024-03-01"]
    assert [f["cutoff"] for f in out["failed_cutoffs"]] == ["2023-12-01", "2024-01-01"]
    assert "no deal was created before as_of 2023-12-01" in out["failed_cutoffs"][0]["error"]
    assert "cutoff 2023-12-01 failed: " in runner.invoke(main, args).stdout


def test_backtest_seed_changes_only_the_random_parts(runner):
    cfg = REPO / "src" / "forecaster" / "sample" / "forecaster.yaml"
    args = ["backtest", str(cfg), "--from", "2025-03-01", "--to", "2025-04-01", "--window", "month", "--trials", "200",
            "--format", "json"]
    a, b = (json.loads(runner.invoke(main, args + ["--seed", str(k)]).stdout) for k in (1, 2))
    assert a["seed"] == 1 and b["seed"] == 2
    assert a["methods"]["forecaster"]["crps"] != b["methods"]["forecaster"]["crps"]
    assert a["methods"]["weighted_pipeline"] == b["methods"]["weighted_pipeline"]


def test_maven_backtest_runs(runner):
    shared_data("maven_crm")
    res = runner.invoke(main, ["backtest", str(REPO / "configs" / "maven.yaml"), "--from", "2017-04-01",
                               "--to", "2017-07-01", "--every", "quarter", "--window", "quarter", "--trials", "300",
                               "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["cutoff_dates"] == ["2017-04-01", "2017-07-01"]


SEEDS = (1, 2, 3)
CHECKS = 2 * len(SEEDS)  # coverage of revenue and of won deals on each seed


def _generated_backtest(folder, seed: int, effects=None) -> dict:
    generate(folder, seed=seed, start=dt.date(2022, 1, 1), end=dt.date(2025, 12, 31), effects=effects)
    cfg = load_config(folder / "forecaster.yaml").with_forecast(trials=2000)
    return backtest(cfg, dt.date(2023, 7, 1), dt.date(2025, 11, 1), "month", "month")[1]


@pytest.mark.slow
def test_calibration_on_generated_data_over_many_cutoffs_and_seeds(tmp_path):
    """Known truth (the plain generator), 29 non-overlapping monthly windows on each of 3 seeds.

    If the P10-P90 intervals are calibrated, each seed's number of actuals inside them is Binomial(29, 0.8):
    it must lie in the equal-tailed band of probability 1 - 0.05 / 6 (Bonferroni over 2 targets x 3 seeds,
    so a calibrated model fails this test with probability below 5%). The PIT values pooled over the seeds
    (87 per target, independent) must pass the chi-square test of uniformity at 0.05 / 2. What this does not
    claim: calibration on data that lacks the model's structure (the realistic world, next test)."""
    from forecaster.analysis.scores import _binomial_band

    pits = {"revenue": [], "won_deals": []}
    for seed in SEEDS:
        summary = _generated_backtest(tmp_path / f"s{seed}", seed)
        for target, block in (("revenue", summary), ("won_deals", summary["won_deals"])):
            f = block["methods"]["forecaster"]
            n = f["cutoffs"]
            assert n == 29
            lo, hi = _binomial_band(n, 0.8, 1 - 0.05 / CHECKS)
            k = round(f["coverage_80"] * n)
            assert lo <= k <= hi, (seed, target, k, (lo, hi))
        pits["revenue"] += _pits(summary, "revenue")
        pits["won_deals"] += _pits(summary, "won_deals")
    from forecaster.analysis.scores import pit_histogram

    for target, values in pits.items():
        h = pit_histogram(np.array(values))
        assert h["p_value"] >= 0.05 / 2, (target, h["counts"], h["p_value"])


def _pits(summary: dict, target: str) -> list[float]:
    """The forecaster's PIT value per cutoff (backtest.json keeps them beside the histogram)."""
    block = summary if target == "revenue" else summary["won_deals"]
    return block["methods"]["forecaster"]["pit_values"]


@pytest.mark.slow
def test_calibration_in_the_realistic_world(tmp_path):
    """A world with an end-of-quarter push, quarterly shocks, drift and a CRM adopted mid-history
    (synth.effects.realistic), seed 1, 29 monthly windows: the P10-P90 coverage of revenue and of won deals
    lies in the binomial band of probability 1 - 0.05 / 2, and the calendar effects and the shared shock each
    lower the CRPS of won deals (the ablations forecaster_no_calendar, forecaster_no_shock on the same
    cutoffs and draws). On more seeds the won-deal intervals are still too narrow (next test)."""
    from forecaster.analysis.scores import _binomial_band
    from forecaster.synth import realistic

    summary = _generated_backtest(tmp_path, 1, realistic(dt.date(2022, 1, 1)))
    for block in (summary, summary["won_deals"]):
        f = block["methods"]["forecaster"]
        lo, hi = _binomial_band(f["cutoffs"], 0.8, 1 - 0.05 / 2)
        assert lo <= round(f["coverage_80"] * f["cutoffs"]) <= hi
    m = summary["won_deals"]["methods"]
    assert m["forecaster"]["crps"] < m["forecaster_no_calendar"]["crps"]
    assert m["forecaster"]["crps"] < m["forecaster_no_shock"]["crps"]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 12 left: on the realistic world the won-deal P10-P90 intervals are "
                                       "still too narrow on some seeds (docs/backtests.md: 52-59% on seeds 11-13); "
                                       "the quarter-end push lands in the last 10 days, which the model spreads "
                                       "over month 3, and held deals are not told apart from the rest")
def test_calibration_in_the_realistic_world_on_three_seeds(tmp_path):
    """The plain world's claim (test_calibration_on_generated_data_over_many_cutoffs_and_seeds) on the
    realistic world: every seed's coverage in its Bonferroni band. Strict: the day it passes, it fails and the
    claim gets promoted."""
    from forecaster.analysis.scores import _binomial_band
    from forecaster.synth import realistic

    for seed in SEEDS:
        summary = _generated_backtest(tmp_path / f"s{seed}", seed, realistic(dt.date(2022, 1, 1)))
        for block in (summary, summary["won_deals"]):
            f = block["methods"]["forecaster"]
            lo, hi = _binomial_band(f["cutoffs"], 0.8, 1 - 0.05 / CHECKS)
            assert lo <= round(f["coverage_80"] * f["cutoffs"]) <= hi, (seed, f["coverage_80"])
