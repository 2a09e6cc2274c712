"""RunView: a live view of one pipeline run inside any Jupyter front end (ipywidgets 8).

A face like the CLI: it checks the notebook and starts the run through the engine's API
(`nb2pipe.start`, which returns at once; the steps execute in the engine's threads and in their
own kernels, so the user's kernel stays free), then only renders the run's events. The events
arrive in the run's threads (`run.subscribe`); widget traits are set from there (ipykernel sends
comm messages from any thread). Step and run events redraw at once; cell and output events, which
can come thousands a second, only mark the view dirty, and a refresher thread redraws it every
`REFRESH` seconds at most. The step graph is redrawn only when a step's status changes.
"""

from __future__ import annotations

import html
import logging
import os
import threading
import time
from collections import deque

import ipywidgets as w

from nb2pipe.compile.drawing import svg
from nb2pipe.model import display
from nb2pipe.model.display import esc

logger = logging.getLogger("nb2pipe.widgets")

FINAL = frozenset({"succeeded", "failed", "cached", "skipped", "cancelled"})
TERMINAL_RUN = frozenset({"succeeded", "failed", "cancelled", "crashed"})


class OutputTail:
    """The last `lines` lines the run's steps printed, each prefixed with its step's name; chunks
    need not end at a newline (a step's unfinished line is kept apart until it does)."""

    def __init__(self, lines: int = 40):
        self._lines: deque[str] = deque(maxlen=lines)
        self._partial: dict[str, str] = {}

    def feed(self, step: str, text: str) -> None:
        *done, rest = (self._partial.pop(step, "") + text).split("\n")
        self._lines.extend(f"[{step}] {line}" for line in done)
        if rest:
            self._partial[step] = rest[-2000:]  # a progress bar without newlines must not grow forever

    def text(self) -> str:
        return "\n".join([*self._lines, *(f"[{s}] {rest}" for s, rest in self._partial.items())])


