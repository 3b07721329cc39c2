"""Every contract check: one clear line per problem, exit code 2, no traceback."""

from __future__ import annotations

import pytest

from forecaster.cli import main
from tests.conftest import CONFIG, DEALS, HISTORY


def run_validate(runner, path, *args):
    result = runner.invoke(main, ["validate", str(path), *args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def test_valid_export_passes(crm, runner):
    result = run_validate(runner, crm.write())
    assert result.exit_code == 0, result.output
    assert "4 deals" in result.stdout
    assert "2 open, 1 won, 1 lost" in result.stdout


@pytest.mark.parametrize(
    "deals, expected",
    [
        (DEALS.replace("created_at", "created"), "deals.csv: missing required column 'created_at' (did you mean 'created'?)"),
        (DEALS.replace("2024-02-01,500", "2024-13-45,500"), "deals.csv: column 'created_at': row 3 (deal 'D3'): unparseable date: '2024-13-45'"),
        (DEALS.replace("D4,", "D3,"), "deals.csv: column 'deal_id': duplicate deal_id 'D3' (2 rows, first row 3)"),
        (DEALS.replace(",500,", ",-500,"), "deals.csv: column 'amount': row 3 (deal 'D3'): negative amount: -500.0"),
        (DEALS.replace(",500,", ",abc,"), "deals.csv: column 'amount': row 3 (deal 'D3'): not a number: 'abc'"),
        (DEALS.replace("lost,2024", "lozt,2024"), "deals.csv: column 'status': unknown status value 'lozt' in 1 row(s), first row 2 (deal 'D2') (did you mean 'lost'?)"),
        (DEALS.replace("won,2024-02-10", "won,"), "deals.csv: column 'closed_at': row 1 (deal 'D1'): won/lost deal has no closed_at"),
        (DEALS.replace(",500,", ",,"), "deals.csv: column 'amount': row 3 (deal 'D3'): empty amount"),
    ],
)
def test_deal_errors(crm, runner, deals, expected):
    result = run_validate(runner, crm.write(deals=deals))
    assert result.exit_code == 2
    assert any(expected in line for line in errors(result)), result.stderr


@pytest.mark.parametrize(
    "history, expected",
    [
        (HISTORY.replace("D3,proposal", "D3,proposl"), "history.csv: column 'stage': unknown stage 'proposl' in 1 row(s), first row 7 (deal 'D3') (did you mean 'proposal'?)"),
        (HISTORY + "D9,qual,2024-01-01\n", "history.csv: column 'deal_id': row 9: deal 'D9' is not in the deals table"),
        (HISTORY.replace("D3,proposal,2024-02-15", "D3,proposal,15/02/2024"), "history.csv: column 'entered_at': row 7 (deal 'D3'): unparseable date: '15/02/2024'"),
        (HISTORY.replace("entered_at", "date"), "history.csv: missing required column 'entered_at'"),
    ],
)
def test_history_errors(crm, runner, history, expected):
    result = run_validate(runner, crm.write(history=history))
    assert result.exit_code == 2
    assert any(expected in line for line in errors(result)), result.stderr


def test_many_problems_are_capped_with_a_count(crm, runner):
    rows = "".join(f"X{i},2024-01-01,-1,open,,A\n" for i in range(30))
    result = run_validate(runner, crm.write(deals=DEALS + rows, history=None, config="data: {deals: deals.csv}\n"))
    assert result.exit_code == 2
    lines = errors(result)
    assert len(lines) == 21
    assert lines[-1] == "Error: ... and 10 more problems"


@pytest.mark.parametrize(
    "config, expected",
    [
        (CONFIG + "segmnt_by: [x]\n", "config key 'segmnt_by': unknown key (did you mean 'segment_by'?)"),
        (CONFIG + "forecast: {trails: 10}\n", "config key 'forecast.trails': unknown key (did you mean 'trials'?)"),
        (CONFIG + "forecast: {trials: many}\n", "config key 'forecast.trials': expected a whole number, got 'many'"),
        (CONFIG + "forecast: {period: fortnight}\n", "config key 'forecast.period': 'fortnight' is not one of week, month, quarter"),
        (CONFIG.replace("deals.csv", "nope.csv"), "config key 'data.deals': file not found:"),
        (CONFIG.replace("[qual, proposal]", "qual"), "config key 'stages': expected a list of names, got 'qual'"),
        (CONFIG.replace("[qual, proposal]", "[qual, qual]"), "config key 'stages': 'qual' is listed twice"),
        (CONFIG.replace("stages: [qual, proposal]\n", ""), "config key 'stages': required with data.stage_history"),
        (CONFIG.replace("won: won", "won: qual"), "config key 'won': 'qual' is a closed stage and must not be listed in 'stages'"),
        (CONFIG + "forecast: {as_of: 2024-02-30}\n", "config key 'forecast.as_of': expected a date YYYY-MM-DD"),
        (CONFIG + "forecast: {start: 2024-03-01, end: 2024-02-01}\n", "config key 'forecast.end': 2024-02-01 is before forecast.start 2024-03-01"),
        (CONFIG + "scenarios: {a: 1}\n", "config key 'scenarios': expected a list of scenarios"),
        (CONFIG + "scenarios: [{name: a}, {name: a}]\n", "config key 'scenarios[1].name': 'a' is used twice"),
        ("", "forecaster.yaml: the config is empty"),
        ("data: [1, 2\n", "not valid YAML"),
        ("data: {deals: deals.csv}\nsegment_by: [prodct]\n", "segment_by column 'prodct' not found (did you mean 'product'?)"),
        (CONFIG + "fit: {lookback_days: 0}\n", "config key 'fit.lookback_days': must be >= 1, got 0"),
        ("data: !!python/object:os.system {}\n", "not valid YAML"),
    ],
)
def test_config_errors(crm, runner, config, expected):
    result = run_validate(runner, crm.write(config=config))
    assert result.exit_code == 2
    assert any(expected in line for line in errors(result)), result.stderr


def test_missing_config_file(runner, tmp_path):
    result = run_validate(runner, tmp_path / "none.yaml")
    assert result.exit_code == 2
    assert errors(result) == [f"Error: {tmp_path / 'none.yaml'}: config file not found"]


def test_empty_data_file(crm, runner):
    result = run_validate(runner, crm.write(deals=""))
    assert result.exit_code == 2
    assert any("deals.csv: deals: the file is empty" in line for line in errors(result)), result.stderr
    header_only = run_validate(runner, crm.write(deals=DEALS.splitlines()[0] + "\n"))
    assert any("deals.csv: deals: the file has no rows" in line for line in errors(header_only))


def test_warnings_are_counted_and_processing_goes_on(crm, runner):
    deals = DEALS.replace("D3,2024-02-01,500,open,", "D3,2024-02-01,0,open,2024-02-20")
    history = HISTORY.replace("D1,qual,2024-01-02", "D1,qual,2023-12-30") + "D4,proposal,2024-02-11\n"
    result = run_validate(runner, crm.write(deals=deals, history=history))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "warning: deals with zero amount (1)" in out
    assert "warning: open deals with closed_at set (closed_at ignored) (1)" in out
    assert "warning: stage rows dated before the deal's created_at (clamped to created_at) (1)" in out
    assert "warning: stage rows on the same day as the deal's previous row (ordered by time and file order) (1)" in out


def test_status_values_and_column_mapping(crm, runner):
    deals = (DEALS.replace("deal_id", "Id").replace("status", "StageName")
             .replace(",won,", ",Closed Won,").replace(",lost,", ",Closed Lost,").replace(",open,", ",Negotiation,"))
    history = HISTORY.replace("deal_id", "OpportunityId")
    config = CONFIG.replace("  stage_history: history.csv\n", """  stage_history: history.csv
  columns: {deal_id: Id, status: StageName, history_deal_id: OpportunityId}
  status_values: {won: [Closed Won], lost: [closed lost], open: ["*"]}
""")
    result = run_validate(runner, crm.write(deals=deals, history=history, config=config))
    assert result.exit_code == 0, result.stderr
    assert "2 open, 1 won, 1 lost" in result.stdout
    missing = run_validate(runner, crm.write(deals=deals.replace("StageName", "Stage"), history=history, config=config))
    assert any("missing required column 'StageName' (mapped from 'status' in data.columns)" in line
               for line in errors(missing)), missing.stderr


def test_timezones_are_normalised_to_utc_dates(crm):
    from forecaster.config import load_config
    from forecaster.calendar import to_date
    from forecaster.crm import load

    deals = DEALS.replace("2024-02-10", "2024-02-10T23:30:00-05:00").replace("2024-03-01", "2024-03-01 01:00:00+02:00")
    # without won/lost rows in the history, the close is the deals table's closed_at
    history = HISTORY.replace("D1,won,2024-02-10\n", "").replace("D2,lost,2024-03-01\n", "")
    data = load(load_config(crm.write(deals=deals, history=history)))
    assert to_date(data.closed[0]).isoformat() == "2024-02-11"
    assert to_date(data.closed[1]).isoformat() == "2024-02-29"


def test_parquet_and_directory_datasets(crm, tmp_path):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from forecaster.config import load_config
    from forecaster.crm import load

    crm.write()
    table = pacsv.read_csv(tmp_path / "deals.csv")
    (tmp_path / "parts").mkdir()
    pq.write_table(table.slice(0, 2), tmp_path / "parts" / "a.parquet")
    pq.write_table(table.slice(2), tmp_path / "parts" / "b.parquet")
    pq.write_table(pacsv.read_csv(tmp_path / "history.csv"), tmp_path / "history.parquet")
    cfg = CONFIG.replace("deals.csv", "parts").replace("history.csv", "history.parquet")
    (tmp_path / "p.yaml").write_text(cfg)
    from_parquet = load(load_config(tmp_path / "p.yaml"))
    from_csv = load(load_config(tmp_path / "forecaster.yaml"))
    assert from_parquet.n_deals == 4
    for name in ("created", "closed", "status", "amount", "h_deal", "h_stage", "h_entered"):
        assert (getattr(from_parquet, name) == getattr(from_csv, name)).all(), name
