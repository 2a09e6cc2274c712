"""What a step printed: each attempt's `output.log` in the store, read whole or followed live.

The scheduler appends to the log of the attempt that is running as the kernel's stream messages
arrive (flushed each time), so a reader in another process sees the output of a running step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from nb2pipe.errors import UsageError
from nb2pipe.model.records import RunStatus, Status, StepRecord
from nb2pipe.store.workspace import LOG_NAME, attempt_dir

_LIVE = (Status.PENDING, Status.RUNNING)


def _step(root: Path, run_ref: str, step: str) -> tuple[str, StepRecord, bool]:
    """(run id, the step's record, whether the run is still going)."""
    import socket

    from nb2pipe.store.processes import pid_alive
    from nb2pipe.store.runs import RunStore
    from nb2pipe.store.workspace import existing_store

    existing_store(root)
    with RunStore(root, reader=True) as runs:
        record = runs.get_run(run_ref)
    rec = record.step(step)
    if rec is None:
        raise UsageError(f"run {record.id} has no step '{step}' (steps: {', '.join(s.name for s in record.steps)})")
    live = record.status == RunStatus.RUNNING and (record.host != socket.gethostname() or pid_alive(record.pid))
    return record.id, rec, live


def log_path(root: str | os.PathLike, run_ref: str, step: str, attempt: int | None = None) -> Path:
    """The log file of an attempt (the last one by default); a cached step's is the log of the
    run its outputs came from."""
    run_id, rec, _ = _step(Path(root), run_ref, step)
    if rec.status == Status.CACHED and rec.cached_from and attempt is None:
        return log_path(root, rec.cached_from, step)
    number = attempt or rec.attempts
    if number < 1:
        raise UsageError(f"step '{step}' of run {run_id} did not execute ({rec.status.value}): it has no log")
    if number > rec.attempts:
        raise UsageError(f"step '{step}' of run {run_id} has {rec.attempts} attempt(s), not {number}")
    return attempt_dir(root, run_id, step, number) / LOG_NAME


def read_log(root: str | os.PathLike, run_ref: str, step: str, attempt: int | None = None) -> str:
    path = log_path(root, run_ref, step, attempt)
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""  # an attempt that failed before its kernel started printed nothing


def follow_log(root: str | os.PathLike, run_ref: str, step: str, attempt: int | None = None,
               poll: float = 0.2) -> Iterator[str]:
    """Yield the log as it grows until the step stops running (following its retries too, unless
    `attempt` is given); waits for a step that has not started yet."""
    root = Path(root)
    run_id, rec, live = _step(root, run_ref, step)
    if rec.status == Status.CACHED and rec.attempts == 0:
        yield read_log(root, run_id, step)
        return
    number = attempt or max(rec.attempts, 1)
    offset = 0
    while True:
        path = attempt_dir(root, run_id, step, number) / LOG_NAME
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        if data:
            offset += len(data)
            yield data.decode("utf-8", errors="replace")
            continue  # read until nothing more comes, then look at the step's state
        if attempt is None and rec.attempts > number:
            number, offset = number + 1, 0  # the step was retried: follow the next attempt
            continue
        if not live or rec.status not in _LIVE or rec.attempts > number:
            return
        time.sleep(poll)
        _, rec, live = _step(root, run_id, step)
