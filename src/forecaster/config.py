"""The only reader of YAML: config text -> frozen, validated Config.

Every section is a frozen dataclass. Validation collects every problem (unknown key with a
"did you mean", wrong type, missing file, bad stage list) and raises one ConfigError whose lines
name the YAML key. Paths are resolved relative to the config file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from forecaster.calendar import PERIODS, as_date
from forecaster.errors import ConfigError, Problems, suggest
from forecaster.files import to_jsonable

# Canonical column names of the data contract and the CRM-specific names mapped onto them.
DEAL_COLUMNS = ("deal_id", "created_at", "amount", "status", "closed_at")
HISTORY_COLUMNS = ("stage", "entered_at")
COLUMN_KEYS = DEAL_COLUMNS + HISTORY_COLUMNS + ("history_deal_id",)
STATUSES = ("open", "won", "lost")
DEFAULT_WINDOW_DAYS = 90


@dataclass(frozen=True)
class JoinSpec:
    """A lookup table joined onto deals by one key column; its other columns become attributes."""

    table: Path
    key: str


@dataclass(frozen=True)
class AmountFill:
    """Take the amount from another (possibly joined) column where it is missing and/or zero."""

    column: str
    when: tuple[str, ...] = ("missing",)


@dataclass(frozen=True)
class DataConfig:
    deals: Path
    stage_history: Path | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    status_values: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {s: (s,) for s in STATUSES}
    )
    date_format: str | None = None
    recode: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    join: tuple[JoinSpec, ...] = ()
    amount_fill: AmountFill | None = None
    drop_missing_created: bool = False

    def column(self, canonical: str) -> str:
        """The CRM's name for a canonical column."""
        if canonical == "history_deal_id":
            return self.columns.get("history_deal_id", self.column("deal_id"))
        return self.columns.get(canonical, canonical)


@dataclass(frozen=True)
class ForecastConfig:
    as_of: dt.date | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    trials: int = 10_000
    seed: int = 0
    quota: float | None = None
    period: str = "month"
    new_deals: bool = True
    parameter_uncertainty: bool = False


@dataclass(frozen=True)
class FitConfig:
    lookback_days: int = 365
    stale_after_days: int | None = None
    prior_strength: float | None = None  # None: fitted from the data (empirical Bayes)
    min_bin_exits: int = 20


ENGINES = ("local", "dask")
SCHEDULER_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+]*://)?[\w.\-\[\]:]+:\d+$")


@dataclass(frozen=True)
class EngineConfig:
    """Where simulations run: ``local`` (numba threads in this process) or ``dask`` (a Client on the
    scheduler at ``address``; without one, a LocalCluster of ``workers`` processes; with one, ``workers``
    is how many workers to wait for). Results are identical either way (sim.engines)."""

    kind: str = "local"
    address: str | None = None
    workers: int | None = None


@dataclass(frozen=True)
class Config:
    data: DataConfig
    stages: tuple[str, ...] = ("open",)
    won: str = "won"
    lost: str = "lost"
    segment_by: tuple[str, ...] = ()
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    scenarios: tuple[Mapping[str, Any], ...] = ()
    path: Path | None = None
    sha256: str = ""

    @property
    def deal_level(self) -> bool:
        return self.data.stage_history is None

    def with_forecast(self, **changes: Any) -> "Config":
        """A copy with forecast fields overridden (CLI flags override YAML); None means keep."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, forecast=dataclasses.replace(self.forecast, **changes))

    def with_engine(self, kind: str | None = None, address: str | None = None, workers: int | None = None) -> "Config":
        """A copy with the engine overridden by CLI flags (None means keep); another kind starts afresh."""
        base = self.engine if kind in (None, self.engine.kind) else EngineConfig(kind)
        changes = {k: v for k, v in (("address", address), ("workers", workers)) if v is not None}
        return dataclasses.replace(self, engine=dataclasses.replace(base, **changes))

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-able data (paths as written absolute, dates as ISO text)."""
        out = to_jsonable(dataclasses.asdict(self))
        out.pop("path", None)
        out.pop("sha256", None)
        return out


# ---------------------------------------------------------------------------------------------
# Validation helpers


