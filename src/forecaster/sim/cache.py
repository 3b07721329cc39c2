"""Where numba caches the compiled kernels: a directory keyed on a hash of the kernels' sources.

numba keys a cached function on its own file's timestamp, but the kernels compile functions of other
modules (rng.py, the walk's helpers) into themselves: after an edit of rng.py alone, numba would load
machine code built from the old rng.py. So the kernels' cache lives in
``<user cache dir>/forecaster/numba-<hash of sim/rng.py and sim/kernels/*.py, numba and Python versions>``:
a changed source means a new directory, never a stale load. Where that directory cannot be written (a
read-only home, as on some cluster workers), ``<temp dir>/forecaster-<uid>`` takes its place, so every
process, a Dask worker included, compiles the kernels at most once and then loads them.
``NUMBA_CACHE_DIR``, when the user sets it, is respected (numba's own rule then applies). Nothing is
written at import except what numba itself writes to create its cache directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numba

SIM_DIR = Path(__file__).resolve().parent
# A first run compiles for about this long on the 2-core machines the figures come from (benchmarks/).
COLD_COMPILE_S = 10


def kernel_sources() -> list[Path]:
    """The files whose code the cached kernels contain."""
    return [SIM_DIR / "rng.py", *sorted((SIM_DIR / "kernels").glob("*.py"))]


def source_hash() -> str:
    """12 hex digits over the kernel sources and the numba and Python versions."""
    h = hashlib.sha256(f"{numba.__version__} {sys.version_info[:3]}".encode())
    for path in kernel_sources():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/forecaster`` or ``~/.cache/forecaster``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "forecaster"


def writable(path: Path) -> bool:
    """Whether ``path`` is, or could be created as, a directory this process can write (nothing is
    created: the nearest existing ancestor decides)."""
    for p in (path, *path.parents):
        if p.exists():
            return p.is_dir() and os.access(p, os.W_OK | os.X_OK)
    return False


def cache_dir() -> Path:
    """The directory numba uses for the kernels in this process (module docstring)."""
    if numba.config.CACHE_DIR:
        return Path(numba.config.CACHE_DIR)
    name = f"numba-{source_hash()}"
    preferred = user_cache_root() / name
    if writable(preferred):
        return preferred
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"forecaster-{uid}" / name


KERNEL_CACHE = cache_dir()


@contextlib.contextmanager
def kernel_cache() -> Iterator[Path]:
    """While the kernel modules are imported (numba picks each function's cache locator when it is
    decorated), point numba's cache at ``KERNEL_CACHE``; restore the user's setting afterwards, so that
    other numba code in the process keeps its own cache."""
    previous = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(KERNEL_CACHE)
    try:
        yield KERNEL_CACHE
    finally:
        numba.config.CACHE_DIR = previous


def is_cached(path: Path, qualname: str) -> bool:
    """True when numba's cache directory holds an index for ``qualname`` (it compiled before)."""
    return path.is_dir() and any(path.rglob(f"*{qualname}-*.nbi"))
