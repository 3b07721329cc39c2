"""The HTML report: every section when its data is there and none when it is not, markup from the CRM
escaped, the file byte-stable and self-contained; `forecaster report` and --report on every command."""

from __future__ import annotations

import dataclasses
import json
import re

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from forecaster.cli import main
from forecaster.report.html import GENERATED_PREFIX, render_report
from tests import report_inputs as I
from tests.conftest import REPO, config_data

SAMPLE = REPO / "src" / "forecaster" / "sample" / "forecaster.yaml"
SCENARIOS = REPO / "configs" / "scenarios.yaml"
SECTIONS = ("headline", "diff", "distribution", "fan", "breakdowns", "spread", "deals", "inspect", "funnel", "scenarios",
            "backtest", "provenance")


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([a-z-]+)"', page)


def chart_ids(page: str) -> list[str]:
    return re.findall(r'<figure class="chart" id="chart-([a-z0-9-]+)"', page)


def test_every_section_renders_when_its_data_is_there():
    page = render_report(I.full_report())
    assert section_ids(page) == list(SECTIONS)
    assert chart_ids(page) == ["waterfall", "revenue-histogram", "fan", "periods", "segments", "report-by-2",
                               "variance-shares", "funnel", "forest", "sweep-0", "sweep-1",
                               "backtest-intervals", "pit", "skill",
                               "reliability"]
    assert "What moved since 2025-06-24" in page and ">close pushed</td>" in page and ">model (refit)</td>" in page
    assert 'id="spread-table"' in page and 'id="separating-table"' in page and ">200 other open deals</td>" in page
    assert 'id="inspect-table"' in page and "12 slip risks" in page
    assert "amounts in EUR" in page and "won revenue in the window (EUR)" in page  # the currency code on axes
    assert "Won since 2025-04-01 (actual)" in page and "1.25M" in page  # won to date
    assert "won to date (actual)" in page  # the fan chart's actuals
    assert "Won revenue by owner" in page  # report_by
    for heading in ("CRM close date", "CRM probability", "stale", "P(win in window)", "median close (model, if won)"):
        assert f">{heading}</th>" in page
    assert page.count("<tr>") >= 25 and "The 25 of 327 open deals" in page
    assert "Change since the run as of 2025-06-01" in page and "+4.0 pp" in page
    assert "Sweep: lead volume" in page and "new_deals.rate (lever value)" in page
    forest = page[page.index('id="chart-forest"'):page.index('id="chart-sweep-0"')]
    assert "more leads x1.1" not in forest and "clean pipeline" in forest  # sweeps get their own curve
    assert 'id="deal-scores-table"' in page and "crm_probability" in page
    assert '<tr class="bottleneck">' in page and ">bottleneck</span>" in page


def test_sections_without_data_are_left_out():
    page = render_report(I.minimal_report())
    assert section_ids(page) == ["headline", "breakdowns", "provenance"]
    assert chart_ids(page) == ["periods", "segments"]
    assert "not given (amounts as in the CRM export)" in page and "(deal currency)" in page
    for absent in ("Won since", "CRM close date", "Change since", "Sweep:", "deal-scores-table", "owner"):
        assert absent not in page
    assert render_report(I.ReportData(generated_at="x")).count("<section") == 1  # provenance only


def test_markup_from_the_crm_is_escaped_everywhere():
    page = render_report(I.full_report())
    assert "<script" not in page and "<b>Ann" not in page and "<i>Pro" not in page
    assert "<td class=\"text\">&lt;script&gt;alert(1)&lt;/script&gt;</td>" in page
    assert "$1M+ &lt;i&gt;Pro&lt;/i&gt;" in page
    svg = page[page.index('id="chart-report-by-2"'):page.index('id="chart-funnel"')]
    assert "&lt;b&gt;Ann&lt;/b&gt; &amp; co" in svg  # an SVG tick label, escaped by the SVG writer
    assert "$1M+ club" in svg  # shown as written, not parsed as mathtext


def test_the_page_is_self_contained():
    page = render_report(I.full_report())
    assert not re.search(r'\b(src|href)="(?!#)', page), "only in-page references"
    for tag in ("<script", "<link", "<img", "<iframe", "@import", "url(http"):
        assert tag not in page
    assert "default-src 'none'" in page  # and the browser is told to load nothing
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "ids unique across the charts"


def test_render_is_byte_stable_but_for_the_timestamp_line():
    a, b = render_report(I.full_report()), render_report(I.full_report())
    assert a == b
    later = render_report(dataclasses.replace(I.full_report(), generated_at="2030-01-01 00:00:00 UTC"))
    diff = [(x, y) for x, y in zip(a.splitlines(), later.splitlines()) if x != y]
    assert len(a.splitlines()) == len(later.splitlines()) and len(diff) == 1
    assert GENERATED_PREFIX in diff[0][0] and diff[0][1].endswith("Generated 2030-01-01 00:00:00 UTC</p>")


