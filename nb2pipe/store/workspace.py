"""The store folder of a notebook: where it is, and its run database, objects and run folders.

Layout under the root: ``runs.db`` (the run store), ``objects/`` (content-addressed artifacts)
and ``runs/RUN/STEP/attempt-N/`` (each attempt's executed notebook ``step.ipynb``, its output
``output.log`` and the outputs it wrote before they moved into the object store).
"""

from __future__ import annotations

import os
from pathlib import Path

STORE_ENV = "NB2PIPE_STORE"
DEFAULT_STORE = ".nb2pipe"
LOG_NAME = "output.log"


def store_root(notebook: str | os.PathLike | None, store: str | os.PathLike | None = None) -> Path:
    """--store, else $NB2PIPE_STORE, else .nb2pipe/ beside the notebook (or in the cwd)."""
    if store:
        return Path(store)
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    base = Path(notebook).resolve().parent if notebook else Path.cwd()
    return base / DEFAULT_STORE


def existing_store(root: str | os.PathLike, fix: str = "run a pipeline first, or pass --store") -> Path:
    """`root` when it holds a run store; else the error every reader gives (nothing is created)."""
    from nb2pipe.errors import UsageError

    root = Path(root)
    if not (root / "runs.db").exists():
        raise UsageError(f"no nb2pipe store at {root}: no runs recorded ({fix})")
    return root


def attempt_dir(root: str | os.PathLike, run_id: str, step: str, attempt: int) -> Path:
    return Path(root) / "runs" / run_id / step / f"attempt-{attempt}"


class Workspace:
    """The store folder: the run database, the object store and per-run folders."""

    def __init__(self, root: str | os.PathLike, reader: bool = False):
        from nb2pipe.store.objects import ObjectStore
        from nb2pipe.store.runs import RunStore

        self.root = Path(root).resolve()  # kernels run in the notebook's folder: paths must be absolute
        self.runs = RunStore(self.root, reader=reader)
        self.objects = ObjectStore(self.root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def attempt_dir(self, run_id: str, step: str, attempt: int) -> Path:
        return attempt_dir(self.root, run_id, step, attempt)

    def publishing(self):
        """The shared collection lock (store/locks.py): held from putting or finding objects to the
        record naming them, so gc never takes what a live run is about to reference."""
        from nb2pipe.store.locks import publishing

        return publishing(self.root)

    def close(self) -> None:
        self.runs.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
