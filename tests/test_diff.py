"""`forecaster diff`: the parts add up exactly to the change of the forecast, each is zero when nothing of its
kind happened, the start is the forecast as of D1, and every bad flag is one line that writes nothing."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

import forecaster
from forecaster.analysis.diff import COMPONENTS, NEW_DEALS, decompose, diff_window, new_deal_allowance, under_model
from forecaster.analysis.forecast import prepare, simulate_base
from forecaster.cli import main
from tests.conftest import DEALS, HISTORY, REPO, shared_data

SAMPLE = REPO / "src" / "forecaster" / "sample" / "forecaster.yaml"
WEEK = dt.timedelta(days=7)


def assert_adds_up(result: dict, table) -> None:
    """Components in the issue's order; their sums are end - start (revenue and won deals) to rounding, and
    diff.parquet's rows sum to each component."""
    comps = result["components"]
    assert [c["name"] for c in comps] == list(COMPONENTS)
    for key in ("revenue", "won_deals"):
        change = result["end"][key] - result["start"][key]
        parts = math.fsum(c[key] for c in comps)
        scale = max(abs(result["start"][key]), abs(result["end"][key]), 1.0)
        assert abs(parts - change) <= 1e-9 * scale, (key, parts, change)
        for part in ("booked", "open_deals", "new_deals"):
            assert result["start"][part][key] == pytest.approx(result["start"][part][key])
        total = sum(result["end"][p][key] for p in ("booked", "open_deals", "new_deals"))
        assert total == pytest.approx(result["end"][key], rel=1e-12, abs=1e-9)
    comp = np.array(table["component"].to_pylist(), object)
    rev, ids = table["revenue"].to_numpy(), np.array(table["deal_id"].to_pylist(), object)
    for c in comps:
        sel = comp == c["name"]
        assert math.fsum(rev[sel]) == pytest.approx(c["revenue"], rel=1e-9, abs=1e-6)
        assert c["deals"] == int((ids[sel] != NEW_DEALS).sum())
        if c["deals"] == 0 and NEW_DEALS not in set(ids[sel]):
            assert c["revenue"] == 0.0 and c["won_deals"] == 0.0  # nothing of its kind: exactly zero


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A synthetic CRM whose reps push their close dates (a field history of expected close dates)."""
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("gen")
    r = CliRunner().invoke(main, ["generate", str(out), "--seed", "5", "--start", "2024-01-01", "--end", "2025-06-30",
                                  "--scale", "0.4", "--optimistic-close", "0.6"])
    assert r.exit_code == 0, r.output
    return forecaster.load_config(out / "forecaster.yaml").with_forecast(trials=300)


@pytest.mark.parametrize("monday", [dt.date(2025, 5, 5), dt.date(2025, 5, 12), dt.date(2025, 5, 19)])
def test_parts_add_up_on_generated_data_for_consecutive_weeks(generated, monday):
    d = forecaster.diff(generated, monday, monday + WEEK)
    assert d.result["window"] == {"start": "2025-04-01", "end": "2025-06-30"}
    assert_adds_up(d.result, d.rows)
    by = {c["name"]: c for c in d.result["components"]}
    assert by["won"]["deals"] > 0 and by["lost"]["deals"] > 0 and by["created"]["deals"] > 0
    assert by["pushed"]["deals"] > 0  # the reps' pushes come from the field history
    assert by["amount"]["deals"] == 0 and by["amount"]["revenue"] == 0.0  # the export keeps no amount history
    table = d.rows.to_pylist()
    open_at_d2 = d.result["end"]["open_deals"]["deals"]
    assert sum(r["component"] == "model" and r["deal_id"] != NEW_DEALS for r in table) == open_at_d2
    for r in table:  # a pushed deal's CRM close date moved later, in the same stage
        if r["component"] == "pushed":
            assert r["stage_from"] == r["stage_to"] and r["crm_expected_close_to"] > r["crm_expected_close_from"]
        if r["component"] == "won":
            assert r["stage_to"] == "won" and r["p_win_to"] is None


CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
AS_OF = {"maven": dt.date(2017, 7, 3), "bpic2012": dt.date(2012, 2, 6)}


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_parts_add_up_on_every_config(config):
    text = config.read_text()
    for name in ("maven_crm", "bpic2012"):
        if name in text:
            shared_data(name)
    cfg = forecaster.load_config(config).with_forecast(trials=200)
    d2 = AS_OF.get(config.stem, dt.date(2025, 6, 30))
    d = forecaster.diff(cfg, d2 - WEEK, d2)
    assert_adds_up(d.result, d.rows)


def test_nothing_moves_between_a_date_and_itself():
    cfg = forecaster.load_config(SAMPLE).with_forecast(trials=300)
    d = forecaster.diff(cfg, dt.date(2025, 5, 20), dt.date(2025, 5, 20))
    assert all(c["revenue"] == 0.0 and c["won_deals"] == 0.0 for c in d.result["components"])
    assert d.result["start"] == {**d.result["end"]}


def test_the_model_part_is_zero_under_the_same_model():
    """The D2 forecast valued by the D1 model: the refit part vanishes, deals and new-deal allowance alike
    (a deal's draws and a pseudo new deal's draws depend on its id and date only)."""
    cfg = forecaster.load_config(SAMPLE).with_forecast(trials=300)
    full = forecaster.crm.load(cfg)
    window = diff_window(cfg, dt.date(2025, 5, 27), None, None)
    b1 = prepare(cfg.with_forecast(as_of=dt.date(2025, 5, 20), start=dt.date(2025, 5, 20), end=window[1]), full=full)
    b2 = prepare(cfg.with_forecast(as_of=dt.date(2025, 5, 27), start=dt.date(2025, 5, 27), end=window[1]), full=full)
    b2_by_m1, known = under_model(b2, b1.model)
    assert known.all()
    d = decompose(b1, b2_by_m1, window)
    by = {c["name"]: c for c in d.result["components"]}
    assert by["model"]["revenue"] == 0.0 and by["model"]["won_deals"] == 0.0
    assert by["aged"]["revenue"] != 0.0
    assert_adds_up(d.result, d.rows)


QUIET_CONFIG = """data:
  deals: deals.csv
  stage_history: history.csv
