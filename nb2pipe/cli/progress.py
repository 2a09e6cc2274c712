"""Run progress for people, drawn from the run's events (execution/events.py).

On a terminal, a live table of steps (status, a moving timer, the running cell `cell 3/7`),
redrawn several times a second; otherwise (CI logs, pipes) one line per state change. With
`--log-output`, what each step prints is shown line by line, prefixed with the step's name. All
of it goes to stderr: stdout is kept for results (the summary, `--json`, `--events`).
"""

from __future__ import annotations

import sys
import threading
import time

STYLE = {
    "queued": "dim", "running": "yellow", "succeeded": "green", "failed": "bold red", "skipped": "dim",
    "cached": "cyan", "cancelled": "magenta",
}


class OutputLines:
    """Step output arrives in chunks that need not end at a newline: hand out whole lines,
    each prefixed with its step's name."""

    def __init__(self):
        self._partial: dict[tuple[str, str], str] = {}

    def feed(self, event: dict) -> list[str]:
        key = (event.get("step", ""), event.get("stream", "stdout"))
        text = self._partial.pop(key, "") + event.get("text", "")
        *lines, rest = text.split("\n")
        if rest:
            self._partial[key] = rest
        return [f"[{key[0]}] {line}" for line in lines]

    def flush(self) -> list[str]:
        out = [f"[{step}] {rest}" for (step, _), rest in self._partial.items()]
        self._partial.clear()
        return out


class LineProgress:
    """No terminal (CI logs): one line per state change, on stderr."""

    def __init__(self, steps: list[str], log_output: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.log_output = log_output
        self._lines = OutputLines()
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with self._lock:
            for line in self._lines.flush():
                print(line, file=self.stream, flush=True)
        return False

    def __call__(self, event: dict) -> None:
        if event["type"] == "output":
            if self.log_output:
                with self._lock:
                    for line in self._lines.feed(event):
                        print(line, file=self.stream, flush=True)
            return
        if event["type"] != "step" or event["status"] == "queued":
            return
        status, error = event["status"], event.get("error")
        line = f"[{event['id']}] {event['step']}: {status}"
        if status in ("succeeded", "failed") and event.get("duration") is not None:
            line += f" in {event['duration']:.2f}s"
        if (event.get("attempt") or 0) > 1:
            line += f" (attempt {event['attempt']})"
        if error and status in ("failed", "running", "cancelled"):
            line += f": {error['message']}"
        elif status == "skipped" and error:
            line += f" ({error['message']})"
        with self._lock:
            print(line, file=self.stream, flush=True)


class LiveProgress:
    """A terminal: a rich table of steps, redrawn as they change and as time passes."""

    def __init__(self, steps: list[str], log_output: bool = False, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.log_output = log_output
        self.steps: dict[str, dict] = {name: {"status": "queued"} for name in steps}
        self._lines = OutputLines()
        self._live = None
        self._lock = threading.Lock()

    def __enter__(self):
        from rich.live import Live

        self._live = Live(console=self.console, refresh_per_second=8, transient=False,
                          get_renderable=self._table)
        self._live.__enter__()
        return self

    def __exit__(self, *exc):
        with self._lock:
            for line in self._lines.flush():
                self._print(line)
        self._live.refresh()
        self._live.__exit__(*exc)
        return False

    def _print(self, line: str) -> None:
        from rich.text import Text

        self.console.print(Text(line), soft_wrap=True)  # Text: step output is never markup

    def __call__(self, event: dict) -> None:
        with self._lock:
            if event["type"] == "output":
                if self.log_output:
                    for line in self._lines.feed(event):
                        self._print(line)
                return
            if event["type"] not in ("step", "cell"):
                return
            state = self.steps.setdefault(event["step"], {"status": "queued"})
            if event["type"] == "cell":
                state["cell"] = f"cell {event['cell_index']}/{event['cells']}"
                return
            status = event["status"]
            if status == "running" and state.get("status") != "running":
                state["started"] = event.get("time") or time.time()
            if status != "running":
                state.pop("cell", None)
            state.update(status=status, duration=event.get("duration"), cached=event.get("cached"),
                         attempt=event.get("attempt") or 0,
                         note=(event.get("error") or {}).get("message", ""))

    def _table(self):
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False)
        for col in ("step", "status", "time", "cell", "note"):
            table.add_column(col)
        now = time.time()
        with self._lock:
            rows = [(name, dict(state)) for name, state in self.steps.items()]
        for name, state in rows:
            status = state["status"]
            duration = state.get("duration")
            if status == "running" and state.get("started"):
                duration = now - state["started"]
            note = state.get("note") or ""
            if state.get("attempt", 0) > 1:
                note = f"attempt {state['attempt']}" + (f": {note}" if note else "")
            table.add_row(Text(name), Text(status, style=STYLE.get(status, "")),
                          f"{duration:.1f}s" if duration is not None else "", state.get("cell", ""),
                          Text(note[:80]))
        return table


def progress_for(steps: list[str], quiet: bool, log_output: bool = False):
    if quiet:
        return _Silent()
    if sys.stderr.isatty():
        return LiveProgress(steps, log_output)
    return LineProgress(steps, log_output)


class _Silent:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, event):
        pass
