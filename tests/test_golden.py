"""Golden outputs: forecast, compare, plan, funnel and a short backtest on the bundled sample and on a
generated dataset, fixed seeds, their JSON outputs stored under tests/golden/.

A refactor must leave every figure bit-identical (floats are compared exactly: JSON keeps the shortest
repr that round-trips). Keys added later are allowed; a key or value that changes is not. When an issue
changes the numbers on purpose, regenerate in that commit and say why:

    FORECASTER_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from forecaster.cli import main
from tests.conftest import REPO

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("FORECASTER_REGEN_GOLDEN") == "1"
VOLATILE = {"timing", "elapsed_s"}  # wall-clock figures


def _strip(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def table_digest(path: Path) -> dict[str, Any]:
    """Rows, columns and a digest of every value (exact: floats by repr) of a Parquet file."""
    t = pq.read_table(path)
    cols = {name: hashlib.sha256(json.dumps(t[name].to_pylist(), default=str).encode()).hexdigest()
            for name in t.column_names}
    return {"rows": t.num_rows, "columns": cols}


def assert_matches(got: Any, want: Any, where: str = "") -> None:
    """Every key of ``want`` is in ``got`` with the same value (new keys in ``got`` are allowed)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: expected a mapping, got {got!r}"
        for k, v in want.items():
            assert k in got, f"{where}.{k}: missing"
            assert_matches(got[k], v, f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (a, b) in enumerate(zip(got, want)):
            assert_matches(a, b, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def check(name: str, got: Any) -> None:
    got = _strip(got)
    path = GOLDEN / f"{name}.json"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        return
    assert path.is_file(), f"{path} missing: regenerate with FORECASTER_REGEN_GOLDEN=1"
    assert_matches(got, json.loads(path.read_text()), name)


def run_json(runner, args: list[str]) -> Any:
    r = runner.invoke(main, [*args, "--format", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    from forecaster.cli import main as cli_main
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("golden_crm")
    r = CliRunner().invoke(cli_main, ["generate", str(out), "--seed", "5", "--start", "2023-01-01",
                                      "--end", "2024-12-31", "--scale", "0.4"])
    assert r.exit_code == 0, r.output
    return out / "forecaster.yaml"


CASES = {
    "sample": {"config": REPO / "configs" / "scenarios.yaml", "as_of": "2025-07-01", "backtest": ("2025-03-01", "2025-05-01"),
               "target": "4500000"},
    "generated": {"config": None, "as_of": "2024-10-01", "backtest": ("2024-07-01", "2024-09-01"), "target": "3500000"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_are_unchanged(runner, tmp_path, generated, case):
    c = CASES[case]
    config = str(c["config"] or generated)
    out = tmp_path / "out"
    summary = run_json(runner, ["forecast", config, "--trials", "1500", "--seed", "7", "--as-of", c["as_of"],
                                "-o", str(out)])
    check(f"{case}_forecast", {"summary": summary,
                               "trials": table_digest(out / "trials.parquet"),
                               "deals": table_digest(out / "deals.parquet")})
    check(f"{case}_funnel", {"all": run_json(runner, ["funnel", config, "--as-of", c["as_of"]]),
                             "pro": run_json(runner, ["funnel", config, "--as-of", c["as_of"],
                                                      "--segment", "product=Pro"])})
    scen = str(REPO / "configs" / "scenarios.yaml")
    if case == "sample":
        cmp_out = tmp_path / "cmp"
        compare = run_json(runner, ["compare", scen, "--trials", "800", "-o", str(cmp_out)])
        check(f"{case}_compare", {"compare": compare, "trials": table_digest(cmp_out / "compare_trials.parquet")})
    for lever, stage in (("new_deals", None), ("conversion", "proposal"), ("duration", None)):
        args = ["plan", config, "--target", c["target"], "--lever", lever, "--trials", "300"]
        if stage:
            args += ["--stage", stage]
        check(f"{case}_plan_{lever}", run_json(runner, args))
    frm, to = c["backtest"]
    bt_out = tmp_path / "bt"
    bt = run_json(runner, ["backtest", config, "--from", frm, "--to", to, "--every", "month", "--window", "month",
                           "--trials", "300", "-o", str(bt_out)])
    check(f"{case}_backtest", {"backtest": bt, "rows": table_digest(bt_out / "backtest.parquet")})
