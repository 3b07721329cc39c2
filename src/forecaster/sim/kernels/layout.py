"""The kernel's interface: the compact input tables, the output layout and the constants they share.

The njit Monte Carlo kernel: arrays in, arrays out, nothing else.

Contract (the engine builds every input; nothing here checks them):

- ``KernelTables``, the compact form of ``StageTables`` for one window (sim.compact.compact_stage_tables):
  ``surv`` float64 [L_total], ``day_bin``, ``tail_bin`` int32 as in docs/kernel_contract.md;
  ``log1m_h`` float64 [C] = log1p(-tail_h) (-inf for h = 1). Exit days in integers: for the high
  32 bits ``hi`` of a draw, ``hi <= thr(d) = 2**32 - ceil(S(d) 2**32)`` exactly when
  ``S(d) <= 1 - hi / 2**32``, so a fresh spell (age 0) exits on the first day with ``hi <= thr``
  (the contract's rule). Only exits on days ``<= end_off`` after a spell's entry can fall in the
  window (entries are on days >= 0), so each cell keeps ``Lw = min(L_c, end_off + 1)`` days and a
  sentinel ``thr = 2**32`` for "later": after the window when the table was cut, the tail (drawn
  in floats as the contract says) when not. ``ctab`` int64 [C * cell_stride] holds per cell c,
  from ``c * cell_stride``, its guide (``2**guide_bits`` entries over ``hi >> (32 - guide_bits)``,
  Chen and Asau's indexed search) and from ``wthr_base`` its ``Lw + 1`` thresholds. A guide entry
  is ``d << GUIDE_DAY_SHIFT | row(d + 1) << GUIDE_ROW_BITS | row(d)``: every ``hi`` of the bucket
  exits on its first exit day d or on d + 1, decided by one comparison ``hi > thr(d)`` without a
  branch, unless the flag ``GUIDE_SLOW`` is set (the bucket straddles two day boundaries, or may
  reach an uncut table's tail): then a scan (``spell_slow`` in walk.py). ``cell_hdr`` int64 [C, 8]: region
  start, Lw, table offset into surv/day_bin, 0, L_c. Destinations, the nested draw of
  sim.compact.nested_thresholds in a fixed order per stage (every row serves cells of one stage):
  per bin ``dest_fb`` int64 [n_bins] where "forward" starts on the u-axis, ``dest_bthr`` [n_bins,
  MB] the moves back's cumulative thresholds, ``dest_vthr`` [n_bins, MV] the forward mix's, both
  padded with 2**32, and ``dest_k`` [n_bins, MB + MV + 2] the entries (back, lost, forward); the
  destination of (u, v) is ``dest_k[row, #(bthr <= u) + (u >= fb) (1 + #(vthr <= v))]``. When
  ``dest_is_fast`` (every row has at most 1 move back and 4 entries), ``dest_fast`` int64
  [n_bins * 8] holds per row bthr[0], fb, vthr[0:2] and the 4 entries in 16 bits each.
- Days are int offsets from as_of (day 0). A deal of age ``a`` and start ``s`` entered its stage
  on day ``s - a``. ``KernelWindow.day_period`` int32 [end_off + 1] maps a day to its output
  period (-1 before ``start_off``).
- ``KernelDeals``: cell, age, group, start int32, amount float64, sid int64 (stream id), s_prev
  float64 = S(age - 1) in the deal's cell, each [n]. A deal's walk starts on day ``start`` (0 for
  deals open at as_of), so its first spell exits on day ``start - age + d`` (d: the spell's exit
  day since its entry); ``start`` changes no draw.
- Randomness (forecaster.rng): an open deal's walk in trial ``t`` uses the stream
  ``stream_key(trial_key(keys[KEY_OPEN], t), sid)``, draw ``n`` for its ``n``-th stage visit
  (from 0). New deals: per (trial, group) a gamma stream, per (trial, group, day) a Poisson count
  stream, per (trial, group, day, k) a stream whose draw 0 picks the entry stage (high 32 bits)
  and the amount (low 32 bits) and whose draws 1, 2, ... drive the walk. One draw per stage
  visit: ``u1 = hi / 2**32`` gives the exit day by the contract's inversion; ``u = lo32`` where on
  the u-axis the destination falls (back, lost, forward) and ``v``, u rotated by 16 bits, which
  forward destination (v's high half is u's low half, uniform whatever u's high half decided, so
  the forward mix holds to within 2**-15). An open deal whose amount comes from a pool (campaign
  deals, ``pool_size > 0``) picks it per trial with the low 32 bits of draw MAX_STEPS of its
  stream, a draw no visit uses. An aged first spell follows the contract in floats (target =
  S(a-1) (1 - u1)); the kernel turns that rule into exact integer thresholds and a guide once per
  deal and chunk, over the days its first exit can still fall in the window (see deal_tables).

Outputs per trial, two row-major matrices so that blocks and the merge loop over fields uniformly:
``out_f`` float64 [T, 1 + P + G + S] = revenue | period revenue [P] | group revenue [G] |
carried amount [S]; ``out_i`` int32 [T, 2 + P + G + S] = wins | lost | period wins [P] |
group wins [G] | carried deals [S]; ``out_new_f`` / ``out_new_i`` [T]: revenue and wins of new
deals alone (also in the totals). Per open deal: trials won / lost in the window and a histogram
of win days [n, W].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MAX_STEPS = 64  # stage visits per deal and trial; then the deal counts as still open
MAX_DEAL_BLOCKS = 64
MIN_BLOCK_DEALS = 16
# Tail exits further out than this are beyond any window; clamping keeps floor() in int64 range.
TAIL_DAYS_CAP = 1e12
TWO_32 = 4294967296.0
TWO_32_INT = 1 << 32
# Buckets of an open deal's own guide for its age-conditioned first spell (see deal_tables).
DEAL_GUIDE_BITS = 9
DEAL_GUIDE_SIZE = 1 << DEAL_GUIDE_BITS
# Guide entries (sim.compact.pack_guide): bin rows of days d and d + 1 in GUIDE_ROW_BITS each, d from
# GUIDE_DAY_SHIFT, and a flag bit for buckets that need the slow path.
GUIDE_ROW_BITS = 20
GUIDE_ROW_MASK = (1 << GUIDE_ROW_BITS) - 1
GUIDE_DAY_SHIFT = 2 * GUIDE_ROW_BITS
GUIDE_SLOW_BIT = 62
GUIDE_SLOW = 1 << GUIDE_SLOW_BIT
GUIDE_DAY_MASK = (1 << (GUIDE_SLOW_BIT - GUIDE_DAY_SHIFT)) - 1
# Kinds of parallel unit (walk.unit_of) and of an open deal's first spell (walk.unit_nb).
UNIT_DEALS, UNIT_TRIALS = 0, 1
FIRST_FRESH, FIRST_AGED, FIRST_OLD = 0, 1, 2  # age 0; 0 < age < L (own tables); age >= L (tail)
# Index of each domain's base key in the ``keys`` argument.
KEY_OPEN, KEY_GAMMA, KEY_COUNT, KEY_NEW, KEY_FRAILTY = 0, 1, 2, 3, 4


class KernelTables(NamedTuple):
    """Compact stage tables (module docstring); built by sim.compact.compact_stage_tables."""

    surv: np.ndarray
    ctab: np.ndarray
    cell_stride: int
    wthr_base: int
    cell_hdr: np.ndarray
    guide_bits: int
    log1m_h: np.ndarray
    day_bin: np.ndarray
    tail_bin: np.ndarray
    dest_fb: np.ndarray
    dest_bthr: np.ndarray
    dest_vthr: np.ndarray
    dest_k: np.ndarray
    dest_fast: np.ndarray
    dest_is_fast: bool
    n_stages: int
    dest_nback: np.ndarray
    # Calendar effects and the shared shock (sim.compact.mixed_thresholds; mix_on False: unused): back
    # thresholds at 1 / R per row, the start of the kept exits per (row, month of quarter), fb per (row,
    # month, shock level), the month of the quarter of every day. mix_thin False (every rate 1): nothing is
    # thinned and the plain draw holds with fb per (row, month, shock level).
    mix_on: bool
    mix_thin: bool
    mix_nz: int
    mix_bthr: np.ndarray
    mix_ls: np.ndarray
    mix_fb: np.ndarray
    mix_moq: np.ndarray


class KernelDeals(NamedTuple):
    """Open deals: cell, age, group int32 [n]; amount float64 [n]; sid int64 [n] (stream ids);
    start int32 [n] (day offset the walk starts on, 0 .. end_off); s_prev float64 [n] = S(age - 1)
    of the deal's cell (1 for age 0 or beyond the table); pool_start, pool_size int64 [n] and
    amount_pool float64 [P]: a deal with pool_size > 0 is worth, in each trial, the amount at
    ``pool_start + pick_index(lo32(draw MAX_STEPS), pool_size)`` times its ``amount``."""

    cell: np.ndarray
    age: np.ndarray
    amount: np.ndarray
    group: np.ndarray
    sid: np.ndarray
    start: np.ndarray
    s_prev: np.ndarray
    pool_start: np.ndarray
    pool_size: np.ndarray
    amount_pool: np.ndarray


class KernelArrivals(NamedTuple):
    """New deals: ArrivalTables' arrays with ``entry_k``/``entry_thr`` [G, S] (thresholds of
    sim.compact.sorted_thresholds; ``n_entry`` the most entry stages with a positive share in a group) in place of
    entry_p, ``amount_mult`` scalar, ``day_weekday``/``day_moq`` int32
    [end_off + 1]; ``on`` False skips new deals (the arrays may then be empty)."""

    on: bool
    rate: np.ndarray
    weekday_factor: np.ndarray
    moq_factor: np.ndarray
    gamma_shape: np.ndarray
    entry_k: np.ndarray
    entry_thr: np.ndarray
    n_entry: int
    amount_pool: np.ndarray
    amount_off: np.ndarray
    amount_mult: float
    day_weekday: np.ndarray
    day_moq: np.ndarray


class KernelWindow(NamedTuple):
    """start_off, end_off: window offsets; day_period int32 [end_off + 1] (-1 before start_off);
    n_periods P, n_groups G."""

    start_off: int
    end_off: int
    day_period: np.ndarray
    n_periods: int
    n_groups: int


class KernelBuffers(NamedTuple):
    """Scratch and outputs (see the module docstring for the field layout).

    buf_f float64 / buf_i int32 [nb + 1, tc_max, F]: per-block partial sums of the chunk's trials
    (row nb: new deals); gmul float64 [tc_max, G]; work int64 [nb, 2], work_new int64 [tc_max, 2]:
    (walks, visits); deal_won, deal_lost int32 [n]; deal_hist int32 [n, W] (W = 0: not tracked);
    out_f float64 [T, 1 + P + G + S], out_i int32 [T, 2 + P + G + S], out_new_f / out_new_i [T];
    tkeys uint64 [tc_max]: the chunk's trial keys (open-deal domain).
    Batch scratch [units, TB] per parallel unit: walk_state uint64 (the walks' next draw states,
    key + (v + 1) GOLDEN), draws uint64 (the round's draws), exit_codes int64 ((exit day << 20) |
    bin row; a new deal's draw 0 while its batch fills), walk_codes int64 ((walk q << 44) | (cell << 20)
    | entry day of the spell) of the walks still going, last_visit int64 per walk ((last day << 40) |
    (destination << 24) | cell), booked int64 [units, 3 TB] (walks sorted by outcome), base_cell int64
    (base cell g S per walk), new_group int64 and new_amount float64 (a new deal's group and amount);
    deal_guide int64 [units, DEAL_GUIDE_SIZE] and deal_thr int64 [units, max L_c + 1]: the current
    deal's first-spell tables (deal_tables in walk.py); tlevel int64 [tc_max]: each trial's shock level
    (0 .. mix_nz - 1, with mix_on); walk_age, walk_entry int64 [units, TB]: with mix_on, the age from which
    a walk's spell goes on after a thinned exit (0: a new spell) and the day that spell began.
    """

    buf_f: np.ndarray
    buf_i: np.ndarray
    gmul: np.ndarray
    work: np.ndarray
    work_new: np.ndarray
    deal_won: np.ndarray
    deal_lost: np.ndarray
    deal_hist: np.ndarray
    out_f: np.ndarray
    out_i: np.ndarray
    out_new_f: np.ndarray
    out_new_i: np.ndarray
    tkeys: np.ndarray
    walk_state: np.ndarray
    draws: np.ndarray
    exit_codes: np.ndarray
    walk_codes: np.ndarray
    last_visit: np.ndarray
    booked: np.ndarray
    base_cell: np.ndarray
    new_group: np.ndarray
    new_amount: np.ndarray
    deal_guide: np.ndarray
    deal_thr: np.ndarray
    tlevel: np.ndarray
    walk_age: np.ndarray
    walk_entry: np.ndarray


def n_deal_blocks(n_deals: int) -> int:
    """Number of deal blocks: a function of the deal count only (results must not depend on threads)."""
    if n_deals == 0:
        return 0
    return min(MAX_DEAL_BLOCKS, -(-n_deals // MIN_BLOCK_DEALS))


def n_float_fields(n_periods: int, n_groups: int, n_stages: int) -> int:
    """Float outputs per trial: revenue | period revenue [P] | group revenue [G] | carried amount [S]."""
    return 1 + n_periods + n_groups + n_stages


def n_int_fields(n_periods: int, n_groups: int, n_stages: int) -> int:
    """Integer outputs per trial: wins | lost | period wins [P] | group wins [G] | carried deals [S]."""
    return 2 + n_periods + n_groups + n_stages
