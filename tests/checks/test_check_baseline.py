"""nb2pipe.checks.baseline: the files and run ids a baseline can be."""

from __future__ import annotations

import json

import pytest

from nb2pipe.checks.baseline import load_baseline_file, load_baseline_run, looks_like_file
from nb2pipe.errors import UsageError
from nb2pipe.model.records import Metric, RunRecord, RunStatus
from nb2pipe.store.runs import RunStore


def record(run_id="20260101-000000-abcdef", notebook="examples/diabetes.ipynb", **values):
    return RunRecord(id=run_id, notebook=notebook, status=RunStatus.SUCCEEDED,
                     metrics=[Metric(k, v) for k, v in values.items()])


def test_runs_show_json_is_a_baseline(tmp_path):
    path = tmp_path / "base.json"
    path.write_text(json.dumps(record(r2=0.45, auc=float("nan")).to_dict(), allow_nan=False))
    base = load_baseline_file(path)
    assert base.metrics["r2"].value == 0.45 and base.metrics["auc"].flag == "nan"
    assert base.notebook == "examples/diabetes.ipynb"
    assert base.source == "baseline base.json (run 20260101-000000-abcdef)"


def test_other_accepted_shapes(tmp_path):
    runs_list = tmp_path / "list.json"
    runs_list.write_text(json.dumps([record("new", r2=0.5).to_dict(), record("old", r2=0.1).to_dict()]))
    assert load_baseline_file(runs_list).metrics["r2"].value == 0.5  # newest first, as runs list prints
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({"metrics": {"r2": 0.4, "rmse": {"value": 55, "flag": None}}}))
    base = load_baseline_file(mapping)
    assert (base.metrics["r2"].value, base.metrics["rmse"].value, base.notebook) == (0.4, 55, None)
    plain = tmp_path / "p.json"
    plain.write_text(json.dumps({"accuracy": 0.9}))
    assert load_baseline_file(plain).metrics["accuracy"].value == 0.9


@pytest.mark.parametrize("content,message", [
    (None, "file not found"), ("{", "not valid JSON"), ("[]", "an empty list of runs"), ("3", "expected a run"),
    ('{"metrics": 3}', "'metrics' must be a list or a mapping"), ('{"metrics": [{"x": 1}]}', "each metric must be"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_baseline_file(path)


def test_a_run_id_from_the_first_store_that_has_it(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    with RunStore(second) as runs:
        runs.create_run(record("20260102-000000-aaaaaa"))
        runs.finish_run("20260102-000000-aaaaaa", RunStatus.SUCCEEDED, 1.0, None, [Metric("r2", 0.42)], 0)
    base = load_baseline_run("20260102", [first, second])  # a unique prefix works
    assert base.metrics["r2"].value == 0.42 and base.source == "baseline run 20260102-000000-aaaaaa"
    with pytest.raises(UsageError, match="no run store has that run") as info:
        load_baseline_run("nope", [first, second])
    assert "(no runs)" in str(info.value) and "no run matches 'nope'" in str(info.value)


def test_what_looks_like_a_file():
    assert looks_like_file("base.json") and looks_like_file("ci/base") and not looks_like_file("20260101-0000")
