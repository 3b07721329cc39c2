"""The top of the config: frozen sections, ``parse_config`` (every problem named by its YAML key, with a
"did you mean") and ``load_config``. Paths are resolved relative to the config file."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from forecaster.calendar import PERIODS
from forecaster.config.data import DataConfig, parse_data
from forecaster.config.engine import EngineConfig, parse_engine
from forecaster.config.reader import Loader, Reader, kind
from forecaster.errors import ConfigError, Problems, suggest

PIPELINE_ATTR = "pipeline"  # the attribute (segment and reporting group) that holds a deal's pipeline


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
    half_life_days: int | str | None = None  # recency weighting of spells: days, "auto" or None (off)
    calendar_effects: bool = True  # month-of-quarter shifts of the outcome odds (model.shocks)
    shared_shocks: bool = True  # the per-trial multiplier of the odds of losing (model.shocks)


@dataclass(frozen=True)
class CalendarConfig:
    """The business calendar: the month (1-12) the fiscal year starts in; quarters, months of the
    quarter and the default forecast window (the rest of the fiscal quarter) follow it."""

    fiscal_year_start: int = 1


@dataclass(frozen=True)
class PipelineSpec:
    """One pipeline of ``pipelines:``: its open stages in order (as the CRM names them), its won and lost
    stage names, and the names its stages carry in the model (``model_stages``: a name two pipelines share
    becomes 'stage (pipeline)')."""

    name: str
    stages: tuple[str, ...]
    won: str
    lost: str
    model_stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    data: DataConfig
    stages: tuple[str, ...] = ("open",)
    won: str = "won"
    lost: str = "lost"
    segment_by: tuple[str, ...] = ()
    report_by: tuple[str, ...] = ()
    pipelines: tuple[PipelineSpec, ...] = ()
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    scenarios: tuple[Mapping[str, Any], ...] = ()
    path: Path | None = None
    sha256: str = ""

    @property
    def deal_level(self) -> bool:
        """No stage history: none given, none a preset derives (HubSpot always does; Pipedrive when the
        config lists stages)."""
        if self.data.stage_history is not None or self.data.format == "hubspot":
            return False
        return not (self.data.format == "pipedrive" and self.stages != ("open",))

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
        """The resolved config as plain YAML-able data (paths as written absolute)."""
        out = plain(self)
        out.pop("path", None)
        out.pop("sha256", None)
        out["pipelines"] = {p.name: {"stages": list(p.stages), "won": p.won, "lost": p.lost} for p in self.pipelines}
        cur = self.data.currency
        if cur is not None:
            out["data"]["currency"] = {"to": cur.to, "column": cur.column,
                                       "rates": str(cur.rates_file) if cur.rates_file else dict(cur.rates)}
        if not self.pipelines:
            del out["pipelines"]
        return out

    def fit_identity(self) -> dict[str, Any]:
        """What a fitted model depends on besides the data files: stages, won/lost, segments, pipelines,
        the fit options and how the data is read (every data key but the file paths)."""
        data = {k: v for k, v in plain(self.data).items() if k not in ("deals", "stage_history")}
        data["join"] = [j["key"] for j in data["join"]]
        if self.data.currency is not None:
            data["currency"].pop("rates_file", None)
        return {"stages": list(self.stages), "won": self.won, "lost": self.lost,
                "segment_by": list(self.segment_by), "pipelines": plain(self.pipelines),
                "fit": plain(self.fit), "calendar": plain(self.calendar), "data": data}


def plain(v: Any) -> Any:
    """Dataclasses, mappings, tuples, paths and dates as plain YAML/JSON data."""
    if dataclasses.is_dataclass(v):
        return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def identity_sha256(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


TOP_KEYS = ("data", "stages", "won", "lost", "segment_by", "report_by", "pipelines", "forecast", "fit", "engine",
            "calendar", "scenarios")
FORECAST_KEYS = tuple(f.name for f in dataclasses.fields(ForecastConfig))
FIT_KEYS = tuple(f.name for f in dataclasses.fields(FitConfig))


def _parse_forecast(r: Reader, raw: Any) -> ForecastConfig:
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
                r.add(f"forecast.{k}", f"must be >= {lo}, got {v}")
            elif v is not None:
                out[k] = v
    if f.get("quota") is not None:
        v = r.typed(f["quota"], "forecast.quota", (int, float), "a number")
        if v is not None and v < 0:
            r.add("forecast.quota", f"must be >= 0, got {v}")
        elif v is not None:
            out["quota"] = float(v)
    if "period" in f:
        v = r.typed(f["period"], "forecast.period", (str,), "week, month or quarter")
        if v is not None and v not in PERIODS:
            r.add("forecast.period", f"'{v}' is not one of week, month, quarter{suggest(v, PERIODS)}")
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


def _parse_fit(r: Reader, raw: Any) -> FitConfig:
    f = r.section(raw, "fit", FIT_KEYS)
    out: dict[str, Any] = {}
    for k in ("lookback_days", "stale_after_days", "min_bin_exits"):
        if f.get(k) is not None:
            v = r.typed(f[k], f"fit.{k}", (int,), "a whole number of days" if "days" in k else "a whole number")
            if v is not None and v < 1:
                r.add(f"fit.{k}", f"must be >= 1, got {v}")
            elif v is not None:
                out[k] = v
    if f.get("prior_strength") not in (None, "auto"):
        v = r.typed(f["prior_strength"], "fit.prior_strength", (int, float), "a number >= 0 or 'auto'")
        if v is not None and v < 0:
            r.add("fit.prior_strength", f"must be >= 0, got {v}")
        elif v is not None:
            out["prior_strength"] = float(v)
    hl = f.get("half_life_days")
    if hl is not None and hl != "off":
        if hl == "auto":
            out["half_life_days"] = "auto"
        else:
            v = r.typed(hl, "fit.half_life_days", (int,), "a whole number of days, 'auto' or 'off'")
            if v is not None and v < 7:
                r.add("fit.half_life_days", f"must be >= 7 days, got {v}")
            elif v is not None:
                out["half_life_days"] = v
    for k in ("calendar_effects", "shared_shocks"):
        if k in f:
            v = r.typed(f[k], f"fit.{k}", (bool,), "true or false")
            if v is not None:
                out[k] = v
    return FitConfig(**out)


def _parse_calendar(r: Reader, raw: Any) -> CalendarConfig:
    c = r.section(raw, "calendar", ("fiscal_year_start",))
    if c.get("fiscal_year_start") is None:
        return CalendarConfig()
    v = r.typed(c["fiscal_year_start"], "calendar.fiscal_year_start", (int,), "a month number 1-12")
    if v is not None and not 1 <= v <= 12:
        r.add("calendar.fiscal_year_start", f"expected a month number 1-12, got {v}")
        return CalendarConfig()
    return CalendarConfig(v) if v is not None else CalendarConfig()


def _parse_scenarios(r: Reader, raw: Any) -> tuple[Mapping[str, Any], ...]:
    """Scenarios are interpreted by a later stage; here: a list of mappings with unique names."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        r.add("scenarios", f"expected a list of scenarios, got {kind(raw)}")
        return ()
    names: set[str] = set()
    out = []
    for i, s in enumerate(raw):
        if not isinstance(s, Mapping):
            r.add(f"scenarios[{i}]", f"expected a mapping with a 'name', got {s!r}")
            continue
        name = s.get("name")
        if not isinstance(name, str) or not name.strip():
            r.add(f"scenarios[{i}].name", "required (a non-empty string)")
        elif name in names:
            r.add(f"scenarios[{i}].name", f"'{name}' is used twice")
        else:
            names.add(name)
        out.append(dict(s))
    return tuple(out)