stages: [qual, proposal]
won: won
lost: lost
forecast: {trials: 400, seed: 9, new_deals: false}
"""


def test_each_part_is_zero_when_nothing_of_its_kind_happened(crm, runner):
    """A quiet week (nothing won, lost, created, moved; no new deals forecast): only aging and the refit
    move the number. Then one deal is won in that week: the won part is its amount less its D1 value."""
    path = crm.write(config=QUIET_CONFIG)
    cfg = forecaster.load_config(path)
    d1, d2 = dt.date(2024, 3, 5), dt.date(2024, 3, 12)
    d = forecaster.diff(cfg, d1, d2)
    by = {c["name"]: c for c in d.result["components"]}
    for name in ("won", "lost", "created", "progressed", "moved_back", "amount", "pushed", "pulled_in"):
        assert by[name] == {"name": name, "revenue": 0.0, "won_deals": 0.0, "deals": 0, "largest": []}, name
    assert by["aged"]["deals"] == 2 and by["model"]["deals"] == 2
    assert d.result["start"]["booked"] == {"revenue": 1000.0, "won_deals": 1.0}  # D1 won 2024-02-10, in Q1
    assert_adds_up(d.result, d.rows)

    won = crm.write(deals=DEALS.replace("D3,2024-02-01,500,open,", "D3,2024-02-01,500,won,2024-03-07"),
                    history=HISTORY + "D3,won,2024-03-07\n", config=QUIET_CONFIG)
    d = forecaster.diff(forecaster.load_config(won), d1, d2)
    by = {c["name"]: c for c in d.result["components"]}
    assert by["won"]["deals"] == 1 and by["won"]["largest"][0]["deal_id"] == "D3"
    f = runner.invoke(main, ["forecast", str(won), "--as-of", "2024-03-05", "--end", "2024-03-31", "-o",
                             str(crm.root / "f"), "--quiet"])
    assert f.exit_code == 0, f.output
    deals = pq.read_table(crm.root / "f" / "deals.parquet").to_pylist()
    p_d3 = next(r["p_win"] for r in deals if r["deal_id"] == "D3")
    assert by["won"]["revenue"] == pytest.approx(500.0 * (1.0 - p_d3), rel=1e-12)
    assert by["won"]["won_deals"] == pytest.approx(1.0 - p_d3, rel=1e-12)
    assert by["lost"]["deals"] == 0 and by["created"]["deals"] == 0
    assert_adds_up(d.result, d.rows)


def test_the_start_is_the_forecast_as_of_d1(runner, tmp_path):
    """Open deals: the forecast's own expected revenue to the last digit (same seed, trials and window);
    new deals: the kernel's mean new-deal revenue within 4 Monte Carlo standard errors of both estimates."""
    d1, trials = dt.date(2025, 5, 20), 2000
    cfg = forecaster.load_config(SAMPLE).with_forecast(trials=trials)
    d = forecaster.diff(cfg, d1, d1 + WEEK)
    r = runner.invoke(main, ["forecast", str(SAMPLE), "--as-of", "2025-05-20", "--end", "2025-06-30", "--trials",
                             str(trials), "-o", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    deals = pq.read_table(tmp_path / "deals.parquet")
    start = d.result["start"]
    assert start["open_deals"]["revenue"] == pytest.approx(math.fsum(deals["expected_revenue"].to_pylist()), rel=1e-12)
    assert start["open_deals"]["won_deals"] == pytest.approx(math.fsum(deals["p_win"].to_pylist()), rel=1e-12)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert start["booked"]["revenue"] == summary["won_to_date"]["revenue"]

    base = prepare(cfg.with_forecast(as_of=d1, start=d1, end=dt.date(2025, 6, 30)))
    allowance = new_deal_allowance(base)
    sim = simulate_base(base)
    per_deal = allowance.weight * allowance.mean_amount
    se = math.sqrt(sim.new_revenue.var(ddof=1) / trials
                   + float((per_deal ** 2 * allowance.p_win * (1 - allowance.p_win)).sum()) / trials)
    assert start["new_deals"]["revenue"] == pytest.approx(allowance.total()[0], rel=1e-12)
    assert abs(allowance.total()[0] - sim.new_revenue.mean()) <= 4 * se


def test_diff_writes_its_files_and_prints_the_waterfall(runner, tmp_path):
    args = ["diff", str(SAMPLE), "--from", "2025-06-02", "--to", "2025-06-09", "--trials", "200"]
    r = runner.invoke(main, [*args, "-o", str(tmp_path / "d"), "--csv", "--report", str(tmp_path / "d.html")])
    assert r.exit_code == 0, r.output
    assert "What moved: the forecast of 2025-04-01 .. 2025-06-30 as of 2025-06-02 and as of 2025-06-09" in r.stdout
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["diff.csv", "diff.json", "diff.parquet"]
    saved = json.loads((tmp_path / "d" / "diff.json").read_text())
    assert set(saved) >= {"from", "to", "window", "start", "end", "components"}
    assert all(set(c) >= {"name", "revenue", "won_deals", "deals"} for c in saved["components"])
    page = (tmp_path / "d.html").read_text()
    assert '<section id="diff">' in page and 'id="chart-waterfall"' in page
    js = runner.invoke(main, [*args, "--format", "json"])
    assert js.exit_code == 0 and json.loads(js.stdout) == saved


BAD = [
    (["--from", "2025-06-09", "--to", "2025-06-02"], "--to 2025-06-02 is before --from 2025-06-09"),
    (["--from", "2020-01-06", "--to", "2020-01-13"], "--from 2020-01-06 is not after the first deal in the data"),
    (["--from", "2025-06-02", "--to", "2026-01-05"], "--to 2026-01-05 is 189 days after the last recorded event"),
    (["--from", "2025-06-02", "--to", "2025-06-09", "--end", "2025-06-05"], "--end 2025-06-05 is before --to"),
    (["--from", "2025-06-02", "--to", "2025-06-09", "--start", "2025-06-20", "--end", "2025-06-10"],
     "--end 2025-06-10 is before --start 2025-06-20"),
    (["--from", "2025-06-02", "--to", "2025-06-09", "--format", "xml"], "'xml' is not one of 'table', 'json'"),
    (["--from", "last week", "--to", "2025-06-09"], "'last week' is not a date YYYY-MM-DD"),
    (["--to", "2025-06-09"], "Missing option '--from'"),
    (["--from", "2025-06-02", "--to", "2025-06-09", "--trials", "0"], "--trials"),
    (["--from", "2025-06-02", "--to", "2025-06-09", "--csv"], "--csv: the CSV files go next to the Parquet files"),
    (["--from", "2025-06-02", "--to", "2025-06-09", "--report", "{tmp}"], "is a directory"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_diff_options_are_one_line_and_write_nothing(runner, tmp_path, args, message):
    out = [] if "--csv" in args else ["-o", str(tmp_path / "out")]
    trials = [] if "--trials" in args else ["--trials", "20"]
    r = runner.invoke(main, ["diff", str(SAMPLE), *[a.format(tmp=tmp_path) for a in args], *out, *trials])
    assert r.exit_code == 2, r.output
    assert message.format(tmp=tmp_path) in r.output and "Traceback" not in r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1
    assert list(tmp_path.iterdir()) == []
