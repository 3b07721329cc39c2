"""The cases of issue 10 that gave a confident wrong forecast with exit 0: each failed before its fix."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

import forecaster
from forecaster.calendar import to_date, to_day
from forecaster.cli import main
from forecaster.crm import LOST, OPEN, WON, cut, load
from forecaster.config import load_config

STAGES = "[qual, proposal]"
CONFIG = f"""data:
  deals: deals.csv
  stage_history: history.csv
stages: {STAGES}
won: won
lost: lost
"""


def write(folder: Path, deals: str, history: str, config: str = CONFIG) -> Path:
    (folder / "deals.csv").write_text(deals)
    (folder / "history.csv").write_text(history)
    (folder / "forecaster.yaml").write_text(config)
    return folder / "forecaster.yaml"


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


# A rep lost S1 in April without touching its CloseDate (still September); everything else ends in May.
STALE_DEALS = """deal_id,created_at,amount,status,closed_at
S1,2025-01-05,9000,lost,2025-09-30
S2,2025-02-01,1000,open,
S3,2025-03-01,2000,won,2025-05-20
"""
STALE_HISTORY = """deal_id,stage,entered_at
S1,qual,2025-01-05
S1,proposal,2025-02-10
S1,lost,2025-04-10
S2,qual,2025-02-01
S3,qual,2025-03-01
S3,won,2025-05-20
"""


def test_close_is_the_history_row_that_entered_won_or_lost(tmp_path):
    cfg = load_config(write(tmp_path, STALE_DEALS, STALE_HISTORY))
    snap = cut(load(cfg), to_day(dt.date(2025, 5, 1)))
    i = list(snap.deal_id).index("S1")
    assert snap.status[i] == LOST, "lost in April: not open pipeline on 1 May"
    assert to_date(snap.closed[i]) == dt.date(2025, 4, 10)
    assert "S1" not in set(snap.deal_id[snap.open_idx])


def test_default_as_of_is_after_the_last_recorded_event_not_a_stale_close_date(tmp_path):
    snap = forecaster.load(write(tmp_path, STALE_DEALS, STALE_HISTORY))
    assert snap.as_of_date == dt.date(2025, 5, 21)


def test_a_stale_future_close_without_a_history_row_is_taken_as_the_export_day(tmp_path):
    history = STALE_HISTORY.replace("S1,lost,2025-04-10\n", "")
    snap = forecaster.load(write(tmp_path, STALE_DEALS, history))
    i = list(snap.deal_id).index("S1")
    assert snap.as_of_date == dt.date(2025, 5, 21)
    assert snap.status[i] == LOST and to_date(snap.closed[i]) == dt.date(2025, 5, 20)
    assert snap.warning_counts()["closed_after_export"] == 1


def test_as_of_long_after_the_data_is_an_error_naming_both_dates(tmp_path, runner):
    path = write(tmp_path, STALE_DEALS, STALE_HISTORY)
    out = tmp_path / "out"
    r = runner.invoke(main, ["forecast", str(path), "--as-of", "2030-01-01", "--trials", "50", "-o", str(out)])
    assert r.exit_code == 2
    assert errors(r) == ["Error: as_of 2030-01-01 is 1,687 days after the last recorded event in the data "
                         "(2025-05-20); pick an as-of date up to 30 days after it"]
    assert not out.exists()


def test_as_of_a_little_after_the_data_is_a_warning(tmp_path, runner):
    r = runner.invoke(main, ["validate", str(write(tmp_path, STALE_DEALS, STALE_HISTORY)), "--as-of", "2025-06-10"])
    assert r.exit_code == 0, r.output
    assert ("warning: as_of 2025-06-10 is after the last recorded event in the data (2025-05-20): "
            "no deal is seen arriving or moving in the days between (21)") in r.stdout


def test_reopened_deal_is_lost_between_its_loss_and_its_reopening(tmp_path):
    deals = """deal_id,created_at,amount,status,closed_at
R1,2025-01-02,5000,open,
R2,2025-01-03,1000,open,
"""
    history = """deal_id,stage,entered_at
R1,qual,2025-01-02
R1,lost,2025-01-10
R1,proposal,2025-02-01
R2,qual,2025-01-03
R2,proposal,2025-02-20
"""
    data = load(load_config(write(tmp_path, deals, history)))
    mid = cut(data, to_day(dt.date(2025, 1, 15)))
    assert mid.status[0] == LOST and to_date(mid.closed[0]) == dt.date(2025, 1, 10)
    after = cut(data, to_day(dt.date(2025, 2, 15)))
    assert after.status[0] == OPEN and after.stage_now[0] == 1
    assert to_date(after.entered_now[0]) == dt.date(2025, 2, 1)
    sp = after.spells
    r1 = sp.deal == 0
    # the qual spell exits to lost on 10 January; the proposal spell is open (censored) at the cut
    assert sp.dest[r1].tolist() == [3, -1] and sp.dur[r1].tolist() == [8, 14]


def test_same_day_stage_rows_are_ordered_by_their_timestamp_not_file_order(tmp_path):
    deals = """deal_id,created_at,amount,status,closed_at
T1,2025-01-02,5000,open,
"""
    history = """deal_id,stage,entered_at
