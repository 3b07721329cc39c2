"""Before/after and A/B comparisons of a stage (`forecaster funnel --period/--split-by`): exact rates of
the test on generated periods, censoring handled, the CLI and its JSON, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from forecaster.analysis.periods import ALPHA, CENSORED, FORWARD, LOST, StageSpells, compare_stage
from forecaster.cli import main
from tests import chains

Z = 4.0


def period_spells(r: np.random.Generator, n: int, p_forward: float, first: int, last: int, as_of: int,
                  h_forward: float = 0.012, h_lost: float = 0.15) -> StageSpells:
    """n spells entering on days first .. last, forward with probability p_forward (else lost), leaving
    after a geometric stay whose daily hazard depends on the kind (forward exits slow, losses fast, so
    a period followed for less time sees its losses first); still open at as_of: censored."""
    entered = r.integers(first, last + 1, n)
    fwd = r.uniform(size=n) < p_forward
    h = np.where(fwd, h_forward, h_lost)
    stay = np.floor(np.log1p(-r.uniform(size=n)) / np.log1p(-h)).astype(np.int64)
    seen = entered + stay < as_of
    return StageSpells(np.where(seen, stay, as_of - entered), np.where(seen, np.where(fwd, FORWARD, LOST), CENSORED))


def naive_forward_share(g: StageSpells) -> float:
    """Forward share among the exits seen, ignoring the spells still open."""
    seen = g.kind != CENSORED
    return float(np.mean(g.kind[seen] == FORWARD))


def verdicts(p_before: float, p_after: float, reps: int, seed: int) -> tuple[np.ndarray, float, float]:
    """Verdicts of `reps` generated pairs of periods (300 spells each; the later one followed for only
    3 .. 182 days), the share of censored spells in the later period, and the mean difference of the
    naive forward shares (exits seen only)."""
    out, censored, naive = [], [], []
    for i in range(reps):
        r = np.random.default_rng([seed, i])
        a = period_spells(r, 300, p_before, 0, 179, 362)
        b = period_spells(r, 300, p_after, 180, 359, 362)
        _, _, diffs = compare_stage([a, b], (seed, i), n_boot=200)
        out.append(diffs[0]["verdict"] == "different")
        censored.append(np.mean(b.kind == CENSORED))
        naive.append(naive_forward_share(b) - naive_forward_share(a))
    return np.array(out), float(np.mean(censored)), float(np.mean(naive))


def test_no_change_is_called_different_at_most_at_the_stated_rate():
    """Same conversion (45% forward) in both periods; the later period is much more censored and its
    forward exits, the slow ones, are the censored ones. A stage is called different in at most
    ALPHA of such pairs: the share over 300 pairs is within 4 binomial SE of ALPHA or below."""
    reps = 300
    called, censored, naive = verdicts(0.45, 0.45, reps, seed=1)
    # The trap: the later period's slow forward exits are still open, so among the exits seen it looks
    # far worse (more than 10 points) although nothing changed.
    assert censored > 0.15 and naive < -0.10, (censored, naive)
    assert called.mean() <= ALPHA + Z * math.sqrt(ALPHA * (1 - ALPHA) / reps), called.mean()


def test_a_change_in_conversion_is_told_apart():
    """Forward share 45% -> 65% (the later period censored as above): the difference is about 0.2 with a
    standard error near 0.045 (binomial, 300 spells each, inflated for censoring), a z of 4.5 against
    the 2.24 of ALPHA / 2, so nearly every pair is called different (power about 0.99); all but 4 SE."""
    reps = 100
    called, _, _ = verdicts(0.45, 0.65, reps, seed=2)
    power = 0.99
    assert called.mean() >= power - Z * math.sqrt(power * (1 - power) / reps), called.mean()


def test_shares_and_median_against_the_generating_values():
    """Spells followed for years (none left open by the horizon): the forward share within 4 binomial SE
    of P(forward); the median stay within 4 SE (1 / (2 f(m) sqrt(n)), f the exact pmf at the median)
    plus a day of rounding of the exact median of the mixture."""
    r = np.random.default_rng(3)
    n = 2000
    a = period_spells(r, n, 0.6, 0, 10, 5000, h_forward=0.03)
    b = period_spells(r, n, 0.6, 0, 10, 5000, h_forward=0.03)
    _, entries, _ = compare_stage([a, b], (3,), n_boot=200)
    f = entries[0]["forward_share"]
    assert abs(f["value"] - 0.6) <= Z * math.sqrt(0.24 / n)
    assert f["lo95"] < f["value"] < f["hi95"]
    # P(T <= d) = 1 - (1 - h)^(d + 1) per kind: the exact median is the first d with the mixture >= 1/2.
    cdf = np.array([0.6 * (1 - 0.97 ** (d + 1)) + 0.4 * (1 - 0.85 ** (d + 1)) for d in range(200)])
    exact = int(np.argmax(cdf >= 0.5))
    pmf = np.diff(np.r_[0.0, cdf])[exact]
    m = entries[0]["median_days"]
    assert abs(m["value"] - exact) <= Z / (2 * pmf * math.sqrt(n)) + 1, (m, exact)
    assert m["lo95"] <= m["value"] <= m["hi95"]


# ---------------------------------------------------------------------------------------------
# CLI end to end


@pytest.fixture(scope="module")
def changed_crm(tmp_path_factory):
    """Deals created over two years; those created in the second year convert at stage 0 with 70%
    instead of 40% (a new playbook); the 'playbook' column says which, so --period (by creation, which is
    stage 0's entry) and --split-by playbook see the same change."""
    root = tmp_path_factory.mktemp("changed")
    p_old = np.array([[0.0, 0.4, 0.0, 0.6], [0.0, 0.0, 0.5, 0.5]])
    p_new = np.array([[0.0, 0.7, 0.0, 0.3], [0.0, 0.0, 0.5, 0.5]])
    hazard = np.array([0.1, 0.08])
    n, span = 1600, 730
    created = np.sort(np.random.default_rng(4).integers(0, span, n))
    playbook = (created >= 365).astype(int)

    def dest(s, d, g):
        return (p_new if g == 1 else p_old)[s]

    path = chains.simulate(root, n, span, 4, 2, lambda s, d, g: hazard[s], dest, segments=playbook)
    return path, chains.day(span)


def test_cli_periods_tell_the_change_apart(runner, changed_crm, tmp_path):
    path, as_of = changed_crm
    a, b = chains.day(0), chains.day(364)
    c, d = chains.day(365), chains.day(700)
    out_file = tmp_path / "p.json"
    res = runner.invoke(main, ["funnel", str(path), "--as-of", str(as_of), "--period", f"{a}:{b}",
                               "--period", f"{c}:{d}", "--format", "json", "-o", str(out_file)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out == json.loads(out_file.read_text())
    assert [(p["start"], p["end"]) for p in out["periods"]] == [(str(a), str(b)), (str(c), str(d))]
    first = out["differences"][0]
    assert set(first) >= {"stage", "forward_share", "median_days", "verdict"}
    assert set(first["forward_share"]) == {"diff", "lo95", "hi95"} and set(first["median_days"]) == {"diff", "lo95", "hi95"}
    assert first["stage"] == "s0" and first["verdict"] == "different" and "forward share" in first["what_differs"]
    fs = first["forward_share"]
    assert fs["lo95"] < 0.3 < fs["hi95"] or abs(fs["diff"] - 0.3) < Z * 0.03
    st0 = out["periods"][1]["stages"][0]
    assert {"spells", "exits", "forward_share", "back_share", "lost_share", "median_days"} <= set(st0)
    table = runner.invoke(main, ["funnel", str(path), "--as-of", str(as_of), "--period", f"{a}:{b}", "--period", f"{c}:{d}"])
    assert table.exit_code == 0 and "different" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 100


def test_cli_split_by_a_column(runner, changed_crm):
    path, as_of = changed_crm
    res = runner.invoke(main, ["funnel", str(path), "--as-of", str(as_of), "--split-by", "segment", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [g["value"] for g in out["groups"]] == ["0", "1"]
    assert out["differences"][0]["verdict"] == "different" and out["differences"][0]["forward_share"]["diff"] > 0


@pytest.mark.parametrize("args, expected", [
    (["--period", "2022-01-01:2022-06-30"], "--period: give at least two periods to compare"),
    (["--period", "2022-01-01", "--period", "2022-07-01:2022-12-31"], "--period '2022-01-01': expected START:END"),
    (["--period", "2022-06-30:2022-01-01", "--period", "2022-07-01:2022-12-31"], "ends 2022-01-01, before it starts"),
    (["--period", "2022-01-01:2022-08-31", "--period", "2022-07-01:2022-12-31"], "overlaps --period 2022-01-01:2022-08-31"),
    (["--period", "2022-01-01:2022-06-30", "--period", "2023-07-01:2030-12-31"], "ends on or after as_of"),
    (["--split-by", "segmnt"], "--split-by segmnt: no such deal column (did you mean 'segment'?)"),
    (["--split-by", "segment", "--period", "2022-01-01:2022-06-30", "--period", "2022-07-01:2022-12-31"],
     "--split-by compares groups within one window: give at most one --period"),
])
def test_period_errors(runner, changed_crm, tmp_path, args, expected):
    path, as_of = changed_crm
    out_file = tmp_path / "never.json"
    res = runner.invoke(main, ["funnel", str(path), "--as-of", str(as_of), *args, "-o", str(out_file)])
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0], res.stderr
    assert not out_file.exists() and "Traceback" not in res.output
