"""nb2pipe.widgets.RunView with real runs: the live table, the constructor returning at once,
Cancel, escaping, and invalid notebooks raising from the constructor."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from nbbuild import ROOT, cli_env, make_nb

from nb2pipe.errors import PipelineInvalid, UsageError
from nb2pipe.model.records import RunStatus
from nb2pipe.widgets import RunView
from nb2pipe.widgets.run_view import OutputTail

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SCRIPT = "<script>alert(1)</script>"

PIPELINE = [
    ("parameters", "n = 2"),
    ("step:load", "x = list(range(n))\nprint('loaded', len(x), 'rows')"),
    ("step:double", "y = [v * 2 for v in x]"),
    ("step:total", "t = sum(y)"),
    ("metrics", "total = t"),
]


def html_of(view: RunView) -> str:
    """Every HTML the view shows."""
    return "\n".join(part.value for part in (view.header, view.table, view.dag, view.output, view.footer))


def when(run, predicate) -> threading.Event:
    """An Event set once an event of `run` satisfies `predicate` (past events included)."""
    seen = threading.Event()
    run.subscribe(lambda event: seen.set() if predicate(event) else None)
    return seen


@pytest.mark.kernel
def test_the_table_ends_with_every_step_succeeded(tmp_path):
    nb = make_nb(tmp_path, PIPELINE)
    view = RunView(nb, store=tmp_path / "store", n=4)
    record = view.wait(timeout=180)
    assert record.status == RunStatus.SUCCEEDED and record.parameters == {"n": 4}
    assert view.run_status == "succeeded"
    assert view.statuses == {"load": "succeeded", "double": "succeeded", "total": "succeeded"}
    table = view.table.value
    assert table.count('data-status="succeeded"') == 3
    for step in ("load", "double", "total"):
        assert f"<b>{step}</b>" in table
        assert f'data-step="{step}" data-status="succeeded"' in view.dag.value  # the graph, coloured
    assert "succeeded" in view.header.value and "3/3 steps done" in view.header.value
    assert "[load] loaded 4 rows" in view.output.value  # what the steps printed
    assert "total" in view.footer.value and ">12<" in view.footer.value  # the run's metrics
    assert view.cancel_button.disabled
    assert view.record.to_dict() == record.to_dict()


@pytest.mark.kernel
def test_the_constructor_returns_while_the_run_goes_on(tmp_path):
    """The run waits for a file that only this thread writes after the constructor returned: the
    user's kernel is free while the steps run."""
    gate = tmp_path / "gate"
    nb = make_nb(tmp_path, [
        ("parameters", "gate = ''"),
        ("step:wait", "import os, time\nwhile not os.path.exists(gate):\n    time.sleep(0.05)\nw = 1"),
        ("step:after", "v = w + 1"),
    ])
    view = RunView(nb, store=tmp_path / "store", gate=str(gate))
    assert not view.run.done() and view.run_status == "running"
    assert view.statuses["after"] in ("pending", "queued")
    gate.write_text("go")
    record = view.wait(timeout=180)
    assert record.status == RunStatus.SUCCEEDED
    assert view.statuses == {"wait": "succeeded", "after": "succeeded"}


@pytest.mark.kernel
def test_cancel_stops_a_long_sleep_step(tmp_path):
    nb = make_nb(tmp_path, [
        ("step:first", "a = 1"),
        ("step:sleepy", "import time\nprint('sleeping', flush=True)\ntime.sleep(300)\nb = a"),
        ("step:last", "c = b"),
    ])
    view = RunView(nb, store=tmp_path / "store", workers=1)
    sleeping = when(view.run, lambda e: e["type"] == "output" and e["step"] == "sleepy")
    assert sleeping.wait(180), "the sleepy step never printed"
    assert view.statuses["sleepy"] == "running" and not view.cancel_button.disabled
    view.cancel_button.click()
    record = view.wait(timeout=120)
    assert record.status == RunStatus.CANCELLED
    assert view.run_status == "cancelled"
    assert view.statuses == {"first": "succeeded", "sleepy": "cancelled", "last": "cancelled"}
    assert 'data-status="cancelled"' in view.header.value and view.cancel_button.disabled


@pytest.mark.kernel
def test_notebook_text_is_escaped(tmp_path):
    nb = make_nb(tmp_path, [
        ("step:shout", f"print({SCRIPT!r})\nvalue = 1"),
        ("step:boom", f"v = value\nraise ValueError({SCRIPT!r})"),
    ])
    view = RunView(nb, store=tmp_path / "store")
    record = view.wait(timeout=180)
    assert record.status == RunStatus.FAILED and view.statuses == {"shout": "succeeded", "boom": "failed"}
    markup = html_of(view)
    assert "<script" not in markup
    assert "[shout] &lt;script&gt;alert(1)&lt;/script&gt;" in view.output.value
    # The error, at its cell and line, with the line that raised.
    assert "cell 2 [c2], line 2:" in view.table.value
    assert "ValueError: &lt;script&gt;alert(1)&lt;/script&gt;" in view.table.value
    assert "raise ValueError(&#x27;&lt;script&gt;" in view.table.value
    assert "<script" not in record._repr_html_()


