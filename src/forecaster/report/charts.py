"""Charts of finished results as inline SVG (matplotlib), for the HTML report: rendering only.

Every chart carries a title, axis labels with their units and an alt text (the SVG's ``<title>``, named
by ``aria-labelledby``). The SVG is byte-stable: ``svg.hashsalt`` is set per chart (so ids are fixed and
differ between the charts of one page), the date metadata is dropped, and text stays text
(``svg.fonttype: none``; smaller, selectable, readable by the browser's tests). Labels are never parsed
as mathtext: a segment value like "$1M+" is shown as written. Colours are a blue ramp of distinct
lightness plus line styles and hatches, so charts survive greyscale printing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import io
import re
from dataclasses import dataclass
from typing import Any, Iterator

from forecaster.report.format import money

LIGHT, MID, DARK, INK = "#c6dbef", "#6baed6", "#08519c", "#111111"
ACCENT = "#a63603"  # actuals: dark orange, mid grey in greyscale, always with its own marker or dash
WIDTH_IN = 7.2


@dataclass(frozen=True)
class Chart:
    """One chart: ``svg`` is an ``<svg>`` element (no XML prolog) to inline in HTML."""

    id: str
    title: str
    xlabel: str
    ylabel: str
    alt: str
    svg: str


@contextlib.contextmanager
def chart_style(chart_id: str) -> Iterator[None]:
    import matplotlib

    rc = {"svg.hashsalt": f"forecaster-{chart_id}", "svg.fonttype": "none", "text.parse_math": False,
          "font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold",
          "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": "#dddddd",
          "grid.linewidth": 0.6, "axes.axisbelow": True, "legend.frameon": False, "legend.fontsize": 8}
    with matplotlib.rc_context(rc):
        yield


def new_figure(height_in: float = 3.0) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, height_in), layout="constrained")
    return fig, fig.add_subplot()


def money_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: money(v)))


def date_axis(axis: Any) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(maxticks=8)
    formatter = ConciseDateFormatter(locator)
    formatter.offset_formats = ["", "%Y", "%Y", "%Y", "%Y", "%Y"]  # the year beside the axis, not "2017-Oct"
    axis.set_major_locator(locator)
    axis.set_major_formatter(formatter)


def percent_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.0f}%"))


_SVG_ROOT = re.compile(r"<svg\b")


_ID = re.compile(r'\bid="([^"]+)"')
_ID_REF = re.compile(r'(url\(#|href="#)([^)"]+)')


def _own_ids(svg: str, chart_id: str) -> str:
    """Every id of the SVG (and every reference to one) prefixed with the chart's id: matplotlib numbers
    its elements from 1 in each figure, and the ids of one HTML page must be unique."""
    svg = _ID.sub(lambda m: f'id="{chart_id}-{m.group(1)}"', svg)
    return _ID_REF.sub(lambda m: f"{m.group(1)}{chart_id}-{m.group(2)}", svg)


def finish(fig: Any, ax: Any, chart_id: str, title: str, xlabel: str, ylabel: str, alt: str) -> Chart:
    """Title and labels on the axes, the figure as SVG text with its alt text."""
    fig.suptitle(title, x=0.01, ha="left", fontsize=10, fontweight="bold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    handles, _ = ax.get_legend_handles_labels()
    if handles:  # below the axes, where it hides no data
        fig.legend(loc="outside lower center", ncols=min(len(handles), 5))
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[_SVG_ROOT.search(text).start():]
    text = _own_ids(text, chart_id)
    title_id = f"{chart_id}-alt"
    text = _SVG_ROOT.sub(f'<svg role="img" aria-labelledby="{title_id}" class="chart-svg"', text, count=1)
    head_end = text.index(">") + 1
    text = f'{text[:head_end]}\n<title id="{title_id}">{html.escape(alt)}</title>{text[head_end:]}'
    return Chart(chart_id, title, xlabel, ylabel, alt, text)


def unit(currency: str | None) -> str:
    """The unit of amounts on an axis: the currency code, or the deals' own currency when unknown."""
    return currency if currency else "deal currency"


def _quota_line(ax: Any, quota: float | None, vertical: bool, label: str = "quota") -> None:
    if quota is None:
        return
    line = ax.axvline if vertical else ax.axhline
    line(quota, color=INK, linestyle=(0, (6, 3)), linewidth=1.4, label=f"{label} {money(quota)}")