T1,proposal,2025-01-05T16:00:00Z
T1,qual,2025-01-02T09:00:00Z
T1,qual,2025-01-05T09:00:00Z
"""
    # in time: qual (2 Jan), qual (5 Jan 09:00, a repeat), proposal (5 Jan 16:00): it is in proposal
    snap = cut(load(load_config(write(tmp_path, deals, history))), to_day(dt.date(2025, 2, 1)))
    assert snap.stage_now[0] == 1


def test_a_model_fitted_with_another_config_is_refused(tmp_path, runner):
    from tests.conftest import DEALS, HISTORY

    path = write(tmp_path, DEALS, HISTORY, CONFIG + "segment_by: [product]\n")
    model = tmp_path / "model"
    r = runner.invoke(main, ["fit", str(path), "-o", str(model)])
    assert r.exit_code == 0, r.output
    path.write_text(CONFIG.replace(STAGES, "[proposal, qual]") + "segment_by: [product]\n")
    r = runner.invoke(main, ["forecast", str(path), "--model", str(model), "--trials", "20"])
    assert r.exit_code == 2
    assert errors(r) == [f"Error: {model}: the model was fitted with another config: stages were [qual, proposal], "
                         f"the config has [proposal, qual]; refit with `forecaster fit`"]


def test_a_won_flag_cannot_be_the_status(tmp_path, runner):
    deals = """Id,CreatedDate,Amount,IsWon,CloseDate
O1,2025-01-02,100,false,
O2,2025-01-03,200,true,2025-02-01
"""
    config = "data: {deals: deals.csv, columns: {deal_id: Id, created_at: CreatedDate, amount: Amount, " \
             "status: IsWon, closed_at: CloseDate}, status_values: {won: ['true'], lost: ['*']}}\n"
    (tmp_path / "deals.csv").write_text(deals)
    (tmp_path / "forecaster.yaml").write_text(config)
    r = runner.invoke(main, ["validate", str(tmp_path / "forecaster.yaml")])
    assert r.exit_code == 2
    assert errors(r) == ["Error: deals.csv: column 'IsWon' (status): holds only true/false values, which cannot "
                         "tell open from lost deals; map data.columns.is_closed and data.columns.is_won instead"]


def test_closed_and_won_flags_give_the_status(tmp_path):
    deals = """Id,CreatedDate,Amount,IsClosed,IsWon,CloseDate
O1,2025-01-02,100,false,false,2025-06-30
O2,2025-01-03,200,true,true,2025-02-01
O3,2025-01-04,300,TRUE,FALSE,2025-02-02
O4,2025-01-05,400,1,0,2025-02-03
"""
    (tmp_path / "deals.csv").write_text(deals)
    (tmp_path / "forecaster.yaml").write_text(
        "data: {deals: deals.csv, columns: {deal_id: Id, created_at: CreatedDate, amount: Amount, "
        "is_closed: IsClosed, is_won: IsWon, closed_at: CloseDate}}\n")
    data = load(load_config(tmp_path / "forecaster.yaml"))
    assert data.status.tolist() == [OPEN, WON, LOST, LOST]


def test_mixed_currencies_are_not_summed_silently(tmp_path, runner):
    deals = """deal_id,created_at,amount,status,closed_at,currency
D1,2025-01-02,100,won,2025-02-01,EUR
D2,2025-01-03,200,open,,USD
D3,2025-01-04,200,open,,USD
"""
    (tmp_path / "deals.csv").write_text(deals)
    (tmp_path / "forecaster.yaml").write_text("data: {deals: deals.csv}\n")
    r = runner.invoke(main, ["validate", str(tmp_path / "forecaster.yaml")])
    assert r.exit_code == 2
    assert errors(r) == ["Error: deals.csv: column 'currency': amounts in 2 currencies (EUR 1 deal(s), USD 2 "
                         "deal(s)); convert them with data.currency: {to: USD, rates: {EUR: ...}}"]


def backtest_export(folder: Path) -> Path:
    rng = np.random.default_rng(3)
    deals, hist = ["deal_id,created_at,amount,status,closed_at"], ["deal_id,stage,entered_at"]
    start = dt.date(2024, 1, 1)
    for i in range(240):
        c = start + dt.timedelta(days=int(i * 1.5))
        status = "open" if i >= 200 else ("won" if rng.random() < 0.4 else "lost")
        close = c + dt.timedelta(days=int(rng.integers(5, 60)))
        deals.append(f"D{i},{c},{int(rng.integers(1, 50)) * 100},{status},{close if status != 'open' else ''}")
        hist.append(f"D{i},qual,{c}")
        if status != "open":
            hist.append(f"D{i},{status},{close}")
    return write(folder, "\n".join(deals) + "\n", "\n".join(hist) + "\n")


def test_backtest_says_why_windows_are_left_out_and_reports_failed_cutoffs(tmp_path, runner):
    path = backtest_export(tmp_path)
    last = forecaster.load(path).export.last_day
    r = runner.invoke(main, ["backtest", str(path), "--from", "2023-11-01", "--to", "2025-01-01", "--every",
                             "quarter", "--window", "quarter", "--trials", "50", "--format", "json"])
    assert r.exit_code == 0, r.output
    b = json.loads(r.stdout)
    windows_end = [dt.date.fromisoformat(c) for c in b["cutoff_dates"]]
    assert all(forecaster.analysis.backtest.window_last_day(d, "quarter") <= to_date(last) for d in windows_end)
    assert b["left_out"] == {"after_data_end": 1, "cutoffs": ["2024-11-01"], "data_end": str(to_date(last)),
                             "reason": f"the window ends after the last recorded event in the data ({to_date(last)})"}
    assert b["failed_cutoffs"] == [{"cutoff": "2023-11-01",
                            "error": f"{tmp_path / 'deals.csv'}: no deal was created before as_of 2023-11-01"}]
    r = runner.invoke(main, ["backtest", str(path), "--from", "2023-11-01", "--to", "2025-01-01", "--every",
                             "quarter", "--window", "quarter", "--trials", "50"])
    assert "left out 1 cutoff (2024-11-01): the window ends after the last recorded event" in r.stdout
    assert "cutoff 2023-11-01 failed: " in r.stdout
