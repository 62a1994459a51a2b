"""numba's cache must not serve compiled code built with another module's old constants."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import models.features
import models.kernel
import models.session

COMPILED = """
    from numba import njit
    from models.compiled_cache import forget_when_changed
    from pkg import limits
    from pkg.limits import LIMIT

    @njit(cache=True)
    def limit():
        return LIMIT

    @njit(cache=True, inline="always")
    def doubled_limit():
        return 2 * LIMIT

    @njit(cache=True)
    def both():
        return limit(), doubled_limit()

    forgot = forget_when_changed(globals(), limits)
"""


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A package whose compiled module reads a constant from another module."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "limits.py").write_text("LIMIT = 5.0\n")
    (package / "compiled.py").write_text(textwrap.dedent(COMPILED))
    return package


def run(package: Path, **env: str) -> str:
    """The compiled functions' results in a fresh process, and whether the cache was emptied."""
    repository = Path(models.kernel.__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": f"{package.parent}{os.pathsep}{repository}", **env}
    code = "from pkg.compiled import both, forgot; print(*both(), forgot)"
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("cache_dir", [None, "numba-cache"], ids=["beside the module", "NUMBA_CACHE_DIR"])
def test_a_changed_constant_reaches_cached_compiled_code(package: Path, cache_dir: str | None):
    env = {"NUMBA_CACHE_DIR": str(package.parent / cache_dir)} if cache_dir else {}
    assert run(package, **env) == "5.0 10.0 True"
    assert run(package, **env) == "5.0 10.0 False"  # from the cache, which is still right
    (package / "limits.py").write_text("LIMIT = 6.0\n")
    assert run(package, **env) == "6.0 12.0 True"  # the old code served 5.0 10.0 here
    assert run(package, **env) == "6.0 12.0 False"


def test_the_kernel_keeps_the_fingerprint_of_what_it_reads_beside_its_cache():
    digest = hashlib.sha256()
    for module in (models.features, models.session):
        digest.update(Path(module.__file__).read_bytes())
    cache = Path(models.kernel.score_run._cache.cache_path)
    assert (cache / "models.kernel.read-from").read_text() == digest.hexdigest()
