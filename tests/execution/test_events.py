"""The event bus: order, replay for late watchers, unsubscribe, a broken watcher, the end of a run."""

from __future__ import annotations

import threading

from nb2pipe.execution import events as events_module
from nb2pipe.execution.events import EventBus, step_event, step_event_status
from nb2pipe.model.records import Status, StepError, StepRecord


def test_events_are_stamped_kept_and_delivered_in_order():
    bus = EventBus("r1")
    got: list[dict] = []
    bus.subscribe(got.append)
    first = bus.emit({"type": "step", "step": "a", "status": "queued"})
    bus.emit({"type": "output", "step": "a", "stream": "stdout", "text": "hi\n"})
    assert first["id"] == "r1" and isinstance(first["time"], float) and list(first)[:3] == ["type", "id", "time"]
    assert [e["type"] for e in got] == ["step", "output"] and bus.history() == got


def test_a_late_subscriber_gets_the_history_first_and_can_unsubscribe():
    bus = EventBus("r1")
    bus.emit({"type": "run", "status": "running"})
    late: list[dict] = []
    stop = bus.subscribe(late.append)
    bus.emit({"type": "step", "step": "a", "status": "running"})
    stop()
    bus.emit({"type": "step", "step": "a", "status": "succeeded"})
    assert [e.get("status") for e in late] == ["running", "running"]
    fresh: list[dict] = []
    bus.subscribe(fresh.append, replay=False)
    bus.emit({"type": "run", "status": "succeeded"})
    assert [e["status"] for e in fresh] == ["succeeded"] and bus.closed


def test_a_subscriber_that_raises_is_dropped_and_the_others_go_on(caplog):
    bus = EventBus("r1")
    good: list[dict] = []

    def broken(event):
        raise RuntimeError("watcher bug")

    bus.subscribe(broken)
    bus.subscribe(good.append)
    bus.emit({"type": "step", "step": "a", "status": "running"})
    bus.emit({"type": "step", "step": "a", "status": "succeeded"})
    assert len(good) == 2
    assert [r.exc_info[1].args for r in caplog.records] == [("watcher bug",)]  # logged once, then dropped


def test_iterate_replays_waits_and_ends_with_the_final_run_event():
    bus = EventBus("r1")
    bus.emit({"type": "run", "status": "running"})

    def later():
        bus.emit({"type": "step", "step": "a", "status": "succeeded"})
        bus.emit({"type": "run", "status": "failed"})
        bus.emit({"type": "output", "step": "a", "text": "after the end"})

    threading.Timer(0.1, later).start()
    seen = [e.get("status") for e in bus.iterate(timeout=10)]
    assert seen == ["running", "succeeded", "failed"]
    assert list(EventBus("r2").iterate(timeout=0.05)) == []  # nothing came: it just ends


def test_output_history_is_bounded_but_live_delivery_is_not(monkeypatch):
    monkeypatch.setattr(events_module, "OUTPUT_HISTORY", 3)
    bus = EventBus("r1")
    live: list[dict] = []
    bus.subscribe(live.append)
    for i in range(5):
        bus.emit({"type": "output", "step": "a", "text": f"{i}\n"})
    bus.emit({"type": "step", "step": "a", "status": "succeeded"})
    assert len(live) == 6
    assert [e.get("text") for e in bus.history()] == ["0\n", "1\n", "2\n", None]


def test_a_step_stopped_by_cancel_is_cancelled_in_events():
    rec = StepRecord(name="a", status=Status.FAILED, error=StepError("cancelled", "cancelled while running"))
    assert step_event_status(rec) == "cancelled"
    rec.status = Status.SKIPPED
    assert step_event(rec)["status"] == "cancelled"
    rec.error = StepError("upstream_failed", "an upstream step failed")
    assert step_event(rec)["status"] == "skipped" and step_event(rec, "queued")["status"] == "queued"
