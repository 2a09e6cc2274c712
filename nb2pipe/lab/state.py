"""What one server holds for its handlers: its settings, its worker runs and the stores it knows."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.lab.errors import ApiError, api_error
from nb2pipe.lab.paths import resolve_notebook, shown_path
from nb2pipe.lab.workers import RunManager, WorkerRun
from nb2pipe.model.records import RunRecord, is_run_id


@dataclass
class Settings:
    root_dir: str
    kfp_host: str = ""
    kfp_token_env: str = "KF_PIPELINES_TOKEN"
    kfp_image: str | None = None
    kfp_allow_local_image: bool = False
    executor: str = "local"
    workers: int = 0
    store: str | None = None  # one store for every notebook; None: .nb2pipe/ beside each (as the CLI)
    allow_hidden: bool = False


@dataclass
class Notebook:
    full: Path  # the real path, inside the root
    shown: str  # relative to the root, as the browser names it
    store: Path


@dataclass
class LabState:
    settings: Settings
    manager: RunManager
    roots: set[Path] = field(default_factory=set)  # every store a request has led to
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="nb2pipe-lab"))

    def notebook(self, path: object) -> Notebook:
        from nb2pipe.store.workspace import store_root

        full = resolve_notebook(self.settings.root_dir, path, allow_hidden=self.settings.allow_hidden)
        store = self.settings.store
        if store and not os.path.isabs(store):
            store = os.path.join(self.settings.root_dir, store)
        root = store_root(full, store).resolve()
        self.roots.add(root)
        return Notebook(full, shown_path(self.settings.root_dir, full) or str(path), root)

    async def off_loop(self, fn, *args):
        """`fn(*args)` in a thread, so the event loop never waits on a notebook, a store or kfp;
        what it raises comes back as the ApiError it means."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        except ApiError:
            raise
        except Exception as exc:
            raise api_error(exc) from exc

    async def find_run(self, run_id: str) -> tuple[Path, RunRecord | None, WorkerRun | None]:
        """The run's store, its record (None while a worker has not recorded it yet) and its worker."""
        from nb2pipe.lab import views

        if not is_run_id(run_id):
            raise ApiError(404, f"no run {run_id!r} (run ids look like 20261201-120000-1a2b3c)")
        worker = self.manager.runs.get(run_id)
        roots = [worker.request.store] if worker else sorted(self.roots)
        for root in roots:
            record = await self.off_loop(views.run_record, root, run_id)
            if record is not None or worker is not None:
                return root, record, worker
        raise ApiError(404, f"no run {run_id} in the stores of the notebooks this server has opened "
                            "(open its notebook's pipeline first)")
