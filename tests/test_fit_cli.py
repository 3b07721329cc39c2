"""`forecaster fit` and `forecaster funnel` end to end: generated truth, every config, the JSON contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forecaster.cli import main
from forecaster.config import load_config
from forecaster import load as load_as_of
from forecaster.analysis.funnel import cell_exit_shares
from forecaster.model import PipelineModel, fit
from forecaster.synth import generate
from tests.conftest import REPO, config_data

STAGE_KEYS = {"stage", "entered", "open_deals", "open_amount", "p_exit", "win_rate", "median_days",
              "p90_days", "stale_deals"}
OVERALL_KEYS = {"win_rate", "avg_won_amount", "cycle_days_median", "open_deals", "open_amount", "velocity_per_day"}


def configs():
    return sorted((REPO / "configs").glob("*.yaml"))


def test_generated_truth_is_recovered_per_segment_and_stage(tmp_path):
    """Shares fitted without shrinkage match the generator's p_exit within 4 standard errors."""
    generate(tmp_path, seed=3, scale=1.0)
    text = (tmp_path / "forecaster.yaml").read_text() + "fit: {prior_strength: 0}\n"
    (tmp_path / "forecaster.yaml").write_text(text)
    cfg = load_config(tmp_path / "forecaster.yaml")
    model = fit(load_as_of(cfg), cfg)
    truth = json.loads((tmp_path / "truth.json").read_text())
    names = list(model.stages) + [model.won, model.lost]
    checked = 0
    for g, (product,) in enumerate(model.groups):
        for s, stage in enumerate(model.stages):
            c = g * model.n_stages + s
            n = model.cell_exits[c]
            fitted = cell_exit_shares(model, c)
            p_true = truth["segments"][product]["stages"][stage]["p_exit"]
            for k, name in enumerate(names):
                if k == s:
                    continue
                p = p_true.get(name, 0.0)
                se = np.sqrt(max(p * (1 - p), 1e-4) / n)
                assert abs(fitted[k] - p) <= 4 * se + 1e-9, (product, stage, name, fitted[k], p, n)
                checked += 1
    assert checked > 50


@pytest.mark.parametrize("path", configs(), ids=lambda p: p.name)
def test_fit_and_funnel_on_every_config(runner, tmp_path, path):
    config_data(path)
    res = runner.invoke(main, ["fit", str(path), "-o", str(tmp_path / "model")])
    assert res.exit_code == 0, res.output
    model = PipelineModel.load(tmp_path / "model")
    assert model.n_stages >= 1
    res = runner.invoke(main, ["funnel", str(path), "--format", "json", "-o", str(tmp_path / "f.json")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out == json.loads((tmp_path / "f.json").read_text())
    assert {"as_of", "stages", "overall", "bottleneck"} <= set(out)
    for s in out["stages"]:
        assert STAGE_KEYS <= set(s)
        assert abs(sum(s["p_exit"].values()) - 1) < 1e-9
        # forward (later stages and won) and back (earlier stages) apart; with lost they are every exit
        assert abs(s["forward_share"] + s["back_share"] + s["lost_share"] - 1) < 1e-9
        assert s["lost_share"] == list(s["p_exit"].values())[-1]
        assert s is not out["stages"][0] or s["back_share"] == 0  # nothing comes before the first stage
        assert 0 <= s["win_rate"] <= 1 and s["median_days"] <= s["p90_days"]
    assert OVERALL_KEYS <= set(out["overall"])
    assert out["bottleneck"] in [s["stage"] for s in out["stages"]]
    table = runner.invoke(main, ["funnel", str(path)])
    assert table.exit_code == 0
    assert max(len(line) for line in table.stdout.splitlines()) <= 100


def test_funnel_segment_filter_and_errors(runner, sample_dir):
    cfg = str(sample_dir / "forecaster.yaml")
    full = json.loads(runner.invoke(main, ["funnel", cfg, "--format", "json"]).stdout)
    parts = [json.loads(runner.invoke(main, ["funnel", cfg, "--format", "json", "--segment", f"product={p}"]).stdout)
             for p in ("Core", "Pro", "Enterprise")]
    for s in range(len(full["stages"])):
        assert sum(p["stages"][s]["open_deals"] for p in parts) == full["stages"][s]["open_deals"]
        assert sum(p["stages"][s]["entered"] for p in parts) == full["stages"][s]["entered"]
    bad = runner.invoke(main, ["funnel", cfg, "--segment", "product=Nope"])
    assert bad.exit_code == 2
    assert "Error: --segment 'product=Nope': no segment product=Nope; values: Core, Enterprise, Pro" in bad.stderr
    bad = runner.invoke(main, ["funnel", cfg, "--segment", "region"])
    assert "expected COLUMN=VALUE" in bad.stderr


def test_funnel_as_of_sees_only_the_past(runner, sample_dir):
    cfg = str(sample_dir / "forecaster.yaml")
    early = json.loads(runner.invoke(main, ["funnel", cfg, "--format", "json", "--as-of", "2025-01-01"]).stdout)
    assert early["as_of"] == "2025-01-01"
    cfgobj = load_config(sample_dir / "forecaster.yaml")
    import datetime as dt

    snap = load_as_of(cfgobj, dt.date(2025, 1, 1))
    assert early["overall"]["open_deals"] == int((snap.status == 0).sum())


def test_funnel_stale_deals_are_the_deals_prune_stale_prunes(runner):
    """One definition of stale (older than the segment's own p90 in the stage): the funnel's count per
    stage is what `prune_stale: {beyond: p90}` prunes."""
    from forecaster.analysis.compare import scenario_inputs
    from forecaster.analysis.forecast import prepare
    from forecaster.analysis.scenarios import Scenario

    cfg = REPO / "configs" / "scenarios.yaml"
    out = json.loads(runner.invoke(main, ["funnel", str(cfg), "--format", "json"]).stdout)
    base = prepare(load_config(cfg).with_forecast(trials=10))
    pruned = scenario_inputs(base, Scenario("p", prune_beyond_p90=True)).pruned_deals
    assert pruned == sum(s["stale_deals"] for s in out["stages"]) > 0
