"""Where ``@persist_cache`` keeps its entries when no path is given."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ("default_cache_dir",)


def default_cache_dir() -> Path:
    """The default store directory, created private to the user (0o700).

    ``$PERSISTDICT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/persistdict``, else
    ``~/.cache/persistdict``. Read at each call, so a test or a notebook can set
    the variable before the first memoized call.
    """
    override = os.environ.get("PERSISTDICT_CACHE_DIR")
    if override:
        path = Path(override).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        # The XDG spec says to ignore a relative XDG_CACHE_HOME.
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
        path = base / "persistdict"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
