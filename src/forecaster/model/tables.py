"""The simulation's input tables in natural form (docs/kernel_contract.md), with their checks.

Three frozen dataclasses of numpy arrays, no pandas:

- ``StageTables``: per cell ``c = g * S + s`` the survival curve of a spell, the destination shares
  of an exit on each day (through bins), and the constant-hazard tail beyond the table;
- ``ArrivalTables``: per group the daily rate of new deals with its seasonality, overdispersion,
  entry stages and the pool of amounts to bootstrap from;
- ``OpenDeals``: per open deal its cell, age in the current stage (days), amount and group, and
  optionally the day offset on which its walk starts (deals that enter during the window).

``check()`` validates dtypes, shapes and ranges and raises one ``ModelError`` listing every problem.
The engine calls it once per run; the kernels trust what passed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecaster.errors import ModelError, Problems

# Tolerance on "sums to 1" for probability rows (fitted shares are computed in float64).
PROB_SUM_ATOL = 1e-9


def _check_array(p: Problems, owner: str, name: str, a, dtype, ndim: int) -> bool:
    """Dtype and rank of one field; False (and a problem) when the field cannot be checked further."""
    where = f"{owner}.{name}"
    if not isinstance(a, np.ndarray):
        p.add(f"{where}: expected a numpy array, got {type(a).__name__}")
        return False
    ok = True
    if a.dtype != np.dtype(dtype):
        p.add(f"{where}: dtype {a.dtype}, expected {np.dtype(dtype)}")
        ok = False
    if a.ndim != ndim:
        p.add(f"{where}: {a.ndim}-d with shape {a.shape}, expected {ndim}-d")
        ok = False
    return ok


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.ravel())[0])


@dataclass(frozen=True, eq=False)
class StageTables:
    """Per-cell spell tables; see docs/kernel_contract.md.

    surv      float64 [L_total]  S(d) = P(T > d), d = 0 .. L_c - 1 per cell, concatenated
    cell_off  int64   [G*S + 1]  cell c is surv[cell_off[c] : cell_off[c + 1]], L_c >= 1
    day_bin   int32   [L_total]  row of bin_p for an exit on that cell-day
    bin_p     float64 [n_bins, S + 2]  destination shares (open stages, WON = S, LOST = S + 1)
    tail_h    float64 [G*S]      daily hazard beyond the table, in (0, 1]
    tail_bin  int32   [G*S]      row of bin_p for exits beyond the table
    """

    surv: np.ndarray
    cell_off: np.ndarray
    day_bin: np.ndarray
    bin_p: np.ndarray
    tail_h: np.ndarray
    tail_bin: np.ndarray

    @classmethod
    def of(cls, surv, cell_off, day_bin, bin_p, tail_h, tail_bin) -> StageTables:
        """Build from array-likes with the contract's dtypes, checked."""
        return cls(
            surv=np.asarray(surv, np.float64),
            cell_off=np.asarray(cell_off, np.int64),
            day_bin=np.asarray(day_bin, np.int32),
            bin_p=np.asarray(bin_p, np.float64),
            tail_h=np.asarray(tail_h, np.float64),
            tail_bin=np.asarray(tail_bin, np.int32),
        ).check()

    @property
    def n_stages(self) -> int:
        """S, the number of open stages (``bin_p`` has S + 2 columns)."""
        return int(self.bin_p.shape[1]) - 2

    @property
    def n_cells(self) -> int:
        return int(self.cell_off.shape[0]) - 1

    @property
    def n_groups(self) -> int:
        return self.n_cells // self.n_stages

    @property
    def cell_len(self) -> np.ndarray:
        """L_c per cell, int64 [G*S]."""
        return np.diff(self.cell_off)

    def check(self) -> StageTables:
        """Raise ModelError listing every broken rule of the contract; return self when all hold."""
        p = Problems(ModelError)
        o = "StageTables"
        ok = _check_array(p, o, "surv", self.surv, np.float64, 1)
        ok &= _check_array(p, o, "cell_off", self.cell_off, np.int64, 1)
        ok &= _check_array(p, o, "day_bin", self.day_bin, np.int32, 1)
        ok &= _check_array(p, o, "bin_p", self.bin_p, np.float64, 2)
        ok &= _check_array(p, o, "tail_h", self.tail_h, np.float64, 1)
        ok &= _check_array(p, o, "tail_bin", self.tail_bin, np.int32, 1)
        if not ok:
            p.raise_if_any()
        n_stages = self.bin_p.shape[1] - 2
        if n_stages < 1:
            p.add(f"{o}.bin_p: {self.bin_p.shape[1]} columns, expected S + 2 >= 3 (open stages, won, lost)")
            p.raise_if_any()
        n_cells = self.cell_off.shape[0] - 1
        if n_cells < 1 or n_cells % n_stages:
            p.add(f"{o}.cell_off: {self.cell_off.shape[0]} entries, expected G * S + 1 with S = {n_stages}")
            p.raise_if_any()
        n_bins = self.bin_p.shape[0]
        L_total = self.surv.shape[0]
        off = self.cell_off
        if off[0] != 0 or off[-1] != L_total:
            p.add(f"{o}.cell_off: must start at 0 and end at len(surv) = {L_total}, got {off[0]} .. {off[-1]}")
            p.raise_if_any()
        lens = np.diff(off)
        if np.any(lens < 1):
            c = _first_bad(lens < 1)
            p.add(f"{o}.cell_off: cell {c} has {lens[c]} days, every cell needs L_c >= 1")
            p.raise_if_any()
        if self.day_bin.shape[0] != L_total:
            p.add(f"{o}.day_bin: length {self.day_bin.shape[0]}, expected len(surv) = {L_total}")
        for name in ("tail_h", "tail_bin"):
            a = getattr(self, name)
            if a.shape[0] != n_cells:
                p.add(f"{o}.{name}: length {a.shape[0]}, expected G * S = {n_cells}")
        p.raise_if_any()

        s = self.surv
        if not np.all(np.isfinite(s)) or np.any(s < 0.0) or np.any(s > 1.0):
            i = _first_bad(~(np.isfinite(s) & (s >= 0.0) & (s <= 1.0)))
            p.add(f"{o}.surv: values must be in [0, 1], surv[{i}] = {s[i]!r}")
        else:
            cell_of_day = np.repeat(np.arange(n_cells), lens)
            same_cell = cell_of_day[1:] == cell_of_day[:-1]
            up = same_cell & (s[1:] > s[:-1])
            if np.any(up):
                i = _first_bad(up) + 1
                c = int(cell_of_day[i])
                p.add(f"{o}.surv: cell {c} increases at day {i - off[c]} ({s[i - 1]!r} -> {s[i]!r})")
            # S(a - 1) > 0 for every a < L_c: only the last day of a cell may reach 0.
            last = np.zeros(L_total, dtype=bool)
            last[off[1:] - 1] = True
            zero = (s <= 0.0) & ~last
            if np.any(zero):
                i = _first_bad(zero)
                c = int(cell_of_day[i])
                p.add(
                    f"{o}.surv: cell {c} reaches 0 at day {i - off[c]} before its last day "
                    f"{lens[c] - 1}; end the table at the first day with S = 0"
                )
        if np.any((self.day_bin < 0) | (self.day_bin >= n_bins)):
            i = _first_bad((self.day_bin < 0) | (self.day_bin >= n_bins))
            p.add(f"{o}.day_bin: day_bin[{i}] = {self.day_bin[i]} is not a row of bin_p (0 .. {n_bins - 1})")
        if np.any((self.tail_bin < 0) | (self.tail_bin >= n_bins)):
            c = _first_bad((self.tail_bin < 0) | (self.tail_bin >= n_bins))
            p.add(f"{o}.tail_bin: cell {c} -> {self.tail_bin[c]} is not a row of bin_p (0 .. {n_bins - 1})")
        h = self.tail_h
        bad_h = ~(np.isfinite(h) & (h > 0.0) & (h <= 1.0))
        if np.any(bad_h):
            c = _first_bad(bad_h)
            p.add(f"{o}.tail_h: cell {c} has hazard {h[c]!r}, expected 0 < h <= 1")
        b = self.bin_p
        if n_bins == 0:
            p.add(f"{o}.bin_p: no rows")
        elif not np.all(np.isfinite(b)) or np.any(b < 0.0):
            r = _first_bad(~(np.isfinite(b) & (b >= 0.0))) // b.shape[1]
            p.add(f"{o}.bin_p: row {r} has a negative or non-finite share: {b[r].tolist()}")
        else:
            sums = b.sum(axis=1)
            bad = np.abs(sums - 1.0) > PROB_SUM_ATOL
            if np.any(bad):
                r = _first_bad(bad)
                p.add(f"{o}.bin_p: row {r} sums to {sums[r]!r}, expected 1")
        p.raise_if_any()

        # A cell's own stage is never its destination (a "move" to itself would be no exit).
        cell_stage = np.arange(n_cells) % n_stages
        day_stage = np.repeat(cell_stage, lens)
        self_day = b[self.day_bin, day_stage] > 0.0
        if np.any(self_day):
            i = _first_bad(self_day)
            c = int(np.searchsorted(off, i, side="right") - 1)
            p.add(
                f"{o}.bin_p: cell {c} (stage {cell_stage[c]}) day {i - off[c]} uses bin {self.day_bin[i]} "
                f"whose share of its own stage is {b[self.day_bin[i], cell_stage[c]]!r}, expected 0"
            )
        self_tail = b[self.tail_bin, cell_stage] > 0.0
        if np.any(self_tail):
            c = _first_bad(self_tail)
            p.add(f"{o}.bin_p: cell {c} tail bin {self.tail_bin[c]} gives its own stage {cell_stage[c]} a share > 0")
        p.raise_if_any()
        return self


