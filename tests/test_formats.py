"""Presets: each reads its CRM's export as the CRM writes it and gives the forecast of the same data
written in the generic layout (tests/crm_exports.py writes both from one generated CRM)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

import forecaster
from forecaster.calendar import to_date
from forecaster.cli import main
from tests import crm_exports as X

SAME = ("as_of", "window", "open_deals", "open_amount", "revenue", "won_deals", "periods", "from_new_deals",
        "lost_deals", "p_quota")


@pytest.fixture(scope="module")
def crm(tmp_path_factory) -> X.Crm:
    return X.build(tmp_path_factory.mktemp("generated"))


def assert_same_forecast(preset_cfg: Path, generic_cfg: Path):
    a, b = forecaster.forecast(preset_cfg), forecaster.forecast(generic_cfg)
    for key in SAME:
        assert a.summary[key] == b.summary[key], key
    assert list(a.summary["segments"].values()) == list(b.summary["segments"].values())
    assert list(a.summary["carried_over"].values()) == list(b.summary["carried_over"].values())  # stage names differ
    assert [k.split("=", 1)[1] for k in a.summary["segments"]] == [k.split("=", 1)[1] for k in b.summary["segments"]]
    assert np.array_equal(a.sim.deal_won_trials, b.sim.deal_won_trials)
    assert a.summary["revenue"]["mean"] > 0
    return a, b


def assert_same_snapshot(a, b):
    for name in ("deal_id", "created", "closed", "status", "amount", "stage_now", "entered_now"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.spells.dest, b.spells.dest) and np.array_equal(a.spells.dur, b.spells.dur)


@pytest.mark.parametrize("report", [False, True], ids=["data_loader", "report"])
def test_salesforce_equals_the_generic_layout(crm, tmp_path, report):
    sf = X.write_salesforce(tmp_path / "sf", crm, report=report)
    generic = X.write_generic(tmp_path / "generic", crm)
    a, b = assert_same_forecast(sf, generic)
    assert_same_snapshot(a.data, b.data)
    # what the CRM said as of the forecast date: the history's, not today's (no leakage)
    assert np.array_equal(a.data.expected_close, b.data.expected_close)
    assert np.array_equal(a.data.close_pushes, b.data.close_pushes)
    # pushes counted independently: the expected close dates of each deal's rows before as_of, in order
    ref = {}
    for d in crm.deals:
        seen = [d.expected_close(i) if r.stage < 6 else r.at.date() for i, r in enumerate(d.rows)
                if r.at.date() < X.AS_OF]
        steps = [(b - a).days for a, b in zip(seen, seen[1:]) if b > a]
        ref[d.id] = (len(steps), sum(steps))
    got = {i: (int(n), int(days)) for i, n, days in zip(a.data.deal_id, a.data.close_pushes, a.data.close_push_days)}
    assert got == {i: ref[i] for i in got} and sum(n for n, _ in got.values()) > 0
    is_open = a.data.status == 0
    assert np.isfinite(a.data.crm_probability[is_open]).all() and (a.data.crm_probability <= 1).all()
    assert set(a.data.forecast_category[is_open]) <= {"Pipeline", "Best Case", "Commit"}


def test_salesforce_dates_are_the_business_days_not_utc(crm, tmp_path):
    sf = X.write_salesforce(tmp_path / "sf", crm)
    data = forecaster.load(sf)
    won = [d for d in crm.deals if d.status == "won"][0]
    i = list(data.deal_id).index(won.id)
    assert to_date(data.closed[i]) == won.close.date()  # 23:30 Pacific, the next day in UTC
    utc = sf.read_text().replace("  timezone: America/Los_Angeles\n", "")
    sf.write_text(utc)
    assert to_date(forecaster.load(sf).closed[i]) == won.close.date() + dt.timedelta(days=1)


def test_salesforce_lost_deal_with_a_future_close_date_is_lost(crm, tmp_path):
    sf = X.write_salesforce(tmp_path / "sf", crm)
    data = forecaster.load(sf, as_of=X.AS_OF)
    raw = (tmp_path / "sf" / "Opportunity.csv").read_text()
    stale = [d for d in crm.deals if d.status == "lost" and d.close.date() < X.AS_OF
             and f'"{d.id}"' in raw and len(d.rows) > 1]
    assert stale
    for d in stale[:20]:
        i = list(data.deal_id).index(d.id)
        assert data.status[i] == 2 and to_date(data.closed[i]) == d.close.date()


@pytest.mark.parametrize("xlsx", [False, True], ids=["csv", "xlsx"])
def test_hubspot_equals_the_generic_layout(crm, tmp_path, xlsx):
    hs = X.write_hubspot(tmp_path / "hs", crm, xlsx=xlsx)
    generic = X.write_generic(tmp_path / "generic", crm, history="hubspot", pipelines=True)
    a, b = assert_same_forecast(hs, generic)
    assert_same_snapshot(a.data, b.data)
    assert set(a.summary["report_by"]["pipeline"]) == {"Renewals", "Sales Pipeline", "(total)"}


def test_hubspot_pipeline_funnel_shows_only_its_stages(crm, tmp_path, runner):
    import json

    hs = X.write_hubspot(tmp_path / "hs", crm)
    r = runner.invoke(main, ["funnel", str(hs), "--segment", "pipeline=Renewals", "--format", "json"])
    assert r.exit_code == 0, r.output
    f = json.loads(r.stdout)
    assert [s["stage"] for s in f["stages"]] == list(X.HS_PIPELINES["Renewals"][0])
    assert f["bottleneck"] in X.HS_PIPELINES["Renewals"][0]
    assert set(f["stages"][0]["p_exit"]) <= set(X.HS_PIPELINES["Renewals"][0]) | {"Renewed", "Churned"}


@pytest.mark.parametrize("last_change", [False, True], ids=["stage_only", "last_stage_change"])
def test_pipedrive_equals_the_generic_layout_with_current_stages(crm, tmp_path, last_change):
    pd = X.write_pipedrive(tmp_path / "pd", crm, last_change=last_change)
    generic = X.write_generic(tmp_path / "generic", crm, history="pipedrive_change" if last_change else "pipedrive")
    a, b = assert_same_forecast(pd, generic)
    assert_same_snapshot(a.data, b.data)
    assert a.data.warning_counts()["drop_status"] == 7
    assert a.data.currency == "EUR" and a.summary["currency"] == "EUR"
    # open deals sit in the stage the export shows, never all in one stage
    assert len(set(a.data.stage_now[a.data.open_idx])) > 2


def test_salesforce_preset_reads_fivetrans_opportunity_table(tmp_path):
    from tests.conftest import shared_data

    seed = shared_data("crm_formats") / "salesforce_sf_opportunity_data.csv"
    # the seed is obfuscated: probabilities of 1000 (%) are fixed by a recode, blank amounts filled with 0
    (tmp_path / "forecaster.yaml").write_text(
        f"data: {{format: salesforce, deals: {seed}, amount_fill: {{value: 0}}, recode: {{probability: {{'1000': '100'}}}}}}\n")
    data = forecaster.load(tmp_path / "forecaster.yaml")
    assert data.n_deals == 10
    assert data.status.tolist() == [1] * 5 + [2] * 4 + [0]  # is_closed / is_won as Fivetran writes them
    assert data.crm_probability.tolist()[-1] == 0.65
    assert to_date(data.expected_close[-1]) == dt.date(2018, 12, 19)  # the open deal's close_date


def test_pipedrive_without_stages_is_deal_level(crm, tmp_path):
    pd = X.write_pipedrive(tmp_path / "pd", crm)
    pd.write_text("\n".join(line for line in pd.read_text().splitlines() if not line.startswith("stages:")) + "\n")
    generic = X.write_generic(tmp_path / "generic", crm, history="pipedrive")
    generic.write_text(generic.read_text().replace(", stage_history: history.csv", "")
                       .replace(f"stages: [{', '.join(X.STAGES)}]\nwon: won\nlost: lost\n", ""))
    a, b = assert_same_forecast(pd, generic)
    assert a.data.deal_level and a.data.stages == ("open",)


def test_data_columns_override_a_presets_default(crm, tmp_path):
    sf = X.write_salesforce(tmp_path / "sf", crm)
    opp = tmp_path / "sf" / "Opportunity.csv"
    opp.write_text(opp.read_text().replace('"Amount"', '"Amount_EUR__c"', 1))
    sf.write_text(sf.read_text().replace("  timezone:", "  columns: {amount: Amount_EUR__c}\n  timezone:"))
    data = forecaster.load(sf)
    assert data.amount.sum() == pytest.approx(sum(d.amount for d in crm.deals if d.created.date() < data.as_of_date))


def test_hubspot_stage_column_not_in_the_config_is_one_error(crm, tmp_path, runner):
    hs = X.write_hubspot(tmp_path / "hs", crm)
    hs.write_text(hs.read_text().replace("Renewal Demo, ", ""))
    r = runner.invoke(main, ["validate", str(hs)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    lines = [x for x in r.stderr.splitlines() if x.startswith("Error:")]
    assert len(lines) == 1 and lines[0].startswith(
        "Error: hubspot-crm-exports-all-deals-2025-07-01.csv: column 'Date entered \"Renewal Demo (Renewals)\"': "
        "stage 'Renewal Demo' is not a stage of pipeline 'Renewals'")
