"""The synthetic CRM generator: data contract, determinism, realism, truth.json, bad arguments."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import forecaster.synth.generator as gen
import forecaster.synth.params as params
import forecaster.synth.process as process
from forecaster.calendar import month_number, to_day
from forecaster.config import load_config
from forecaster.errors import ConfigError
from forecaster.synth import generate

FILES = ("deals.parquet", "stage_history.parquet", "forecaster.yaml", "truth.json")
STAGES = list(params.STAGES)
DEAL_SCHEMA = pa.schema([
    ("deal_id", pa.string()), ("created_at", pa.date32()), ("amount", pa.float64()),
    ("status", pa.string()), ("closed_at", pa.date32()), ("product", pa.string()),
    ("region", pa.string()), ("owner", pa.string()), ("source", pa.string()),
])
HISTORY_SCHEMA = pa.schema([("deal_id", pa.string()), ("stage", pa.string()), ("entered_at", pa.date32())])
SMALL = {"start": dt.date(2024, 1, 1), "end": dt.date(2024, 4, 30), "scale": 0.3}


class Crm:
    """A generated folder read back as numpy arrays (days since 1970-01-01 for dates)."""

    def __init__(self, folder: Path, summary: dict):
        self.folder = folder
        self.summary = summary
        self.deals = pq.read_table(folder / "deals.parquet")
        self.history = pq.read_table(folder / "stage_history.parquet")
        self.truth = json.loads((folder / "truth.json").read_text())
        d, h = self.deals, self.history
        self.deal_id = np.array(d["deal_id"].to_pylist())
        self.created = _days(d["created_at"])
        self.closed = _days(d["closed_at"])
        self.status = np.array(d["status"].to_pylist())
        self.product = np.array(d["product"].to_pylist())
        self.amount = d["amount"].to_numpy()
        self.h_id = np.array(h["deal_id"].to_pylist())
        self.h_stage = np.array(h["stage"].to_pylist())
        self.h_day = _days(h["entered_at"])
        self.start = to_day(dt.date.fromisoformat(self.truth["start"]))
        self.end = to_day(dt.date.fromisoformat(self.truth["end"]))

    def spells(self) -> tuple[np.ndarray, ...]:
        """(product, stage, destination, entered day, days in stage) of every observed exit."""
        same = self.h_id[1:] == self.h_id[:-1]
        i = np.flatnonzero(same)
        deal_pos = np.searchsorted(self.deal_id, self.h_id[i])
        return (self.product[deal_pos], self.h_stage[i], self.h_stage[i + 1], self.h_day[i],
                self.h_day[i + 1] - self.h_day[i])


def _days(col: pa.ChunkedArray) -> np.ndarray:
    return col.cast(pa.int32()).fill_null(-1).to_numpy().astype(np.int64)


def _make(folder: Path, **kw) -> Crm:
    return Crm(folder, generate(folder, **kw))


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Crm:
    """The default export: three years at scale 1."""
    return _make(tmp_path_factory.mktemp("crm"), seed=0)


def check_contract(c: Crm) -> None:
    assert c.deals.schema.remove_metadata() == DEAL_SCHEMA
    assert c.history.schema.remove_metadata() == HISTORY_SCHEMA
    n = c.deal_id.size
    assert np.unique(c.deal_id).size == n
    assert np.all(c.deal_id[:-1] < c.deal_id[1:])  # ids sort as created
    assert set(np.unique(c.status)) <= {"open", "won", "lost"}
    assert not np.isnan(c.amount).any() and (c.amount >= 0).all()
    assert ((c.created >= c.start) & (c.created <= c.end)).all()
    is_open = c.status == "open"
    assert ((c.closed == -1) == is_open).all()  # closed_at null iff open
    assert ((c.closed[~is_open] >= c.created[~is_open]) & (c.closed[~is_open] <= c.end)).all()
    for col in ("product", "region", "owner", "source"):
        assert c.deals[col].null_count == 0

    # History: contiguous per deal in deal order, dates non-decreasing, everything on or before end.
    assert set(np.unique(c.h_stage)) <= set(STAGES) | {"won", "lost"}
    assert (c.h_day <= c.end).all()
    starts = np.flatnonzero(np.r_[c.h_id[:1] == c.h_id[:1], c.h_id[1:] != c.h_id[:-1]])
    assert np.array_equal(c.h_id[starts], c.deal_id)  # every deal, once, in order
    ends = np.r_[starts[1:], c.h_id.size][: starts.size] - 1
    same = c.h_id[1:] == c.h_id[:-1]
    assert (np.diff(c.h_day)[same] >= 0).all()
    assert np.array_equal(c.h_day[starts], c.created)  # first row on created_at
    assert np.isin(c.h_stage[starts], ["prospecting", "qualification"]).all()
    last_stage, last_day = c.h_stage[ends], c.h_day[ends]
    assert np.array_equal(last_stage[~is_open], c.status[~is_open])
    assert np.array_equal(last_day[~is_open], c.closed[~is_open])
    assert np.isin(last_stage[is_open], STAGES).all()
    closing = np.isin(c.h_stage, ["won", "lost"])
    assert closing.sum() == (~is_open).sum()  # closed stages only as the last row
    assert c.summary["n_history_rows"] == c.h_id.size
    assert c.summary["n_deals"] == n
    assert (c.summary["n_open"], c.summary["n_won"], c.summary["n_lost"]) == (
        int(is_open.sum()), int((c.status == "won").sum()), int((c.status == "lost").sum()))


# ---------------------------------------------------------------------------------------------
# Contract and determinism


def test_default_export_keeps_the_contract(crm: Crm) -> None:
    check_contract(crm)
    assert 6_000 <= crm.summary["n_deals"] <= 12_000
    assert 30_000 <= crm.summary["n_history_rows"] <= 60_000
    assert sorted(p.name for p in crm.folder.iterdir()) == sorted(FILES)  # no temp files left


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    start=st.dates(dt.date(2020, 1, 1), dt.date(2026, 12, 31)),
    n_days=st.integers(0, 150),
    scale=st.floats(0.05, 1.0),
)
def test_contract_holds_for_any_arguments(tmp_path_factory, seed, start, n_days, scale) -> None:
    folder = tmp_path_factory.mktemp("any")
    check_contract(_make(folder, seed=seed, start=start, end=start + dt.timedelta(days=n_days), scale=scale))


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    generate(tmp_path / "a", seed=3, **SMALL)
    generate(tmp_path / "b", seed=3, **SMALL)
    generate(tmp_path / "c", seed=4, **SMALL)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in ("deals.parquet", "stage_history.parquet", "truth.json"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name


def test_config_points_at_the_files(crm: Crm) -> None:
    cfg = load_config(crm.folder / "forecaster.yaml")
    assert cfg.data.deals == (crm.folder / "deals.parquet").resolve()
    assert cfg.data.stage_history == (crm.folder / "stage_history.parquet").resolve()
    assert cfg.stages == tuple(STAGES) and (cfg.won, cfg.lost) == ("won", "lost")
    assert cfg.segment_by == ("product",)
    assert cfg.forecast.as_of == dt.date(2026, 1, 1)
    assert (cfg.forecast.trials, cfg.forecast.seed, cfg.forecast.period) == (10_000, 42, "month")
    fc = crm.truth["forecast"]
    assert cfg.forecast.quota == fc["quota"] == crm.summary["quota"]
    mantissa = fc["quota"] / 10 ** (math.floor(math.log10(fc["quota"])) - 1)
    assert mantissa == int(mantissa)  # two significant digits
    assert abs(fc["quota"] - fc["won_amount"]["mean"]) <= 0.05 * fc["won_amount"]["mean"]
    assert sum(m["won_amount_mean"] for m in fc["by_month"]) == pytest.approx(fc["won_amount"]["mean"])
    assert [m["start"] for m in fc["by_month"]] == ["2026-01-01", "2026-02-01", "2026-03-01"]


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate(tmp_path, seed=1, **SMALL)
    before = (tmp_path / "deals.parquet").read_bytes()

    def broken(table, where, **kw):
        Path(where).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(gen.pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        generate(tmp_path, seed=2, **SMALL)
    assert (tmp_path / "deals.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


def test_scale_multiplies_volume(tmp_path: Path) -> None:
    args = {"start": dt.date(2024, 1, 1), "end": dt.date(2024, 12, 31), "seed": 5}
    lo = generate(tmp_path / "lo", scale=0.25, **args)
    hi = generate(tmp_path / "hi", scale=1.0, **args)
    assert 3.4 < hi["n_deals"] / lo["n_deals"] < 4.6
    assert 3.4 < hi["n_history_rows"] / lo["n_history_rows"] < 4.6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": dt.date(2024, 2, 1), "end": dt.date(2024, 1, 31)}, "end 2024-01-31 is before start 2024-02-01"),
        ({"scale": 0.0}, "scale must be > 0, got 0.0"),
        ({"scale": -2}, "scale must be > 0, got -2"),
        ({"scale": float("nan")}, "scale must be a finite number > 0"),
        ({"scale": "big"}, "scale must be a finite number > 0"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"seed": 1.5}, "seed must be a whole number >= 0"),
        ({"start": "2024-13-01"}, "start must be a date YYYY-MM-DD"),
    ],
)
def test_bad_arguments_raise_one_line(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        generate(tmp_path / "out", **kwargs)
    assert message in str(err.value)
    assert len(err.value.problems) == 1 and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# The process looks like a B2B CRM, and matches truth.json


def test_transitions_have_skips_backs_and_losses_everywhere(crm: Crm) -> None:
    _, frm, to, _, days = crm.spells()
    rank = {s: i for i, s in enumerate(STAGES)}
    open_move = np.isin(to, STAGES)
    step = np.array([rank[b] - rank[a] for a, b in zip(frm[open_move], to[open_move])])
    assert (step > 1).mean() > 0.05  # skips, e.g. qualification -> demo
    assert 0.01 < (step < 0).mean() < 0.1  # moves back a stage, a few percent
    assert (step == -1).sum() == (step < 0).sum()
    assert (step != 0).all()
    for s in STAGES:
        assert ((frm == s) & (to == "lost")).sum() > 20, s
    won_from = {s: int(((frm == s) & (to == "won")).sum()) for s in STAGES}
    assert won_from["negotiation"] > won_from["proposal"] > won_from["demo"] > 0
    assert won_from["prospecting"] == won_from["qualification"] == won_from["discovery"] == 0
    assert 0 < (days == 0).mean() < 0.02  # same-day moves exist but are rare


def test_durations_depend_on_exit_and_stall(crm: Crm) -> None:
    prod, frm, to, _, days = crm.spells()
    for s in STAGES:
        fwd = days[(frm == s) & np.isin(to, STAGES[STAGES.index(s) + 1:] + ["won"])]
        lost = days[(frm == s) & (to == "lost")]
        assert np.median(lost) > np.median(fwd), s
    core = days[(prod == "Core") & (frm == "discovery")]
    ent = days[(prod == "Enterprise") & (frm == "discovery")]
    assert np.median(ent) > 1.8 * np.median(core)
    # Stalls: a heavy right tail that an exponential with the same median would not have.
    p = days[frm == "prospecting"]
    assert (p > 8 * np.median(p)).mean() > 0.02


def test_destination_shares_match_truth(crm: Crm) -> None:
    prod, frm, to, entered, _ = crm.spells()
    early = entered < crm.start + 365  # those spells have (almost surely) ended by the end date
    for product in ("Core", "Enterprise"):
        for stage in ("prospecting", "demo", "negotiation"):
            sel = early & (prod == product) & (frm == stage)
            n = sel.sum()
            for dest, p in crm.truth["segments"][product]["stages"][stage]["p_exit"].items():
                share = (to[sel] == dest).mean()
                assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n) + 0.005, (product, stage, dest)


def test_segments_differ(crm: Crm) -> None:
    closed = crm.created < crm.end - 365
    rate = {p: (crm.status[closed & (crm.product == p)] == "won").mean() for p in params.PRODUCTS}
    assert rate["Core"] > rate["Pro"] + 0.03 and rate["Pro"] > rate["Enterprise"] + 0.03
    truth = {p: crm.truth["segments"][p]["p_won_from_entry"] for p in params.PRODUCTS}
    for p in params.PRODUCTS:
        n = (closed & (crm.product == p)).sum()
        assert abs(rate[p] - truth[p]) < 4 * math.sqrt(truth[p] * (1 - truth[p]) / n) + 0.01, p
    share = {p: (crm.product == p).mean() for p in params.PRODUCTS}
    assert share["Core"] > share["Pro"] > 2 * share["Enterprise"]
    median = {p: np.median(crm.amount[crm.product == p]) for p in params.PRODUCTS}
    assert median["Enterprise"] > 3 * median["Pro"] > 9 * median["Core"]
    owners = crm.deals.group_by(["owner"]).aggregate([("region", "count_distinct")])
    assert 10 <= owners.num_rows <= 14 and max(owners["region_count_distinct"].to_pylist()) == 1


def test_arrival_seasonality(crm: Crm) -> None:
    days = np.arange(crm.start, crm.end + 1)
    count = np.bincount(crm.created - crm.start, minlength=days.size)
    weekday = (days + 3) % 7
    weekend = count[weekday >= 5].mean() / count[weekday < 5].mean()
    w = crm.truth["arrivals"]["weekday_factor"]
    assert weekend < 0.2
    assert weekend == pytest.approx(np.mean(w[5:]) / np.mean(w[:5]), rel=0.2)
    moq = (month_number(days) % 12) % 3
    uplift = count[moq == 2].mean() / count[moq < 2].mean()
    assert uplift > 1.15


def test_arrival_counts_match_truth(crm: Crm) -> None:
    arr = crm.truth["arrivals"]
    days = np.arange(crm.start, crm.end + 1)
    months = np.datetime_as_string(days.astype("datetime64[D]"), unit="M")
    g = np.array([arr["month_gamma_realized"][m] for m in months])
    factor = np.array(arr["weekday_factor"])[(days + 3) % 7] * np.array(arr["month_of_quarter_factor"])[
        (month_number(days) % 12) % 3] * g
    for product, rate in arr["rate_per_day"].items():
        expected = rate * factor.sum()
        assert abs((crm.product == product).sum() - expected) < 4 * math.sqrt(expected), product


def test_truth_layout(crm: Crm) -> None:
    t = crm.truth
    assert (t["seed"], t["start"], t["end"], t["scale"]) == (0, "2023-01-01", "2025-12-31", 1.0)
    assert t["stages"] == STAGES and list(t["segments"]) == list(params.PRODUCTS)
    for product, seg in t["segments"].items():
        assert set(seg["stages"]) == set(STAGES)
        for stage, spec in seg["stages"].items():
            assert sum(spec["p_exit"].values()) == pytest.approx(1.0)
            assert spec["p_won"] + spec["p_lost"] == pytest.approx(1.0)
            assert stage not in spec["p_exit"]
            for kind, d in spec["durations"].items():
                assert kind in t["exit_kinds"] and d["family"] == "lognormal"
                assert d["median_days"] == pytest.approx(math.exp(d["mu"]))
            assert spec["durations"]["lost"]["median_days"] > spec["durations"]["forward"]["median_days"] \
                if "forward" in spec["durations"] else True


def test_age_conditioned_spell_matches_rejection() -> None:
    """The quota's Monte Carlo conditions open deals on their age; check against naive rejection."""
    t = params.tables(1.0)
    rng = np.random.default_rng(11)
    n = 100_000
    for g, s, age in ((2, 4, 40), (0, 0, 3)):
        seg, stage = np.full(n, g), np.full(n, s)
        dest, days = process._draw_spell(rng, t, seg, stage)
        keep = days >= age
        m = int(keep.sum())
        d_c, n_c = process._draw_spell_given_age(rng, t, seg[:m], stage[:m], np.full(m, age))
        assert (n_c >= age).all()
        k = len(params.DESTINATIONS)
        p_rej, p_con = np.bincount(dest[keep], minlength=k) / m, np.bincount(d_c, minlength=k) / m
        assert np.abs(p_rej - p_con).max() < 4 * math.sqrt(0.25 * 2 / m)
        assert np.median(n_c) == pytest.approx(np.median(days[keep]), rel=0.06)