def _closed_names(r: Reader, raw: Mapping[str, Any], where: str, stages: tuple[str, ...]) -> tuple[str, str]:
    won = r.name(raw.get("won", "won"), r.key(where, "won"), "the name of the won stage") or "won"
    lost = r.name(raw.get("lost", "lost"), r.key(where, "lost"), "the name of the lost stage") or "lost"
    if won == lost:
        r.add(r.key(where, "lost"), f"'{lost}' is also the won stage")
    for key, name in (("won", won), ("lost", lost)):
        if name in stages:
            r.add(r.key(where, key), f"'{name}' is a closed stage and must not be listed in 'stages'")
    return won, lost


def _parse_pipelines(r: Reader, raw: Any) -> tuple[PipelineSpec, ...]:
    """``pipelines: {name: {stages, won, lost}}``; stage names two pipelines share are qualified in the model."""
    if raw is None or raw == {}:
        return ()
    if not isinstance(raw, Mapping):
        r.add("pipelines", f"expected a mapping pipeline -> {{stages, won, lost}}, got {kind(raw)}")
        return ()
    specs = []
    for name, body in raw.items():
        key = f"pipelines.{name}"
        pr = Reader(r.problems, "", r.base_dir)
        d = pr.section(body, key, ("stages", "won", "lost"))
        if "stages" not in d:
            r.add(f"{key}.stages", "required (the pipeline's ordered open stages)")
        stages = pr.names(d.get("stages"), f"{key}.stages")
        won, lost = _closed_names(pr, d, key, stages)
        specs.append(PipelineSpec(str(name), stages, won, lost))
    count: dict[str, int] = {}
    for s in specs:
        for st in s.stages:
            count[st] = count.get(st, 0) + 1
    return tuple(dataclasses.replace(s, model_stages=tuple(st if count[st] == 1 else f"{st} ({s.name})"
                                                           for st in s.stages)) for s in specs)