class _Reader:
    """Reads one mapping section, recording problems under dotted key names."""

    def __init__(self, problems: Problems, where: str, base_dir: Path):
        self.problems = problems
        self.where = where
        self.base_dir = base_dir

    def key(self, *parts: str) -> str:
        return ".".join(p for p in (self.where, *parts) if p)

    def section(self, value: Any, name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.add(f"config key '{self.key(name)}': expected a mapping, got {_kind(value)}")
            return {}
        for k in value:
            if k not in allowed:
                self.problems.add(
                    f"config key '{self.key(name, str(k))}': unknown key{suggest(k, allowed)}"
                )
        return dict(value)

    def typed(self, value: Any, key: str, kinds: tuple[type, ...], what: str) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) and bool not in kinds:
            self.problems.add(f"config key '{key}': expected {what}, got {value!r}")
            return None
        if not isinstance(value, kinds):
            self.problems.add(f"config key '{key}': expected {what}, got {value!r}")
            return None
        return value

    def path(self, value: Any, key: str) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problems.add(f"config key '{key}': expected a file path, got {value!r}")
            return None
        p = Path(value).expanduser()
        if not p.is_absolute():
            p = (self.base_dir / p).resolve()
        if not p.exists():
            self.problems.add(f"config key '{key}': file not found: {p}")
        return p

    def date(self, value: Any, key: str) -> dt.date | None:
        if value is None:
            return None
        parsed = as_date(value)
        if parsed is not None:
            return parsed
        self.problems.add(f"config key '{key}': expected a date YYYY-MM-DD, got {value!r}")
        return None

    def names(self, value: Any, key: str, *, unique: bool = True, non_empty: bool = True) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            self.problems.add(f"config key '{key}': expected a list of names, got {value!r}")
            return ()
        out = []
        for i, v in enumerate(value):
            if not isinstance(v, (str, int)) or isinstance(v, bool) or str(v).strip() == "":
                self.problems.add(f"config key '{key}[{i}]': expected a name, got {v!r}")
                continue
            out.append(str(v).strip())
        if non_empty and not out and not self.problems:
            self.problems.add(f"config key '{key}': must not be empty")
        if unique:
            seen: set[str] = set()
            for v in out:
                if v in seen:
                    self.problems.add(f"config key '{key}': '{v}' is listed twice; names must be unique")
                seen.add(v)
        return tuple(out)


def _kind(v: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}.get(
        type(v), type(v).__name__
    )


TOP_KEYS = ("data", "stages", "won", "lost", "segment_by", "forecast", "fit", "engine", "scenarios")
DATA_KEYS = tuple(f.name for f in dataclasses.fields(DataConfig))
FORECAST_KEYS = tuple(f.name for f in dataclasses.fields(ForecastConfig))
FIT_KEYS = tuple(f.name for f in dataclasses.fields(FitConfig))
ENGINE_KEYS = tuple(f.name for f in dataclasses.fields(EngineConfig))


def _parse_data(r: _Reader, raw: Any) -> DataConfig | None:
    d = r.section(raw, "data", DATA_KEYS)
    p = r.problems
    if "deals" not in d:
        p.add("config key 'data.deals': required (path to the deals table, Parquet or CSV)")
    deals = r.path(d.get("deals"), "data.deals")
    history = r.path(d.get("stage_history"), "data.stage_history")

    columns: dict[str, str] = {}
    for k, v in r.section(d.get("columns"), "columns", COLUMN_KEYS).items():
        if k in COLUMN_KEYS:
            if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip():
                columns[k] = str(v).strip()
            else:
                p.add(f"config key 'data.columns.{k}': expected a column name, got {v!r}")

    status_values: dict[str, tuple[str, ...]] = {s: (s,) for s in STATUSES}
    for k, v in r.section(d.get("status_values"), "status_values", STATUSES).items():
        if k not in STATUSES:
            continue
        vals = [v] if isinstance(v, (str, int)) and not isinstance(v, bool) else v
        status_values[k] = r.names(vals, f"data.status_values.{k}")
    seen: dict[str, str] = {}
    for s, vals in status_values.items():
        for v in vals:
            if v.casefold() in seen and seen[v.casefold()] != s:
                p.add(
                    f"config key 'data.status_values.{s}': '{v}' is also listed under "
                    f"'{seen[v.casefold()]}'"
                )
            seen[v.casefold()] = s

    date_format = r.typed(d.get("date_format"), "data.date_format", (str,), "a strptime format like '%m/%d/%Y'")

    recode: dict[str, dict[str, str]] = {}
    raw_recode = d.get("recode")
    if raw_recode is not None:
        if not isinstance(raw_recode, Mapping):
            p.add(f"config key 'data.recode': expected a mapping column -> {{old: new}}, got {raw_recode!r}")
        else:
            for col, m in raw_recode.items():
                if not isinstance(m, Mapping):
                    p.add(f"config key 'data.recode.{col}': expected a mapping old -> new, got {m!r}")
                    continue
                recode[str(col)] = {str(a): str(b) for a, b in m.items()}

    joins: list[JoinSpec] = []
    raw_join = d.get("join")
    if raw_join is not None:
        if not isinstance(raw_join, list):
            p.add(f"config key 'data.join': expected a list of {{table, key}}, got {raw_join!r}")
        else:
            for i, j in enumerate(raw_join):
                jr = _Reader(p, f"data.join[{i}]", r.base_dir)
                jd = jr.section(j, "", ("table", "key"))
                if not jd or "table" not in jd or "key" not in jd:
                    p.add(f"config key 'data.join[{i}]': needs 'table' (a file) and 'key' (a column)")
                    continue
                t = jr.path(jd["table"], f"data.join[{i}].table")
                key = jr.typed(jd["key"], f"data.join[{i}].key", (str,), "a column name")
                if t is not None and key:
                    joins.append(JoinSpec(t, key))

    fill = None
    raw_fill = d.get("amount_fill")
    if raw_fill is not None:
        fr = _Reader(p, "data.amount_fill", r.base_dir)
        fd = fr.section(raw_fill, "", ("column", "when"))
        col = fr.typed(fd.get("column"), "data.amount_fill.column", (str,), "a column name")
        if not col:
            p.add("config key 'data.amount_fill.column': required")
        when = fd.get("when", ["missing"])
        when = [when] if isinstance(when, str) else when
        when_t = fr.names(when, "data.amount_fill.when")
        for w in when_t:
            if w not in ("missing", "zero"):
                p.add(f"config key 'data.amount_fill.when': '{w}' is not one of missing, zero")
        if col:
            fill = AmountFill(col, when_t)

    drop = r.typed(d.get("drop_missing_created", False), "data.drop_missing_created", (bool,), "true or false")
    if deals is None:
        return None
    return DataConfig(deals, history, columns, status_values, date_format, recode, tuple(joins), fill, bool(drop))