def test_bundled_sample_is_current(tmp_path: Path, sample_dir: Path) -> None:
    truth = json.loads((sample_dir / "truth.json").read_text())
    args = {k: truth[k] for k in ("seed", "start", "end", "scale")}
    generate(tmp_path, **args)
    stale = "is stale: run python scripts/make_sample.py"
    for name in FILES[:2]:  # content, not bytes: Parquet metadata names the pyarrow version
        assert pq.read_table(sample_dir / name).equals(pq.read_table(tmp_path / name)), f"{name} {stale}"
    for name in FILES[2:]:
        assert (sample_dir / name).read_text() == (tmp_path / name).read_text(), f"{name} {stale}"
    assert sum((sample_dir / name).stat().st_size for name in FILES) < 1_000_000
    load_config(sample_dir / "forecaster.yaml")


# ---------------------------------------------------------------------------------------------
# Effects of real pipelines (synth.effects)

FOUR_YEARS = {"start": dt.date(2022, 1, 1), "end": dt.date(2025, 12, 31), "scale": 0.5}


def test_quarter_end_push_delays_exactly_the_wins_it_should(tmp_path):
    """With the push, the same deals are won (the walk's draws are untouched), none earlier; of the wins
    that came before their quarter's last days, the pushed share is Binomial(n, share): within 4 SE."""
    from forecaster.synth import Effects
    from forecaster.synth.effects import quarter_last_day

    plain = _make(tmp_path / "plain", seed=4, **FOUR_YEARS)
    e = Effects(quarter_end_push=0.4, push_days=10)
    pushed = _make(tmp_path / "push", seed=4, effects=e, **FOUR_YEARS)
    assert pushed.truth["effects"]["quarter_end_push"] == 0.4
    won_p = plain.status == "won"
    # A pushed win can land after the end of the data, so it shows as open there.
    assert np.all((pushed.status[won_p] == "won") | (pushed.status[won_p] == "open"))
    assert not np.any(won_p[pushed.status == "won"] == False)  # noqa: E712 - no new wins
    both = won_p & (pushed.status == "won")
    assert np.all(pushed.closed[both] >= plain.closed[both])
    eligible = both & (plain.closed < quarter_last_day(plain.closed) - e.push_days + 1)
    moved = pushed.closed[eligible] > plain.closed[eligible]
    n = int(eligible.sum())
    assert abs(moved.mean() - 0.4) < 4 * math.sqrt(0.4 * 0.6 / n), (moved.mean(), n)
    last = pushed.closed[eligible][moved]
    assert np.all(quarter_last_day(last) - last < e.push_days)


