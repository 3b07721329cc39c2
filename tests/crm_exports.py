"""One small generated CRM written as each CRM writes its export, byte for byte (quoting, BOM, line
endings, booleans, timestamps and their zones), and as the generic layout of exactly the same data.

A preset's forecast must equal the generic layout's: every writer here takes the same ``Crm`` (deals and
their stage entries, with a local time of day for each row) and writes what that CRM would hold.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow.parquet as pq

from forecaster.synth import generate
from forecaster.synth.params import STAGES

TZ = ZoneInfo("America/Los_Angeles")
UTC = dt.timezone.utc
SF_STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Proposal/Price Quote",
             "Negotiation/Review")
SF_PROBABILITY = (10, 20, 30, 50, 70, 90)
SF_CATEGORY = ("Pipeline", "Pipeline", "Pipeline", "Best Case", "Best Case", "Commit")
HS_PIPELINES = {
    "Sales Pipeline": (("Appointment Scheduled", "Qualified To Buy", "Presentation Scheduled",
                        "Decision Maker Bought-In", "Contract Sent", "Negotiation"), "Closed Won", "Closed Lost"),
    "Renewals": (("Renewal Due", "Renewal Review", "Renewal Demo", "Renewal Quote", "Renewal Proposal",
                  "Renewal Negotiation"), "Renewed", "Churned"),
}
AS_OF = dt.date(2024, 11, 1)


@dataclass
class Row:
    """A stage entry: stage index (0..5 open, 6 won, 7 lost), its local date and time of day."""

    stage: int
    at: dt.datetime  # naive local time


@dataclass
class Deal:
    id: str
    created: dt.datetime
    amount: float
    status: str
    product: str
    owner: str
    region: str
    rows: list[Row]

    @property
    def close(self) -> dt.datetime | None:
        return self.rows[-1].at if self.status != "open" else None

    def expected_close(self, row: int) -> dt.date:
        """The rep's expected close date at a stage row: 30 days after entering, pushed by 14 days at
        every second stage (so that the history holds pushes)."""
        r = self.rows[row]
        return r.at.date() + dt.timedelta(days=30 + 14 * (row % 2))


@dataclass
class Crm:
    deals: list[Deal]

    def stage_rows(self) -> list[tuple[Deal, int, Row]]:
        return [(d, i, r) for d in self.deals for i, r in enumerate(d.rows)]


def build(root: Path, seed: int = 3) -> Crm:
    """A generated CRM (2024) with a local time for every row: creation at 09:00 + a few minutes, stage
    entries in order through the day, every closing at 23:30 (late on the west coast: the next day in UTC)."""
    generate(root, seed=seed, start=dt.date(2024, 1, 1), end=dt.date(2024, 12, 31), scale=0.15)
    deals = pq.read_table(root / "deals.parquet").to_pylist()
    hist = pq.read_table(root / "stage_history.parquet").to_pylist()
    names = list(STAGES) + ["won", "lost"]
    by_deal: dict[str, list[tuple[int, dt.date]]] = {}
    for h in hist:
        by_deal.setdefault(h["deal_id"], []).append((names.index(h["stage"]), h["entered_at"]))
    out = []
    for k, d in enumerate(deals):
        rows = []
        for i, (s, day) in enumerate(by_deal.get(d["deal_id"], [])):
            if s >= 6:
                at = dt.datetime.combine(day, dt.time(23, 30))
            else:
                at = dt.datetime.combine(day, dt.time(9, 0)) + dt.timedelta(minutes=10 * i + k % 7)
            rows.append(Row(s, at))
        created = dt.datetime.combine(d["created_at"], dt.time(9, 0)) + dt.timedelta(minutes=k % 7)
        out.append(Deal(f"006{k:07d}", created, float(d["amount"]), d["status"], d["product"], d["owner"],
                        d["region"], rows))
    return Crm(out)


def utc_stamp(local: dt.datetime) -> str:
    """Salesforce API time: UTC with milliseconds and +0000."""
    return local.replace(tzinfo=TZ).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def write_csv(path: Path, header: list[str], rows: list[list[object]], *, quote_all: bool = False,
              line_end: str = "\n", bom: bool = False, delimiter: str = ",", encoding: str = "utf-8") -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL, lineterminator=line_end,
                   delimiter=delimiter)
    w.writerow(header)
    w.writerows(rows)
    data = buf.getvalue().encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def write_generic(root: Path, crm: Crm, *, history: str = "full", tz_dates: bool = True,
                  pipelines: bool = False) -> Path:
    """The generic layout of the same data. history: 'full' (every row, with the expected close date),
    'hubspot' (one latest date per stage, as HubSpot keeps it), 'pipedrive' (one row per deal: the stage
    it shows, from creation)."""
    root.mkdir(parents=True, exist_ok=True)
    deals, rows = [], []
    for d in crm.deals:
        d_rows = _history_of(d, history)
        close = d_rows[-1].at.date() if d.status != "open" and not history.startswith("pipedrive") else (
            d.close.date() if d.close else None)
        pipe = _pipeline(d) if pipelines else None
        deals.append([d.id, d.created.date(), d.amount, d.status, close or "", d.product, d.owner, d.region]
                     + ([pipe] if pipelines else []))
        for i, r in enumerate(d_rows):
            name = _stage_name(r.stage, pipe) if pipelines else (list(STAGES) + ["won", "lost"])[r.stage]
            rows.append([d.id, name, r.at.date() if tz_dates else r.at.isoformat(sep=" "),
                         "" if history != "full" else d.expected_close(i) if r.stage < 6 else r.at.date()])
    write_csv(root / "deals.csv", ["deal_id", "created_at", "amount", "status", "closed_at", "product", "owner",
                                   "region"] + (["pipeline"] if pipelines else []), deals)
    write_csv(root / "history.csv", ["deal_id", "stage", "entered_at", "expected_close_at"], rows)
    if pipelines:
        stages = _pipelines_yaml()
    else:
        stages = f"stages: [{', '.join(STAGES)}]\nwon: won\nlost: lost\n"
    (root / "forecaster.yaml").write_text(
        f"data: {{deals: deals.csv, stage_history: history.csv}}\n{stages}segment_by: [product]\n"
        f"forecast: {{as_of: {AS_OF}, trials: 300, seed: 5}}\n")
    return root / "forecaster.yaml"


def _history_of(d: Deal, kind: str) -> list[Row]:
    if kind == "hubspot":
        latest: dict[int, Row] = {}
        for r in d.rows:
            latest[r.stage] = r
        return sorted(latest.values(), key=lambda r: (r.at, r.stage))
    if kind == "pipedrive":
        return [Row(pipedrive_stage(d), d.created)]
    if kind == "pipedrive_change":
        change = pipedrive_change(d)
        return [Row(0, d.created), Row(pipedrive_stage(d), change)] if change else [Row(pipedrive_stage(d), d.created)]
    return d.rows


def pipedrive_stage(d: Deal) -> int:
    """The stage Pipedrive shows: an open deal's current one, a closed deal's stage when it closed."""
    open_rows = [r.stage for r in d.rows if r.stage < 6]
    return open_rows[-1] if open_rows else 0


def pipedrive_change(d: Deal) -> dt.datetime | None:
    """Pipedrive's "Last stage change": when the deal entered the stage it shows (None: never moved)."""
    open_rows = [r for r in d.rows if r.stage < 6]
    return open_rows[-1].at if len(open_rows) > 1 else None


