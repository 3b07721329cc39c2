"""The layout keeps its shape: imports only go down the flow, modules and functions stay readable, and
the public API is what the README promises (docs/architecture.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

PKG = REPO / "src" / "forecaster"

# The flow, as ranks: a module may import modules of a lower rank, and modules of its own subpackage.
# report and analysis share a rank but are siblings: neither imports the other (rendering computes
# nothing; analysis renders nothing). crm and synth are siblings too.
RANKS = {
    "_version": 0, "errors": 0, "calendar": 0, "files": 0, "numeric": 0,
    "config": 1,
    "crm": 2, "synth": 2,
    "model": 3,
    "sim": 4,
    "analysis": 5, "report": 5,
    "api": 6,
    "cli": 7, "__init__": 7, "__main__": 8,
}
# Units that must never be imported by some others (besides the ranks).
FORBIDDEN = {("crm", "synth"), ("synth", "crm"), ("analysis", "report"), ("report", "analysis")}
MAX_MODULE_LINES = 520
MAX_FUNCTION_LINES = 125
# Where a module or function is longer, its docstring gives the measured reason (see the module).
LONG_MODULES = {"sim/kernels/walk.py"}
LONG_FUNCTIONS = {("sim/kernels/walk.py", "unit_nb")}


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py"))


def unit_of(path: Path) -> str:
    """The top-level unit (subpackage or module) a file belongs to."""
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_units(path: Path) -> list[tuple[int, str]]:
    """(line, unit) of every forecaster import in a file, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                skip.add(id(child))
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "forecaster" and len(parts) > 1:
                out.append((node.lineno, parts[1]))
    return out


def test_imports_only_go_down_the_flow():
    bad = []
    for path in modules():
        me = unit_of(path)
        assert me in RANKS, f"{path}: add its unit '{me}' to RANKS (and docs/architecture.md)"
        for line, other in imported_units(path):
            if other == me or other not in RANKS:
                continue  # its own subpackage, or a name that is not a unit (e.g. __version__ via _version)
            rel = path.relative_to(PKG)
            if RANKS[other] >= RANKS[me] or (me, other) in FORBIDDEN:
                bad.append(f"{rel}:{line}: {me} imports {other}")
    assert not bad, "imports against the flow:\n" + "\n".join(bad)


def test_the_rule_catches_a_planted_violation(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("from forecaster.sim import simulate\nimport forecaster.cli\n")
    units = [u for _, u in imported_units(planted)]
    assert units == ["sim", "sim", "cli"]
    assert RANKS["sim"] >= RANKS["model"] and RANKS["cli"] > RANKS["analysis"]


def test_no_module_or_function_is_too_long_without_its_reason():
    long_modules, long_functions = [], []
    for path in modules():
        rel = str(path.relative_to(PKG))
        text = path.read_text()
        n = len(text.splitlines())
        if n > MAX_MODULE_LINES and rel not in LONG_MODULES:
            long_modules.append(f"{rel}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and (rel, node.name) not in LONG_FUNCTIONS:
                    long_functions.append(f"{rel}:{node.lineno} {node.name}: {length} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions
    for rel in LONG_MODULES:
        doc = ast.get_docstring(ast.parse((PKG / rel).read_text())) or ""
        assert "Why this module is long" in doc and re.search(r"\d+x", doc), f"{rel}: state the measured reason"


def test_no_import_time_side_effects_of_our_own():
    """Importing the package writes nothing of forecaster's: no stamp files, no numba private cache calls."""
    for path in modules():
        text = path.read_text()
        assert "_cache.flush" not in text and "sources.sha256" not in text, path


PUBLIC = ["load", "fit", "forecast", "compare", "plan", "backtest", "funnel", "funnel_change", "html_report",
          "PipelineModel", "Config", "load_config", "ForecasterError", "ConfigError", "DataError", "ModelError"]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_api_is_importable_and_documented(name):
    import forecaster

    obj = getattr(forecaster, name)
    doc = obj.__doc__ or ""
    assert len(doc.strip()) > 20, f"forecaster.{name} needs a docstring saying what it takes and returns"
    assert name in forecaster.__all__


def readme_python_example() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"## Use it from Python\n.*?```python\n(.*?)```", text, re.S)
    assert m, "README.md needs a '## Use it from Python' section with a python code block"
    return m.group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code = readme_python_example().replace("out/", str(tmp_path) + "/")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
