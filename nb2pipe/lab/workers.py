"""Runs the server started, each in a worker process: `python -m nb2pipe run NB --events`.

A worker is the CLI itself, so a run from Lab is the same run as one from a terminal: it writes
the same store (`nb2pipe runs list` sees it), handles SIGINT as a cancel (its steps stop, their
partial notebooks are kept, the record says cancelled) and prints its events as JSON lines, which
the server reads on its event loop without ever waiting for them and republishes on
jupyter_server's event bus. Nothing of a run lives in the server's own process: a worker that
dies takes only its run with it, and the store's record then reads `crashed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.execution.events import TERMINAL_RUN_STATUSES
from nb2pipe.model.records import new_run_id

logger = logging.getLogger("nb2pipe.lab")

# A step's printed output travels in one JSON line per IOPub message: allow long ones.
LINE_LIMIT = 64 * 1024 * 1024
CANCEL_GRACE = 20.0  # seconds a worker has to stop its steps after SIGINT before SIGTERM
KILL_GRACE = 5.0  # then SIGKILL
STDERR_TAIL = 40  # lines of a worker's stderr kept to explain a worker that died


@dataclass
class RunRequest:
    notebook: Path  # real path, inside the server's root
    shown: str  # the notebook as the browser names it
    store: Path
    parameters: dict = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    from_step: str | None = None
    cache: bool = True
    executor: str = "local"
    workers: int | None = None


@dataclass
class WorkerRun:
    """A run in a worker process: what the server knows of it between the worker's events."""

    id: str
    request: RunRequest
    process: asyncio.subprocess.Process | None = None
    status: str = "starting"
    steps: dict[str, str] = field(default_factory=dict)
    current: dict[str, dict] = field(default_factory=dict)  # step -> {cell_index, cells, source_cell}
    started: float = field(default_factory=time.time)
    ended: float | None = None
    exit_code: int | None = None
    error: str | None = None
    cancel_requested: bool = False
    stderr: deque = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))
    done: asyncio.Event = field(default_factory=asyncio.Event)
    version: int = 0  # counts the worker's events: the store's record can only have changed since

    @property
    def live(self) -> bool:
        """Still going: neither a final status from the worker nor the worker gone."""
        return self.alive and self.status not in TERMINAL_RUN_STATUSES

    @property
    def alive(self) -> bool:
        """The worker process has not been reaped yet (it may be finishing a run that ended)."""
        return not self.done.is_set()

    def summary(self) -> dict:
        """What GET answers for a run whose record is not in the store yet (or never will be)."""
        duration = (self.ended or time.time()) - self.started
        return {"id": self.id, "status": self.status, "notebook": self.request.shown, "started": self.started,
                "ended": self.ended, "duration": duration, "parameters": dict(self.request.parameters),
                "metrics": [], "note": None, "tags": [], "exit_code": self.exit_code, "reason": self.error,
                "steps": [{"name": name, "status": status, "cached": status == "cached", "duration": None,
                           "attempts": 0, "error": None, "outputs": [], "inputs": []}
                          for name, status in self.steps.items()],
                "live": self.live, "current": dict(self.current)}


Publish = Callable[[WorkerRun, dict], None]


