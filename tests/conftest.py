"""Shared fixtures: small CRM exports written as files, and a CLI runner."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]

DEALS = """deal_id,created_at,amount,status,closed_at,product
D1,2024-01-02,1000,won,2024-02-10,A
D2,2024-01-05,2000,lost,2024-03-01,B
D3,2024-02-01,500,open,,A
D4,2024-02-11,700,open,,B
"""
HISTORY = """deal_id,stage,entered_at
D1,qual,2024-01-02
D1,proposal,2024-01-20
D1,won,2024-02-10
D2,qual,2024-01-05
D2,lost,2024-03-01
D3,qual,2024-02-01
D3,proposal,2024-02-15
D4,qual,2024-02-11
"""
CONFIG = """data:
  deals: deals.csv
  stage_history: history.csv
stages: [qual, proposal]
won: won
lost: lost
segment_by: [product]
"""


class Crm:
    """Writes a small CRM export and config into a folder; tests edit the texts to break them."""

    def __init__(self, root: Path):
        self.root = root

    def write(self, deals: str = DEALS, history: str | None = HISTORY, config: str = CONFIG) -> Path:
        (self.root / "deals.csv").write_text(deals)
        if history is not None:
            (self.root / "history.csv").write_text(history)
        path = self.root / "forecaster.yaml"
        path.write_text(config)
        return path


@pytest.fixture
def crm(tmp_path: Path) -> Crm:
    return Crm(tmp_path)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name} not found at {path} (../shared/data is absent)")
    return path


def config_data(config: Path) -> None:
    """Skip when a config reads a real dataset from ../shared/data that is absent."""
    for name in sorted(set(re.findall(r"shared/data/([A-Za-z0-9_]+)", Path(config).read_text()))):
        shared_data(name)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return REPO / "src" / "forecaster" / "sample"


os.environ.setdefault("COLUMNS", "100")