def test_an_invalid_notebook_raises_from_the_constructor(tmp_path):
    with pytest.raises(PipelineInvalid) as caught:
        RunView(NOTEBOOKS / "after_unknown.ipynb", store=tmp_path / "store")
    assert "after_unknown.ipynb:cell" in str(caught.value)
    nb = make_nb(tmp_path, PIPELINE)
    with pytest.raises(UsageError, match="unknown step"):
        RunView(nb, store=tmp_path / "store", steps=["nope"])
    with pytest.raises(UsageError):
        RunView(nb, store=tmp_path / "store", m=3)  # no such parameter
    assert not (tmp_path / "store" / "runs").exists()  # nothing ran


def test_output_tail_keeps_whole_lines_per_step_and_the_last_ones():
    tail = OutputTail(lines=3)
    tail.feed("a", "one\ntw")
    tail.feed("b", "x\n")
    tail.feed("a", "o\nthree\nfour")
    assert tail.text() == "[b] x\n[a] two\n[a] three\n[a] four"


def test_import_nb2pipe_does_not_import_ipywidgets():
    code = ("import sys, nb2pipe; nb2pipe.start; nb2pipe.run; nb2pipe.RunRecord; nb2pipe.PipelineSpec; "
            "assert 'ipywidgets' not in sys.modules, 'ipywidgets imported'; "
            "assert 'nb2pipe.widgets' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


class FakeRun:
    """Stands in for the engine's Run: the test pushes the events (no kernel, no thread)."""

    id = "20261201-000000-000000"
    notebook = "nb.ipynb"

    def __init__(self):
        self.callbacks = []
        self.cancelled = 0

    def subscribe(self, callback, replay=True):
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def push(self, **event):
        for callback in list(self.callbacks):
            callback({"id": self.id, "time": 1700000000.0, **event})

    def cancel(self, signum=0):
        self.cancelled += 1


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """(RunView over a FakeRun of a two-step notebook, the fake, the number of graph drawings)."""
    import nb2pipe.api
    import nb2pipe.widgets.run_view as run_view

    run = FakeRun()
    drawn = []
    real_svg = run_view.svg
    monkeypatch.setattr(nb2pipe.api, "start", lambda *a, **k: run)

    def counting_svg(spec, statuses):
        drawn.append(dict(statuses))
        return real_svg(spec, statuses)

    monkeypatch.setattr(run_view, "svg", counting_svg)
    nb = make_nb(tmp_path, [("step:a", "x = 1"), ("step:b", "y = x")])
    view = RunView(nb)
    yield view, run, drawn
    view.close()


def test_events_render_and_output_does_not_redraw_the_graph(fake):
    view, run, drawn = fake
    run.push(type="run", status="running", steps=["a", "b"], reused={})
    run.push(type="step", step="a", status="running", attempt=1, duration=None, cached=False, error=None)
    run.push(type="cell", step="a", attempt=1, cell_index=3, cells=7, source_cell=12, cell_id="c12")
    before = len(drawn)
    for i in range(500):
        run.push(type="output", step="a", attempt=1, stream="stdout", text=f"line {i}\n")
    assert len(drawn) == before  # output and cell events never redraw the step graph
    run.push(type="step", step="b", status="queued", attempt=0, duration=None, cached=False, error=None)
    assert "cell 3/7" in view.table.value and 'title="notebook cell 12"' in view.table.value
    assert "running <b>a</b> cell 3/7" in view.header.value
    assert drawn[-1] == {"a": "running", "b": "queued"}
    error = {"reason": "error", "message": "ValueError: <b>no</b> at cell 1", "cell_index": 1, "cell_id": "c1",
             "line": 1, "ename": "ValueError", "evalue": "<b>no</b>", "traceback": []}
    run.push(type="step", step="a", status="failed", attempt=1, duration=2.5, cached=False, error=error)
    run.push(type="step", step="b", status="skipped", attempt=0, duration=None, cached=False, error=None)
    run.push(type="run", status="failed", exit_code=1, reason="step_failed", duration=3.0,
             metrics=[{"name": "acc", "value": 0.5, "flag": None}])
    assert view.statuses == {"a": "failed", "b": "skipped"} and view.run_status == "failed"
    assert "cell 1 [c1], line 1:" in view.table.value and "&lt;b&gt;no&lt;/b&gt;" in view.table.value
    assert "--&gt; 1 | x = 1" in view.table.value  # the line that raised, from the spec's copy of the cell
    assert "2.5 s" in view.table.value and "3.0 s" in view.header.value
    assert "[a] line 499" in view.output.value and "[a] line 0\n" not in view.output.value  # the last lines only
    assert "acc" in view.footer.value and ">0.5<" in view.footer.value
    assert view.cancel_button.disabled
    view.cancel()
    assert run.cancelled == 0  # after the end, Cancel does nothing


def test_a_run_that_could_not_start_says_why(fake):
    view, run, _ = fake
    view.cancel_button.click()
    assert run.cancelled == 1 and view.cancel_button.description == "Cancelling…"
    run.push(type="run", status="failed", exit_code=2, reason="error", duration=None, metrics=[],
             error="no kernel named <python9>")
    assert view.run_status == "failed"
    assert "no kernel named &lt;python9&gt;" in view.footer.value
    assert view.cancel_button.description == "Cancel" and view.cancel_button.disabled
