"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network) of finished
results. Rendering only: ``ReportData`` carries what analysis computed; each section appears when its
data is there. Templates are jinja2 with autoescape on: deal ids and segment values come from CRM exports
and may contain markup.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from forecaster.report import charts as C
from forecaster.report import evaluation_charts as E
from forecaster.report.format import days, money, pct

GENERATED_PREFIX = "Generated "  # the one line of the report that differs between identical runs


@dataclass(frozen=True)
class ReportData:
    """What a report shows, each part optional (its section is skipped when it is None or empty).

    ``summary``: a summary.json object (forecast, or compare's baseline); ``revenue_histogram``
    ``{"edges", "counts"}``; ``cumulative``: the fan chart's ``{"weeks", "actual"}``; ``deals``: the top
    rows of deals.parquet; ``open_deals``: how many there are in all; ``segment_by``: the segment columns
    shown in the deal table; ``funnel``: the funnel JSON; ``change``: the change since a previous
    summary; ``compare``: compare.json; ``backtest`` / ``backtest_rows``: backtest.json and its rows;
    ``warnings``: one line each; ``provenance``: config, config_sha256, data_fingerprint, seed, trials,
    version, command; ``generated_at``: the timestamp line; ``diff``: diff.json (what moved since an
    earlier forecast); ``spread`` and ``inspect``: summary.json's (what makes the range wide, the deals
    to inspect)."""

    title: str = "forecaster report"
    summary: dict[str, Any] | None = None
    revenue_histogram: dict[str, list[float]] | None = None
    cumulative: dict[str, Any] | None = None
    deals: list[dict[str, Any]] | None = None
    open_deals: int | None = None
    segment_by: tuple[str, ...] = ()
    funnel: dict[str, Any] | None = None
    change: dict[str, Any] | None = None
    compare: dict[str, Any] | None = None
    backtest: dict[str, Any] | None = None
    backtest_rows: list[dict[str, Any]] | None = None
    diff: dict[str, Any] | None = None
    spread: dict[str, Any] | None = None
    inspect: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    generated_at: str = ""


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("forecaster", "report/templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(money=money, pct=pct, days=days, signed_money=signed_money, signed_pct=signed_pct)
    return env


def signed_money(x: Any) -> str:
    return "-" if x is None else ("+" if x > 0 else "") + money(x)


def signed_pct(x: Any) -> str:
    """A change of a probability in percentage points."""
    return "-" if x is None else f"{100 * x:+.1f} pp"


def _cur(data: ReportData) -> str | None:
    return (data.summary or {}).get("currency") or (data.compare or {}).get("baseline", {}).get("currency")


def _headline(s: dict[str, Any], change: dict[str, Any] | None) -> dict[str, Any]:
    rows = []
    for key, label, fmt in (("revenue", "revenue", money), ("won_deals", "won deals", lambda v: f"{v:,.0f}")):
        d = s[key]
        delta = (change or {}).get(key, {})
        rows.append({"label": label, "p10": fmt(d["p10"]), "p50": fmt(d["p50"]), "p90": fmt(d["p90"]),
                     "mean": fmt(d["mean"]) if key == "revenue" else f"{d['mean']:,.1f}",
                     "change": None if not change else
                     (signed_money(delta.get("p50")) if key == "revenue" else
                      "-" if delta.get("p50") is None else f"{delta['p50']:+,.0f}")})
    return {"rows": rows, "new": s.get("from_new_deals", {}).get("revenue")}


def _breakdowns(s: dict[str, Any], cur: str | None) -> list[dict[str, Any]]:
    out = []
    periods = [(f"{p['start']} .. {p['end']}", p) for p in s.get("periods", [])]
    groups: list[tuple[str, str, list[tuple[str, dict[str, Any]]]]] = []
    if len(periods) > 1:
        groups.append(("periods", "period", periods))
    if len(s.get("segments", {})) > 1:
        groups.append(("segments", "segment", list(s["segments"].items())))
    for col, values in (s.get("report_by") or {}).items():
        groups.append((f"report-by-{len(groups)}", col, list(values.items())))
    for chart_id, what, rows in groups:
        title = f"Won revenue by {what} (bars: mean; whiskers: P10 - P90)"
        out.append({"title": title, "what": what,
                    "chart": C.interval_bars(chart_id, title, [(n, x["revenue"]) for n, x in rows], cur, what),
                    "rows": [{"name": n, "mean": money(x["revenue"]["mean"]), "p10": money(x["revenue"]["p10"]),
                              "p50": money(x["revenue"]["p50"]), "p90": money(x["revenue"]["p90"]),
                              "wins": f"{x['won_deals']['mean']:,.1f}"} for n, x in rows]})
    return out


DEAL_COLUMNS = (  # (key in deals.parquet, heading, format); optional keys are shown when the rows have them
    ("stage", "stage", str),
    ("age_days", "days in stage", lambda v: f"{v:,}"),
    ("amount", "amount", money),
    ("p_win", "P(win in window)", pct),
    ("expected_revenue", "expected revenue", money),
    ("median_close_date", "median close (model, if won)", lambda v: "-" if v is None else str(v)),
    ("crm_expected_close", "CRM close date", lambda v: "-" if v is None else str(v)),
    ("crm_probability", "CRM probability", lambda v: "-" if v is None or v != v else pct(v)),
    ("close_pushes", "close date pushed", lambda v: "-" if v is None or v == 0 else f"{v:,}x"),
    ("stale", "stale", lambda v: "-" if v is None else ("stale" if v else "")),
)
# CRM columns every deals table has, shown only when some row has a value
CRM_COLUMNS = ("crm_expected_close", "crm_probability", "close_pushes")


def _given(rows: list[dict[str, Any]], key: str) -> bool:
    return any(r.get(key) is not None and r[key] == r[key] and r[key] != 0 for r in rows)


def _deals(data: ReportData) -> dict[str, Any] | None:
    rows = data.deals
    if not rows:
        return None
    cols = [("deal_id", "deal", str)] + [(c, c, str) for c in data.segment_by if c in rows[0]]
    cols += [c for c in DEAL_COLUMNS if c[0] in rows[0] and (c[0] not in CRM_COLUMNS or _given(rows, c[0]))]
    text = [fmt is str for _, _, fmt in cols]  # left-aligned text columns
    return {"headings": list(zip([h for _, h, _ in cols], text)),
            "rows": [list(zip([fmt(r[k]) for k, _, fmt in cols], text)) for r in rows], "shown": len(rows),
            "total": data.open_deals if data.open_deals is not None else len(rows)}


def _funnel(f: dict[str, Any], cur: str | None) -> dict[str, Any]:
    stages = list(f["stages"])
    chart = C.funnel_lost_value([s["stage"] for s in stages], f["bottleneck_lost_value_per_new_deal"],
                                f["bottleneck"], cur)
    return {"stages": stages, "bottleneck": f["bottleneck"], "overall": f["overall"], "chart": chart}


def _scenarios(c: dict[str, Any], cur: str | None) -> dict[str, Any]:
    plain = [s for s in c.get("scenarios", []) if not s.get("sweep")]
    sweeps: dict[tuple[str, str], list[tuple[float, dict[str, float]]]] = {}
    for s in c.get("scenarios", []):
        if s.get("sweep"):
            sw = s["sweep"]
            sweeps.setdefault((sw["scenario"], sw["lever"]), []).append((sw["value"], s["delta"]["revenue"]))
    return {
        "baseline": c["baseline"],
        "rows": [{"name": s["name"], "description": s["summary"].get("scenario", {}).get("description", ""),
                  "summary": s["summary"], "delta": s["delta"]} for s in c.get("scenarios", [])],
        "forest": E.forest(plain, cur) if plain else None,
        "sweeps": [E.sweep(f"sweep-{i}", name, lever, sorted(points), cur)
                   for i, ((name, lever), points) in enumerate(sweeps.items())],
    }


def _backtest(b: dict[str, Any], rows: list[dict[str, Any]] | None, cur: str | None) -> dict[str, Any]:
    mine = [r for r in rows or [] if r["method"] == "forecaster" and r["target"] == "revenue" and r["p10"] is not None]
    hist = b["methods"]["forecaster"].get("pit_histogram")
    blocks = [(t, blk["skill"]) for t, blk in (("revenue", b), ("won deals", b.get("won_deals", {})))
              if blk.get("skill")]
    scores = b.get("deal_scores")
    return {
        "summary": b,
        "intervals": E.backtest_intervals(mine, cur) if mine else None,
        "pit": E.pit(hist) if hist and hist.get("n") else None,
        "skill": E.skill(blocks) if blocks else None,
        "reliability": E.reliability(scores) if scores else None,
        "deal_scores": scores,
        "methods": [(name, m) for name, m in b["methods"].items()],
    }


WATERFALL_LABELS = {"won": "won", "lost": "lost", "created": "created (less allowance)", "progressed": "progressed",
                    "moved_back": "moved back", "aged": "aged", "amount": "amount changed", "pushed": "close pushed",
                    "pulled_in": "close pulled in", "model": "model (refit)"}
SPREAD_ROWS = 10


def _diff(d: dict[str, Any], cur: str | None) -> dict[str, Any]:
    steps = [(WATERFALL_LABELS.get(c["name"], c["name"]), c["revenue"]) for c in d["components"]]
    chart = C.waterfall(steps, (f"as of {d['from']}", d["start"]["revenue"]), (f"as of {d['to']}", d["end"]["revenue"]),
                        cur)
    rows = [{"name": WATERFALL_LABELS.get(c["name"], c["name"]), "revenue": signed_money(c["revenue"]),
             "wins": f"{c['won_deals']:+,.2f}", "deals": f"{c['deals']:,}" if c["deals"] else "",
             "largest": ", ".join(f"{r['deal_id']} {signed_money(r['revenue'])}" for r in c["largest"][:3]
                                  if r["revenue"])} for c in d["components"]]
    return {"d": d, "chart": chart, "rows": rows}


def _spread(sp: dict[str, Any]) -> dict[str, Any]:
    var = sp["variance"] or 1.0
    deals = sp["deals"][:SPREAD_ROWS]
    o = sp["other_open_deals"]
    parts = [(r["deal_id"], r["share"]) for r in deals]
    if o["deals"]:
        parts.append((f"{o['deals']:,} other open deals", o["share"]))
    parts.append(("new deals", sp["new_deals"]["share"]))
    rows = [{"name": r["deal_id"], "amount": money(r["amount"]), "p_win": pct(r["p_win"]),
             "own": pct(r["own_variance"] / var), "shared": pct(r["shared_covariance"] / var), "share": pct(r["share"])}
            for r in deals]
    if o["deals"]:
        rows.append({"name": f"{o['deals']:,} other open deals", "amount": "", "p_win": "",
                     "own": pct(o["own_variance"] / var), "shared": pct(o["shared_covariance"] / var),
                     "share": pct(o["share"])})
    rows.append({"name": "new deals", "amount": "", "p_win": "", "own": "", "shared": "",
                 "share": pct(sp["new_deals"]["share"])})
    groups = [(title, [(n, pct(x["share"])) for n, x in g.items()])
              for title, g in [("segment", sp.get("segments", {}))] + list(sp.get("report_by", {}).items()) if len(g) > 1]
    return {"sp": sp, "chart": C.variance_shares(parts), "rows": rows, "groups": groups,
            "separating": [{**r, "amount": money(r["amount"]), "won_in_high": pct(r["won_in_high"]),
                            "won_in_low": pct(r["won_in_low"])} for r in sp["separating"]]}


def _inspect(ins: dict[str, Any]) -> dict[str, Any]:
    return {"ins": ins, "rows": [{**r, "amount": money(r["amount"]), "p_win": pct(r["p_win"])} for r in ins["deals"]]}


def _sections(data: ReportData) -> dict[str, Any]:
    s, cur = data.summary, _cur(data)
    out: dict[str, Any] = {"currency": cur, "unit": C.unit(cur), "headline": None, "histogram": None, "fan": None,
                           "breakdowns": []}
    if s is not None:
        out["headline"] = _headline(s, data.change)
        if data.revenue_histogram:
            out["histogram"] = C.revenue_histogram(data.revenue_histogram, s["revenue"], s.get("quota"), cur,
                                                   s["trials"])
        if data.cumulative and data.cumulative.get("weeks"):
            out["fan"] = C.fan(data.cumulative, s.get("quota"), s.get("won_to_date"), s["as_of"],
                               s["window"]["start"], cur)
        out["breakdowns"] = _breakdowns(s, cur)
    out["diff"] = _diff(data.diff, cur) if data.diff else None
    out["spread"] = _spread(data.spread) if data.spread else None
    out["inspect"] = _inspect(data.inspect) if data.inspect else None
    out["deals"] = _deals(data)
    out["funnel"] = _funnel(data.funnel, cur) if data.funnel else None
    out["scenarios"] = _scenarios(data.compare, cur) if data.compare else None
    out["backtest"] = _backtest(data.backtest, data.backtest_rows, cur) if data.backtest else None
    return out


def render_report(data: ReportData) -> str:
    """The report as one HTML document (a str); byte-identical for identical data except the line that
    starts with ``GENERATED_PREFIX``."""
    template = _environment().get_template("report.html.j2")
    return template.render(d=data, s=data.summary, change=data.change, generated_prefix=GENERATED_PREFIX,
                           **_sections(data))


def timestamp(now: dt.datetime | None = None) -> str:
    """The report's generation time, UTC to the second."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
