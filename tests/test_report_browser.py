"""The report in a real browser: headless Chromium (Debian's chromium package) over the DevTools protocol.

Each page must load with no console error and no network request, give screenshots of the expected size,
show every chart with its title, axis labels and alt text, and the deal table with its rows; markup in CRM
names must not run; the page must fit an A4 width and print to A4 and Letter. Without Chromium these
tests skip, unless FORECASTER_REQUIRE_BROWSER=1 (set by .ci/run), where they fail.
"""

from __future__ import annotations

import base64
import os
import re

import pytest
from click.testing import CliRunner

from forecaster.cli import main
from forecaster.report.html import render_report
from tests import report_inputs as I
from tests.browser import Browser, find_chromium, png_size
from tests.conftest import REPO

SAMPLE = REPO / "src" / "forecaster" / "sample" / "forecaster.yaml"
WIDTH, HEIGHT = 1280, 900
A4_WIDTH_PX = 794  # 210 mm at 96 px per inch

STRUCTURE = """(() => {
  const charts = [...document.querySelectorAll('figure.chart')].map(f => {
    const svg = f.querySelector('svg');
    const alt = svg && document.getElementById(svg.getAttribute('aria-labelledby'));
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {id: f.id, title: f.dataset.title, xlabel: f.dataset.xlabel, ylabel: f.dataset.ylabel,
            role: svg && svg.getAttribute('role'), alt: alt ? alt.textContent : '',
            text: svg ? [...svg.querySelectorAll('text')].map(e => e.textContent).join('\\n') : '',
            width: box.width, height: box.height};
  });
  return {charts,
          headings: [...document.querySelectorAll('#deal-table thead th')].map(h => h.textContent),
          rows: [...document.querySelectorAll('#deal-table tbody tr')].map(r => [...r.cells].map(c => c.textContent)),
          sections: [...document.querySelectorAll('main > section')].map(s => s.id),
          scripts: document.scripts.length,
          scrollWidth: document.documentElement.scrollWidth,
          scrollHeight: document.documentElement.scrollHeight};
})()"""


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        reason = "Chromium not found: install Debian's chromium package (or set FORECASTER_CHROMIUM)"
        if os.environ.get("FORECASTER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; FORECASTER_REQUIRE_BROWSER=1 requires the browser tests to run")
        pytest.skip(reason)
    with Browser(exe) as b:
        yield b


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "sample.html"
    r = CliRunner().invoke(main, ["report", str(SAMPLE), "-o", str(out), "--trials", "500"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "full.html"
    out.write_text(render_report(I.full_report()), encoding="utf-8")
    return out


def visit(browser, path, width=WIDTH, height=HEIGHT):
    page = browser.page()
    page.open(path, width, height)
    return page


def check_page(page, n_charts: int, n_rows: int) -> dict:
    """No error, no request but the page itself, screenshots of the asked size, charts and table complete."""
    assert page.errors() == []
    assert page.requests() == [page.url]
    assert page.dialogs() == []
    assert png_size(page.screenshot()) == (WIDTH, HEIGHT)
    s = page.evaluate(STRUCTURE)
    assert png_size(page.screenshot(full_page=True)) == (WIDTH, s["scrollHeight"])
    assert s["scripts"] == 0 and s["scrollWidth"] <= WIDTH
    assert len(s["charts"]) == n_charts
    for c in s["charts"]:
        assert c["role"] == "img" and len(c["alt"]) > 40, c["id"]
        for key in ("title", "xlabel", "ylabel"):
            assert c[key] and c[key] in c["text"], f"{c['id']}: its {key} '{c[key]}' is not drawn"
        assert c["width"] > 600 and c["height"] > 100, c
    assert len(s["rows"]) == n_rows and all(len(r) == len(s["headings"]) for r in s["rows"])
    return s


def test_the_sample_report_in_chromium(browser, sample_report):
    page = visit(browser, sample_report)
    try:
        s = check_page(page, n_charts=6, n_rows=25)
    finally:
        page.close()
    assert s["sections"] == ["headline", "distribution", "fan", "breakdowns", "spread", "deals", "inspect", "funnel",
                             "provenance"]
    assert s["headings"][:3] == ["deal", "product", "stage"] and "P(win in window)" in s["headings"]
    assert all(r[0].startswith("D") for r in s["rows"])


def test_every_section_and_crm_markup_in_chromium(browser, full_report):
    page = visit(browser, full_report)
    try:
        s = check_page(page, n_charts=15, n_rows=25)
        cell = page.evaluate("document.querySelector('#deal-table tbody td').textContent")
    finally:
        page.close()
    assert cell == I.SCRIPT_DEAL  # shown as text, never run (no dialog, no script element)
    assert "CRM close date" in s["headings"] and "stale" in s["headings"]
    texts = {c["id"]: c["text"] for c in s["charts"]}
    assert I.MARKUP_OWNER in texts["chart-report-by-2"] and I.DOLLAR_OWNER in texts["chart-report-by-2"]


def test_the_report_fits_a4_and_prints_on_a4_and_letter(browser, full_report):
    page = visit(browser, full_report, width=A4_WIDTH_PX, height=1123)
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= A4_WIDTH_PX
        for width_in, height_in in ((8.27, 11.69), (8.5, 11.0)):  # A4, Letter
            pdf = base64.b64decode(page.send("Page.printToPDF", paperWidth=width_in, paperHeight=height_in,
                                             printBackground=True)["data"])
            assert pdf.startswith(b"%PDF")
            boxes = {tuple(float(v) for v in b.split()) for b in re.findall(rb"/MediaBox \[([^\]]*)\]", pdf)}
            assert len(boxes) == 1  # every page the paper's size (in points, to Chromium's rounding)
            assert boxes.pop() == pytest.approx((0, 0, 72 * width_in, 72 * height_in), abs=1.0)
            assert max(int(n) for n in re.findall(rb"/Count (\d+)", pdf)) >= 4  # every section, on pages
        assert page.errors() == [] and page.requests() == [page.url]
    finally:
        page.close()


def test_a_crm_deal_named_like_a_script_does_not_run(browser, crm, tmp_path):
    out = tmp_path / "markup.html"
    r = CliRunner().invoke(main, ["report", str(I.write_markup_crm(crm)), "-o", str(out), "--trials", "200"])
    assert r.exit_code == 0, r.output
    page = visit(browser, out)
    try:
        assert page.errors() == [] and page.dialogs() == [] and page.requests() == [page.url]
        cells = page.evaluate("[...document.querySelectorAll('#deal-table tbody td:first-child')].map(c => c.textContent)")
        assert I.SCRIPT_DEAL in cells and page.evaluate("document.scripts.length") == 0
    finally:
        page.close()