def test_the_sample_report_is_byte_identical_for_a_fixed_seed_but_one_line(runner, tmp_path):
    out = tmp_path / "report.html"
    pages = []
    for _ in range(2):
        r = runner.invoke(main, ["report", str(SAMPLE), "-o", str(out), "--trials", "400", "--seed", "3"])
        assert r.exit_code == 0, r.output
        pages.append(out.read_text())
    a, b = (p.splitlines() for p in pages)
    assert len(a) == len(b)
    differ = [x for x, y in zip(a, b) if x != y]
    assert all(GENERATED_PREFIX in x for x in differ) and len(differ) <= 1
    assert [x for x in a if GENERATED_PREFIX in x] and section_ids(pages[0]) == [
        "headline", "distribution", "fan", "breakdowns", "spread", "deals", "inspect", "funnel", "provenance"]
    assert f"forecaster report {SAMPLE} --as-of 2025-07-01 --start 2025-07-01 --end 2025-09-30 --trials 400 " \
           f"--seed 3 -o {out}" in pages[0]


CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_report_works_on_every_config(runner, tmp_path, config):
    config_data(config)
    out = tmp_path / "r.html"
    extra = ["--compare"] if "scenarios:" in config.read_text() else []
    r = runner.invoke(main, ["report", str(config), "-o", str(out), "--trials", "150", *extra])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert {"headline", "distribution", "fan", "deals", "funnel", "provenance"} <= set(section_ids(page))
    assert ("scenarios" in section_ids(page)) == bool(extra)