def test_crm_start_truncates_history_like_a_late_adoption(tmp_path):
    from forecaster.synth import Effects

    start = dt.date(2023, 1, 1)
    c = _make(tmp_path, seed=5, effects=Effects(crm_start=start), **FOUR_YEARS)
    closed = c.status != "open"
    assert c.closed[closed].min() >= to_day(start)  # no close recorded before the CRM
    assert c.h_day.min() == to_day(start)  # nor any stage row
    assert (c.created < to_day(start)).any()  # but deals open then keep their creation date
    assert c.truth["effects"]["crm_start"] == "2023-01-01"


def test_close_dates_pushes_stale_dates_and_probabilities(tmp_path):
    from forecaster.synth import Effects
    from forecaster.synth.effects import STAGE_PROBABILITY

    e = Effects(optimistic_close=0.5, stale_close_dates=0.3, crm_probability=True)
    c = _make(tmp_path, seed=6, effects=e, **FOUR_YEARS)
    exp = _days(c.deals["expected_close_at"])
    won, lost = c.status == "won", c.status == "lost"
    assert np.all(exp[won] == c.closed[won])  # a won deal's date is its close
    stale = exp[lost] != c.closed[lost]
    n = int(lost.sum())
    assert abs(stale.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n), stale.mean()
    assert c.truth["effects"]["close_date_pushes"] > 0
    # Every push repeats the stage of the row before it with a later date.
    h_exp = _days(c.history["expected_close_at"])
    same = (c.h_id[1:] == c.h_id[:-1]) & (c.h_stage[1:] == c.h_stage[:-1])
    assert same.any() and np.all(h_exp[1:][same] > h_exp[:-1][same])
    prob = c.deals["probability"].to_numpy()
    open_ = c.status == "open"
    assert np.all(prob[won] == 1.0) and np.all(prob[lost] == 0.0)
    assert set(np.unique(prob[open_])) <= set(STAGE_PROBABILITY.values())
    cats = np.array(c.deals["forecast_category"].to_pylist())
    assert set(cats[won]) == {"closed"} and set(cats[lost]) == {"omitted"}
    assert set(cats[open_]) <= {"pipeline", "best_case", "commit"}


