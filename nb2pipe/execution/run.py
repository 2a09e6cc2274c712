"""The run handle: a pipeline run going on in a thread of this process.

`nb2pipe.start()` checks everything it can up front (the notebook, the parameters, the steps
asked for), raising before anything runs, then returns a :class:`Run` at once; the run itself
goes on in its own thread. Any number of runs can go on in one process: each has its own
scheduler, executor (its own kernels or containers) and event bus, so ``cancel()`` ends one
without touching the others. Signals are a face's business (the CLI turns Ctrl-C into
``run.cancel(signal.SIGINT)``); nothing here installs a handler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from nb2pipe.errors import Nb2pipeError
from nb2pipe.execution.events import EventBus
from nb2pipe.execution.scheduler import Scheduler
from nb2pipe.model.records import RunRecord, RunStatus


class RunTimeout(Nb2pipeError, TimeoutError):
    """`Run.wait(timeout)` returned before the run ended."""


class Run:
    """A run in progress (or finished): its id, its events, cancel and wait."""

    def __init__(self, scheduler: Scheduler, bus: EventBus, on_exit: Callable[[], None] = lambda: None):
        self._scheduler = scheduler
        self._bus = bus
        self._on_exit = on_exit
        self._done = threading.Event()
        self._result: RunRecord | None = None
        self._error: BaseException | None = None
        self.id = scheduler.record.id
        self.notebook = scheduler.record.notebook
        self._thread = threading.Thread(target=self._main, name=f"nb2pipe-run-{self.id}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<nb2pipe.Run {self.id} {self.status}>"

    def _main(self) -> None:
        try:
            try:
                self._scheduler.executor.prepare()
            except BaseException:
                self._scheduler.executor.close()
                raise
            self._result = self._scheduler.run()
        except BaseException as exc:  # an Nb2pipeError from prepare (bad image, no kernel) or a bug
            self._error = exc
            if not self._bus.closed:
                message = str(exc) if isinstance(exc, Nb2pipeError) else f"{type(exc).__name__}: {exc}"
                code = int(exc.exit_code) if isinstance(exc, Nb2pipeError) else 1
                self._bus.emit({"type": "run", "status": "failed", "exit_code": code, "reason": "error",
                                "error": message, "duration": None, "metrics": []})
        finally:
            self._done.set()
            self._on_exit()

    # --- watching --------------------------------------------------------------------------
    def events(self, timeout: float | None = None) -> Iterator[dict]:
        """Every event of the run from its start, live, ending with the final ``run`` event."""
        return self._bus.iterate(timeout=timeout)

    def subscribe(self, callback: Callable[[dict], None], replay: bool = True) -> Callable[[], None]:
        """Call `callback(event)` for each event (in the run's threads; keep it quick).
        Returns a function that unsubscribes."""
        return self._bus.subscribe(callback, replay=replay)

    # --- state -----------------------------------------------------------------------------
    @property
    def reused(self) -> dict[str, dict]:
        """With `steps=`: upstream step -> {"run", "parameters"} of the stored outputs it reuses."""
        return {step: dict(r) for step, r in self._scheduler.reused.items()}

    @property
    def status(self) -> str:
        if self._result is not None:
            return self._result.status.value
        if self._error is not None:
            return RunStatus.FAILED.value
        return RunStatus.RUNNING.value

    def done(self) -> bool:
        return self._done.is_set()

    def record(self) -> RunRecord:
        """A snapshot of the run's record as it stands now (a copy: later changes don't show)."""
        return RunRecord.from_dict(self._scheduler.record.to_dict())

    # --- control ---------------------------------------------------------------------------
    def cancel(self, signum: int = 0) -> None:
        """Cancel this run only: no new step starts, its kernels and containers are killed, its
        record says cancelled. `signum` (SIGINT, SIGTERM) only chooses the exit code."""
        self._scheduler.cancel(signum)

    def wait(self, timeout: float | None = None) -> RunRecord:
        """Block until the run ends and return its RunRecord.

        Raises RunTimeout when `timeout` seconds pass first, and the Nb2pipeError that stopped
        the run before it started (e.g. a missing image), if any.
        """
        if not self._done.wait(timeout):
            raise RunTimeout(f"run {self.id} is still {self.status} after {timeout} s")
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
