"""Reading what Excel and CRMs write: CSV dialects and encodings, .xlsx, Parquet directories that disagree,
amounts, dates per column and in the business's time zone, filters, fills and currencies."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forecaster.calendar import to_date
from forecaster.cli import main
from forecaster.config import load_config
from forecaster.crm import LOST, WON, load
from tests.conftest import CONFIG, DEALS, HISTORY
from tests.crm_exports import write_xlsx

DEAL_LEVEL = "data: {deals: deals.csv}\n"


def errors(result) -> list[str]:
    assert "Traceback" not in result.output
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def write(folder: Path, deals: bytes | str, config: str = DEAL_LEVEL, name: str = "deals.csv") -> Path:
    (folder / name).write_bytes(deals.encode() if isinstance(deals, str) else deals)
    (folder / "forecaster.yaml").write_text(config)
    return folder / "forecaster.yaml"


def loaded(folder: Path, deals, config: str = DEAL_LEVEL, name: str = "deals.csv"):
    return load(load_config(write(folder, deals, config, name)))


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_delimiter_is_detected(tmp_path, delimiter):
    data = loaded(tmp_path, DEALS.replace(",", delimiter))
    assert data.n_deals == 4 and data.amount.tolist() == [1000, 2000, 500, 700]


def test_delimiter_can_be_given(tmp_path):
    text = DEALS.replace(",", ";").replace("product", "product,name").replace(";A\n", ";x,y\n")
    data = loaded(tmp_path, text, "data: {deals: deals.csv, delimiter: ';'}\nsegment_by: ['product,name']\n")
    assert data.attrs["product,name"].to_pylist() == ["x,y", "B", "x,y", "B"]


def test_bom_crlf_and_quoted_newlines(tmp_path):
    text = DEALS.replace("product\n", "product,notes\n").replace(",A\n", ',A,"line one\r\nline, two"\n') \
        .replace(",B\n", ",B,\n")
    data = loaded(tmp_path, b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert data.n_deals == 4 and data.deal_id[0] == "D1"


def test_quoted_newlines_in_a_large_file(tmp_path):
    note = '"' + ("a long description, with commas\nand lines\n" * 40) + '"'
    rows = [f"D{i},2024-01-02,100,open,,{note}" for i in range(6000)]
    text = "deal_id,created_at,amount,status,closed_at,notes\n" + "\n".join(rows) + "\n"
    assert len(text) > 10_000_000
    assert loaded(tmp_path, text).n_deals == 6000


def test_windows_encoding_is_detected_and_said(tmp_path, runner):
    text = DEALS.replace(",A\n", ",Société Générale\n")
    path = write(tmp_path, text.encode("cp1252"), DEAL_LEVEL + "segment_by: [product]\n")
    r = runner.invoke(main, ["validate", str(path)])
    assert r.exit_code == 0, r.output
    assert "warning: deals.csv is not UTF-8: read as cp1252 (set data.encoding to choose) (1)" in r.stdout
    data = load(load_config(path))
    assert "Société Générale" in data.attrs["product"].to_pylist()
    path.write_text(DEAL_LEVEL.replace("}", ", encoding: cp1252}"))
    assert "not UTF-8" not in runner.invoke(main, ["validate", str(path)]).stdout


def test_trailing_empty_rows_are_ignored_and_counted(tmp_path):
    data = loaded(tmp_path, DEALS + ",,,,,\n,,,,,\n")
    assert data.n_deals == 4 and data.warning_counts()["empty_rows_deals.csv"] == 2


def test_duplicate_header_names_are_one_error(tmp_path, runner):
    path = write(tmp_path, DEALS.replace("product", "amount"))
    r = runner.invoke(main, ["validate", str(path)])
    assert r.exit_code == 2
    assert errors(r) == [f"Error: {tmp_path / 'deals.csv'}: deals: duplicate column names: 'amount' (columns 3 and 6); "
                         f"rename them in the export"]


def test_xlsx_with_dates_and_numbers(tmp_path):
    rows = [["D1", dt.datetime(2024, 1, 2, 9, 30), 1000.0, "won", dt.datetime(2024, 2, 10), "A"],
            ["D2", dt.datetime(2024, 1, 5), 2000.5, "lost", dt.datetime(2024, 3, 1), "B"],
            ["D3", dt.datetime(2024, 2, 1), 500, "open", "", "A"]]
    write_xlsx(tmp_path / "deals.xlsx", ["deal_id", "created_at", "amount", "status", "closed_at", "product"], rows)
    data = loaded(tmp_path, (tmp_path / "deals.xlsx").read_bytes(), "data: {deals: deals.xlsx}\n", "deals.xlsx")
    assert data.amount.tolist() == [1000.0, 2000.5, 500.0]
    assert [to_date(d) for d in data.created] == [dt.date(2024, 1, 2), dt.date(2024, 1, 5), dt.date(2024, 2, 1)]
    assert data.status.tolist() == [WON, LOST, 0]


def parquet_dir(tmp_path: Path, tables: list[pa.Table]) -> Path:
    d = tmp_path / "deals"
    d.mkdir()
    for i, t in enumerate(tables):
        pq.write_table(t, d / f"part-{i}.parquet")
    (tmp_path / "forecaster.yaml").write_text("data: {deals: deals}\nsegment_by: [region]\n")
    return tmp_path / "forecaster.yaml"


def _deals(ids, amount, extra=None):
    n = len(ids)
    cols = {"deal_id": ids, "created_at": [dt.date(2024, 1, 2)] * n, "amount": amount,
            "status": ["open"] * n, "closed_at": pa.nulls(n, pa.date32())}
    return pa.table({**cols, **(extra or {})})


def test_parquet_files_that_disagree_are_unified(tmp_path):
    a = _deals(["D1", "D2"], pa.array([100, 200], pa.int32()), {"region": ["EU", "US"]})
    b = _deals(["D3"], pa.array([2.5e9], pa.float64()))
    data = load(load_config(parquet_dir(tmp_path, [a, b])))
    assert data.amount.tolist() == [100, 200, 2.5e9]  # the second file's float is not truncated
    assert data.attrs["region"].to_pylist() == ["EU", "US", "(none)"]
    assert data.warning_counts()["missing_region"] == 1


def test_parquet_files_with_incompatible_types_name_the_files(tmp_path, runner):
    a = _deals(["D1"], pa.array([100.0]))
    b = _deals(["D2"], pa.array(["100"]))
    r = runner.invoke(main, ["validate", str(parquet_dir(tmp_path, [a, b]))])
    assert r.exit_code == 2
    assert errors(r) == [f"Error: {tmp_path / 'deals'}: deals: column 'amount' is double in part-0.parquet but "
                         f"string in part-1.parquet; write the files with one type"]


AMOUNTS = """deal_id,created_at,amount,status,closed_at
D1,2024-01-02,"12,500.00",open,
D2,2024-01-02,"$16,100.00",open,
D3,2024-01-02,EUR 900,open,
D4,2024-01-02,750,open,
"""


def test_amounts_as_crms_write_them(tmp_path):
    data = loaded(tmp_path, AMOUNTS)
    assert data.amount.tolist() == [12500.0, 16100.0, 900.0, 750.0]
    assert "ambiguous_amounts" not in data.warning_counts()


def test_decimal_comma_with_amount_format(tmp_path):
    text = AMOUNTS.replace('"12,500.00"', '"1.234,50"').replace('"$16,100.00"', '"€ 16.100"')
    data = loaded(tmp_path, text, "data: {deals: deals.csv, amount_format: {thousands: '.', decimal: ','}}\n")
    assert data.amount.tolist() == [1234.5, 16100.0, 900.0, 750.0]


def test_ambiguous_amounts_are_counted_without_a_format(tmp_path):
    data = loaded(tmp_path, AMOUNTS.replace("750", "1.234"))
    assert data.amount[3] == 1.234 and data.warning_counts()["ambiguous_amounts"] == 1


@pytest.mark.parametrize("value, expected", [
    ('"(1,200)"', "deals.csv: column 'amount': row 4 (deal 'D4'): negative amount: -1200.0"),
    ("1e400", "deals.csv: column 'amount': row 4 (deal 'D4'): not a finite number: '1e400'"),
    ('"1.234,50"', "deals.csv: column 'amount': row 4 (deal 'D4'): not a number: '1.234,50' (data.amount_format "
                   "sets the separators, e.g. {thousands: '.', decimal: ','})"),
])
def test_bad_amounts_are_data_errors(tmp_path, runner, value, expected):
    r = runner.invoke(main, ["validate", str(write(tmp_path, AMOUNTS.replace("750", value)))])
    assert r.exit_code == 2 and errors(r) == [f"Error: {expected}"]


def test_blank_amounts_filled_with_a_value_are_counted(tmp_path):
    data = loaded(tmp_path, AMOUNTS.replace("750", ""), "data: {deals: deals.csv, amount_fill: {value: 0}}\n")
    assert data.amount[3] == 0 and data.warning_counts()["amount_filled"] == 1


REPORT_DATES = """deal_id,created_at,amount,status,closed_at
D1,01/02/2023 09:28 AM,100,won,02/10/2023
D2,01/03/2023 11:05 PM,100,lost,03/01/2023
"""


def test_date_formats_per_column(tmp_path):
    cfg = "data: {deals: deals.csv, date_formats: {created_at: '%m/%d/%Y %I:%M %p', closed_at: '%m/%d/%Y'}}\n"
    data = loaded(tmp_path, REPORT_DATES, cfg)
    assert [to_date(d) for d in data.created] == [dt.date(2023, 1, 2), dt.date(2023, 1, 3)]
    assert [to_date(d) for d in data.closed] == [dt.date(2023, 2, 10), dt.date(2023, 3, 1)]


def test_unparseable_date_names_the_key_that_reads_it(tmp_path, runner):
    r = runner.invoke(main, ["validate", str(write(tmp_path, REPORT_DATES))])
    assert r.exit_code == 2
    assert errors(r)[0] == ("Error: deals.csv: column 'created_at': row 1 (deal 'D1'): unparseable date: "
                            "'01/02/2023 09:28 AM' (set data.date_formats.created_at, e.g. '%m/%d/%Y %I:%M %p')")


def test_a_late_pacific_win_on_the_last_day_of_the_quarter_is_in_that_quarter(tmp_path):
    deals = DEALS.replace("won,2024-02-10", "won,2024-04-01T06:30:00Z")  # 23:30 on 31 March in Los Angeles
    data = loaded(tmp_path, deals, "data: {deals: deals.csv, timezone: America/Los_Angeles}\n")
    assert to_date(data.closed[0]) == dt.date(2024, 3, 31)
    assert to_date(loaded(tmp_path, deals).closed[0]) == dt.date(2024, 4, 1)


def test_where_and_drop_filter_deals_and_their_history(crm):
    deals = DEALS.replace("product\n", "product,pipeline\n").replace(",A\n", ",A,Sales\n").replace(",B\n", ",B,Partner\n")
    config = CONFIG.replace("  stage_history: history.csv\n", "  stage_history: history.csv\n"
                            "  where: {pipeline: [Sales]}\n  drop: {status: [WON]}\n")
    data = load(load_config(crm.write(deals=deals, config=config)))
    assert data.deal_id.tolist() == ["D3"]
    w = data.warning_counts()
    assert w["where_pipeline"] == 2 and w["drop_status"] == 1 and w["dropped_history_rows"] == 6


RATES = """deal_id,created_at,amount,status,closed_at,CurrencyIsoCode
D1,2024-01-02,108,won,2024-02-10,USD
D2,2024-01-05,85,lost,2024-03-01,GBP
D3,2024-02-01,100,open,,EUR
"""


def test_currencies_are_converted_with_inline_rates(tmp_path):
    cfg = ("data: {deals: deals.csv, currency: {column: CurrencyIsoCode, to: EUR, rates: {USD: 1.08, GBP: 0.85}}}\n")
    data = loaded(tmp_path, RATES, cfg)
    assert data.amount == pytest.approx([100.0, 100.0, 100.0]) and data.currency == "EUR"


def test_dated_rates_file_takes_the_rate_of_the_close_date(tmp_path):
    (tmp_path / "fx.csv").write_text("date,currency,rate\n2024-01-01,USD,1.20\n2024-02-01,USD,1.08\n"
                                     "2024-01-01,GBP,0.85\n")
    cfg = "data: {deals: deals.csv, currency: {column: CurrencyIsoCode, to: EUR, rates: fx.csv}}\n"
    data = loaded(tmp_path, RATES, cfg)
    assert data.amount == pytest.approx([100.0, 100.0, 100.0])


def test_a_currency_without_a_rate_is_an_error_naming_it(tmp_path, runner):
    cfg = "data: {deals: deals.csv, currency: {column: CurrencyIsoCode, to: EUR, rates: {USD: 1.08}}}\n"
    r = runner.invoke(main, ["validate", str(write(tmp_path, RATES, cfg))])
    assert r.exit_code == 2
    assert errors(r) == ["Error: deals.csv: column 'CurrencyIsoCode': no rate for currency 'GBP' (1 deal(s), first row "
                         "2); add it to data.currency.rates (units of GBP per one EUR)"]


def test_the_currency_is_in_the_outputs(tmp_path, runner):
    cfg = ("data: {deals: deals.csv, currency: {column: CurrencyIsoCode, to: EUR, rates: {USD: 1.08, GBP: 0.85}}}\n"
           "forecast: {trials: 50}\n")
    out = tmp_path / "out"
    r = runner.invoke(main, ["forecast", str(write(tmp_path, RATES, cfg)), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "revenue (EUR)" in r.stdout
    assert '"currency": "EUR"' in (out / "summary.json").read_text()
    for name in ("trials.parquet", "deals.parquet"):
        assert pq.read_schema(out / name).metadata[b"forecaster.currency"] == b"EUR"
    assert "open value (EUR)" in runner.invoke(main, ["validate", str(tmp_path / "forecaster.yaml")]).stdout


# ---------------------------------------------------------------------------------------------
# Every new key: one line naming it, exit 2, nothing written


@pytest.mark.parametrize("data_keys, expected", [
    ("format: salesforse", "config key 'data.format': 'salesforse' is not one of generic, salesforce, hubspot, "
                           "pipedrive (did you mean 'salesforce'?)"),
    ("date_formats: {created: '%d'}", "config key 'data.date_formats.created': unknown key (did you mean "
                                      "'created_at'?)"),
    ("timezone: America/Los_Angles", "config key 'data.timezone': unknown time zone 'America/Los_Angles' (did you "
                                     "mean 'America/Los_Angeles'?)"),
    ("delimiter: ':'", "config key 'data.delimiter': expected one of ',', ';', '|', tab, got ':'"),
    ("encoding: utf-9", "config key 'data.encoding': unknown encoding 'utf-9' (did you mean 'utf-8'?)"),
    ("amount_format: {thousands: ',', decimal: ','}", "config key 'data.amount_format': thousands and decimal "
                                                      "separators are both ','"),
    ("amount_fill: {value: 0, column: x}", "config key 'data.amount_fill': needs either 'column' (take the amount "
                                           "from it) or 'value' (e.g. 0)"),
    ("currency: {to: EUR, rates: {USD: -1}}", "config key 'data.currency.rates.USD': must be > 0, got -1"),
    ("currency: {rates: {USD: 1.1}}", "config key 'data.currency.to': required (the currency of every output, e.g. "
                                      "EUR)"),
    ("where: [pipeline]", "config key 'data.where': expected a mapping column -> [values], got a list"),
    ("drop: {status: {x: 1}}", "config key 'data.drop.status': expected a list of names, got {'x': 1}"),
])
def test_new_data_keys_errors(tmp_path, runner, data_keys, expected):
    path = write(tmp_path, DEALS, f"data: {{deals: deals.csv, {data_keys}}}\n")
    out = tmp_path / "out"
    r = runner.invoke(main, ["forecast", str(path), "-o", str(out)])
    assert r.exit_code == 2
    assert errors(r) == [f"Error: {expected}"]
    assert not out.exists()


@pytest.mark.parametrize("config, expected", [
    ("pipelines: {Sales: {stages: [a], won: w, lost: l}}\nstages: [a]\n",
     "config key 'stages': with 'pipelines', the stages are listed per pipeline (pipelines.NAME.stages)"),
    ("pipelines: {Sales: {won: w, lost: l}}\n", "config key 'pipelines.Sales.stages': required (the pipeline's "
                                                "ordered open stages)"),
    ("pipelines: {Sales: {stages: [a, w], won: w, lost: l}}\n",
     "config key 'pipelines.Sales.won': 'w' is a closed stage and must not be listed in 'stages'"),
    ("pipelines: [Sales]\n", "config key 'pipelines': expected a mapping pipeline -> {stages, won, lost}, got a list"),
    ("report_by: owner\n", "config key 'report_by': expected a list of names, got 'owner'"),
])
def test_pipelines_and_report_by_errors(tmp_path, runner, config, expected):
    r = runner.invoke(main, ["validate", str(write(tmp_path, DEALS, DEAL_LEVEL + config))])
    assert r.exit_code == 2
    assert errors(r) == [f"Error: {expected}"]


def test_a_deal_in_a_pipeline_not_configured_is_one_error(crm, runner):
    deals = DEALS.replace("product\n", "product,pipeline\n").replace(",A\n", ",A,Sales\n").replace(",B\n", ",B,Partner\n")
    history = HISTORY
    config = ("data: {deals: deals.csv, stage_history: history.csv}\n"
              "pipelines: {Sales: {stages: [qual, proposal], won: won, lost: lost}}\n")
    r = runner.invoke(main, ["validate", str(crm.write(deals=deals, history=history, config=config))])
    assert r.exit_code == 2
    assert errors(r) == ["Error: deals.csv: column 'pipeline': unknown pipeline 'Partner' in 2 row(s), first row 2 "
                         "(deal 'D2'); add it to 'pipelines:' or leave it out with data.where"]


def test_only_one_flag_is_a_missing_column(tmp_path, runner):
    deals = DEALS.replace("status", "IsClosed").replace(",won,", ",true,").replace(",lost,", ",true,") \
        .replace(",open,", ",false,")
    r = runner.invoke(main, ["validate", str(write(tmp_path, deals, "data: {deals: deals.csv, columns: "
                                                                    "{is_closed: IsClosed}}\n"))])
    assert r.exit_code == 2
    assert errors(r) == [f"Error: {tmp_path / 'deals.csv'}: missing required column 'is_won'"]


def test_a_mapped_optional_column_that_does_not_exist_is_an_error(tmp_path, runner):
    path = write(tmp_path, DEALS.replace("product", "Probability"), "data: {deals: deals.csv, columns: {probability: "
                                                                    "Probabilty}}\n")
    r = runner.invoke(main, ["validate", str(path)])
    assert r.exit_code == 2
    assert errors(r) == ["Error: deals.csv: data.columns.probability 'Probabilty': no such column (did you mean "
                         "'Probability'?)"]
