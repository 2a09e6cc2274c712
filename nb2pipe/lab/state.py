"""What one server holds for its handlers: its settings, its worker runs and the stores it knows."""

from __future__ import annotations

import asyncio
import os
import time
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


# How long a run's answer is reused while nothing has been heard from its worker, and for a run
# that has ended (the CLI may still tag it): polling clients see changes this late at most.
LIVE_REUSE = 0.25
ENDED_REUSE = 2.0


class AnswerCache:
    """Answers to GET runs/{id}, reused while the run cannot have changed.

    Fifty clients polling a live run would otherwise be fifty store reads in threads competing
    with the server's event loop; with this they are one read, and the rest are served from
    memory on the loop. Concurrent misses share one read.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, float, bytes]] = {}
        self._reading: dict[str, asyncio.Future] = {}

    async def get(self, key: str, version: int, live: bool, read) -> bytes:
        entry = self._entries.get(key)
        if entry and entry[0] == version and time.monotonic() - entry[1] < (LIVE_REUSE if live else ENDED_REUSE):
            return entry[2]
        pending = self._reading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # read by the awaiters, if any
        self._reading[key] = future
        try:
            body = await read()
            if len(self._entries) > 1000:
                self._entries.clear()
            self._entries[key] = (version, time.monotonic(), body)
            future.set_result(body)
            return body
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            del self._reading[key]


@dataclass
class LabState:
    settings: Settings
    manager: RunManager
    roots: set[Path] = field(default_factory=set)  # every store a request has led to
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="nb2pipe-lab"))
    answers: AnswerCache = field(default_factory=AnswerCache)

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