class RunManager:
    """The server's worker runs: start, watch, cancel, and stop them all when the server stops."""

    def __init__(self, publish: Publish, max_live: int = 8):
        self._publish = publish
        self.max_live = max_live
        self.runs: dict[str, WorkerRun] = {}
        self._tasks: set[asyncio.Task] = set()

    def live_runs(self) -> list[WorkerRun]:
        return [r for r in self.runs.values() if r.alive]

    async def start(self, request: RunRequest, step_names: list[str]) -> WorkerRun:
        if len(self.live_runs()) >= self.max_live:
            from nb2pipe.lab.errors import ApiError

            raise ApiError(409, f"{self.max_live} runs are already going on in this server (c.Nb2pipe.max_live_runs)"
                                "; cancel one or wait")
        run = WorkerRun(new_run_id(), request, steps=dict.fromkeys(step_names, "queued"))
        run.process = await asyncio.create_subprocess_exec(
            *self._argv(run), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=str(request.notebook.parent), limit=LINE_LIMIT,
            start_new_session=True,  # a Ctrl-C at the server's terminal is the server's, not the runs'
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.runs[run.id] = run
        task = asyncio.get_running_loop().create_task(self._watch(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    @staticmethod
    def _argv(run: WorkerRun) -> list[str]:
        r = run.request
        argv = [sys.executable, "-m", "nb2pipe", "run", str(r.notebook), "--events", "--run-id", run.id,
                "--store", str(r.store), "--executor", r.executor]
        if r.parameters:
            argv += ["--parameters-yaml", json.dumps(r.parameters, allow_nan=False)]  # JSON is YAML: typed
        for step in r.steps:
            argv += ["--step", step]
        if r.from_step:
            argv += ["--from", r.from_step]
        if not r.cache:
            argv.append("--no-cache")
        if r.workers:
            argv += ["--workers", str(r.workers)]
        return argv  # an argument vector, never a shell string

    async def _watch(self, run: WorkerRun) -> None:
        proc = run.process
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.get_running_loop().create_task(self._read_stderr(run))
        try:
            while True:
                try:
                    line = await proc.stdout.readline()
                except (ValueError, asyncio.LimitOverrunError):  # a line over LINE_LIMIT: skip it
                    continue
                if not line:
                    break
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a library printing to stdout in the worker: not an event
                if isinstance(event, dict):
                    self._on_event(run, event)
            run.exit_code = await proc.wait()
            await stderr_task
        finally:
            if run.status not in TERMINAL_RUN_STATUSES:  # the worker ended without saying how
                run.status = "cancelled" if run.cancel_requested else "failed"
                tail = "; ".join(line for line in run.stderr if line.strip())[-2000:]
                run.error = run.error or (f"the run's worker process exited with code {run.exit_code}"
                                          + (f": {tail}" if tail else ""))
                for step, status in run.steps.items():
                    if status in ("queued", "running"):
                        run.steps[step] = "cancelled" if run.cancel_requested else "failed"
                self._publish(run, {"type": "run", "status": run.status, "message": run.error})
            run.ended = run.ended or time.time()
            run.current.clear()
            run.version += 1
            run.done.set()

    async def _read_stderr(self, run: WorkerRun) -> None:
        assert run.process is not None and run.process.stderr is not None
        while True:
            try:
                line = await run.process.stderr.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not line:
                return
            run.stderr.append(line.decode("utf-8", "replace").rstrip())

    def _on_event(self, run: WorkerRun, event: dict) -> None:
        kind = event.get("type")
        if kind != "output":
            run.version += 1
        if kind == "run":
            status = event.get("status")
            if status == "running" and isinstance(event.get("steps"), list):
                run.steps = {name: run.steps.get(name, "queued") for name in event["steps"] if isinstance(name, str)}
            if isinstance(status, str):
                run.status = status
            if status in TERMINAL_RUN_STATUSES:
                run.ended = time.time()
                run.error = event.get("error") or event.get("reason")
                run.current.clear()
            self._publish(run, {"type": "run", "status": status, "duration": event.get("duration"),
                                "message": event.get("error")})
        elif kind == "step" and isinstance(event.get("step"), str):
            step, status = event["step"], event.get("status")
            if isinstance(status, str):
                run.steps[step] = status
            if status != "running":
                run.current.pop(step, None)
            error = event.get("error") if isinstance(event.get("error"), dict) else None
            self._publish(run, {"type": "step", "step": step, "status": status, "attempt": event.get("attempt"),
                                "duration": event.get("duration"), "cached": event.get("cached"),
                                "message": error.get("message") if error else None,
                                "cell_index": error.get("cell_index") if error else None})
        elif kind == "cell" and isinstance(event.get("step"), str):
            where = {k: event.get(k) for k in ("cell_index", "cells", "source_cell")}
            run.current[event["step"]] = where
            self._publish(run, {"type": "cell", "step": event["step"], "attempt": event.get("attempt"), **where})
        # output events stay in the worker's step logs (GET .../log)

    def cancel(self, run: WorkerRun) -> None:
        """Ask the worker to stop its run (SIGINT, as Ctrl-C); escalate if it does not."""
        if not run.alive or run.process is None:
            return
        if not run.cancel_requested:
            run.cancel_requested = True
            run.version += 1
            self._signal(run, signal.SIGINT)
            task = asyncio.get_running_loop().create_task(self._escalate(run))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _escalate(self, run: WorkerRun, grace: float = CANCEL_GRACE) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_GRACE)):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(run.done.wait(), wait)
                return
            logger.warning("nb2pipe run %s did not stop; sending %s", run.id, sig.name)
            self._signal(run, sig)

    @staticmethod
    def _signal(run: WorkerRun, sig: int) -> None:
        assert run.process is not None
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:
                os.killpg(run.process.pid, sig)  # the worker and whatever it started in its session
            else:
                run.process.send_signal(sig)

    async def shutdown(self, grace: float = 10.0) -> None:
        """The server is stopping: cancel every live run and wait (briefly) for the workers."""
        live = self.live_runs()
        for run in live:
            self.cancel(run)
        if live:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in live)), grace)
        for run in self.live_runs():
            self._signal(run, signal.SIGKILL)