def test_win_drift_moves_the_odds_of_losing_as_stated(tmp_path):
    """Prospecting spells that start in the last year against the first: the log odds ratio of losing is
    drift x (years between their mean start days), within 4 of its standard errors."""
    from forecaster.synth import Effects

    drift = 0.3
    c = _make(tmp_path, seed=7, effects=Effects(win_drift=drift), **FOUR_YEARS)
    _, frm, to, entered, _ = c.spells()
    pros = frm == "prospecting"
    first = pros & (entered < c.start + 365)
    last = pros & (entered >= c.end - 365 - HORIZON_GUARD)  # spells long enough to have ended by the end
    cells = []
    for sel in (first, last):
        lost = int((to[sel] == "lost").sum())
        cells.append((lost, int(sel.sum()) - lost, entered[sel].mean()))
    (a, b, t0), (c_, d, t1) = cells
    log_or = math.log((c_ / d) / (a / b))
    se = math.sqrt(1 / a + 1 / b + 1 / c_ + 1 / d)
    assert abs(log_or - drift * (t1 - t0) / 365.25) < 4 * se, (log_or, drift * (t1 - t0) / 365.25, se)


HORIZON_GUARD = 120  # days before the end at which the last cohort stops (its prospecting spells have ended)


def test_realistic_preset_is_recorded_and_reproducible(tmp_path):
    from forecaster.synth import realistic

    e = realistic(FOUR_YEARS["start"])
    a = generate(tmp_path / "a", seed=8, effects=e, **FOUR_YEARS)
    generate(tmp_path / "b", seed=8, effects=e, **FOUR_YEARS)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    truth = json.loads((tmp_path / "a" / "truth.json").read_text())["effects"]
    assert truth["quarter_shock"] == e.quarter_shock and len(truth["quarter_shock_realized"]) >= 16
    assert a["n_deals"] < generate(tmp_path / "c", seed=8, **FOUR_YEARS)["n_deals"]  # the CRM came late


def test_generate_effect_options_from_the_cli(runner, tmp_path):
    from forecaster.cli import main

    r = runner.invoke(main, ["generate", str(tmp_path / "g"), "--start", "2024-01-01", "--end", "2024-06-30",
                             "--scale", "0.2", "--effects", "realistic", "--win-drift", "0"])
    assert r.exit_code == 0, r.output
    t = json.loads((tmp_path / "g" / "truth.json").read_text())["effects"]
    assert t["win_drift"] == 0 and t["quarter_end_push"] > 0 and t["crm_probability"] is True
    bad = runner.invoke(main, ["generate", str(tmp_path / "h"), "--quarter-end-push", "1.5"])
    assert bad.exit_code == 2 and "quarter-end-push must be a share in [0, 1], got 1.5" in bad.stderr
    assert not (tmp_path / "h" / "deals.parquet").exists()
    bad = runner.invoke(main, ["generate", str(tmp_path / "i"), "--crm-start", "2020-01-01"])
    assert bad.exit_code == 2 and "crm-start 2020-01-01 must lie after start" in bad.stderr