class RunView(w.VBox):
    """Start a run of the notebook at `path` and show it live: a table of its steps (status,
    attempt, duration, cached, the running cell, the error and its cell), the step graph coloured
    by status, what the steps print, the metrics at the end, and a Cancel button.

    Takes `nb2pipe.start`'s arguments; keyword arguments beyond them are the pipeline's
    parameters (`RunView("train.ipynb", n_estimators=300)`). An invalid notebook or parameter
    raises the engine's Nb2pipeError (with file:cell) from here, before anything runs.

    `view.run` is the engine's Run handle, `view.record` a snapshot of its RunRecord,
    `view.wait(timeout)` blocks until it ends (returns the RunRecord), `view.cancel()` cancels it.
    """

    REFRESH = 0.5  # seconds between redraws for cell and output events
    LOG_LINES = 40

    def __init__(self, path: str | os.PathLike, store=None, workers: int | None = None, cache: bool = True,
                 steps: list[str] | None = None, from_step: str | None = None, executor: str = "local",
                 **parameters):
        from nb2pipe import api
        from nb2pipe.compile.compiler import check_notebook
        from nb2pipe.compile.notebook import read_notebook

        nb = read_notebook(path)
        checked = check_notebook(path, notebook=nb)
        # Raises PipelineInvalid / UsageError / NotebookReadError (file:cell) before any widget exists.
        run = api.start(path, parameters=dict(parameters), store=store, workers=workers, cache=cache, steps=steps,
                        from_step=from_step, executor=executor, _checked=(nb, checked))
        self.run = run
        self._unsubscribe = lambda: None
        self._finished = threading.Event()
        try:
            self._build(checked)
            self._unsubscribe = run.subscribe(self._on_event, replay=True)
        except BaseException:  # nobody would see (nor cancel) the run
            run.cancel()
            raise
        self._refresher = threading.Thread(target=self._refresh_loop, name=f"nb2pipe-view-{run.id}", daemon=True)
        self._refresher.start()

    def _build(self, checked) -> None:
        self.spec = checked.spec
        self._warnings = [str(d) for d in checked.warnings]
        self._lock = threading.RLock()
        self._order: list[str] = list(self.spec.step_names)
        self._steps: dict[str, dict] = {name: {"status": "pending"} for name in self._order}
        self._run_status = "running"
        self._run_event: dict = {}
        self._started = time.time()
        self._reused: dict = {}
        self._tail = OutputTail(self.LOG_LINES)
        self._dirty = False
        self._drawn_statuses: dict | None = None

        self.header = w.HTML()
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="danger",
                                      tooltip="Cancel this run: its kernels are stopped, other runs go on",
                                      layout=w.Layout(width="auto"))
        self.cancel_button.on_click(lambda _button: self.cancel())
        self.table = w.HTML()
        self.dag = w.HTML(layout=w.Layout(overflow="auto", max_width="100%"))
        self.output = w.HTML()
        self.footer = w.HTML()
        top = w.HBox([self.header, self.cancel_button], layout=w.Layout(align_items="center",
                                                                        justify_content="space-between"))
        body = w.HBox([self.table, self.dag], layout=w.Layout(flex_flow="row wrap", align_items="flex-start",
                                                              grid_gap="16px"))
        super().__init__([top, body, self.output, self.footer])
        self.add_class("nb2pipe-run-view")

        with self._lock:
            self._render_all()

    # --- the convenience API -----------------------------------------------------------------
    @property
    def record(self):
        """A snapshot of the run's RunRecord as it stands now."""
        return self.run.record()

    @property
    def statuses(self) -> dict[str, str]:
        """Step -> status as the view shows it (the events' names: queued, running, ..., cancelled)."""
        with self._lock:
            return {name: self._steps[name]["status"] for name in self._order}

    @property
    def run_status(self) -> str:
        with self._lock:
            return self._run_status

    def wait(self, timeout: float | None = None):
        """Block until the run ends and return its RunRecord (RunTimeout after `timeout` seconds)."""
        return self.run.wait(timeout)

    def cancel(self) -> None:
        """Cancel this run (only this one); after its end, nothing happens."""
        with self._lock:
            if self._finished.is_set():
                return
            self.cancel_button.disabled = True
            self.cancel_button.description = "Cancelling…"
        self.run.cancel()  # not under self._lock: the cancel emits events, whose delivery takes it

    def close(self) -> None:
        """Stop watching the run (it goes on) and close the widget."""
        getattr(self, "_unsubscribe", lambda: None)()  # also from __del__ after a constructor that raised
        if hasattr(self, "_finished"):
            self._finished.set()
        super().close()

    # --- events (in the run's threads) ---------------------------------------------------------
    def _on_event(self, event: dict) -> None:
        try:
            with self._lock:
                self._apply(event)
        except Exception:  # a drawing bug must not silence the view for the rest of the run
            logger.exception("RunView could not show event %r", event.get("type"))

    def _apply(self, event: dict) -> None:
        kind = event["type"]
        if kind == "output":
            self._tail.feed(event.get("step", ""), event.get("text", ""))
            self._dirty = True
        elif kind == "cell":
            state = self._steps.setdefault(event["step"], {"status": "running"})
            state["cell"] = (event.get("cell_index"), event.get("cells"), event.get("source_cell"))
            self._dirty = True
        elif kind == "step":
            state = self._steps.setdefault(event["step"], {})
            if event["step"] not in self._order:
                self._order.append(event["step"])
            state.update(status=event["status"], attempt=event.get("attempt"), duration=event.get("duration"),
                         cached=event.get("cached"), error=event.get("error"))
            if event["status"] == "running":
                state["since"] = event.get("time")
                state.pop("cell", None)
            elif event["status"] in FINAL:
                state.pop("cell", None)
            self._render_table()
            self._render_header()
            self._render_dag()
        elif kind == "run":
            if event.get("status") == "running":
                self._started = event.get("time") or self._started
                self._reused = dict(event.get("reused") or {})
                names = list(event.get("steps") or self._order)
                self._order = names
                self._steps = {n: self._steps.get(n, {"status": "pending"}) for n in names}
                self._render_all()
            elif event.get("status") in TERMINAL_RUN:
                self._run_status = event["status"]
                self._run_event = event
                self._finished.set()
                self.cancel_button.disabled = True
                self.cancel_button.description = "Cancel"
                self._render_all()

    def _refresh_loop(self) -> None:
        while not self._finished.wait(self.REFRESH):
            try:
                with self._lock:
                    running = any(s.get("status") == "running" for s in self._steps.values())
                    if self._dirty or running:  # running: the elapsed times move
                        self._render_table()
                        self._render_header()
                        self._render_output()
            except Exception:
                logger.exception("RunView could not refresh")

    # --- rendering (under self._lock) --------------------------------------------------------
    def _render_all(self) -> None:
        self._render_header()
        self._render_table()
        self._render_dag()
        self._render_output()
        self._render_footer()

    def _render_header(self) -> None:
        done = sum(1 for n in self._order if self._steps[n].get("status") in FINAL)
        duration = self._run_event.get("duration") if self._run_event else time.time() - self._started
        parts = [f'<b>nb2pipe run</b> <code>{esc(self.run.id)}</code> {display.status_badge(self._run_status)}',
                 f"{done}/{len(self._order)} steps done",
                 esc(display.duration_text(duration) if self._run_event else f"{int(duration)} s")]
        running = [(n, self._steps[n]["cell"]) for n in self._order if self._steps[n].get("cell")
                   and self._steps[n].get("status") == "running"]
        if running:
            parts.append("running " + ", ".join(f"<b>{esc(n)}</b> {esc(_cell_text(c))}" for n, c in running))
        text = " · ".join(parts)
        text += f'<div style="color: {display.MUTED}; font-size: 12px;">{esc(self.run.notebook)}</div>'
        self.header.value = f'<div style="font-family: {display.FONT}; font-size: 13px;">{text}</div>'

    def _render_table(self) -> None:
        self._dirty = False
        now = time.time()
        rows = []
        for name in self._order:
            s = self._steps[name]
            status = s.get("status", "pending")
            if status == "running" and s.get("since"):
                duration = f"{int(now - s['since'])} s"
            else:
                duration = display.duration_text(s.get("duration"))
            cell = s.get("cell") if status == "running" else None
            cell_html = (f'<span title="notebook cell {esc(cell[2])}">{esc(_cell_text(cell))}</span>'
                         if cell else "")
            rows.append((f"<b>{esc(name)}</b>", display.status_badge(status), esc(s.get("attempt") or ""),
                         esc(duration), "yes" if s.get("cached") else "", cell_html,
                         display.error_html(s.get("error"), self._cell_source(s.get("error")))))
        self.table.value = display.table(["step", "status", "attempt", "duration", "cached", "cell", "error"], rows,
                                         attrs=' class="nb2pipe-steps"')

    def _cell_source(self, error) -> str | None:
        """The source of the notebook cell an error names (from the spec), if it is in a step or setup."""
        index = (error or {}).get("cell_index")
        if index is None:
            return None
        for cell in [*self.spec.setup, *(c for s in self.spec.steps for c in s.cells)]:
            if cell.index == index:
                return cell.source
        return None

    def _render_dag(self) -> None:
        statuses = {n: self._steps[n].get("status", "pending") for n in self._order}
        if statuses == self._drawn_statuses:
            return
        self._drawn_statuses = statuses
        try:
            known = set(self.spec.step_names)
            picture = svg(self.spec, {n: s for n, s in statuses.items() if n in known})
        except Exception as exc:  # the table says it all; a layout bug must not hide it
            logger.exception("RunView could not draw the step graph")
            picture = f"<i>(no step graph: {esc(type(exc).__name__)})</i>"
        self.dag.value = f'<div class="nb2pipe-dag">{picture}</div>'

    def _render_output(self) -> None:
        text = self._tail.text()
        if not text:
            self.output.value = ""
            return
        self.output.value = (f'<details open><summary style="font-family: {display.FONT}; font-size: 12px; '
                          f'color: {display.MUTED};">output (last {self.LOG_LINES} lines)</summary>'
                          f'<pre style="font-family: {display.MONO}; font-size: 11px; max-height: 16em; '
                          f'overflow: auto; margin: 2px 0; white-space: pre-wrap;">{html.escape(text)}</pre></details>')

    def _render_footer(self) -> None:
        parts = [f'<div style="color: {display.MUTED};">warning: {esc(text)}</div>' for text in self._warnings]
        for step, reused in self._reused.items():
            parts.append(f'<div style="color: {display.MUTED};">{esc(step)}: outputs reused from run '
                         f'{esc(reused.get("run"))}</div>')
        event = self._run_event
        if event:
            if event.get("error"):  # the run could not start (no kernel, bad image, ...)
                parts.append(f'<div style="color: {display.STATUS_COLOURS["failed"]};">{esc(event["error"])}</div>')
            metrics = event.get("metrics") or []
            if metrics:
                parts.append(display.metrics_table(metrics))
        self.footer.value = f'<div style="font-family: {display.FONT}; font-size: 12px;">{"".join(parts)}</div>'


def _cell_text(cell) -> str:
    index, count, _source = cell
    return f"cell {index}/{count}"