def _stages(r: Reader, top: dict[str, Any], data: DataConfig | None,
            pipelines: tuple[PipelineSpec, ...]) -> tuple[tuple[str, ...], str, str]:
    """The model's open stages and closed-stage names (with pipelines: every pipeline's, in order)."""
    if pipelines:
        if "stages" in top:
            r.add("stages", "with 'pipelines', the stages are listed per pipeline (pipelines.NAME.stages)")
        won, lost = _closed_names(r, top, "", ())
        return tuple(st for p in pipelines for st in p.model_stages), won, lost
    has_history = data is not None and (data.stage_history is not None or data.format == "hubspot")
    if "stages" in top:
        stages = r.names(top["stages"], "stages")
    elif has_history:
        source = "data.stage_history" if data is not None and data.stage_history else f"data.format {data.format}"
        r.add("stages", f"required with {source} (the ordered open stages)")
        stages = ()
    else:
        stages = ("open",)
    won, lost = _closed_names(r, top, "", stages)
    return stages, won, lost


def parse_config(raw: Any, base_dir: Path, path: Path | None = None, text: str = "") -> Config:
    """Validate a parsed YAML document. Raises ConfigError listing every problem."""
    p = Problems(ConfigError)
    r = Reader(p, "", base_dir)
    if raw is None:
        raise ConfigError(f"{path or 'config'}: the config is empty")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping of keys at the top, got {kind(raw)}")
    top = r.section(raw, "", TOP_KEYS)
    if "data" not in top:
        r.add("data", "required (where the deals table is)")
    data = parse_data(r, top.get("data"))
    pipelines = _parse_pipelines(r, top.get("pipelines"))
    stages, won, lost = _stages(r, top, data, pipelines)
    segment_by = r.names(top.get("segment_by"), "segment_by", non_empty=False)
    report_by = r.names(top.get("report_by"), "report_by", non_empty=False)
    if pipelines:  # the pipeline is a model segment and a reporting group
        segment_by = (PIPELINE_ATTR,) + tuple(s for s in segment_by if s != PIPELINE_ATTR)
        report_by = (PIPELINE_ATTR,) + tuple(s for s in report_by if s != PIPELINE_ATTR)
    forecast = _parse_forecast(r, top.get("forecast"))
    fit = _parse_fit(r, top.get("fit"))
    engine = parse_engine(r, top.get("engine"))
    calendar = _parse_calendar(r, top.get("calendar"))
    scenarios = _parse_scenarios(r, top.get("scenarios"))
    p.raise_if_any()
    assert data is not None
    return Config(data=data, stages=stages, won=won, lost=lost, segment_by=segment_by, report_by=report_by,
                  pipelines=pipelines, forecast=forecast, fit=fit, engine=engine, calendar=calendar, scenarios=scenarios, path=path,
                  sha256=hashlib.sha256(text.encode()).hexdigest())


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file (safe loading only)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where}: not valid YAML: {problem}") from None
    return parse_config(raw, path.resolve().parent, path=path, text=text)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