def test_report_with_compare_backtest_and_previous(runner, tmp_path):
    prev = tmp_path / "prev"
    r = runner.invoke(main, ["forecast", str(SCENARIOS), "--trials", "200", "--as-of", "2025-06-01", "-o", str(prev),
                             "--quiet"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "full.html"
    r = runner.invoke(main, ["report", str(SCENARIOS), "-o", str(out), "--trials", "200", "--compare",
                             "--backtest", "2025-03-01:2025-04-01", "--previous", str(prev / "summary.json"),
                             "--since", "2025-06-24"])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert section_ids(page) == list(SECTIONS)
    assert "Change since the run as of 2025-06-01" in page and "What moved since 2025-06-24" in page
    assert "--compare --backtest 2025-03-01:2025-04-01 --since 2025-06-24" in page


def test_forecast_compare_and_backtest_write_their_report(runner, tmp_path):
    r = runner.invoke(main, ["forecast", str(SAMPLE), "--trials", "200", "--report", str(tmp_path / "f.html")])
    assert r.exit_code == 0, r.output
    assert f"wrote {tmp_path / 'f.html'}" in r.output
    assert "deals" in section_ids((tmp_path / "f.html").read_text())
    r = runner.invoke(main, ["compare", str(SCENARIOS), "--trials", "100", "--report", str(tmp_path / "c.html")])
    assert r.exit_code == 0, r.output
    assert section_ids((tmp_path / "c.html").read_text()) == ["headline", "distribution", "breakdowns", "scenarios",
                                                              "provenance"]
    r = runner.invoke(main, ["backtest", str(SAMPLE), "--from", "2025-03-01", "--to", "2025-04-01", "--window", "month",
                             "--trials", "100", "--report", str(tmp_path / "b.html")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "b.html").read_text()
    assert section_ids(page) == ["backtest", "provenance"] and "Backtest report: forecaster.yaml" in page


def test_csv_copies_next_to_every_parquet_file(runner, tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(main, ["forecast", str(SAMPLE), "--trials", "100", "-o", str(out), "--csv", "--quiet"])
    assert r.exit_code == 0, r.output
    for name in ("trials", "deals", "group_trials"):
        parquet, csv = pq.read_table(out / f"{name}.parquet"), pcsv.read_csv(out / f"{name}.csv")
        assert csv.num_rows == parquet.num_rows and csv.column_names == parquet.column_names
    summary = json.loads((out / "summary.json").read_text())
    assert pq.read_table(out / "group_trials.parquet").num_rows == 100 * len(summary["segments"])
    r = runner.invoke(main, ["compare", str(SCENARIOS), "--trials", "50", "-o", str(tmp_path / "c"), "--csv"])
    assert r.exit_code == 0 and (tmp_path / "c" / "compare_trials.csv").is_file()


def test_the_currency_code_goes_into_every_table(tmp_path):
    import pyarrow as pa

    from forecaster.report.outputs import write_forecast

    tables = {"trials": pa.table({"trial": [0, 1], "revenue": [1.0, 2.0]})}
    write_forecast(tmp_path, {"currency": "EUR"}, tables, "", csv=True)
    assert pq.read_table(tmp_path / "trials.parquet")["currency"].to_pylist() == ["EUR", "EUR"]
    assert pcsv.read_csv(tmp_path / "trials.csv")["currency"].to_pylist() == ["EUR", "EUR"]
    write_forecast(tmp_path / "none", {"currency": None}, tables, "")
    assert "currency" not in pq.read_table(tmp_path / "none" / "trials.parquet").column_names


ERRORS = [
    (["report", "{sample}"], "Missing option '-o' / '--output'"),
    (["report", "{sample}", "-o", "{out}", "--backtest", "2025-03-01"], "'2025-03-01' is not FROM:TO"),
    (["report", "{sample}", "-o", "{out}", "--backtest", "2025-05-01:2025-03-01"], "TO 2025-03-01 is before FROM"),
    (["report", "{sample}", "-o", "{out}", "--previous", "{tmp}/none.json"], "--previous {tmp}/none.json: file not found"),
    (["report", "{sample}", "-o", "{out}", "--previous", "{bad}"], "not a JSON file"),
    (["report", "{sample}", "-o", "{out}", "--compare"], "--compare: {sample} has no scenarios"),
    (["report", "{sample}", "-o", "{tmp}"], "is a directory"),
    (["report", "{sample}", "-o", "{out}", "--trials", "3"], "--trials"),
    (["report", "{sample}", "-o", "{out}", "--as-of", "2025-04-01", "--seed", "-1"], "--seed"),
    (["forecast", "{sample}", "--csv"], "--csv: the CSV files go next to the Parquet files; give -o/--output too"),
    (["compare", "{scenarios}", "--csv"], "--csv: the CSV files go next to the Parquet files"),
    (["backtest", "{sample}", "--from", "2025-03-01", "--to", "2025-04-01", "--csv"], "--csv: the CSV files go"),
    (["report", "{sample}", "-o", "{out}", "--as-of", "soon"], "'soon' is not a date YYYY-MM-DD"),
    (["report", "{sample}", "-o", "{out}", "--trials", "20", "--since", "2025-07-08"],
     "--since 2025-07-08 is after the forecast's as-of 2025-07-01"),
    (["report", "{sample}", "-o", "{out}", "--since", "last week"], "'last week' is not a date YYYY-MM-DD"),
    (["forecast", "{sample}", "--report", "{tmp}"], "is a directory"),
    (["compare", "{scenarios}", "--report", "{tmp}"], "is a directory"),
    (["backtest", "{sample}", "--from", "2025-03-01", "--to", "2025-04-01", "--report", "{tmp}"], "is a directory"),
]


@pytest.mark.parametrize("args, message", ERRORS, ids=[f"{a[0]}-{i}" for i, (a, _) in enumerate(ERRORS)])
def test_bad_report_options_are_one_line_and_write_nothing(runner, tmp_path, args, message):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    fill = {"sample": SAMPLE, "scenarios": SCENARIOS, "out": tmp_path / "r.html", "tmp": tmp_path, "bad": bad}
    args = [a.format(**fill) for a in args]
    r = runner.invoke(main, args)
    assert r.exit_code == 2, r.output
    assert message.format(**fill) in r.output
    assert "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_terminal_output_fixes(runner, crm):
    demo = runner.invoke(main, ["demo"]).stdout.splitlines()
    rows = [line.split()[0] for line in demo if line.strip().startswith(("revenue ", "of which", "won deals"))]
    assert rows[:3] == ["revenue", "of", "won"]  # the new deals' revenue sits under revenue
    assert "forecaster report CONFIG -o report.html" in "\n".join(demo)
    plan = runner.invoke(main, ["plan", str(SAMPLE), "--target", "5000000", "--trials", "100"])
    assert plan.exit_code == 0 and "Plan as of 2025-07-01 for the window 2025-07-01 .. 2025-09-30" in plan.stdout
    cmp = runner.invoke(main, ["compare", str(SCENARIOS), "--trials", "50"])
    assert "mean diff [95% CI]" in cmp.stdout and "its 95% interval is for that mean" in cmp.stdout
    deals = ("deal_id,created_at,amount,status,closed_at,product\n" + "".join(
        f"D{i},2024-01-{i + 1:02d},1000,{'won' if i % 2 else 'lost'},2024-02-{i + 1:02d},{'' if i % 3 else 'A'}\n"
        for i in range(12)) + "D99,2024-02-20,500,open,,\n")
    path = crm.write(deals=deals, history=None, config="data: {deals: deals.csv}\nsegment_by: [product]\n")
    out = runner.invoke(main, ["forecast", str(path), "--trials", "50", "--as-of", "2024-03-01"])
    assert out.exit_code == 0, out.output
    assert "product=(none)" in out.stdout and "product= " not in out.stdout


def test_a_crm_deal_named_like_a_script_is_shown_as_text(runner, crm, tmp_path):
    config = I.write_markup_crm(crm)
    out = tmp_path / "markup.html"
    r = runner.invoke(main, ["report", str(config), "-o", str(out), "--trials", "200"])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert "<script" not in page and "<b>B</b>" not in page
    assert '<td class="text">&lt;script&gt;alert(1)&lt;/script&gt;</td>' in page
    assert page.count("&lt;b&gt;B&lt;/b&gt;") >= 3  # deal table, segment table, segment chart
