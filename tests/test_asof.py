"""No leakage: loading the full export as of D gives exactly the state a file truncated at D gives."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecaster.config import load_config
from forecaster.calendar import NO_DATE, to_day
from forecaster.crm import OPEN, cut, load

BASE = dt.date(2024, 1, 1)
STAGES = ["s0", "s1", "s2"]
CONFIG = """data:
  deals: deals.csv
  stage_history: history.csv
stages: [s0, s1, s2]
segment_by: [region]
"""


@st.composite
def exports(draw):
    """A consistent CRM export: each deal's stage rows in time, maybe a closing it was reopened from, its
    final status; an export whose history records closings writes a won/lost row at every close (then the
    deals table's closed_at may be stale, set later), one that does not writes none. Rows are shuffled."""
    n = draw(st.integers(1, 12))
    records = draw(st.booleans())
    deals, rows = [], []
    for i in range(n):
        created = draw(st.integers(0, 40))
        region = draw(st.sampled_from(["EU", "US"]))
        amount = draw(st.integers(0, 5000))
        t = created
        first = True
        for _ in range(draw(st.integers(0, 4))):
            t += draw(st.integers(0, 8))
            rows.append((f"D{i}", draw(st.sampled_from(STAGES)), t - (draw(st.integers(0, 2)) if first else 0)))
            first = False
            if records and draw(st.integers(0, 5)) == 0:  # closed, then reopened
                t += draw(st.integers(1, 5))  # (a close on the day of a stage row: order unknowable by date)
                rows.append((f"D{i}", draw(st.sampled_from(["won", "lost"])), t))
                t += draw(st.integers(1, 5))
                rows.append((f"D{i}", draw(st.sampled_from(STAGES)), t))
        status = draw(st.sampled_from(["open", "won", "lost"]))
        closed = None
        if status != "open":
            closed = t + draw(st.integers(1 if records else 0, 10))
            if records:
                rows.append((f"D{i}", status, closed))
                closed += draw(st.sampled_from([0, 0, 30]))  # a CloseDate left in the future
        deals.append((f"D{i}", created, amount, status, closed, region))
    order = draw(st.permutations(range(len(rows))))
    rows = [rows[k] for k in order]
    as_of = draw(st.integers(0, 80))
    return deals, rows, as_of


def day(offset: int | None) -> str:
    return "" if offset is None else (BASE + dt.timedelta(days=offset)).isoformat()


def write(folder: Path, deals, rows) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["deal_id,created_at,amount,status,closed_at,region"]
    lines += [f"{d},{day(c)},{a},{s},{day(x)},{r}" for d, c, a, s, x, r in deals]
    (folder / "deals.csv").write_text("\n".join(lines) + "\n")
    hist = ["deal_id,stage,entered_at"] + [f"{d},{s},{day(e)}" for d, s, e in rows]
    (folder / "history.csv").write_text("\n".join(hist) + "\n")
    (folder / "forecaster.yaml").write_text(CONFIG)
    return folder / "forecaster.yaml"


def truncate(deals, rows, as_of):
    """What a CRM export taken on the evening before as_of would have held: the deals created before it,
    the rows dated before it, each deal's status as of then (its close from its won/lost row where the
    history records one; a closing it was reopened from later counts until then)."""
    kept = []
    for d, c, a, s, x, r in deals:
        if c >= as_of:
            continue
        mine = sorted((e, k) for k, (dd, st_, e) in enumerate(rows) if dd == d)
        closing = [rows[k] for e, k in mine if rows[k][1] in ("won", "lost")]
        if s != "open" and closing:
            x = closing[-1][2]  # the final close row
        if x is None or x >= as_of:
            before = [rows[k] for e, k in mine if e < as_of]
            s, x = ("open", None)
            if before and before[-1][1] in ("won", "lost"):
                s, x = before[-1][1], before[-1][2]
        kept.append((d, c, a, s, x, r))
    ids = {k[0] for k in kept}
    return kept, [(d, s, e) for d, s, e in rows if d in ids and e < as_of]


def same_state(a, b) -> None:
    for name in ("deal_id", "created", "closed", "status", "amount", "h_deal", "h_stage", "h_entered"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.attrs.equals(b.attrs)
    assert a.as_of == b.as_of


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exports())
def test_full_export_cut_equals_truncated_export(tmp_path_factory, export):
    deals, rows, as_of = export
    root = tmp_path_factory.mktemp("asof")
    d = to_day(BASE) + as_of
    full = load(load_config(write(root / "full", deals, rows)))
    t_deals, t_rows = truncate(deals, rows, as_of)
    if not t_deals:
        assert cut(full, d).n_deals == 0
        return
    truncated = load(load_config(write(root / "cut", t_deals, t_rows)))
    same_state(cut(full, d), cut(truncated, d))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exports())
def test_nothing_on_or_after_as_of_is_visible(tmp_path_factory, export):
    deals, rows, as_of = export
    full = load(load_config(write(tmp_path_factory.mktemp("vis"), deals, rows)))
    d = to_day(BASE) + as_of
    snap = cut(full, d)
    assert (snap.created < d).all()
    assert (snap.h_entered < d).all()
    closed = snap.closed[snap.closed != NO_DATE]
    assert (closed < d).all()
    assert ((snap.closed == NO_DATE) == (snap.status == OPEN)).all()
    # every known deal sits in some stage, at or after its creation
    assert np.array_equal(np.unique(snap.h_deal), np.arange(snap.n_deals))
    assert (snap.h_entered >= snap.created[snap.h_deal]).all()
