"""File output shared by every layer: atomic writes (temp file beside the target, then rename, so no
reader sees half a file) and the one JSON serialisation of results and models."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np


def write_with(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write bytes or UTF-8 text atomically."""
    raw = data.encode("utf-8") if isinstance(data, str) else data

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(raw)

    return write_with(path, write)


def to_jsonable(x: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays as Python numbers and lists, NaN and inf as null,
    paths as text, dates as ISO text."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "isoformat"):
        return x.isoformat()
    return x


def dumps(obj: Any) -> str:
    """Indented JSON text of ``obj`` (see ``to_jsonable``)."""
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False)
