"""Error kinds. Every user-facing failure is a ForecasterError carrying one line per problem."""

from __future__ import annotations

import difflib


class ForecasterError(Exception):
    """Base error: ``problems`` holds one human-readable line per problem."""

    exit_code = 2

    def __init__(self, problems: str | list[str], warnings: list[str] | None = None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.warnings = list(warnings or [])
        super().__init__("\n".join(self.problems))


class DataError(ForecasterError):
    """A CRM table is missing, unreadable or breaks the data contract."""


class ConfigError(ForecasterError):
    """The YAML config is malformed, names unknown keys or points at missing files."""


class ModelError(ForecasterError):
    """A fitted model cannot be used (wrong format version, other data, unknown stage)."""


class EngineError(ForecasterError):
    """The simulation engine cannot run: Dask is not installed, the scheduler cannot be reached, or its
    workers cannot run this forecaster."""


class Problems:
    """Collects problems so a check can report all of them at once, then raise."""

    def __init__(self, kind: type[ForecasterError]):
        self.kind = kind
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        if line not in self.lines:  # the same problem found twice (e.g. in every row of a sweep) is one line
            self.lines.append(line)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def raise_if_any(self) -> None:
        if self.lines:
            raise self.kind(self.lines)


def suggest(word: object, options) -> str:
    """' (did you mean 'x'?)' when a close match exists among ``options``, else ''."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
