"""Run events: what a run tells the faces watching it, as plain JSON-serializable dicts.

Every event has a ``type``, the run ``id`` and ``time`` (epoch seconds). The schema (also in
README.md, "Run events"):

* ``{"type": "run", "status": "running", "notebook", "steps": [...], "executor", "parameters",
  "reused": {step: {"run", "parameters"}}}`` when the run starts (``reused``: with ``--step``, the
  upstream steps whose stored outputs it takes, from which run, made with which parameters), and
  ``{"type": "run", "status": "succeeded|failed|cancelled", "exit_code", "reason", "duration",
  "metrics": [...]}`` when it ends (always the last event of a run);
* ``{"type": "step", "step", "status", "attempt", "duration", "cached", "error"}`` on every state
  change of a step: ``queued`` (at run start), ``running`` (each attempt), then one of
  ``succeeded``, ``failed``, ``cached``, ``skipped``, ``cancelled``; a ``succeeded`` or ``cached``
  event also has ``metrics``, the ones this step reported (as in the run's end event);
* ``{"type": "cell", "step", "attempt", "cell_index", "cells", "source_cell", "cell_id"}`` when a
  cell of a step starts: ``cell_index`` counts the step's own cells from 1 (``cell 3/7``),
  ``source_cell`` is its 1-based position in the source notebook, ``cell_id`` its id;
* ``{"type": "output", "step", "attempt", "stream": "stdout|stderr", "text"}`` as a step prints
  (each IOPub stream message of its kernel, papermill's ``--log-output``).

An :class:`EventBus` fans events out to subscribers in the order they were emitted and keeps a
history, so a watcher that arrives late (or the iterator of ``Run.events()``) still sees the run
from its start. Output events beyond ``OUTPUT_HISTORY`` are delivered live but not kept: the
step logs in the store hold all of it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

from nb2pipe.model.records import Metric, RunRecord, Status, StepRecord

logger = logging.getLogger("nb2pipe.events")

OUTPUT_HISTORY = 20_000
TERMINAL_RUN_STATUSES = frozenset({"succeeded", "failed", "cancelled", "crashed"})

Subscriber = Callable[[dict], None]


class EventBus:
    """Ordered fan-out of one run's events to any number of subscribers (thread-safe)."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self._lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self._history: list[dict] = []
        self._outputs_kept = 0
        self.closed = False

    def emit(self, event: dict) -> dict:
        """Stamp `event` with the run id and time, keep it and deliver it to every subscriber.

        Subscribers run in the emitting thread, under the bus lock (so every subscriber sees the
        same order); a subscriber that raises is logged and dropped, never breaks the run.
        """
        event = {"type": event["type"], "id": self.run_id, "time": time.time(),
                 **{k: v for k, v in event.items() if k != "type"}}
        with self._lock:
            if event["type"] != "output":
                self._history.append(event)
            elif self._outputs_kept < OUTPUT_HISTORY:
                self._outputs_kept += 1
                self._history.append(event)
            if event["type"] == "run" and event.get("status") in TERMINAL_RUN_STATUSES:
                self.closed = True
            for sub in list(self._subscribers):
                try:
                    sub(event)
                except Exception:  # a watcher's bug must not fail the run
                    logger.exception("run event subscriber %r failed; it was removed", sub)
                    self._subscribers.remove(sub)
        return event

    def subscribe(self, callback: Subscriber, replay: bool = True) -> Callable[[], None]:
        """Call `callback(event)` for every event (first the ones already emitted, when `replay`).

        Returns a function that unsubscribes.
        """
        with self._lock:
            if replay:
                for event in list(self._history):
                    callback(event)
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def iterate(self, timeout: float | None = None) -> Iterator[dict]:
        """Every event from the start of the run to its final ``run`` event, then stop.

        `timeout` bounds the wait for each next event (``queue.Empty`` is not raised: the
        iterator just ends).
        """
        box: queue.SimpleQueue = queue.SimpleQueue()
        unsubscribe = self.subscribe(box.put, replay=True)
        try:
            while True:
                try:
                    event = box.get(timeout=timeout)
                except queue.Empty:
                    return
                yield event
                if event["type"] == "run" and event.get("status") in TERMINAL_RUN_STATUSES:
                    return
        finally:
            unsubscribe()

    def history(self) -> list[dict]:
        with self._lock:
            return list(self._history)


def step_event_status(rec: StepRecord) -> str:
    """A step record's state as events name it: a step stopped by a cancel is ``cancelled``."""
    if rec.status in (Status.FAILED, Status.SKIPPED) and rec.error is not None and rec.error.reason == "cancelled":
        return "cancelled"
    return rec.status.value


def step_event(rec: StepRecord, status: str | None = None, metrics: list[Metric] | None = None) -> dict:
    event = {"type": "step", "step": rec.name, "status": status or step_event_status(rec), "attempt": rec.attempts,
             "duration": rec.duration, "cached": rec.cached,
             "error": rec.error.to_dict() if rec.error is not None else None}
    if metrics is not None:
        event["metrics"] = [m.to_dict() for m in metrics]
    return event


def run_started_event(run: RunRecord, reused: dict[str, dict] | None = None) -> dict:
    return {"type": "run", "status": "running", "notebook": run.notebook, "steps": [s.name for s in run.steps],
            "executor": run.environment.get("executor"), "parameters": dict(run.parameters),
            "reused": {step: dict(r) for step, r in (reused or {}).items()}}


def run_ended_event(run: RunRecord) -> dict:
    duration = (run.ended - run.started) if run.ended and run.started else None
    return {"type": "run", "status": run.status.value, "exit_code": run.exit_code, "reason": run.reason,
            "duration": duration, "metrics": [m.to_dict() for m in run.metrics]}