def revenue_histogram(hist: dict[str, list[float]], revenue: dict[str, float], quota: float | None,
                      currency: str | None, trials: int) -> Chart:
    """Trials per revenue bin with the P10 / P50 / P90 lines and the quota."""
    with chart_style("revenue-histogram"):
        fig, ax = new_figure()
        edges, counts = hist["edges"], hist["counts"]
        widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color=LIGHT, edgecolor=MID, linewidth=0.5,
               label="trials")
        for key, style in (("p10", (0, (2, 2))), ("p50", "solid"), ("p90", (0, (2, 2)))):
            ax.axvline(revenue[key], color=DARK, linestyle=style, linewidth=1.6 if key == "p50" else 1.1,
                       label=f"{key.upper()} {money(revenue[key])}")
        _quota_line(ax, quota, vertical=True)
        money_axis(ax.xaxis)
        alt = (f"Histogram of won revenue in the window over {trials:,} simulated trials: P10 "
               f"{money(revenue['p10'])}, P50 {money(revenue['p50'])}, P90 {money(revenue['p90'])}"
               + (f"; quota {money(quota)}" if quota is not None else "") + ".")
        return finish(fig, ax, "revenue-histogram", "Revenue in the window: distribution over trials",
                      f"won revenue in the window ({unit(currency)})", "trials", alt)


def _dates(values: list[str]) -> list[dt.date]:
    return [dt.date.fromisoformat(v) for v in values]


def fan(cumulative: dict[str, Any], quota: float | None, won_to_date: dict[str, Any] | None,
        as_of: str, window_start: str, currency: str | None) -> Chart:
    """Cumulative won revenue by week: the P10-P90 band, the P50 line, the quota, the actuals to date.
    With revenue won earlier in the quarter, the forecast is drawn on top of it (and so is the quota,
    which the window's revenue alone must reach)."""
    with chart_style("fan"):
        fig, ax = new_figure(3.2)
        weeks = cumulative["weeks"]
        offset = won_to_date["revenue"] if won_to_date else 0.0
        x = [dt.date.fromisoformat(window_start) - dt.timedelta(days=1)] + _dates([w["end"] for w in weeks])
        lo = [offset] + [offset + w["p10"] for w in weeks]
        mid = [offset] + [offset + w["p50"] for w in weeks]
        hi = [offset] + [offset + w["p90"] for w in weeks]
        ax.fill_between(x, lo, hi, color=LIGHT, edgecolor=MID, linewidth=0.6, label="P10 - P90")
        ax.plot(x, mid, color=DARK, linewidth=2, marker="o", markersize=3, label="P50")
        actual = cumulative.get("actual") or []
        if actual:
            since = dt.date.fromisoformat(won_to_date["since"]) - dt.timedelta(days=1)
            ax.plot([since] + _dates([a["end"] for a in actual]), [0.0] + [a["revenue"] for a in actual],
                    color=ACCENT, linestyle=(0, (1, 1.5)), linewidth=2, marker="s", markersize=3,
                    label="won to date (actual)")
        if quota is not None:
            _quota_line(ax, offset + quota, vertical=False,
                        label="quota on top of won to date" if won_to_date else "quota")
        ax.axvline(dt.date.fromisoformat(as_of), color="#777777", linewidth=0.8)
        money_axis(ax.yaxis)
        date_axis(ax.xaxis)
        last = weeks[-1]
        alt = (f"Fan chart of cumulative won revenue by week from {window_start} to {last['end']}: at the end "
               f"of the window P10 {money(last['p10'])}, P50 {money(last['p50'])}, P90 {money(last['p90'])}"
               + (f", on top of {money(offset)} won since {won_to_date['since']}" if won_to_date else "")
               + (f"; quota {money(quota)}" if quota is not None else "") + ".")
        since_what = f"since {won_to_date['since']}" if won_to_date else "in the window"
        return finish(fig, ax, "fan", f"Cumulative won revenue {since_what}, by week", "week ending",
                      f"won revenue ({unit(currency)})", alt)


def interval_bars(chart_id: str, title: str, rows: list[tuple[str, dict[str, float]]], currency: str | None,
                  what: str) -> Chart:
    """Horizontal bars of the mean with P10-P90 whiskers, one per row (label, revenue distribution)."""
    with chart_style(chart_id):
        fig, ax = new_figure(max(1.6, 0.8 + 0.32 * len(rows)))
        labels = [label for label, _ in rows]
        ys = list(range(len(rows)))[::-1]
        means = [r["mean"] for _, r in rows]
        ax.barh(ys, means, color=MID, height=0.6)
        ax.errorbar(means, ys, xerr=[[m - r["p10"] for m, (_, r) in zip(means, rows)],
                                     [r["p90"] - m for m, (_, r) in zip(means, rows)]],
                    fmt="none", ecolor=INK, elinewidth=1.2, capsize=3)
        ax.set_yticks(ys, labels)
        money_axis(ax.xaxis)
        alt = f"Bar chart of won revenue by {what}: " + "; ".join(
            f"{label} mean {money(r['mean'])} (P10 {money(r['p10'])}, P90 {money(r['p90'])})" for label, r in rows) + "."
        return finish(fig, ax, chart_id, title, f"won revenue in the window ({unit(currency)})", what, alt)