@dataclass(frozen=True, eq=False)
class ArrivalTables:
    """New deals per group; see docs/kernel_contract.md.

    rate            float64 [G]     mean new deals per day before seasonality
    weekday_factor  float64 [G, 7]  multiplier by weekday, Monday = 0
    moq_factor      float64 [G, 3]  multiplier by month of quarter (0, 1, 2)
    gamma_shape     float64 [G]     per-trial rate multiplier ~ Gamma(shape, 1/shape); inf = none
    entry_p         float64 [G, S]  probability of entering stage s
    amount_pool     float64 [P_total]  amounts to bootstrap from, concatenated per group
    amount_off      int64   [G + 1]  group g's pool is amount_pool[amount_off[g] : amount_off[g + 1]]
    """

    rate: np.ndarray
    weekday_factor: np.ndarray
    moq_factor: np.ndarray
    gamma_shape: np.ndarray
    entry_p: np.ndarray
    amount_pool: np.ndarray
    amount_off: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.rate.shape[0])

    def check(self, stage: StageTables | None = None) -> ArrivalTables:
        """Raise ModelError listing every problem; with ``stage``, also check G and S agree with it."""
        p = Problems(ModelError)
        o = "ArrivalTables"
        ok = _check_array(p, o, "rate", self.rate, np.float64, 1)
        ok &= _check_array(p, o, "weekday_factor", self.weekday_factor, np.float64, 2)
        ok &= _check_array(p, o, "moq_factor", self.moq_factor, np.float64, 2)
        ok &= _check_array(p, o, "gamma_shape", self.gamma_shape, np.float64, 1)
        ok &= _check_array(p, o, "entry_p", self.entry_p, np.float64, 2)
        ok &= _check_array(p, o, "amount_pool", self.amount_pool, np.float64, 1)
        ok &= _check_array(p, o, "amount_off", self.amount_off, np.int64, 1)
        if not ok:
            p.raise_if_any()
        G = self.rate.shape[0]
        S = self.entry_p.shape[1]
        shapes = {
            "weekday_factor": (G, 7),
            "moq_factor": (G, 3),
            "gamma_shape": (G,),
            "entry_p": (G, S),
            "amount_off": (G + 1,),
        }
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                p.add(f"{o}.{name}: shape {getattr(self, name).shape}, expected {shape} (G = {G})")
        if stage is not None and (G != stage.n_groups or S != stage.n_stages):
            p.add(
                f"{o}: {G} groups x {S} stages, but the stage tables have "
                f"{stage.n_groups} groups x {stage.n_stages} stages"
            )
        p.raise_if_any()

        def nonneg(name: str) -> None:
            a = getattr(self, name)
            bad = ~(np.isfinite(a) & (a >= 0.0))
            if np.any(bad):
                g = np.argwhere(bad)[0]
                p.add(f"{o}.{name}: entry {tuple(int(x) for x in g)} is {a[tuple(g)]!r}, expected finite and >= 0")

        for name in ("rate", "weekday_factor", "moq_factor", "entry_p"):
            nonneg(name)
        gs = self.gamma_shape
        if np.any(~(gs > 0.0)):
            g = _first_bad(~(gs > 0.0))
            p.add(f"{o}.gamma_shape: group {g} has shape {gs[g]!r}, expected > 0 (inf for plain Poisson)")
        sums = self.entry_p.sum(axis=1)
        bad = np.abs(sums - 1.0) > PROB_SUM_ATOL
        if np.any(bad):
            g = _first_bad(bad)
            p.add(f"{o}.entry_p: group {g} sums to {sums[g]!r}, expected 1")
        if not np.all(np.isfinite(self.amount_pool)):
            p.add(f"{o}.amount_pool: value {self.amount_pool[_first_bad(~np.isfinite(self.amount_pool))]!r} is not finite")
        off = self.amount_off
        if off[0] != 0 or off[-1] != self.amount_pool.shape[0] or np.any(np.diff(off) < 0):
            p.add(f"{o}.amount_off: must rise from 0 to len(amount_pool) = {self.amount_pool.shape[0]}, got {off.tolist()}")
        else:
            empty = (np.diff(off) == 0) & (self.rate > 0.0)
            if np.any(empty):
                p.add(f"{o}.amount_pool: group {_first_bad(empty)} has rate > 0 but no amounts to draw from")
        p.raise_if_any()
        return self


