"""Terminal tables (rich) of finished results: rendering only, no statistics here."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from forecaster.calendar import to_date
from forecaster.report.format import days, money, pct


WIDTH = 100


def console(stderr: bool = False) -> Console:
    return Console(width=WIDTH, stderr=stderr, highlight=False, soft_wrap=False)


class Progress:
    """A rich progress bar on stderr, shown only on a terminal and only once a run passes a second."""

    def __init__(self, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.bar = None
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.t0 < 1.0 or done >= total:
                return
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(console=console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("simulating", total=total)
        self.bar.update(self.task, completed=done)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def print_warnings(warnings: Any, out: Console) -> None:
    for w in warnings:
        out.print(w.line(), style="yellow", soft_wrap=True)  # one line each, never wrapped


def print_validation(config_path: Any, export: Any, view: Any, warnings: Any) -> None:
    """The data summary of `validate` and `demo`: what was loaded (``export``: crm.ExportInfo) and the
    open pipeline as of (``view``: crm.PipelineView; ``warnings``: the snapshot's data warnings)."""
    out = console()
    mode = "deal-level (no stage history)" if export.deal_level else f"{export.n_history_rows:,} stage rows"
    out.print(f"config   {config_path}")
    for src in export.sources:
        out.print(f"data     {src}")
    c = view.counts
    out.print(
        f"loaded   {export.n_deals:,} deals, {mode}; created {to_date(export.first_created)} .. "
        f"last date {to_date(export.last_day)}"
    )
    out.print(
        f"as of    {view.as_of}: {sum(c.values()):,} deals known - {c['open']:,} open, {c['won']:,} won, "
        f"{c['lost']:,} lost"
    )
    if view.segment_values:
        out.print(f"segments {', '.join(f'{name} ({n} values)' for name, n in view.segment_values.items())}")
    table = Table(title=f"Open pipeline as of {view.as_of}", title_justify="left")
    table.add_column("stage")
    table.add_column("open deals", justify="right")
    table.add_column(f"open value{in_currency(getattr(view, 'currency', None))}", justify="right")
    table.add_column("median age (days)", justify="right")
    for i, s in enumerate(view.stages):
        med = view.median_age_days[i]
        table.add_row(s, f"{view.open_deals[i]:,}", money(view.open_amount[i]),
                      "-" if np.isnan(med) else f"{med:.0f}")
    table.add_row("total", f"{view.open_deals.sum():,}", money(view.open_amount.sum()), "", style="bold")
    out.print(table)
    out.print(f"stages seen in history: {', '.join(view.stages_seen) or '-'}")
    print_warnings(warnings, out)
    if not warnings:
        out.print("no warnings")


def print_fit(model: Any, out_dir: Path) -> None:
    """What `fit` learned: per stage and segment the data behind each table."""
    out = console()
    out.print(f"fitted as of {to_date(model.as_of)} on {model.meta['n_deals']:,} deals, "
              f"{model.meta['n_spells']:,} stage spells; wrote {out_dir}")
    table = Table(title="Data behind each stage table (own spells / exits, weight of own data)",
                  title_justify="left")
    table.add_column("stage")
    table.add_column("entered", justify="right")
    table.add_column("prior m", justify="right")
    for g in range(model.n_groups):
        table.add_column(model.group_name(g), justify="right")
    n_s = model.n_stages
    for s, name in enumerate(model.stages):
        cells = [f"{model.cell_spells[g * n_s + s]:,}/{model.cell_exits[g * n_s + s]:,} "
                 f"{pct(model.cell_weight[g * n_s + s])}" for g in range(model.n_groups)]
        m = model.prior_strength[s]
        table.add_row(name, f"{model.entered[s]:,}", "-" if model.n_groups == 1 else f"{m:,.0f}", *cells)
    out.print(table)
    aw = model.meta["arrival_window"]
    rate = model.arrivals.rate.sum()
    disp = "negative binomial" if aw["overdispersed"] else "Poisson"
    out.print(f"new deals: {rate * 7:,.1f} per week from {aw['start']} ({aw['days']} days, {aw['deals']:,} deals); "
              f"counts {disp} (dispersion {aw['dispersion']:.2f})")
    print_mix_effects(out, model)


def print_mix_effects(out: Any, model: Any) -> None:
    """The calendar effects (per stage and month of the fiscal quarter) and the shared shock of a model."""
    m = model.meta.get("mix_effects")
    if not m:
        return
    if model.meta.get("observed_from"):
        out.print(f"observed from {model.meta['observed_from']} (risk sets, exits and arrivals start there)")
    cal = m.get("calendar", {})
    if not cal.get("used"):
        out.print(f"calendar effects: none ({cal.get('reason', 'switched off')})")
    else:
        table = Table(title="Calendar effects by month of the fiscal quarter: exit-rate factor, "
                            "lost log-odds shift", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
        table.add_column("stage")
        for q in ("month 1", "month 2", "month 3"):
            table.add_column(q, justify="right")
        rates, shifts = m["exit_rate_by_month_of_quarter"], m["lost_shift_by_month_of_quarter"]
        for s, name in enumerate(model.stages):
            r = rates[min(s, len(rates) - 1)]
            sh = shifts[min(s, len(shifts) - 1)]
            table.add_row(name, *(f"x{r[q]:.2f} {sh[q]:+.2f}" for q in range(3)))
        out.print(table)
    sh = m.get("shared_shock", {})
    if m["shared_shock_variance"] > 0:
        out.print(f"shared shock: variance {m['shared_shock_variance']:.3f} of the per-trial multiplier of the odds "
                  f"of losing (from {sh.get('periods', 0)} periods of {sh.get('period_days', 0)} days)")
    else:
        out.print(f"shared shock: none ({sh.get('reason', 'no excess dispersion of lost exits over periods')})")


def print_funnel(f: dict[str, Any]) -> None:
    out = console()
    seg = "" if f["segment"] == "all" else f" ({f['segment']})"
    table = Table(title=f"Funnel as of {f['as_of']}{seg}", title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, collapse_padding=True)
    for col, just in (("stage", "left"), ("entered", "right"), ("open", "right"),
                      (f"open value{in_currency(f.get('currency'))}", "right"),
                      ("forward", "right"), ("back", "right"), ("lost", "right"), ("win rate", "right"),
                      ("median d", "right"), ("p90 d", "right"), ("stale", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for s in f["stages"]:
        table.add_row(s["stage"], f"{s['entered']:,}", f"{s['open_deals']:,}", money(s["open_amount"]),
                      pct(s["forward_share"]), pct(s["back_share"]), pct(s["lost_share"]), pct(s["win_rate"]),
                      days(s["median_days"]), days(s["p90_days"]), f"{s['stale_deals']:,}")
    out.print(table)
    out.print("forward: to a later stage or won; back: to an earlier stage (shares of the deals leaving the "
              "stage);\nstale: open deals older than their segment's p90 time in the stage")
    o = f["overall"]
    out.print(f"win rate {pct(o['win_rate'])} of new deals; average won deal {money(o['avg_won_amount'])}; "
              f"median cycle {days(o['cycle_days_median'])} days")
    out.print(f"open pipeline {o['open_deals']:,} deals, {money(o['open_amount'])}; "
              f"velocity {money(o['velocity_per_day'])} per day")
    out.print(f"bottleneck: {f['bottleneck']} (most value lost per new deal)")


def _share(x: dict[str, Any] | None) -> str:
    if not x or x.get("value") is None:
        return "-"
    return f"{pct(x['value'])} ±{100 * (x['hi95'] - x['lo95']) / 2:.1f}"


def _span(x: dict[str, Any] | None, key: str, fmt: Any) -> str:
    """'value [lo, hi]' with '?' for an open end."""
    if not x or x.get(key) is None:
        return "-"
    lo = "?" if x.get("lo95") is None else fmt(x["lo95"])
    hi = "?" if x.get("hi95") is None else fmt(x["hi95"])
    return f"{fmt(x[key])} [{lo}, {hi}]"


def _p(x: float | None) -> str:
    return "-" if x is None else ("<0.001" if x < 0.001 else f"{x:.3f}")


def print_funnel_change(f: dict[str, Any]) -> None:
    """`funnel --period/--split-by`: per stage and period (group) the shares of exits and the median stay,
    then each difference from the first with its tests and verdict."""
    out = console()
    by_period = "periods" in f
    groups = f["periods"] if by_period else f["groups"]
    labels = [f"P{i + 1}" if by_period else str(g["value"]) for i, g in enumerate(groups)]
    seg = "" if f["segment"] == "all" else f" ({f['segment']})"
    out.print(f"Stage by stage as of {f['as_of']}{seg}: spells that entered each stage in each "
              f"{'period' if by_period else 'group'}, followed up to as_of (still open: censored)")
    if by_period:
        out.print("; ".join(f"{lab} = {g['start']} .. {g['end']}" for lab, g in zip(labels, groups)))
    else:
        window = f" entered {groups[0]['start']} .. {groups[0]['end']}" if "start" in groups[0] else ""
        out.print(f"groups: {groups[0]['column']} = {', '.join(labels)}{window}")
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for col in ("stage", "", "spells", "forward", "back", "lost", "median days", "by day"):
        t.add_column(col, justify="left" if col in ("stage", "") else "right", no_wrap=True)
    for s in range(len(groups[0]["stages"])):
        for j, g in enumerate(groups):
            st = g["stages"][s]
            t.add_row(st["stage"] if j == 0 else "", labels[j], f"{st['spells']:,}", _share(st["forward_share"]),
                      _share(st["back_share"]), _share(st["lost_share"]), _span(st["median_days"], "value", days),
                      days(st["horizon_days"]))
    out.print(t)
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for col in ("stage", "", "forward, points", "p", "median days", "p", "verdict"):
        t.add_column(col, justify="left" if col in ("stage", "", "verdict") else "right", no_wrap=True)
    for d in f["differences"]:
        a, b = d["between"]
        verdict = d["verdict"] if d["verdict"] != "different" else f"{' and '.join(d['what_differs'])} differ"
        t.add_row(d["stage"], f"{labels[b]} - {labels[a]}",
                  _span(d["forward_share"], "diff", lambda v: f"{100 * v:+.1f}"), _p(d.get("p_forward")),
                  _span(d["median_days"], "diff", lambda v: f"{v:+.0f}"), _p(d.get("p_time")), verdict)
    out.print(t)
    out.print("forward/back/lost: shares of the exits by the day shown (the last one with enough spells at risk "
              "in\nevery group), ± 95%. Differences with 95% intervals; p: Wald (forward share) and log-rank "
              f"(time).\nA stage differs when a p is below {f['test']['alpha'] / 2:g}: at most "
              f"{f['test']['alpha']:.0%} of unchanged stages are called different.")


def print_forecast(s: dict[str, Any]) -> None:
    """The forecast as a revenue-ops lead reads it: window, pipeline, distributions, quota, breakdowns."""
    out = console()
    w = s["window"]
    out.print(f"Forecast as of {s['as_of']} for {w['start']} .. {w['end']}: {s['trials']:,} trials, seed {s['seed']}")
    new = "with" if s.get("new_deals", True) else "without"
    cur = in_currency(s.get("currency"))
    out.print(f"open pipeline {s['open_deals']:,} deals, {money(s['open_amount'])}{cur}; {new} new deals arriving")
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for col in ("", "mean", "P10", "P50", "P90"):
        t.add_column(col, justify="left" if col == "" else "right")
    r, d = s["revenue"], s["won_deals"]
    t.add_row(f"revenue{cur}", money(r["mean"]), money(r["p10"]), money(r["p50"]), money(r["p90"]))
    nr = s["from_new_deals"]["revenue"]
    t.add_row("  of which new deals", money(nr["mean"]), money(nr["p10"]), money(nr["p50"]), money(nr["p90"]))
    t.add_row("won deals", f"{d['mean']:,.1f}", f"{d['p10']:,.0f}", f"{d['p50']:,.0f}", f"{d['p90']:,.0f}")
    out.print(t)
    if s.get("quota") is not None:
        out.print(f"P(revenue >= quota {money(s['quota'])}) = {pct(s['p_quota'])}")
    groups = [("period", [(f"{p['start']} .. {p['end']}", p) for p in s["periods"]]),
              ("segment", list(s["segments"].items()))]
    groups += [(col, list(values.items())) for col, values in s.get("report_by", {}).items()]
    for title, rows in groups:
        if len(rows) <= 1:
            continue
        t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        t.add_column(title)
        for col in (f"revenue mean{cur}", "P10", "P90", "wins mean"):
            t.add_column(col, justify="right")
        for name, x in rows:
            t.add_row(name, money(x["revenue"]["mean"]), money(x["revenue"]["p10"]), money(x["revenue"]["p90"]),
                      f"{x['won_deals']['mean']:,.1f}", style="bold" if name == "(total)" else None)
        out.print(t)


def in_currency(code: str | None) -> str:
    """' (EUR)' after a money heading, or nothing when the export names no currency."""
    return f" ({code})" if code else ""


def _dist_row(name: str, s: dict[str, Any]) -> list[str]:
    r, w = s["revenue"], s["won_deals"]
    q = "-" if s.get("p_quota") is None else pct(s["p_quota"])
    return [name, money(r["mean"]), money(r["p10"]), money(r["p90"]), f"{w['mean']:,.1f}", q]


def print_compare(c: dict[str, Any]) -> None:
    """One row per scenario (a sweep: per value); a sliced scenario's delta is against the same slice
    of the baseline (marked *)."""
    out = console()
    b = c["baseline"]
    cur = in_currency(b.get("currency"))
    out.print(f"Scenarios as of {b['as_of']} for {b['window']['start']} .. {b['window']['end']}: "
              f"{b['trials']:,} paired trials, seed {b['seed']}")
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for col in ("scenario", f"revenue{cur}", "P10", "P90", "wins", "P(quota)", "mean diff [95% CI]", "P(better)"):
        t.add_column(col, justify="left" if col == "scenario" else "right", no_wrap=True)
    t.add_row(*_dist_row("baseline", b), "", "")
    sliced = False
    for sc in c["scenarios"]:
        d = sc["delta"]["revenue"]
        mark = "*" if "compared_with" in sc else ""
        sliced |= bool(mark)
        sign = "+" if d["mean"] > 0 else ""
        t.add_row(*_dist_row(sc["name"], sc["summary"]),
                  f"{sign}{money(d['mean'])} [{money(d['lo95'])}, {money(d['hi95'])}]{mark}",
                  pct(sc["delta"]["p_better"]))
    out.print(t)
    out.print("mean diff: the mean of the paired per-trial revenue differences from the baseline;\n"
              "its 95% interval is for that mean, not for one quarter's difference.\n"
              "P(better): share of paired trials the scenario wins more (ties half).")
    if sliced:
        out.print("* against the same slice of the baseline")


def print_plan(p: dict[str, Any]) -> None:
    out = console()
    where = f" at {p['stage']}" if p.get("stage") else ""
    if p.get("window"):
        out.print(f"Plan as of {p['as_of']} for the window {p['window']['start']} .. {p['window']['end']}")
    out.print(f"Plan: revenue{in_currency(p.get('currency'))} >= {money(p['target'])} with {p['confidence']:.0%} "
              f"confidence, lever {p['lever']}{where}")
    out.print(f"({p['trials']:,} trials per evaluation, {p['evaluations']} evaluations on the same trials)")
    out.print(f"now: P(revenue >= target) = {pct(p['p_now'])}")
    for line in p["answer"]:
        out.print(f"answer: {line}", style="bold")
    rf = p["reverse_funnel"]
    out.print(f"reverse funnel: {money(p['target'])} at an average won deal of {money(rf['avg_won_amount'])} "
              f"takes about {rf['wins_needed']:,.0f} wins")
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for col in ("stage", "win rate from stage", "deals that must enter"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for s in rf["stages"]:
        need = "-" if s["deals_needed"] is None else f"{s['deals_needed']:,.0f}"
        t.add_row(s["stage"], pct(s["win_rate"]), need)
    out.print(t)


def _fmt(x: Any, kind: str) -> str:
    if x is None:
        return "-"
    return {"pct": pct, "money": money, "num": lambda v: f"{v:,.1f}", "num3": lambda v: f"{v:.3f}",
            "ratio": lambda v: f"{v:+.0%}"}[kind](x)


def print_backtest(b: dict[str, Any]) -> None:
    """Coverage, bias and skill per method, and the deal-level scores, as a revenue-ops lead reads them."""
    out = console()
    out.print(f"Backtest: {b['cutoffs']} cutoffs ({b['cutoff_dates'][0]} .. {b['cutoff_dates'][-1]}), window "
              f"{b['window']}, {b['trials']:,} trials each, seed {b.get('seed', '-')}")
    left = b.get("left_out", {}).get("cutoffs", [])
    if left:
        out.print(f"left out {len(left)} cutoff{'s' if len(left) > 1 else ''} ({', '.join(left)}): "
                  f"{b['left_out']['reason']} (outcome not known yet)", soft_wrap=True)
    for f in b.get("failed_cutoffs", []):
        out.print(f"cutoff {f['cutoff']} failed: {f['error']}", style="yellow", soft_wrap=True)
    if b.get("parameter_uncertainty"):
        out.print("parameter uncertainty on: each block of trials uses a bootstrap-refitted model")
    for target, block, kind in ((f"revenue{in_currency(b.get('currency'))}", b, "money"),
                                ("won deals", b["won_deals"], "num")):
        t = Table(title=f"{target}: lower CRPS is better; coverage should match its nominal level",
                  title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        for col in ("method", "cutoffs", "P10-P90 (80%)", "P5-P95 (90%)", "CRPS", "median bias", "WAPE", "skill"):
            t.add_column(col, justify="left" if col == "method" else "right")
        for name, m in block["methods"].items():
            sk = block["skill"].get(name)
            t.add_row(name, f"{m['cutoffs']}", _fmt(m.get("coverage_80"), "pct"), _fmt(m.get("coverage_90"), "pct"),
                      _fmt(m.get("crps"), kind), _fmt(m.get("bias"), "ratio"), _fmt(m.get("wape"), "pct"),
                      "" if name == "forecaster" else _fmt(sk, "ratio"))
        out.print(t)
        hist = block["methods"]["forecaster"].get("pit_histogram")
        if hist:
            out.print(f"forecaster PIT histogram {hist['counts']}: {hist['verdict']}")
    out.print("skill = 1 - CRPS(forecaster) / CRPS(method) on the cutoffs both scored: positive means "
              "forecaster's distribution is better")
    ds = b.get("deal_scores") or {}
    if ds:
        t = Table(title="deals: P(won inside the window) against what happened (lower Brier and log loss are "
                        "better)", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
        for col in ("method", "deal-cutoffs", "won", "Brier", "log loss", "AUC"):
            t.add_column(col, justify="left" if col == "method" else "right")
        for name, s in ds.items():
            t.add_row(name, f"{s['deals']:,}", f"{s['won']:,}", _fmt(s["brier"], "num3"), _fmt(s["log_loss"], "num3"),
                      _fmt(s["auc"], "num3"))
        out.print(t)