def funnel_lost_value(stages: list[str], lost_value: dict[str, float], bottleneck: str, currency: str | None) -> Chart:
    """Per stage: the value it loses per new deal entering the funnel; the bottleneck (the most) hatched."""
    with chart_style("funnel"):
        fig, ax = new_figure(max(1.8, 0.8 + 0.32 * len(stages)))
        values = [lost_value[n] for n in stages]
        ys = list(range(len(stages)))[::-1]
        bars = ax.barh(ys, values, color=MID, height=0.6)
        for bar, name in zip(bars, stages):
            if name == bottleneck:
                bar.set_facecolor(DARK)
                bar.set_hatch("///")
                bar.set_edgecolor("white")
        ax.set_yticks(ys, [f"{n} (bottleneck)" if n == bottleneck else n for n in stages])
        money_axis(ax.xaxis)
        alt = ("Bar chart of the value each stage loses per new deal entering the funnel: "
               + "; ".join(f"{n} {money(v)}" for n, v in zip(stages, values)) + f". Bottleneck: {bottleneck}.")
        return finish(fig, ax, "funnel", "Value lost per new deal, by stage (bottleneck hatched)",
                      f"value lost per new deal entering the funnel ({unit(currency)})", "stage", alt)


def waterfall(steps: list[tuple[str, float]], start: tuple[str, float], end: tuple[str, float],
              currency: str | None) -> Chart:
    """The change of the forecast as a horizontal waterfall: the start and end totals as bars from the
    axis, each step a bar from the running total (rises plain, falls hatched, so greyscale keeps them
    apart). The axis shows the stretch the totals move in, not zero."""
    with chart_style("waterfall"):
        fig, ax = new_figure(max(2.4, 0.9 + 0.3 * (len(steps) + 2)))
        labels = [start[0]] + [name for name, _ in steps] + [end[0]]
        ys = list(range(len(labels)))[::-1]
        level = [start[1]]
        for _, delta in steps:
            level.append(level[-1] + delta)
        lo, hi = min(level + [end[1]]), max(level + [end[1]])
        pad = max(hi - lo, abs(hi) * 0.02, 1.0) * 0.15
        floor = max(0.0, lo - pad) if lo >= 0 else lo - pad
        for y, value in ((ys[0], start[1]), (ys[-1], end[1])):
            ax.barh(y, value - floor, left=floor, color=DARK, height=0.6)
        for y, (_, delta), before in zip(ys[1:-1], steps, level[:-1]):
            bar = ax.barh(y, delta, left=before, height=0.6, color=MID if delta >= 0 else LIGHT,
                          edgecolor=DARK, linewidth=0.6)
            if delta < 0:
                bar[0].set_hatch("///")
        ax.set_yticks(ys, labels)
        ax.set_xlim(floor, hi + pad)
        money_axis(ax.xaxis)
        alt = (f"Waterfall from {start[0]} {money(start[1])} to {end[0]} {money(end[1])}: "
               + "; ".join(f"{name} {'+' if d > 0 else ''}{money(d)}" for name, d in steps) + ".")
        return finish(fig, ax, "waterfall", "What moved the forecast (rises plain, falls hatched; the axis does not start at 0)",
                      f"expected revenue in the window ({unit(currency)})", "part of the change", alt)


def variance_shares(rows: list[tuple[str, float]]) -> Chart:
    """Per part (deal or group) its share of the variance of window revenue, largest first."""
    with chart_style("variance-shares"):
        fig, ax = new_figure(max(1.8, 0.8 + 0.3 * len(rows)))
        ys = list(range(len(rows)))[::-1]
        ax.barh(ys, [share for _, share in rows], color=MID, height=0.6)
        ax.set_yticks(ys, [name for name, _ in rows])
        percent_axis(ax.xaxis)
        alt = ("Bar chart of each part's share of the variance of won revenue in the window: "
               + "; ".join(f"{name} {100 * share:.1f}%" for name, share in rows) + ".")
        return finish(fig, ax, "variance-shares", "What makes the range wide: share of the variance of revenue",
                      "share of the variance of won revenue in the window (%)", "deal or part", alt)
