"""Reading one YAML section with every problem named by its dotted key, and the YAML loader itself."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from forecaster.calendar import as_date
from forecaster.errors import Problems, suggest


class Reader:
    """Reads one mapping section, recording problems under dotted key names."""

    def __init__(self, problems: Problems, where: str, base_dir: Path):
        self.problems = problems
        self.where = where
        self.base_dir = base_dir

    def key(self, *parts: str) -> str:
        return ".".join(p for p in (self.where, *parts) if p)

    def add(self, key: str, message: str) -> None:
        self.problems.add(f"config key '{key}': {message}")

    def section(self, value: Any, name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(self.key(name), f"expected a mapping, got {kind(value)}")
            return {}
        for k in value:
            if k not in allowed:
                self.add(self.key(name, str(k)), f"unknown key{suggest(k, allowed)}")
        return dict(value)

    def typed(self, value: Any, key: str, kinds: tuple[type, ...], what: str) -> Any:
        if value is None:
            return None
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.add(key, f"expected {what}, got {value!r}")
            return None
        return value

    def name(self, value: Any, key: str, what: str = "a column name") -> str | None:
        """A non-empty name (text or a number written bare in YAML)."""
        if value is None:
            return None
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
        self.add(key, f"expected {what}, got {value!r}")
        return None

    def path(self, value: Any, key: str) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(key, f"expected a file path, got {value!r}")
            return None
        p = Path(value).expanduser()
        if not p.is_absolute():
            p = (self.base_dir / p).resolve()
        if not p.exists():
            self.add(key, f"file not found: {p}")
        return p

    def date(self, value: Any, key: str) -> dt.date | None:
        if value is None:
            return None
        parsed = as_date(value)
        if parsed is not None:
            return parsed
        self.add(key, f"expected a date YYYY-MM-DD, got {value!r}")
        return None

    def names(self, value: Any, key: str, *, unique: bool = True, non_empty: bool = True) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            self.add(key, f"expected a list of names, got {value!r}")
            return ()
        out = []
        for i, v in enumerate(value):
            if not isinstance(v, (str, int)) or isinstance(v, bool) or str(v).strip() == "":
                self.add(f"{key}[{i}]", f"expected a name, got {v!r}")
                continue
            out.append(str(v).strip())
        if non_empty and not out and not self.problems:
            self.add(key, "must not be empty")
        if unique:
            seen: set[str] = set()
            for v in out:
                if v in seen:
                    self.add(key, f"'{v}' is listed twice; names must be unique")
                seen.add(v)
        return tuple(out)

    def values(self, value: Any, key: str) -> tuple[str, ...]:
        """One value or a list of values (text), e.g. the values a filter keeps."""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        return self.names(value, key, unique=False)


def kind(v: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}.get(
        type(v), type(v).__name__
    )


class Loader(yaml.SafeLoader):
    """Safe loading with YAML 1.2 scalars: dates stay text (validated here with a clear message)
    and only true/false are booleans (YAML 1.1 turns keys like `on` or values like `No` into bools)."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
