"""Charts of scenario comparisons and backtests, as inline SVG (see report.charts for the conventions)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from forecaster.report.charts import ACCENT, DARK, INK, LIGHT, MID, Chart, new_figure, chart_style, date_axis, finish, \
    money_axis, percent_axis, unit
from forecaster.report.format import money, pct

MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("solid", (0, (5, 2)), (0, (1, 1.5)), (0, (5, 2, 1, 2)))


def forest(scenarios: list[dict[str, Any]], currency: str | None) -> Chart:
    """Each scenario's mean paired revenue difference from the baseline with its 95% interval."""
    with chart_style("forest"):
        fig, ax = new_figure(max(1.8, 0.8 + 0.34 * len(scenarios)))
        ys = list(range(len(scenarios)))[::-1]
        d = [s["delta"]["revenue"] for s in scenarios]
        means = [x["mean"] for x in d]
        ax.errorbar(means, ys, xerr=[[m - x["lo95"] for m, x in zip(means, d)],
                                     [x["hi95"] - m for m, x in zip(means, d)]],
                    fmt="s", color=DARK, ecolor=INK, elinewidth=1.4, capsize=4, markersize=5)
        ax.axvline(0.0, color=INK, linewidth=0.9, linestyle=(0, (4, 3)))
        ax.set_yticks(ys, [s["name"] for s in scenarios])
        money_axis(ax.xaxis)
        alt = "Forest plot of the mean revenue difference from the baseline with 95% intervals: " + "; ".join(
            f"{s['name']} {money(x['mean'])} [{money(x['lo95'])}, {money(x['hi95'])}]"
            for s, x in zip(scenarios, d)) + "."
        return finish(fig, ax, "forest", "Scenarios against the baseline (paired trials, 95% interval of the mean)",
                      f"mean difference in won revenue ({unit(currency)})", "scenario", alt)


def sweep(chart_id: str, name: str, lever: str, points: list[tuple[float, dict[str, float]]],
          currency: str | None) -> Chart:
    """One lever swept over values: the mean paired difference with its 95% band."""
    with chart_style(chart_id):
        fig, ax = new_figure(2.8)
        xs = [x for x, _ in points]
        ax.fill_between(xs, [d["lo95"] for _, d in points], [d["hi95"] for _, d in points], color=LIGHT,
                        edgecolor=MID, linewidth=0.6, label="95% interval")
        ax.plot(xs, [d["mean"] for _, d in points], color=DARK, marker="o", markersize=4, label="mean difference")
        ax.axhline(0.0, color=INK, linewidth=0.9, linestyle=(0, (4, 3)))
        money_axis(ax.yaxis)
        alt = f"Sweep of {lever} for {name}: mean revenue difference from the baseline " + "; ".join(
            f"at {x:g} {money(d['mean'])} [{money(d['lo95'])}, {money(d['hi95'])}]" for x, d in points) + "."
        return finish(fig, ax, chart_id, f"Sweep: {name}", f"{lever} (lever value)",
                      f"mean difference in won revenue ({unit(currency)})", alt)


def backtest_intervals(rows: list[dict[str, Any]], currency: str | None) -> Chart:
    """Per cutoff: forecaster's P10-P90 interval and P50 against the actual won revenue."""
    with chart_style("backtest-intervals"):
        fig, ax = new_figure(3.0)
        xs = [r["cutoff"] if isinstance(r["cutoff"], dt.date) else dt.date.fromisoformat(r["cutoff"]) for r in rows]
        ax.vlines(xs, [r["p10"] for r in rows], [r["p90"] for r in rows], color=MID, linewidth=5,
                  label="P10 - P90")
        ax.plot(xs, [r["p50"] for r in rows], linestyle="none", marker="_", markersize=12, markeredgewidth=2,
                color=DARK, label="P50")
        ax.plot(xs, [r["actual"] for r in rows], linestyle="none", marker="D", markersize=5, color=ACCENT,
                markeredgecolor=INK, label="actual")
        money_axis(ax.yaxis)
        date_axis(ax.xaxis)
        ax.margins(x=0.08)
        inside = sum(r["p10"] <= r["actual"] <= r["p90"] for r in rows)
        alt = (f"Backtest: forecaster's P10-P90 interval of won revenue at {len(rows)} cutoffs from "
               f"{xs[0]} to {xs[-1]} against the actual; the actual fell inside the interval {inside} times.")
        return finish(fig, ax, "backtest-intervals", "Backtest: actual revenue against the forecast interval",
                      "cutoff (as-of date of the forecast)", f"won revenue ({unit(currency)})", alt)


