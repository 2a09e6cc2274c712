"""The HTML display of records and specs (`_repr_html_`): content, escaping, golden files.

Golden files: tests/golden/display/*.html hold the exact HTML of a fixed RunRecord and of the
specs in tests/golden/<fixture>.json. Regenerate after an intended change, then review the diff:

    NB2PIPE_UPDATE_GOLDEN=1 python -m pytest tests/model/test_display.py -k golden
"""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nb2pipe.model import display
from nb2pipe.model.records import ArtifactRef, Metric, RunRecord, RunStatus, Status, StepError, StepRecord
from nb2pipe.model.spec import PipelineSpec

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
SCRIPT = "<script>alert(1)</script>"
VOID = {"br", "hr", "img", "meta", "input"}


def fixed_run() -> RunRecord:
    """A finished run with a bit of everything: parameters, outputs, a cached step, a failure at a
    cell, a step skipped after it, metrics (one non-finite)."""
    load = StepRecord("load", Status.SUCCEEDED, 1700000000.0, 1700000001.25, 1.25, attempts=1,
                      outputs=[ArtifactRef("df", "ab" * 32, 123_456, "parquet", "pandas.DataFrame", "load")])
    features = StepRecord("features", Status.CACHED, duration=0.0, cached=True, cached_from="20261130-101010-aaaaaa",
                          outputs=[ArtifactRef("X", "cd" * 32, 512, "npy", "numpy.ndarray", "features")])
    train = StepRecord("train", Status.FAILED, 1700000001.5, 1700000063.0, 61.5, attempts=2,
                       error=StepError("error", "ZeroDivisionError: division by zero at cell 7", cell_index=7,
                                       cell_id="c7", ename="ZeroDivisionError", evalue="division by zero", line=3))
    report = StepRecord("report", Status.SKIPPED,
                        error=StepError("upstream_failed", "upstream step 'train' failed"))
    return RunRecord("20261201-120000-abcdef", "examples/train.ipynb", status=RunStatus.FAILED, reason="step_failed",
                     started=1700000000.0, ended=1700000063.5, parameters={"n": 3, "name": "iris", "rate": 0.5},
                     metrics=[Metric("accuracy", 0.9312345678), Metric("loss", float("nan")), Metric("rows", 150)],
                     steps=[load, features, train, report], pid=1, host="h", exit_code=1, note="first try")