def _parse_forecast(r: _Reader, raw: Any) -> ForecastConfig:
    f = r.section(raw, "forecast", FORECAST_KEYS)
    p = r.problems
    out: dict[str, Any] = {}
    for k in ("as_of", "start", "end"):
        if k in f:
            out[k] = r.date(f[k], f"forecast.{k}")
    for k, lo in (("trials", 1), ("seed", 0)):
        if k in f:
            v = r.typed(f[k], f"forecast.{k}", (int,), "a whole number")
            if v is not None and v < lo:
                p.add(f"config key 'forecast.{k}': must be >= {lo}, got {v}")
            elif v is not None:
                out[k] = v
    if f.get("quota") is not None:
        v = r.typed(f["quota"], "forecast.quota", (int, float), "a number")
        if v is not None and v < 0:
            p.add(f"config key 'forecast.quota': must be >= 0, got {v}")
        elif v is not None:
            out["quota"] = float(v)
    if "period" in f:
        v = r.typed(f["period"], "forecast.period", (str,), "week, month or quarter")
        if v is not None and v not in PERIODS:
            p.add(f"config key 'forecast.period': '{v}' is not one of week, month, quarter{suggest(v, PERIODS)}")
        elif v is not None:
            out["period"] = v
    for k in ("new_deals", "parameter_uncertainty"):
        if k in f:
            v = r.typed(f[k], f"forecast.{k}", (bool,), "true or false")
            if v is not None:
                out[k] = v
    fc = ForecastConfig(**{k: v for k, v in out.items() if v is not None})
    check_window(fc, p)
    return fc


def check_window(fc: ForecastConfig, problems: Problems) -> None:
    """start <= end, and a window that starts before as_of would need data we are pretending not to know."""
    if fc.start and fc.end and fc.end < fc.start:
        problems.add(f"config key 'forecast.end': {fc.end} is before forecast.start {fc.start}")
    if fc.as_of and fc.start and fc.start < fc.as_of:
        problems.add(f"config key 'forecast.start': {fc.start} is before forecast.as_of {fc.as_of}")


def _parse_engine(r: _Reader, raw: Any) -> EngineConfig:
    e = r.section(raw, "engine", ENGINE_KEYS)
    kind = r.typed(e.get("kind", "local"), "engine.kind", (str,), "local or dask")
    address = r.typed(e.get("address"), "engine.address", (str,), "a scheduler address like tcp://10.0.0.5:8786")
    workers = r.typed(e.get("workers"), "engine.workers", (int,), "a whole number of worker processes")
    check_engine(engine := EngineConfig(kind or "local", address, workers), r.problems)
    return engine


def check_engine(engine: EngineConfig, problems: Problems, label: Callable[[str], str] = "config key 'engine.{}'".format):
    """A known kind, a well-formed address, workers >= 1, and address or workers only with dask; each
    problem named by ``label(field)`` (the YAML key, or the CLI flag that set it)."""
    if engine.kind not in ENGINES:
        problems.add(f"{label('kind')}: '{engine.kind}' is not one of {', '.join(ENGINES)}{suggest(engine.kind, ENGINES)}")
    if engine.address is not None and not SCHEDULER_ADDRESS.match(engine.address):
        problems.add(f"{label('address')}: expected a scheduler address like tcp://10.0.0.5:8786, got '{engine.address}'")
    if engine.workers is not None and engine.workers < 1:
        problems.add(f"{label('workers')}: must be >= 1, got {engine.workers}")
    for key in ("address", "workers"):
        if engine.kind == "local" and getattr(engine, key) is not None:
            problems.add(f"{label(key)}: applies to the dask engine only (engine.kind: dask, or --engine dask)")