def pit(histogram: dict[str, Any]) -> Chart:
    """The PIT histogram with the count a calibrated forecast expects in each bin."""
    with chart_style("pit"):
        fig, ax = new_figure(2.6)
        edges, counts = histogram["edges"], histogram["counts"]
        widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color=MID, edgecolor="white", label="cutoffs")
        ax.axhline(histogram["expected"], color=INK, linestyle=(0, (4, 3)), linewidth=1.2,
                   label=f"expected if calibrated ({histogram['expected']:.1f})")
        ax.set_xlim(0, 1)
        alt = (f"PIT histogram of {histogram['n']} backtest cutoffs in {histogram['bins']} bins: counts "
               f"{', '.join(str(c) for c in counts)}; a calibrated forecast gives about {histogram['expected']:.1f} "
               f"per bin ({histogram['verdict']}).")
        return finish(fig, ax, "pit", "Backtest: PIT histogram (flat is calibrated)",
                      "PIT: share of the forecast below the actual", "cutoffs", alt)


def skill(blocks: list[tuple[str, dict[str, float]]]) -> Chart:
    """CRPS skill of forecaster against each baseline, per target (label, {method: skill})."""
    with chart_style("skill"):
        methods = sorted({m for _, sk in blocks for m in sk})
        fig, ax = new_figure(max(1.8, 0.9 + 0.45 * len(methods)))
        height = 0.8 / max(len(blocks), 1)
        hatches = ("", "///", "..")
        colors = (DARK, LIGHT, MID)
        for b, (target, sk) in enumerate(blocks):
            ys = [len(methods) - 1 - i + (len(blocks) / 2 - b - 0.5) * height for i in range(len(methods))]
            vals = [sk.get(m) if sk.get(m) is not None else 0.0 for m in methods]
            ax.barh(ys, vals, height=height, color=colors[b % 3], hatch=hatches[b % 3], edgecolor=INK,
                    linewidth=0.5, label=target)
        ax.set_yticks(range(len(methods))[::-1], methods)
        ax.axvline(0.0, color=INK, linewidth=0.9)
        percent_axis(ax.xaxis)
        alt = "CRPS skill of forecaster against each baseline (positive: forecaster better): " + "; ".join(
            f"{target}: " + ", ".join(f"{m} {pct(v)}" for m, v in sk.items() if v is not None)
            for target, sk in blocks) + "."
        return finish(fig, ax, "skill", "Backtest: CRPS skill against each baseline",
                      "skill = 1 - CRPS(forecaster) / CRPS(baseline)", "baseline", alt)


def reliability(deal_scores: dict[str, dict[str, Any]]) -> Chart:
    """Deal-level reliability: observed win share against the mean predicted P(win) per bin, per method."""
    with chart_style("reliability"):
        fig, ax = new_figure(3.4)
        ax.plot([0, 1], [0, 1], color="#888888", linestyle=(0, (4, 3)), linewidth=1, label="perfectly calibrated")
        parts = []
        for i, (method, sc) in enumerate(deal_scores.items()):
            bins = [b for b in sc.get("reliability", []) if b.get("n")]
            ax.plot([b["mean_predicted"] for b in bins], [b["observed"] for b in bins],
                    marker=MARKERS[i % len(MARKERS)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                    color=(DARK, ACCENT, MID, INK)[i % 4], markersize=4, label=method)
            parts.append(f"{method}: Brier {sc.get('brier', float('nan')):.3f} over "
                         f"{sum(b['n'] for b in bins):,} deals")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        percent_axis(ax.xaxis)
        percent_axis(ax.yaxis)
        alt = "Reliability diagram of deal-level win probabilities: " + "; ".join(parts) + "."
        return finish(fig, ax, "reliability", "Backtest: deal-level reliability",
                      "predicted P(win in window), bin mean", "observed share won", alt)