def golden_spec(name: str) -> PipelineSpec:
    return PipelineSpec.from_dict(json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8")))


class _Balance(HTMLParser):
    """Every element that is opened is closed, in order."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:] or 'nothing'}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def well_formed(markup: str) -> str:
    """`markup` parses with every element closed; returns its text (entities decoded)."""
    parser = _Balance()
    parser.feed(markup)
    parser.close()
    assert parser.stack == [], f"unclosed: {parser.stack}"
    return "".join(parser.text)


@pytest.mark.parametrize("name, make", [
    ("run_record", lambda: fixed_run()._repr_html_()),
    ("fanout_spec", lambda: golden_spec("fanout")._repr_html_()),
    ("kale_pipeline_spec", lambda: golden_spec("kale_pipeline")._repr_html_()),
])
def test_golden_html(name, make):
    markup = make()
    golden = GOLDEN / "display" / f"{name}.html"
    if os.environ.get("NB2PIPE_UPDATE_GOLDEN") == "1":
        golden.write_text(markup, encoding="utf-8")
    assert golden.exists(), f"missing {golden.name}: run NB2PIPE_UPDATE_GOLDEN=1 pytest {__file__}"
    assert markup == golden.read_text(encoding="utf-8"), f"{name} changed; see the module docstring"


def test_run_record_html_says_status_steps_outputs_metrics_and_the_failing_cell():
    markup = fixed_run()._repr_html_()
    text = well_formed(markup)
    assert "20261201-120000-abcdef" in text and "1m 04s" in text  # the run's duration
    for step, status in [("load", "succeeded"), ("features", "cached"), ("train", "failed"), ("report", "skipped")]:
        assert step in text and f'data-status="{status}"' in markup
    assert "df" in text and "120.6 KB" in text  # outputs with their size
    assert "from 20261130-101010-aaaaaa" in text  # where a cached step's outputs came from
    assert "accuracy" in text and "0.931235" in text and "NaN" in text and "150" in text
    assert "cell 7 [c7], line 3" in text
    # The engine's " at cell 7" is not said twice.
    assert "division by zero at cell" not in text and "step train failed at cell 7 [c7], line 3" in text
    assert "'iris'" in text and "first try" in text


def test_a_cancelled_step_reads_cancelled():
    run = RunRecord("r", "nb.ipynb", status=RunStatus.CANCELLED, steps=[
        StepRecord("s", Status.FAILED, error=StepError("cancelled", "cancelled"))])
    assert 'data-status="cancelled"' in run._repr_html_()


def test_spec_html_lists_steps_inputs_outputs_options_parameters_and_edges():
    spec = golden_spec("kale_pipeline")
    markup = spec._repr_html_()
    text = well_formed(markup)
    for step in spec.steps:
        assert step.name in text
        for i in step.inputs:
            assert f"{i.name} ← {i.producer}" in text
    assert "gpu:1" in text and "memory:4Gi" in text
    for p in spec.parameters:
        assert p.name in text and repr(p.default) in text
    assert ">edges<" in markup and "after</span>" not in markup  # every edge here carries data
    spec.step("evaluate").upstreams.append("data-loading")  # an after: edge, order only
    assert "after</span>" in spec._repr_html_()


def test_everything_from_the_notebook_is_escaped():
    bad = SCRIPT
    run = RunRecord(bad, bad, status=RunStatus.FAILED, reason=bad, started=1.0, ended=2.0, note=bad,
                    parameters={bad: bad}, metrics=[Metric(bad, bad)], steps=[
                        StepRecord(bad, Status.FAILED, cached=True, cached_from=bad,
                                   outputs=[ArtifactRef(bad, "00" * 32, 1, bad, bad)],
                                   error=StepError("error", bad, cell_index=1, cell_id=bad))])
    spec = golden_spec("fanout")
    spec.name = spec.notebook = spec.kernel_name = bad
    spec.steps[0].name = bad
    spec.steps[0].outputs = [bad]
    spec.steps[1].inputs[0].name = bad
    spec.steps[1].options.image = bad
    spec.parameters[0].name = bad
    for markup in (run._repr_html_(), spec._repr_html_()):
        assert "<script" not in markup
        assert "&lt;script&gt;" in markup
        text = well_formed(markup)
        assert SCRIPT in text  # shown as text, literally
    assert '"><' not in display.status_badge('"><b>')  # attribute values are quoted safely


def test_repr_is_unchanged():
    run = fixed_run()
    assert repr(run).startswith("RunRecord(id='20261201-120000-abcdef'")
    assert repr(golden_spec("fanout")).startswith("PipelineSpec(name=")


def test_no_background_colours():
    """Light and dark themes: text colours and theme borders only."""
    for markup in (fixed_run()._repr_html_(), golden_spec("kale_pipeline")._repr_html_()):
        assert "background" not in markup


@pytest.mark.parametrize("seconds, text", [(None, ""), (0.04, "0.0 s"), (9.96, "10.0 s"), (61.5, "1m 02s"),
                                           (3600 * 2 + 61, "2h 01m")])
def test_duration_text(seconds, text):
    assert display.duration_text(seconds) == text


@pytest.mark.parametrize("size, text", [(None, ""), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"),
                                        (5 * 1024 ** 2, "5.0 MB"), (3 * 1024 ** 4, "3072.0 GB")])
def test_size_text(size, text):
    assert display.size_text(size) == text


def test_error_html_shows_the_failing_line_of_the_cell_source():
    error = {"reason": "error", "message": "NameError: name 'y' is not defined at cell 2", "cell_index": 2,
             "cell_id": None, "line": 2}
    markup = display.error_html(error, source="x = 1\nprint(y < 3)\n")
    text = well_formed(markup)
    assert "cell 2, line 2:" in text and "NameError: name 'y' is not defined" in text
    assert "--> 2 | print(y < 3)" in text and "y &lt; 3" in markup
    assert display.error_html(None) == ""
