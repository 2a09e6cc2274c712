"""Where a notebook's store lives: --store, else $NB2PIPE_STORE, else .nb2pipe/ beside it."""

from __future__ import annotations

import os
from pathlib import Path

STORE_ENV = "NB2PIPE_STORE"
DEFAULT_STORE = ".nb2pipe"


def store_root(notebook: str | os.PathLike | None, store: str | os.PathLike | None = None) -> Path:
    """--store, else $NB2PIPE_STORE, else .nb2pipe/ beside the notebook (or in the cwd)."""
    if store:
        return Path(store)
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    base = Path(notebook).resolve().parent if notebook else Path.cwd()
    return base / DEFAULT_STORE