def _parse_fit(r: _Reader, raw: Any) -> FitConfig:
    f = r.section(raw, "fit", FIT_KEYS)
    p = r.problems
    out: dict[str, Any] = {}
    for k in ("lookback_days", "stale_after_days", "min_bin_exits"):
        if f.get(k) is not None:
            v = r.typed(f[k], f"fit.{k}", (int,), "a whole number of days" if "days" in k else "a whole number")
            if v is not None and v < 1:
                p.add(f"config key 'fit.{k}': must be >= 1, got {v}")
            elif v is not None:
                out[k] = v
    if f.get("prior_strength") not in (None, "auto"):
        v = r.typed(f["prior_strength"], "fit.prior_strength", (int, float), "a number >= 0 or 'auto'")
        if v is not None and v < 0:
            p.add(f"config key 'fit.prior_strength': must be >= 0, got {v}")
        elif v is not None:
            out["prior_strength"] = float(v)
    return FitConfig(**out)


def _parse_scenarios(r: _Reader, raw: Any) -> tuple[Mapping[str, Any], ...]:
    """Scenarios are interpreted by a later stage; here: a list of mappings with unique names."""
    if raw is None:
        return ()
    p = r.problems
    if not isinstance(raw, list):
        p.add(f"config key 'scenarios': expected a list of scenarios, got {_kind(raw)}")
        return ()
    names: set[str] = set()
    out = []
    for i, s in enumerate(raw):
        if not isinstance(s, Mapping):
            p.add(f"config key 'scenarios[{i}]': expected a mapping with a 'name', got {s!r}")
            continue
        name = s.get("name")
        if not isinstance(name, str) or not name.strip():
            p.add(f"config key 'scenarios[{i}].name': required (a non-empty string)")
        elif name in names:
            p.add(f"config key 'scenarios[{i}].name': '{name}' is used twice")
        else:
            names.add(name)
        out.append(dict(s))
    return tuple(out)


def parse_config(raw: Any, base_dir: Path, path: Path | None = None, text: str = "") -> Config:
    """Validate a parsed YAML document. Raises ConfigError listing every problem."""
    p = Problems(ConfigError)
    r = _Reader(p, "", base_dir)
    if raw is None:
        raise ConfigError(f"{path or 'config'}: the config is empty")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping of keys at the top, got {_kind(raw)}")
    top = r.section(raw, "", TOP_KEYS)
    if "data" not in top:
        p.add("config key 'data': required (where the deals table is)")
    data = _parse_data(r, top.get("data"))

    has_history = data is not None and data.stage_history is not None
    if "stages" in top:
        stages = r.names(top["stages"], "stages")
    elif has_history:
        p.add("config key 'stages': required with data.stage_history (the ordered open stages)")
        stages = ()
    else:
        stages = ("open",)
    won = r.typed(top.get("won", "won"), "won", (str,), "the name of the won stage") or "won"
    lost = r.typed(top.get("lost", "lost"), "lost", (str,), "the name of the lost stage") or "lost"
    if won == lost:
        p.add(f"config key 'lost': '{lost}' is also the won stage")
    for key, name in (("won", won), ("lost", lost)):
        if name in stages:
            p.add(f"config key '{key}': '{name}' is a closed stage and must not be listed in 'stages'")
    segment_by = r.names(top.get("segment_by"), "segment_by", non_empty=False)
    forecast = _parse_forecast(r, top.get("forecast"))
    fit = _parse_fit(r, top.get("fit"))
    engine = _parse_engine(r, top.get("engine"))
    scenarios = _parse_scenarios(r, top.get("scenarios"))
    p.raise_if_any()
    assert data is not None
    return Config(
        data=data,
        stages=stages,
        won=won,
        lost=lost,
        segment_by=segment_by,
        forecast=forecast,
        fit=fit,
        engine=engine,
        scenarios=scenarios,
        path=path,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


class _Loader(yaml.SafeLoader):
    """Safe loading with YAML 1.2 scalars: dates stay text (validated here with a clear message)
    and only true/false are booleans (YAML 1.1 turns keys like `on` or values like `No` into bools)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file (safe loading only)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where}: not valid YAML: {problem}") from None
    return parse_config(raw, path.resolve().parent, path=path, text=text)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
