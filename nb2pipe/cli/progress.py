"""Run progress for people: a live rich table on a terminal, one line per state change otherwise."""

from __future__ import annotations

import sys
import threading
import time

from nb2pipe.model.records import RunRecord, Status, StepRecord

STYLE = {
    Status.PENDING: "dim", Status.RUNNING: "yellow", Status.SUCCEEDED: "green",
    Status.FAILED: "bold red", Status.SKIPPED: "dim", Status.CACHED: "cyan",
}


class LineProgress:
    """No terminal (CI logs): one line per state change, on stderr."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, run: RunRecord, step: StepRecord) -> None:
        line = f"[{run.id}] {step.name}: {step.status.value}"
        if step.status in (Status.SUCCEEDED, Status.FAILED) and step.duration is not None:
            line += f" in {step.duration:.2f}s"
        if step.attempts > 1:
            line += f" (attempt {step.attempts})"
        if step.error and step.status in (Status.FAILED, Status.RUNNING):
            line += f": {step.error.message}"
        elif step.status == Status.SKIPPED and step.error:
            line += f" ({step.error.message})"
        with self._lock:
            print(line, file=self.stream, flush=True)


class LiveProgress:
    """A terminal: a rich table of steps, redrawn as they change."""

    def __init__(self, steps: list[str], console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.steps = {name: None for name in steps}
        self._live = None
        self._lock = threading.Lock()

    def __enter__(self):
        from rich.live import Live

        self._live = Live(self._table(), console=self.console, refresh_per_second=8, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._live.update(self._table())
        self._live.__exit__(*exc)
        return False

    def __call__(self, run: RunRecord, step: StepRecord) -> None:
        with self._lock:
            self.steps[step.name] = (step.status, step.started, step.duration, step.cached, step.attempts,
                                     step.error.message if step.error else "")
            if self._live is not None:
                self._live.update(self._table())

    def _table(self):
        from rich.markup import escape
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for col in ("step", "status", "duration", "cached", "note"):
            table.add_column(col)
        now = time.time()
        for name, state in self.steps.items():
            if state is None:
                table.add_row(escape(name), "[dim]pending[/]", "", "", "")
                continue
            status, started, duration, cached, attempts, note = state
            if status == Status.RUNNING and started:
                duration = now - started
            text = f"{duration:.1f}s" if duration is not None else ""
            if attempts > 1:
                note = f"attempt {attempts}" + (f": {note}" if note else "")
            table.add_row(escape(name), f"[{STYLE[status]}]{status.value}[/]", text, "yes" if cached else "",
                          escape(note[:80]))
        return table


def progress_for(steps: list[str], quiet: bool):
    if quiet:
        return _Silent()
    if sys.stderr.isatty():
        return LiveProgress(steps)
    return LineProgress()


class _Silent:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, run, step):
        pass
