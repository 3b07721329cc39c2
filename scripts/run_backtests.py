"""Regenerate docs/backtests.md (and the figures README.md quotes): forecaster and every baseline, backtested
on every dataset, with the uncertainty of each calibration claim.

    python scripts/run_backtests.py [--trials 2000] [--out docs/backtests.md] [--quick]

Datasets: generated CRMs with known truth (3 seeds, the effects of real pipelines off and on), BPIC 2012
(a real bank's loan funnel: ../shared/data/bpic2012), Maven (public but fictitious: ../shared/data/maven_crm)
and the bundled sample. Every figure in the doc and in README's "Is it calibrated?" block comes from here.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from forecaster.analysis.backtest import backtest
from forecaster.config import load_config
from forecaster.synth import Effects, generate, realistic

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
D = dt.date
SEEDS = (11, 12, 13)
GEN_START, GEN_END = D(2022, 1, 1), D(2025, 12, 31)
BASELINES = ("weighted_pipeline", "weighted_pipeline_all", "crm_forecast", "crm_commit", "crm_best_case",
             "seasonal_naive", "run_rate", "ets")


def fmt(x: Any, kind: str) -> str:
    if x is None:
        return "-"
    if kind == "pct":
        return f"{100 * x:.0f}%"
    if kind == "signed":
        return f"{100 * x:+.0f}%"
    if kind == "money":
        return f"{x / 1e3:,.0f}k"
    if kind == "3":
        return f"{x:.3f}"
    return f"{x:,.1f}"


def coverage_cell(m: dict, key: str) -> str:
    ci = m.get(key + "_interval")
    if not ci or ci.get("coverage") is None:
        return "-"
    return f"{fmt(ci['coverage'], 'pct')} [{fmt(ci['lo95'], 'pct')}, {fmt(ci['hi95'], 'pct')}]"


def method_table(summary: dict, target: str) -> list[str]:
    block = summary if target == "revenue" else summary["won_deals"]
    kind = "money" if target == "revenue" else "num"
    lines = ["| method | cutoffs | P10-P90 coverage (80%) | P5-P95 coverage (90%) | CRPS | median bias | WAPE | "
             "forecaster's CRPS skill vs it |", "|---|---|---|---|---|---|---|---|"]
    for name, m in block["methods"].items():
        skill = "" if name == "forecaster" else (
            f"{fmt(block['skill'].get(name), 'signed')} ({block['skill_cutoffs'].get(name, 0)})")
        lines.append(f"| {name} | {m['cutoffs']} | {coverage_cell(m, 'coverage_80')} | {coverage_cell(m, 'coverage_90')} "
                     f"| {fmt(m.get('crps'), kind)} | {fmt(m.get('bias'), 'signed')} | {fmt(m.get('wape'), 'pct')} "
                     f"| {skill} |")
    hist = block["methods"]["forecaster"].get("pit_histogram")
    if hist:
        p = "-" if hist["p_value"] is None else f"{hist['p_value']:.2f}"
        lines += ["", f"forecaster PIT histogram (10 bins): {hist['counts']}, outer share "
                      f"{fmt(hist['outer_share'], 'pct')} (20% when calibrated), chi-square p = {p}: "
                      f"**{hist['verdict']}**"]
    return lines


def deal_table(summary: dict) -> list[str]:
    ds = summary.get("deal_scores") or {}
    if not ds:
        return []
    lines = ["", "**deals** (P(won inside the window) per open deal and cutoff; lower Brier and log loss are better)",
             "", "| method | deal-cutoffs | won | Brier | log loss | AUC | reliability: predicted -> observed (n) |",
             "|---|---|---|---|---|---|---|"]
    for name, s in ds.items():
        rel = "; ".join(f"{fmt(b['mean_predicted'], 'pct')}->{fmt(b['observed'], 'pct')} ({b['n']:,})"
                        for b in s["reliability"] if b["n"])
        lines.append(f"| {name} | {s['deals']:,} | {s['won']:,} | {fmt(s['brier'], '3')} | {fmt(s['log_loss'], '3')} "
                     f"| {fmt(s['auc'], '3')} | {rel} |")
    return lines


def losses(summary: dict) -> list[str]:
    """Plain sentences: where forecaster loses on this run."""
    out = []
    for target, block in (("revenue", summary), ("won deals", summary["won_deals"])):
        f = block["methods"]["forecaster"]
        for name, sk in block["skill"].items():
            if sk is not None and sk < 0:
                out.append(f"on {target}, {name} has a lower CRPS than forecaster ({fmt(sk, 'signed')} skill, "
                           f"{block['skill_cutoffs'][name]} cutoffs)")
        ci = f.get("coverage_80_interval") or {}
        if ci.get("consistent") is False:
            side = "too narrow" if ci["coverage"] < 0.8 else "too wide"
            out.append(f"on {target}, forecaster's P10-P90 interval is {side}: coverage {coverage_cell(f, 'coverage_80')}")
        hist = f.get("pit_histogram") or {}
        if hist.get("verdict") not in (None, "calibrated", "too few cutoffs"):
            out.append(f"on {target}, the PIT test says **{hist['verdict']}** (p = {hist['p_value']:.3f})")
    ds = summary.get("deal_scores") or {}
    if "forecaster" in ds:
        for name, s in ds.items():
            if name != "forecaster" and s["brier"] is not None and s["brier"] < ds["forecaster"]["brier"]:
                out.append(f"per deal, {name} has a lower Brier score ({s['brier']:.3f} vs {ds['forecaster']['brier']:.3f})")
    return out


def run(config: Path, start: D, end: D, every: str, window: str, trials: int, seed: int | None = None,
        detect_start: bool = False) -> dict:
    cfg = load_config(config).with_forecast(trials=trials, seed=seed)
    if detect_start:  # the observation start as forecaster detects it, not the config's
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, observed_from=None))
    t = time.perf_counter()
    _, s = backtest(cfg, start, end, every, window)
    s["took_s"] = time.perf_counter() - t
    print(f"  {config.parent.name}/{config.name} {window}: {s['cutoffs']} cutoffs, {s['took_s']:.1f} s", flush=True)
    return s


def section(title: str, note: str, summary: dict, trials: int) -> list[str]:
    every = {"week": "weekly", "month": "monthly", "quarter": "quarterly"}.get(summary.get("every", ""), "")
    out = [f"### {title}", ""] + ([note, ""] if note else []) + [
           f"{summary['cutoffs']} {every} cutoffs {summary['cutoff_dates'][0]} .. "
           f"{summary['cutoff_dates'][-1]}, window {summary['window']}, {trials:,} trials, seed {summary['seed']} "
           f"({summary['took_s']:.0f} s)."]
    for target in ("revenue", "won_deals"):
        out += ["", f"**{target.replace('_', ' ')}**", ""] + method_table(summary, target)
    out += deal_table(summary)
    lost = losses(summary)
    out += ["", "Where forecaster loses here: " + ("; ".join(lost) + "." if lost else "nowhere on these scores."), ""]
    return out


def generated_runs(tmp: Path, trials: int, quick: bool) -> tuple[list[str], list[dict]]:
    lines = ["## Generated CRMs with known truth", "",
             "Six stages, three products of very different size and speed, lognormal stays with stalls, weekly and "
             "end-of-quarter arrival seasonality (`forecaster generate`, 2022-2025, about 13k deals). Two worlds per "
             "seed: **plain** (the generator's own process, which has the model's structure: it flatters the model) "
             "and **realistic** (`--effects realistic`: wins pushed to the quarter's last 10 days, a shared shock "
             "per quarter on the odds of losing, a drift in win rates, the CRM adopted half a year in, optimistic "
             "and pushed close dates, stale close dates on lost deals, CRM probabilities; synth/effects.py). "
             "Non-overlapping monthly windows from monthly cutoffs, so the PIT values are independent and the "
             "binomial bands apply.", ""]
    rows = []
    seeds = SEEDS[:1] if quick else SEEDS
    for seed in seeds:
        for world, effects in (("plain", Effects()), ("realistic", realistic(GEN_START))):
            folder = tmp / f"gen{seed}_{world}"
            generate(folder, seed=seed, start=GEN_START, end=GEN_END, effects=effects)
            s = run(folder / "forecaster.yaml", D(2023, 7, 1), D(2025, 11, 1), "month", "month", trials)
            rows.append({"dataset": f"generated seed {seed}, {world}", "summary": s})
            lines += section(f"Seed {seed}, {world}", "", s, trials)
            if world == "realistic":
                s = run(folder / "forecaster.yaml", D(2023, 7, 1), D(2025, 10, 1), "month", "quarter", trials)
                rows.append({"dataset": f"generated seed {seed}, realistic, quarterly", "summary": s})
                lines += section(f"Seed {seed}, realistic, quarterly windows", "Overlapping quarterly windows from "
                                 "monthly cutoffs (neighbouring PIT values share two months, so the binomial band is "
                                 "only a guide).", s, trials)
    return lines, rows


def overview(rows: list[dict]) -> list[str]:
    lines = ["## Overview", "",
             "forecaster's P10-P90 coverage (nominal 80%) with its Wilson 95% interval, and its CRPS skill against "
             "the best baseline on the same cutoffs (positive: forecaster better). A coverage interval that "
             "excludes 80% means the intervals are off.", "",
             "| dataset | window | cutoffs | revenue coverage | won-deal coverage | revenue skill vs best baseline | "
             "won-deal skill vs best baseline |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["summary"]
        cells = []
        for block in (s, s["won_deals"]):
            cells.append(coverage_cell(block["methods"]["forecaster"], "coverage_80"))
        for block in (s, s["won_deals"]):
            sk = {m: v for m, v in block["skill"].items() if m in BASELINES and v is not None}
            if sk:
                best = min(sk, key=sk.get)
                cells.append(f"{fmt(sk[best], 'signed')} ({best})")
            else:
                cells.append("-")
        lines.append(f"| {r['dataset']} | {s['window']} | {s['cutoffs']} | " + " | ".join(cells) + " |")
    return lines + [""]


def ablations(rows: list[dict]) -> list[str]:
    """What the calendar effects and the shared shock buy: CRPS and coverage with each switched off."""
    lines = ["## What the calendar effects and the shared shock buy", "",
             "CRPS (lower is better) and P10-P90 coverage of forecaster with every component, without the "
             "month-of-quarter effects, and without the shared shock, on the same cutoffs and draws.", "",
             "| dataset | window | target | forecaster | no calendar | no shock |", "|---|---|---|---|---|---|"]
    for r in rows:
        s = r["summary"]
        for target, block in (("revenue", s), ("won deals", s["won_deals"])):
            m = block["methods"]
            if "forecaster_no_calendar" not in m:
                continue
            kind = "money" if target == "revenue" else "1"
            cells = [f"{fmt(m[k]['crps'], kind)} ({m[k]['coverage_80'] * 100:.0f}%)"
                     for k in ("forecaster", "forecaster_no_calendar", "forecaster_no_shock")]
            lines.append(f"| {r['dataset']} | {s['window']} | {target} | " + " | ".join(cells) + " |")
    return lines + [""]


def readme_block(rows: list[dict]) -> str:
    """The figures README.md quotes, as one paragraph between its markers."""
    gen = [r for r in rows if r["dataset"].startswith("generated")]
    parts = []
    for world in ("plain", "realistic"):
        rs = [r["summary"] for r in gen if r["dataset"].endswith(world)]
        if not rs:
            continue
        cov = ", ".join(coverage_cell(s["methods"]["forecaster"], "coverage_80") for s in rs)
        cov_w = ", ".join(coverage_cell(s["won_deals"]["methods"]["forecaster"], "coverage_80") for s in rs)
        parts.append(f"on generated data ({world}, {len(rs)} seeds, {rs[0]['cutoffs']} monthly windows each) the "
                     f"P10-P90 interval held revenue {cov} of the time and won deals {cov_w} (nominal 80%, Wilson 95% "
                     f"intervals)")
    real = [r for r in rows if not r["dataset"].startswith("generated")]
    for r in real:
        s = r["summary"]
        sk = {m: v for m, v in s["skill"].items() if m in BASELINES and v is not None}
        worst = min(sk, key=sk.get) if sk else None
        parts.append(f"on {r['dataset']} ({s['window']} windows, {s['cutoffs']} cutoffs) revenue coverage was "
                     f"{coverage_cell(s['methods']['forecaster'], 'coverage_80')}"
                     + (f" and CRPS skill against the strongest baseline ({worst}) {fmt(sk[worst], 'signed')}" if worst else ""))
    weak = []
    for r in rows:
        s = r["summary"]
        narrow = [t for t, b in (("revenue", s), ("won deals", s["won_deals"]))
                  if (b["methods"]["forecaster"].get("coverage_80_interval") or {}).get("consistent") is False]
        beaten = sorted({m for b in (s, s["won_deals"]) for m, v in b["skill"].items()
                         if m in BASELINES and v is not None and v < 0})
        if narrow or beaten:
            weak.append(f"{r['dataset']} ({s['window']}): "
                        + "; ".join(([f"intervals off for {', '.join(narrow)}"] if narrow else [])
                                    + ([f"beaten on CRPS by {', '.join(beaten)}"] if beaten else [])))
    text = ("Measured by `python scripts/run_backtests.py` (full tables: [docs/backtests.md](docs/backtests.md)): "
            + "; ".join(parts) + ".")
    if weak:
        text += "\n\nWhere forecaster does not yet win: " + "; ".join(weak) + "."
    return text


def update_readme(text: str) -> None:
    path = REPO / "README.md"
    readme = path.read_text()
    new = re.sub(r"(<!-- backtests:begin -->\n).*?(\n<!-- backtests:end -->)", lambda m: m.group(1) + text + m.group(2),
                 readme, flags=re.S)
    if new != readme:
        path.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "backtests.md")
    ap.add_argument("--quick", action="store_true", help="one seed and fewer datasets (a smoke run; README untouched)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    lines = ["# Backtests", "",
             "Generated by `python scripts/run_backtests.py` (do not edit by hand). Each cutoff's forecast sees only the "
             "export as of that date; the actual is read from the same export. Coverage: the share of actuals inside "
             "the forecast interval, with a Wilson 95% interval; PIT: where the actual fell in the forecast "
             "distribution (uniform when calibrated; chi-square test over 10 bins). CRPS skill = 1 - CRPS(forecaster) "
             "/ CRPS(method) on the cutoffs both scored (in brackets), positive when forecaster's distribution is "
             "better. Point baselines are scored by the CRPS of a point mass (their absolute error). Baselines: "
             "`weighted_pipeline` (amount x stage win rate for deals expected to close inside the window: the CRM's "
             "expected close when the export has one, else stage entry + the stage's median days to close), "
             "`weighted_pipeline_all` (every open deal, whatever its timing: the number most CRMs show), "
             "`crm_forecast` / `crm_commit` / `crm_best_case` (the reps' probabilities and categories, when the export "
             "has them), `seasonal_naive` (the same window a year or a quarter earlier), `run_rate` (trailing windows) "
             "and `ets` (statsforecast AutoETS on won revenue per window-length block, its predictive distribution). "
             "`forecaster_no_new_deals`, `forecaster_no_age`, `forecaster_no_calendar` (without the month-of-quarter "
             "exit rates and lost-odds shifts) and `forecaster_no_shock` (without the shared shock) are ablations on "
             "the same fitted model and draws (docs/model.md). Deal scores pool every deal open at "
             "every cutoff (deals recur over cutoffs, so they are not independent draws).", ""]
    rows: list[dict] = []
    sections: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        gen_lines, gen_rows = generated_runs(Path(tmp), args.trials, args.quick)
        rows += gen_rows
        sections += gen_lines
    bpic = REPO / "configs" / "bpic2012.yaml"
    if (SHARED / "bpic2012").is_dir():
        sections += ["## BPI Challenge 2012 (real)", "",
                     "A real Dutch bank's personal-loan applications, Oct 2011 - Mar 2012 (van Dongen 2012, "
                     "4TU.ResearchData, DOI 10.4121/uuid:3926db30-f712-4394-aebc-75976070e91f; configs/bpic2012.yaml). "
                     "A cycle of about two weeks and five months of history: weekly cutoffs, windows of 1, 2 and 4 "
                     "weeks (overlapping for 2 and 4 weeks, so their PIT values are not independent).", ""]
        for window in ("7d", "14d", "28d"):
            s = run(bpic, D(2011, 11, 7), D(2012, 2, 13), "week", window, args.trials)
            rows.append({"dataset": "BPIC 2012", "summary": s})
            sections += section(f"{window} windows", "", s, args.trials)
    if not args.quick and (SHARED / "maven_crm").is_dir():
        maven = REPO / "configs" / "maven.yaml"
        sections += ["## Maven CRM (public, fictitious)", "",
                     "Maven Analytics' teaching dataset (configs/maven.yaml): a fictitious B2B seller, deal-level (no "
                     "stage history), its closes recorded from 2017-03 only. Fictitious data proves nothing about real "
                     "pipelines; it is here because its quirks (left truncation, an end-of-quarter push) are real ones. "
                     "The config counts the history as observed from the first engagement (`data.observed_from`: its "
                     "comment says why); the last section shows the monthly windows with the observation start "
                     "forecaster detects (2017-03-01) instead.", ""]
        for window, note in (("quarter", "Overlapping quarterly windows from monthly cutoffs."),
                             ("month", "Monthly windows: Maven's wins bunch in the quarter's third month.")):
            s = run(maven, D(2017, 4, 1), D(2017, 12, 1) if window == "month" else D(2017, 10, 1), "month", window,
                    args.trials)
            rows.append({"dataset": "Maven", "summary": s})
            sections += section(f"{window} windows", note, s, args.trials)
        s = run(maven, D(2017, 4, 1), D(2017, 12, 1), "month", "month", args.trials, detect_start=True)
        rows.append({"dataset": "Maven, detected start", "summary": s})
        sections += section("month windows, observation start detected", "The same monthly windows with "
                            "`data.observed_from` unset: the closes before March are taken as missing (left "
                            "truncation) and the hazards fitted with delayed entry.", s, args.trials)
    if not args.quick:
        s = run(REPO / "src" / "forecaster" / "sample" / "forecaster.yaml", D(2024, 9, 1), D(2025, 3, 1), "month",
                "quarter", args.trials)
        rows.append({"dataset": "bundled sample", "summary": s})
        sections += ["## Bundled sample", ""] + section(
            "quarter windows", "The 18-month sample shipped with the package. Overlapping quarterly windows: too few "
            "for a calibration verdict, shown for orientation.", s, args.trials)
    block = readme_block(rows)
    lines += overview(rows) + ablations(rows) + ["In one paragraph (quoted by README.md):", "", block, ""] + sections
    lines.append(f"Total run time {time.perf_counter() - t0:.0f} s on this machine.")
    args.out.write_text("\n".join(lines) + "\n")
    if not args.quick:
        update_readme(block)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