def _pipeline(d: Deal) -> str:
    return "Renewals" if d.product == "Pro" else "Sales Pipeline"


def _stage_name(stage: int, pipeline: str) -> str:
    stages, won, lost = HS_PIPELINES[pipeline]
    return (list(stages) + [won, lost])[stage]


def _pipelines_yaml() -> str:
    lines = ["pipelines:"]
    for name, (stages, won, lost) in HS_PIPELINES.items():
        lines.append(f"  {name}: {{stages: [{', '.join(stages)}], won: {won}, lost: {lost}}}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Salesforce


def write_salesforce(root: Path, crm: Crm, *, report: bool = False, shuffle: bool = True) -> Path:
    """Opportunity.csv and OpportunityHistory.csv: Data Loader style (API names, every field quoted,
    UTC timestamps '2024-03-05T17:22:11.000+0000', true/false) or, with ``report``, a report export
    (column labels, a BOM, CRLF, '03/05/2024 09:22 AM' in the user's time zone, 1/0 flags)."""
    root.mkdir(parents=True, exist_ok=True)
    opp, hist = [], []
    for d in crm.deals:
        last = d.rows[-1].stage if d.rows else 0
        open_stage = next((r.stage for r in reversed(d.rows) if r.stage < 6), 0)
        stage = "Closed Won" if d.status == "won" else "Closed Lost" if d.status == "lost" else SF_STAGES[last]
        # a lost deal keeps the CloseDate its rep last set, often in the future; a won deal's is its win
        close = (d.close.date() if d.status == "won" else
                 d.expected_close(len(d.rows) - 2) + dt.timedelta(days=90) if d.status == "lost" and len(d.rows) > 1
                 else d.expected_close(max(len(d.rows) - 1, 0)) if d.rows else d.created.date())
        closed, won = d.status != "open", d.status == "won"
        opp.append([d.id, f"{d.product} deal {d.id[-4:]}", stage, f"{d.amount:.2f}", _sf_time(d.created, report),
                    _sf_date(close, report), _sf_bool(closed, report), _sf_bool(won, report),
                    100 if won else 0 if closed else SF_PROBABILITY[open_stage],
                    "Closed" if won else "Omitted" if closed else SF_CATEGORY[open_stage], d.product, d.owner,
                    d.region, "Renewal, \"key\" account\nsecond line" if hash(d.id) % 5 == 0 else ""])
        for i, r in enumerate(d.rows):
            name = SF_STAGES[r.stage] if r.stage < 6 else ("Closed Won" if r.stage == 6 else "Closed Lost")
            expected = d.expected_close(i) if r.stage < 6 else r.at.date()
            prob = SF_PROBABILITY[r.stage] if r.stage < 6 else (100 if r.stage == 6 else 0)
            cat = SF_CATEGORY[r.stage] if r.stage < 6 else ("Closed" if r.stage == 6 else "Omitted")
            hist.append([f"008{len(hist):07d}", d.id, _sf_time(r.at, report), name, f"{d.amount:.2f}",
                         _sf_date(expected, report), prob, cat])
            if r.stage < 6 and i + 1 < len(d.rows) and (d.rows[i + 1].at - r.at).days > 2:
                # an amount edit the day after: a row of the same stage, same expected close
                hist.append([f"008{len(hist):07d}", d.id, _sf_time(r.at + dt.timedelta(days=1), report), name,
                             f"{d.amount:.2f}", _sf_date(expected, report), prob, cat])
    if shuffle:
        order = np.random.default_rng(0).permutation(len(hist))
        hist = [hist[i] for i in order]
    if report:
        opp_header = ["Opportunity ID", "Opportunity Name", "Stage", "Amount", "Created Date", "Close Date", "Closed",
                      "Won", "Probability (%)", "Forecast Category", "Product", "Opportunity Owner", "Region",
                      "Description"]
        hist_header = ["History ID", "Opportunity ID", "Last Modified", "Stage", "Amount", "Close Date",
                       "Probability (%)", "Forecast Category"]
        kw = {"line_end": "\r\n", "bom": True}
    else:
        opp_header = ["Id", "Name", "StageName", "Amount", "CreatedDate", "CloseDate", "IsClosed", "IsWon",
                      "Probability", "ForecastCategoryName", "Product__c", "OwnerId", "Region__c", "Description"]
        hist_header = ["Id", "OpportunityId", "CreatedDate", "StageName", "Amount", "CloseDate", "Probability",
                       "ForecastCategory"]
        kw = {"quote_all": True}
    write_csv(root / "Opportunity.csv", opp_header, opp, **kw)
    write_csv(root / "OpportunityHistory.csv", hist_header, hist, **kw)
    product = "Product" if report else "Product__c"
    cfg = (f"data:\n  format: salesforce\n  deals: Opportunity.csv\n  stage_history: OpportunityHistory.csv\n"
           f"  timezone: America/Los_Angeles\n"
           f"stages: [{', '.join(SF_STAGES)}]\nwon: Closed Won\nlost: Closed Lost\nsegment_by: [{product}]\n"
           f"forecast: {{as_of: {AS_OF}, trials: 300, seed: 5}}\n")
    (root / "forecaster.yaml").write_text(cfg)
    return root / "forecaster.yaml"


def _sf_time(local: dt.datetime, report: bool) -> str:
    return local.strftime("%m/%d/%Y %I:%M %p") if report else utc_stamp(local)


def _sf_date(day: dt.date, report: bool) -> str:
    return day.strftime("%m/%d/%Y") if report else day.isoformat()


def _sf_bool(x: bool, report: bool) -> str:
    return ("1" if x else "0") if report else ("true" if x else "false")


# ---------------------------------------------------------------------------------------------
# HubSpot


def write_hubspot(root: Path, crm: Crm, *, xlsx: bool = False) -> Path:
    """The deals export of two pipelines: a BOM, CRLF, minimal quoting, local times '2024-03-05 09:22',
    one 'Date entered "<stage> (<pipeline>)"' column per stage of each pipeline (or the same as .xlsx)."""
    root.mkdir(parents=True, exist_ok=True)
    stage_cols = [(p, i, f'Date entered "{name} ({p})"') for p, (stages, won, lost) in HS_PIPELINES.items()
                  for i, name in enumerate(list(stages) + [won, lost])]
    header = ["Record ID", "Deal Name", "Deal Stage", "Amount", "Create Date", "Close Date", "Pipeline", "Deal owner",
              "product", "region"] + [c for _, _, c in stage_cols]
    rows = []
    for d in crm.deals:
        pipe = _pipeline(d)
        latest = {r.stage: r for r in d.rows}
        current = d.rows[-1].stage if d.rows else 0
        close = d.close or (d.created + dt.timedelta(days=60))
        row = [d.id, f"{d.product} {d.id[-4:]}", _stage_name(current, pipe), _hs_amount(d.amount),
               _hs_time(d.created), _hs_time(close), pipe, d.owner, d.product, d.region]
        for p, i, _ in stage_cols:
            row.append(_hs_time(latest[i].at) if p == pipe and i in latest else "")
        rows.append(row)
    name = "hubspot-crm-exports-all-deals-2025-07-01"
    if xlsx:
        write_xlsx(root / f"{name}.xlsx", header, rows)
        deals_file = f"{name}.xlsx"
    else:
        write_csv(root / f"{name}.csv", header, rows, line_end="\r\n", bom=True)
        deals_file = f"{name}.csv"
    (root / "forecaster.yaml").write_text(
        f"data: {{format: hubspot, deals: {deals_file}}}\n{_pipelines_yaml()}segment_by: [product]\n"
        f"forecast: {{as_of: {AS_OF}, trials: 300, seed: 5}}\n")
    return root / "forecaster.yaml"


def _hs_time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def _hs_amount(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:.2f}"


# ---------------------------------------------------------------------------------------------
# Pipedrive


def write_pipedrive(root: Path, crm: Crm, deleted: int = 7, last_change: bool = False) -> Path:
    """The deals list export, ';'-separated as a European locale writes it, with deleted deals (and, with
    ``last_change``, the "Deal - Last stage change" column)."""
    root.mkdir(parents=True, exist_ok=True)
    header = ["Deal - ID", "Deal - Title", "Deal - Value", "Deal - Currency", "Deal - Status", "Deal - Deal created",
              "Deal - Won time", "Deal - Lost time", "Deal - Expected close date", "Deal - Stage", "Deal - Pipeline",
              "Deal - Owner", "Deal - product", "Deal - region"]
    rows = []
    for d in crm.deals:
        t = d.close.strftime("%Y-%m-%d %H:%M:%S") if d.close else ""
        rows.append([d.id, f"{d.product} {d.id[-4:]}", _hs_amount(d.amount), "EUR", d.status,
                     d.created.strftime("%Y-%m-%d %H:%M:%S"), t if d.status == "won" else "",
                     t if d.status == "lost" else "", (d.created + dt.timedelta(days=45)).date().isoformat(),
                     STAGES[pipedrive_stage(d)], "Pipeline", d.owner, d.product, d.region])
        if last_change:
            change = pipedrive_change(d)
            rows[-1].append(change.strftime("%Y-%m-%d %H:%M:%S") if change else "")
    for k in range(deleted):
        rows.insert(3 * k + 1, [f"X{k}", "spam", "0", "EUR", "deleted", "2024-02-01 10:00:00", "", "", "", "bogus",
                                "Pipeline", "nobody", "Core", "NA"] + ([""] if last_change else []))
    if last_change:
        header.append("Deal - Last stage change")
    write_csv(root / "deals.csv", header, rows, delimiter=";")
    (root / "forecaster.yaml").write_text(
        f"data: {{format: pipedrive, deals: deals.csv}}\nstages: [{', '.join(STAGES)}]\nsegment_by: [Deal - product]\n"
        f"forecast: {{as_of: {AS_OF}, trials: 300, seed: 5}}\n")
    return root / "forecaster.yaml"


# ---------------------------------------------------------------------------------------------
# A minimal .xlsx writer (the test must not depend on a spreadsheet library)


def _col(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def write_xlsx(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    """One sheet, text cells inline; numbers as numbers; datetimes as serial days with a date style."""
    from xml.sax.saxutils import escape

    def cell(ref: str, v: object) -> str:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return f'<c r="{ref}"><v>{v!r}</v></c>'
        if isinstance(v, dt.datetime):
            serial = (v - dt.datetime(1899, 12, 30)).total_seconds() / 86400
            return f'<c r="{ref}" s="1"><v>{serial!r}</v></c>'
        return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{escape(str(v))}</t></is></c>'

    body = []
    for r, values in enumerate([header] + rows):
        cells = "".join(cell(f"{_col(c)}{r + 1}", v) for c, v in enumerate(values) if v != "")
        body.append(f'<row r="{r + 1}">{cells}</row>')
    sheet = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.'
             f'org/spreadsheetml/2006/main"><sheetData>{"".join(body)}</sheetData></worksheet>')
    ns = "http://schemas.openxmlformats.org"
    files = {
        "[Content_Types].xml": f'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="{ns}/package/2006/content-types">'
        f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        f'<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        f'spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
        f'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/styles.xml" '
        f'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>',
        "_rels/.rels": f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{ns}/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{ns}/officeDocument/2006/relationships/officeDocument" '
        f'Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{ns}/spreadsheetml/2006/main" '
        f'xmlns:r="{ns}/officeDocument/2006/relationships"><sheets><sheet name="Deals" sheetId="1" r:id="rId1"/>'
        f'</sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{ns}/package/2006/'
        f'relationships"><Relationship Id="rId1" Type="{ns}/officeDocument/2006/relationships/worksheet" '
        f'Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="{ns}/officeDocument/2006/relationships/'
        f'styles" Target="styles.xml"/></Relationships>',
        "xl/styles.xml": f'<?xml version="1.0" encoding="UTF-8"?><styleSheet xmlns="{ns}/spreadsheetml/2006/main">'
        f'<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm"/></numFmts>'
        f'<fonts count="1"><font/></fonts><fills count="1"><fill/></fills><borders count="1"><border/></borders>'
        f'<cellStyleXfs count="1"><xf/></cellStyleXfs><cellXfs count="2"><xf/><xf numFmtId="164" '
        f'applyNumberFormat="1"/></cellXfs></styleSheet>',
        "xl/worksheets/sheet1.xml": sheet,
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path
