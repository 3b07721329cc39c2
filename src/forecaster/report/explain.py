"""Terminal tables (rich) of the explanations: the waterfall of `diff`, and `forecast --explain`'s spread and
deals to inspect. Rendering only: every figure comes computed (analysis.diff, analysis.spread,
analysis.inspection)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from forecaster.report.format import money, pct
from forecaster.report.terminal import console, in_currency

SPREAD_ROWS = 10
LABELS = {"won": "won", "lost": "lost", "created": "created (less allowance)", "progressed": "progressed",
          "moved_back": "moved back", "aged": "aged", "amount": "amount changed", "pushed": "close date pushed",
          "pulled_in": "close date pulled in", "model": "model (refit)"}


def _table() -> Table:
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)


def signed(x: float) -> str:
    return "0" if x == 0 else ("+" if x > 0 else "") + money(x)


def print_diff(d: dict[str, Any]) -> None:
    """The waterfall: start, each component with its deals and largest contributions, end."""
    out = console()
    w = d["window"]
    out.print(f"What moved: the forecast of {w['start']} .. {w['end']} as of {d['from']} and as of {d['to']} "
              f"({d['trials']:,} trials, seed {d['seed']})")
    cur = in_currency(d.get("currency"))
    t = _table()
    for col, just in (("", "left"), (f"revenue{cur}", "right"), ("won deals", "right"), ("deals", "right"),
                      ("largest", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    s, e = d["start"], d["end"]
    t.add_row(f"forecast as of {d['from']}", money(s["revenue"]), f"{s['won_deals']:,.1f}", "", "", style="bold")
    for c in d["components"]:
        largest = ", ".join(f"{r['deal_id']} {signed(r['revenue'])}" for r in c["largest"][:2] if r["revenue"])
        t.add_row(LABELS.get(c["name"], c["name"]), signed(c["revenue"]), f"{c['won_deals']:+,.2f}",
                  f"{c['deals']:,}" if c["deals"] else "", largest)
    t.add_row(f"forecast as of {d['to']}", money(e["revenue"]), f"{e['won_deals']:,.1f}", "", "", style="bold")
    out.print(t)
    out.print(f"each forecast: booked before its date + open deals x P(win in the window) + new deals; "
              f"change {signed(e['revenue'] - s['revenue'])} revenue, {e['won_deals'] - s['won_deals']:+,.2f} won deals")


def print_spread(sp: dict[str, Any], currency: str | None = None) -> None:
    """What makes the range wide: the deals and groups carrying the variance, the deals that separate
    high trials from low ones."""
    out = console()
    cur = in_currency(currency)
    out.print(f"What makes the range wide: standard deviation of window revenue {money(sp['sd'])}{cur}; "
              f"each part's share of the variance (its covariance with the total)")
    t = _table()
    for col in ("deal", "amount", "P(win)", "own share", "with others", "share"):
        t.add_column(col, justify="left" if col == "deal" else "right")
    var = sp["variance"] or 1.0
    for r in sp["deals"][:SPREAD_ROWS]:
        t.add_row(r["deal_id"], money(r["amount"]), pct(r["p_win"]), pct(r["own_variance"] / var),
                  pct(r["shared_covariance"] / var), pct(r["share"]))
    o = sp["other_open_deals"]
    if o["deals"]:
        t.add_row(f"{o['deals']:,} other open deals", "", "", pct(o["own_variance"] / var),
                  pct(o["shared_covariance"] / var), pct(o["share"]))
    t.add_row("new deals", "", "", "", "", pct(sp["new_deals"]["share"]))
    out.print(t)
    for title, groups in [("segment", sp.get("segments", {}))] + list(sp.get("report_by", {}).items()):
        if len(groups) <= 1:
            continue
        g = _table()
        g.add_column(title)
        g.add_column("share of the variance", justify="right")
        for name, x in groups.items():
            g.add_row(name, pct(x["share"]))
        out.print(g)
    if sp["separating"]:
        h, lo = sp["high_trials"], sp["low_trials"]
        t = Table(title=f"deals that separate a P90 trial (>= {money(h['at_least'])}) from a P10 trial "
                        f"(<= {money(lo['at_most'])})", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)
        for col in ("deal", "amount", "won in P90 trials", "won in P10 trials"):
            t.add_column(col, justify="left" if col == "deal" else "right")
        for r in sp["separating"]:
            t.add_row(r["deal_id"], money(r["amount"]), pct(r["won_in_high"]), pct(r["won_in_low"]))
        out.print(t)


def print_inspect(ins: dict[str, Any], currency: str | None = None) -> None:
    """The deals to inspect with their reasons in words."""
    out = console()
    f = ins["flagged"]
    out.print(f"Deals to inspect: {f['slip_risk']:,} slip risks, {f['pushed']:,} pushed "
              f"{ins['rules']['pushed_at_least']}+ times, {f['stale']:,} stale, {f['range']:,} carrying the range")
    if not ins["deals"]:
        return
    t = _table()
    for col in ("deal", "stage", f"amount{in_currency(currency)}", "P(win)", "why"):
        t.add_column(col, justify="right" if col in ("P(win)",) or col.startswith("amount") else "left")
    for r in ins["deals"]:
        t.add_row(r["deal_id"], r["stage"], money(r["amount"]), pct(r["p_win"]), r["why"])
    out.print(t)


def print_explain(s: dict[str, Any]) -> None:
    """`forecast --explain`: the spread and the deals to inspect of a summary."""
    if "spread" in s:
        print_spread(s["spread"], s.get("currency"))
    if "inspect" in s:
        print_inspect(s["inspect"], s.get("currency"))
