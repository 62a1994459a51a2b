"""Keep numba's on-disk cache honest about what compiled code reads from other modules.

numba's cache (``njit(cache=True)``) is keyed to the source of the file that defines a function,
not to the modules it reads constants from: after such a module changes (a limit in
``models.features``, the order of its feature names), the compiled functions would be loaded from
the cache with the old values, silently. ``forget_when_changed`` keeps a fingerprint of those
modules' sources beside the cache and, when it differs, empties the functions' cache indexes, so
that their first call compiles afresh. It runs when the module has been imported, before any call
loads compiled code.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from numba.core.registry import CPUDispatcher


def forget_when_changed(namespace: dict[str, Any], *read_from: ModuleType) -> bool:
    """Empty the cache of the compiled functions in ``namespace`` (a module's ``globals()``) when
    the sources of ``read_from`` changed since they were cached; True if it did.

    Best effort: where the cache folder cannot be written, numba caches elsewhere or not at all.
    """
    functions = [value for value in namespace.values()
                 if isinstance(value, CPUDispatcher) and value._cache.cache_path]  # numba's own handle
    if not functions:
        return False
    fingerprint = _fingerprint(read_from)
    marker = Path(functions[0]._cache.cache_path) / f"{namespace['__name__']}.read-from"
    try:
        if marker.read_text() == fingerprint:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    try:
        for function in functions:
            function._cache.flush()
        written = marker.with_name(f"{marker.name}.{os.getpid()}")
        written.write_text(fingerprint)
        os.replace(written, marker)  # whole or not at all, with other processes importing at once
    except OSError:
        return False
    return True


def _fingerprint(modules: tuple[ModuleType, ...]) -> str:
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()
