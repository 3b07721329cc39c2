"""Deals to inspect: each rule at its threshold, each deal once with all its reasons in words, the largest of
each reason kept, and the table on generated data whose reps push their close dates."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

import forecaster
from forecaster.analysis.inspection import PER_REASON, PUSHED_TIMES, SLIP_P_WIN, inspect_deals
from forecaster.cli import main

START, END = dt.date(2025, 7, 1), dt.date(2025, 9, 30)


def table(rows: list[dict]) -> pa.Table:
    base = {"stage": "proposal", "age_days": 10, "amount": 1000.0, "p_win": 0.5, "expected_revenue": 500.0,
            "crm_expected_close": None, "close_pushes": 0, "close_push_days": 0, "stale": False}
    return pa.Table.from_pylist([{**base, **r} for r in rows])


def test_each_rule_at_its_threshold():
    rows = table([
        {"deal_id": "slip", "crm_expected_close": dt.date(2025, 8, 1), "p_win": SLIP_P_WIN - 1e-9, "amount": 9000.0},
        {"deal_id": "at-threshold", "crm_expected_close": dt.date(2025, 8, 1), "p_win": SLIP_P_WIN},
        {"deal_id": "after-window", "crm_expected_close": dt.date(2025, 10, 1), "p_win": 0.01},
        {"deal_id": "window-end", "crm_expected_close": END, "p_win": 0.01, "amount": 50.0},
        {"deal_id": "pushed", "close_pushes": PUSHED_TIMES, "close_push_days": 75},
        {"deal_id": "pushed-twice", "close_pushes": PUSHED_TIMES - 1},
        {"deal_id": "stale", "stale": True, "age_days": 120, "stage": "demo", "amount": 20.0},
        {"deal_id": "big", "amount": 1e6},
    ])
    spread = {"deals": [{"deal_id": "big", "share": 0.4}, {"deal_id": "pushed", "share": 0.1},
                        {"deal_id": "nothing", "share": -0.01}]}
    out = inspect_deals(rows, START, END, spread)
    by = {r["deal_id"]: r for r in out["deals"]}
    assert list(by) == ["big", "slip", "pushed", "window-end", "stale"]  # largest first
    assert out["flagged"] == {"slip_risk": 2, "pushed": 1, "stale": 1, "range": 2}
    assert by["slip"]["reasons"] == ["slip_risk"]
    assert by["slip"]["why"] == ("CRM close date 2025-08-01 is inside the window, but the deal is won inside it in "
                                 "only 25.0% of trials")
    assert by["pushed"]["reasons"] == ["pushed", "range"]
    assert by["pushed"]["why"] == ("close date pushed 3 times (75 days in all); carries 10.0% of the variance of "
                                   "window revenue")
    assert by["pushed"]["variance_share"] == 0.1 and by["slip"]["variance_share"] is None
    assert by["stale"]["why"] == "120 days in demo, longer than 90% of stays in that stage"
    assert by["big"]["reasons"] == ["range"]
    assert out["rules"]["slip_p_win_below"] == SLIP_P_WIN and out["rules"]["pushed_at_least"] == PUSHED_TIMES


def test_the_largest_of_each_reason_are_kept():
    rows = table([{"deal_id": f"S{i:02d}", "stale": True, "amount": 100.0 * i} for i in range(PER_REASON + 5)]
                 + [{"deal_id": "tiny-push", "close_pushes": 4, "amount": 1.0}])
    out = inspect_deals(rows, START, END)
    ids = [r["deal_id"] for r in out["deals"]]
    assert out["flagged"]["stale"] == PER_REASON + 5 and out["flagged"]["range"] == 0
    assert ids == [f"S{i:02d}" for i in range(PER_REASON + 4, 4, -1)] + ["tiny-push"]  # a small push still shows


def test_the_table_on_generated_data_with_pushed_close_dates(runner, tmp_path):
    gen = tmp_path / "gen"
    r = runner.invoke(main, ["generate", str(gen), "--seed", "2", "--start", "2024-01-01", "--end", "2025-06-30",
                             "--scale", "0.3", "--optimistic-close", "0.6"])
    assert r.exit_code == 0, r.output
    cfg = forecaster.load_config(gen / "forecaster.yaml").with_forecast(trials=300, as_of=dt.date(2025, 6, 2))
    ins = forecaster.forecast(cfg, explain=True).summary["inspect"]
    assert ins["flagged"]["slip_risk"] > 0 and ins["flagged"]["pushed"] > 0 and ins["flagged"]["range"] > 0
    for row in ins["deals"]:
        assert row["reasons"] and row["why"].count(";") == len(row["reasons"]) - 1
        if "pushed" in row["reasons"]:
            assert row["close_pushes"] >= PUSHED_TIMES
        if "slip_risk" in row["reasons"]:
            assert row["p_win"] < SLIP_P_WIN and "2025-06-02" <= row["crm_expected_close"] <= "2025-06-30"
    assert len(ins["deals"]) <= 4 * PER_REASON