@dataclass(frozen=True, eq=False)
class OpenDeals:
    """The open deals at as_of.

    cell       int32   [n]  cell g * S + s of the current stage
    age        int32   [n]  days in the current stage: as_of - entered date, >= 0
    amount     float64 [n]  revenue if won (scenario amount levers already applied)
    group      int32   [n]  group g (must equal cell // S)
    stream_id  int64   [n] or None  key of the deal's random stream; default 0 .. n-1. Pass a
               stable id (e.g. a hash of deal_id below 2**63) so that adding or dropping other
               deals in a scenario leaves this deal's draws unchanged. Must be unique and >= 0.
    start      int32   [n] or None  day offset from as_of on which the deal's walk starts; default
               None = all 0 (deals open at as_of). ``0 <= start`` (checked here) and
               ``start <= end_off`` (checked by engine.simulate, which knows the window).
    amount_pool float64 [P] or None, pool_start / pool_size int64 [n] or None: amounts drawn per
               trial (a campaign's deals bootstrapped from their segment's recent deals). A deal
               with ``pool_size > 0`` is worth, in each trial, one of
               ``amount_pool[pool_start : pool_start + pool_size]`` (picked by its own stream, the
               same in every scenario) times ``amount``; with ``pool_size = 0``, ``amount``.

    A deal with start ``s`` and age ``a`` is in its cell on day ``s``, having entered its stage on
    day ``s - a`` (for an open deal at as_of, ``s = 0``: it entered on as_of - age; a deal that a
    campaign adds on a future day has ``a = 0``). Its first spell's exit day ``d`` (days since that
    entry, drawn conditioned on ``T >= a`` as for any open deal) falls on day offset
    ``s - a + d >= s``; from there the walk, the booking (won / lost in the window when that day is
    in [start_off, end_off], carried when beyond end_off) and the random draws are those of any
    open deal. ``start`` does not enter the deal's random stream: with ``start = 0`` a deal draws
    and ends exactly as with ``start = None``.
    """

    cell: np.ndarray
    age: np.ndarray
    amount: np.ndarray
    group: np.ndarray
    stream_id: np.ndarray | None = None
    start: np.ndarray | None = None
    amount_pool: np.ndarray | None = None
    pool_start: np.ndarray | None = None
    pool_size: np.ndarray | None = None

    @property
    def n_deals(self) -> int:
        return int(self.cell.shape[0])

    def stream_ids(self) -> np.ndarray:
        """int64 [n]: ``stream_id`` or 0 .. n-1."""
        if self.stream_id is None:
            return np.arange(self.n_deals, dtype=np.int64)
        return self.stream_id

    def starts(self) -> np.ndarray:
        """int32 [n]: ``start`` or all 0."""
        if self.start is None:
            return np.zeros(self.n_deals, dtype=np.int32)
        return self.start

    def take(self, idx: np.ndarray) -> OpenDeals:
        """The deals ``idx`` (each keeps its stream id and amount pool, so it draws as it did among all of
        them)."""
        pooled = self.amount_pool is not None
        return OpenDeals(self.cell[idx], self.age[idx], self.amount[idx], self.group[idx], self.stream_ids()[idx],
                         None if self.start is None else self.start[idx], amount_pool=self.amount_pool,
                         pool_start=self.pool_start[idx] if pooled else None,
                         pool_size=self.pool_size[idx] if pooled else None)

    def pools(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(amount_pool float64 [P], pool_start int64 [n], pool_size int64 [n]); no pools: all sizes 0."""
        if self.amount_pool is None:
            z = np.zeros(self.n_deals, np.int64)
            return np.zeros(1, np.float64), z, z.copy()
        return self.amount_pool, self.pool_start, self.pool_size

    def expected_amounts(self) -> np.ndarray:
        """float64 [n]: each deal's amount, or for a pooled one its pool's mean times ``amount``."""
        pool, start, size = self.pools()
        if not size.any():
            return self.amount
        csum = np.r_[0.0, np.cumsum(pool)]
        mean = (csum[start + size] - csum[start]) / np.maximum(size, 1)
        return np.where(size > 0, mean * self.amount, self.amount)

    @staticmethod
    def empty() -> OpenDeals:
        return OpenDeals(
            cell=np.zeros(0, np.int32),
            age=np.zeros(0, np.int32),
            amount=np.zeros(0, np.float64),
            group=np.zeros(0, np.int32),
        )

    def check(self, stage: StageTables | None = None) -> OpenDeals:
        """Raise ModelError listing every problem; with ``stage``, check cells and groups against it."""
        p = Problems(ModelError)
        o = "OpenDeals"
        ok = _check_array(p, o, "cell", self.cell, np.int32, 1)
        ok &= _check_array(p, o, "age", self.age, np.int32, 1)
        ok &= _check_array(p, o, "amount", self.amount, np.float64, 1)
        ok &= _check_array(p, o, "group", self.group, np.int32, 1)
        if self.stream_id is not None:
            ok &= _check_array(p, o, "stream_id", self.stream_id, np.int64, 1)
        if self.start is not None:
            ok &= _check_array(p, o, "start", self.start, np.int32, 1)
        pooled = [self.amount_pool is not None, self.pool_start is not None, self.pool_size is not None]
        if any(pooled) and not all(pooled):
            p.add(f"{o}: amount_pool, pool_start and pool_size go together (all or none)")
        elif all(pooled):
            ok &= _check_array(p, o, "amount_pool", self.amount_pool, np.float64, 1)
            ok &= _check_array(p, o, "pool_start", self.pool_start, np.int64, 1)
            ok &= _check_array(p, o, "pool_size", self.pool_size, np.int64, 1)
        if not ok:
            p.raise_if_any()
        n = self.cell.shape[0]
        names = ["age", "amount", "group"] + [f for f in ("stream_id", "start", "pool_start", "pool_size")
                                              if getattr(self, f) is not None]
        for name in names:
            if getattr(self, name).shape[0] != n:
                p.add(f"{o}.{name}: length {getattr(self, name).shape[0]}, expected {n} (as cell)")
        p.raise_if_any()
        if np.any(self.age < 0):
            i = _first_bad(self.age < 0)
            p.add(f"{o}.age: deal {i} has age {self.age[i]}, expected >= 0")
        if self.start is not None and np.any(self.start < 0):
            i = _first_bad(self.start < 0)
            p.add(f"{o}.start: deal {i} starts on day offset {self.start[i]}, expected >= 0")
        if not np.all(np.isfinite(self.amount)):
            i = _first_bad(~np.isfinite(self.amount))
            p.add(f"{o}.amount: deal {i} has amount {self.amount[i]!r}")
        if self.amount_pool is not None:
            size, start, P = self.pool_size, self.pool_start, self.amount_pool.shape[0]
            bad = (size < 0) | (start < 0) | ((size > 0) & (start + size > P))
            if np.any(bad):
                i = _first_bad(bad)
                p.add(f"{o}.pool_start/pool_size: deal {i} takes amount_pool[{start[i]} : {start[i] + size[i]}], "
                      f"outside its {P} amounts")
            if not np.all(np.isfinite(self.amount_pool)):
                p.add(f"{o}.amount_pool: a value is not finite")
        if self.stream_id is not None:
            sid = self.stream_id
            if np.any(sid < 0):
                p.add(f"{o}.stream_id: deal {_first_bad(sid < 0)} has a negative id")
            if np.unique(sid).shape[0] != n:
                p.add(f"{o}.stream_id: ids must be unique (two deals would share their random draws)")
        if stage is not None:
            n_cells = stage.n_cells
            bad = (self.cell < 0) | (self.cell >= n_cells)
            if np.any(bad):
                i = _first_bad(bad)
                p.add(f"{o}.cell: deal {i} is in cell {self.cell[i]}, expected 0 .. {n_cells - 1}")
            else:
                wrong = self.group != self.cell // stage.n_stages
                if np.any(wrong):
                    i = _first_bad(wrong)
                    p.add(
                        f"{o}.group: deal {i} has group {self.group[i]} but cell {self.cell[i]} "
                        f"belongs to group {self.cell[i] // stage.n_stages}"
                    )
        p.raise_if_any()
        return self
