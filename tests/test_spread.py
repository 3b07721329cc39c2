"""What makes the range wide: the parts of the variance add up to it, independent deals carry only their own
amount^2 p (1 - p), each deal run alone does what it did in the forecast, and the CLI shows it all."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import forecaster
from forecaster.analysis.forecast import subset_simulator
from forecaster.analysis.spread import SPREAD_DEALS, chosen_deals, high_low_trials, own_variance
from forecaster.cli import main
from tests.conftest import REPO

SAMPLE_DIR = REPO / "src" / "forecaster" / "sample"
SAMPLE = SAMPLE_DIR / "forecaster.yaml"


def config(tmp_path, fit: str = "{}", forecast: str = "") -> forecaster.Config:
    path = tmp_path / "c.yaml"
    path.write_text(f"""data:
  deals: {SAMPLE_DIR / 'deals.parquet'}
  stage_history: {SAMPLE_DIR / 'stage_history.parquet'}
stages: [prospecting, qualification, discovery, demo, proposal, negotiation]
won: won
lost: lost
segment_by: [product]
report_by: [region]
fit: {fit}
forecast: {{as_of: 2025-06-01, seed: 11, {forecast}}}
""")
    return forecaster.load_config(path)


def parts_total(sp: dict) -> float:
    return math.fsum([r["covariance"] for r in sp["deals"]] + [sp["other_open_deals"]["covariance"],
                                                                sp["new_deals"]["covariance"]])


def test_independent_deals_carry_their_own_variance_only(tmp_path):
    """No shared shock, no new deals, no parameter uncertainty: the deals are independent, so the sample
    variance of revenue is sum amount^2 p (1 - p) (p: each deal's share of won trials) plus the sum of the
    sample covariances of distinct deals, which has mean 0 and variance 2 [(sum s_i)^2 - sum s_i^2] / T
    (s_i = amount_i^2 p_i (1 - p_i)). And the parts add up to the sample variance to rounding."""
    trials = 4000
    cfg = config(tmp_path, "{shared_shocks: false}", f"trials: {trials}, new_deals: false")
    f = forecaster.forecast(cfg, explain=True)
    sp = f.summary["spread"]
    own = own_variance(f.base.deals.amount, f.sim.deal_p_win)
    assert sp["variance"] == pytest.approx(f.sim.revenue.var(), rel=1e-12)
    se = math.sqrt(2.0 * (own.sum() ** 2 - (own ** 2).sum()) / trials)
    assert abs(sp["variance"] - own.sum()) <= 4 * se, (sp["variance"], own.sum(), se)
    assert parts_total(sp) == pytest.approx(sp["variance"], rel=1e-9)
    assert sp["new_deals"] == {"covariance": 0.0, "share": 0.0}
    ids = [str(x) for x in f.data.deal_id[f.open_idx]]
    chosen = chosen_deals(own)
    assert sp["deals_alone"] == len(chosen) == min(SPREAD_DEALS, int((own > 0).sum()))
    assert {r["deal_id"] for r in sp["deals"]} == {ids[i] for i in chosen}
    for r in sp["deals"]:
        i = ids.index(r["deal_id"])
        assert r["own_variance"] == pytest.approx(own[i], rel=1e-12)
        assert r["covariance"] == pytest.approx(r["own_variance"] + r["shared_covariance"], rel=1e-12)
    rest = np.setdiff1d(np.arange(len(own)), chosen)
    assert sp["other_open_deals"]["own_variance"] == pytest.approx(own[rest].sum(), rel=1e-12)
    for groups in (sp["segments"], sp["report_by"]["region"]):
        assert math.fsum(g["share"] for g in groups.values()) == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("uncertainty", [False, pytest.param(True, marks=pytest.mark.slow)])  # 20 s: 600 runs
def test_each_deal_alone_does_what_it_did_in_the_forecast(tmp_path, uncertainty):
    """Common random numbers: the deals run alone, the other open deals and the new deals add up, trial by
    trial, to the forecast's revenue (with parameter uncertainty too: the same blocks and refitted models),
    so every covariance is with the forecast's own trials."""
    cfg = config(tmp_path, forecast=f"trials: 600, parameter_uncertainty: {str(uncertainty).lower()}")
    f = forecaster.forecast(cfg, explain=True)
    sp = f.summary["spread"]
    simulate = subset_simulator(f.base)
    deals = f.base.deals
    chosen = chosen_deals(own_variance(deals.amount, f.sim.deal_p_win))
    alone = [simulate(deals.take(np.array([i]))).revenue for i in chosen.tolist()]
    rest = simulate(deals.take(np.setdiff1d(np.arange(deals.n_deals), chosen))).revenue
    np.testing.assert_allclose(np.sum(alone, axis=0) + rest + f.sim.new_revenue, f.sim.revenue, rtol=1e-12)
    assert parts_total(sp) == pytest.approx(sp["variance"], rel=1e-9)
    assert sp["new_deals"]["covariance"] > 0
    high, low, hi_q, lo_q = high_low_trials(f.sim.revenue)
    assert sp["high_trials"] == {"at_least": hi_q, "trials": int(high.sum())}
    ids = [str(x) for x in f.data.deal_id[f.open_idx[chosen]]]
    for r in sp["separating"]:
        won = alone[ids.index(r["deal_id"])] > 0
        assert r["won_in_high"] == won[high].mean() and r["won_in_low"] == won[low].mean()
        assert r["separation"] > 0
    seps = [r["separation"] for r in sp["separating"]]
    assert seps == sorted(seps, reverse=True)


def test_forecast_explain_prints_and_writes_the_spread_and_the_deals_to_inspect(runner, tmp_path):
    args = ["forecast", str(SAMPLE), "--as-of", "2025-06-01", "--trials", "300", "--explain"]
    r = runner.invoke(main, [*args, "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "What makes the range wide: standard deviation of window revenue" in r.stdout
    assert "Deals to inspect:" in r.stdout and "deals that separate a P90 trial" in r.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"spread", "inspect"} <= set(summary) and "explain_s" in summary["timing"]
    js = runner.invoke(main, [*args, "--format", "json"])
    out = json.loads(js.stdout)
    assert out["spread"] == summary["spread"] and out["inspect"] == summary["inspect"]
    plain = runner.invoke(main, ["forecast", str(SAMPLE), "--as-of", "2025-06-01", "--trials", "300",
                                 "--format", "json"])
    assert "spread" not in json.loads(plain.stdout)  # only when asked for


def test_explain_on_a_bad_forecast_is_one_line_and_writes_nothing(runner, tmp_path):
    r = runner.invoke(main, ["forecast", str(SAMPLE), "--explain", "--as-of", "2019-01-01", "-o", str(tmp_path / "o"),
                             "--report", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "no deal was created before as_of 2019-01-01" in lines[0]
    assert list(tmp_path.iterdir()) == []
    r = runner.invoke(main, ["forecast", str(SAMPLE), "--explain=yes"])
    assert r.exit_code == 2 and "Option '--explain' does not take a value" in r.output
