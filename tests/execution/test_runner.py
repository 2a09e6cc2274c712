"""LocalRunner with real kernels: parallelism, failures, retries, exits, artifacts, cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from nbbuild import by_name, check_store, executed_notebook, make_nb, run_nb, sha256_of, statuses

import nb2pipe
from nb2pipe.model.records import RunStatus, Status
from nb2pipe.store.runs import RunStore

pytestmark = pytest.mark.kernel


def steps_ran(record) -> set[str]:
    return {s.name for s in record.steps if s.status == Status.SUCCEEDED}


def steps_cached(record) -> set[str]:
    return {s.name for s in record.steps if s.status == Status.CACHED}


# --- parallelism ------------------------------------------------------------------------------

def test_fan_out_branches_overlap_in_time(tmp_path):
    nb = make_nb(tmp_path, [
        ("step:start", "seed = 1"),
        ("step:left", "import time\ntime.sleep(1.5)\nleft = seed + 1"),
        ("step:right", "import time\ntime.sleep(1.5)\nright = seed + 2"),
        ("step:join", "total = left + right"),
    ])
    record = run_nb(nb, tmp_path / "store", workers=2)
    assert record.status == RunStatus.SUCCEEDED and record.exit_code == 0
    steps = by_name(record)
    left, right, join = steps["left"], steps["right"], steps["join"]
    assert left.status == right.status == Status.SUCCEEDED
    overlap = min(left.ended, right.ended) - max(left.started, right.started)
    assert overlap > 0.75, f"branches did not run in parallel (overlap {overlap:.2f}s)"
    assert join.started >= max(left.ended, right.ended)
    assert steps["start"].ended <= min(left.started, right.started)
    # The whole run took far less than the two sleeps in series.
    assert record.ended - record.started < 1.5 * 2 + 2.5
    # What was recorded matches what was returned.
    with RunStore(tmp_path / "store") as rs:
        stored = rs.get_run(record.id)
    assert stored.step("left").started == pytest.approx(left.started)
    assert stored.step("right").ended == pytest.approx(right.ended)


# --- failures -----------------------------------------------------------------------------------

FAILING = [
    ("step:a", "x = 1"),                       # 1
    ("step:b", "y = x + 1"),                   # 2
    (None, "raise ValueError('boom')"),        # 3
    ("step:c", "z = y * 2"),                   # 4
    ("step:d", "w = x * 10"),                  # 5
]


def test_failing_step_skips_downstream_and_resume_uses_the_cache(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, FAILING)
    record = run_nb(nb, store, workers=2)
    assert record.status == RunStatus.FAILED
    assert record.exit_code == 1
    assert statuses(record) == {"a": "succeeded", "b": "failed", "c": "skipped", "d": "succeeded"}
    b = record.step("b")
    assert b.error.reason == "error"
    assert b.error.cell_index == 3 and b.error.cell_id == "c3"
    assert (b.error.ename, b.error.evalue) == ("ValueError", "boom")
    assert "ValueError" in b.error.message and "cell 3" in b.error.message
    assert record.step("c").error.reason == "upstream_failed"
    assert record.step("c").started is None
    # The kept notebook of the failed step carries papermill's error banner before the bad cell.
    kept = executed_notebook(store, b)
    banner = [i for i, c in enumerate(kept.cells) if "papermill-error-cell-tag" in c.metadata.get("tags", [])]
    assert banner and banner[0] == 0
    assert "An Exception was encountered" in kept.cells[0].source
    bad = next(i for i, c in enumerate(kept.cells) if c.get("id") == "c3")
    assert banner[-1] == bad - 1
    assert any(o.get("ename") == "ValueError" for o in kept.cells[bad].outputs)
    assert not (store / b.output_notebook).with_name("step.partial.ipynb").exists()

    # Fix the failing cell: the next run resumes, reusing what succeeded.
    fixed = make_nb(tmp_path, [*FAILING[:2], (None, "pass"), *FAILING[3:]])
    again = run_nb(fixed, store, workers=2)
    assert again.status == RunStatus.SUCCEEDED and again.exit_code == 0
    assert statuses(again) == {"a": "cached", "b": "succeeded", "c": "succeeded", "d": "cached"}
    assert again.step("a").cached_from == record.id
    assert again.step("a").outputs[0].sha256 == record.step("a").outputs[0].sha256
    check_store(store)


def test_fail_fast_starts_no_new_step(tmp_path):
    nb = make_nb(tmp_path, [
        ("step:a", "raise RuntimeError('first')"),
        ("step:b", "b_value = 1"),
        ("step:c", "c_value = 2"),
    ])
    store = tmp_path / "store"
    record = run_nb(nb, store, workers=1, fail_fast=True)
    assert record.exit_code == 1
    assert statuses(record) == {"a": "failed", "b": "skipped", "c": "skipped"}
    for name in ("b", "c"):
        step = record.step(name)
        assert step.started is None and step.attempts == 0
        assert not (store / "runs" / record.id / name).exists()


def test_retries_until_success(tmp_path):
    nb = make_nb(tmp_path, [
        ("step:flaky retries:2", "from pathlib import Path\n"
                                 "counter = Path('attempts.txt')\n"
                                 "n = int(counter.read_text()) + 1 if counter.exists() else 1\n"
                                 "counter.write_text(str(n))\n"
                                 "if n < 3:\n"
                                 "    raise RuntimeError(f'attempt {n} fails')\n"
                                 "result = n"),
        ("step:use", "assert result == 3"),
    ])
    store = tmp_path / "store"
    record = run_nb(nb, store)
    flaky = record.step("flaky")
    assert flaky.status == Status.SUCCEEDED and flaky.error is None
    assert flaky.attempts == 3
    assert record.step("use").status == Status.SUCCEEDED
    assert (tmp_path / "attempts.txt").read_text() == "3"
    first = store / "runs" / record.id / "flaky" / "attempt-1" / "step.ipynb"
    assert "attempt 1 fails" in first.read_text()
    assert flaky.output_notebook.endswith("attempt-3/step.ipynb")


def test_retries_exhausted(tmp_path):
    nb = make_nb(tmp_path, [("step:bad retries:1", "raise KeyError('always')")])
    record = run_nb(nb, tmp_path / "store")
    bad = record.step("bad")
    assert bad.status == Status.FAILED and bad.attempts == 2
    assert bad.error.ename == "KeyError" and record.exit_code == 1


# --- exits, allowed exceptions ------------------------------------------------------------------

EXITS = [
    ("step:exit_last", "last_value = 41"),                               # 1
    (None, "last_value += 1\nimport sys\nsys.exit(0)"),                  # 2
    ("step:use_last", "assert last_value == 42"),                        # 3
    ("step:exit_middle", "mid_value = 1"),                               # 4
    (None, "import sys\nsys.exit(0)"),                                   # 5
    (None, "mid_value = 2"),                                             # 6
    ("step:use_middle", "print(mid_value)"),                             # 7
    ("step:exit_one", "import sys\nsys.exit(1)"),                        # 8
    ("step:allowed", "allowed_value = 1"),                               # 9
    ("raises-exception", "raise ValueError('expected')"),               # 10
    (None, "allowed_value += 1"),                                        # 11
    ("step:use_allowed", "assert allowed_value == 2"),                   # 12
    ("step:exit_early", "import sys\nsys.exit(0)"),                      # 13
    (None, "late_value = 1"),                                            # 14
    ("step:use_late", "print(late_value)"),                              # 15
]


def test_sys_exit_and_raises_exception(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, EXITS)
    record = run_nb(nb, store, workers=2)
    s = statuses(record)
    # sys.exit(0) in the step's last cell: a success with outputs saved.
    assert s["exit_last"] == "succeeded" and s["use_last"] == "succeeded"
    assert [a.name for a in record.step("exit_last").outputs] == ["last_value"]
    assert nb2pipe.load("last_value", run=record.id, store=store) == 42
    # sys.exit(0) in a middle cell: as papermill, a success; the cells after it do not run and
    # what the cells before it defined is passed on.
    assert s["exit_middle"] == "succeeded" and s["use_middle"] == "succeeded"
    assert nb2pipe.load("mid_value", run=record.id, store=store) == 1
    # ... unless a later step reads what the skipped cells would have defined: that names both.
    early = record.step("exit_early")
    assert s["exit_early"] == "failed" and s["use_late"] == "skipped"
    assert early.error.reason == "early_exit"
    assert early.error.cell_index == 13 and early.error.cell_id == "c13"
    assert "cell 13" in early.error.message and "late_value" in early.error.message
    # sys.exit(1): a failure.
    one = record.step("exit_one")
    assert s["exit_one"] == "failed"
    assert one.error.ename == "SystemExit" and one.error.cell_index == 8
    # An error in a raises-exception cell does not fail the step; the cells after it run.
    assert s["allowed"] == "succeeded" and s["use_allowed"] == "succeeded"
    kept = executed_notebook(store, record.step("allowed"))
    assert not any("papermill-error-cell-tag" in c.metadata.get("tags", []) for c in kept.cells)
    assert record.exit_code == 1


def test_raises_exception_then_real_error_reports_the_real_cell(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, [
        ("step:a", "value = 1"),
        ("raises-exception", "raise ValueError('expected')"),
        (None, "raise KeyError('real')"),
    ])
    record = run_nb(nb, store)
    a = record.step("a")
    assert a.status == Status.FAILED
    assert (a.error.cell_index, a.error.ename) == (3, "KeyError")
    kept = executed_notebook(store, a)
    anchor = next(i for i, c in enumerate(kept.cells)
                  if "papermill-error-cell-tag" in c.metadata.get("tags", []) and i > 0)
    assert kept.cells[anchor + 1].get("id") == "c3"


# --- artifacts --------------------------------------------------------------------------------

UNSERIALIZABLE = [
    ("step:ok", "fine = [1, 2, 3]"),
    ("step:use_ok", "assert fine == [1, 2, 3]"),
    ("step:gen", "numbers = (i for i in range(3))"),
    ("step:use_gen", "print(list(numbers))"),
    ("step:fh", "handle = open('data.txt')"),
    ("step:use_fh", "print(handle.read())"),
    ("step:lock", "import threading\nguard = threading.Lock()"),
    ("step:use_lock", "print(guard)"),
]


def test_unserializable_outputs_fail_the_producer(tmp_path):
    store = tmp_path / "store"
    (tmp_path / "data.txt").write_text("hello")
    record = run_nb(make_nb(tmp_path, UNSERIALIZABLE), store, workers=2)
    assert record.exit_code == 1
    s = statuses(record)
    assert s["ok"] == s["use_ok"] == "succeeded"
    expected = {"gen": ("numbers", "generator", "list("), "fh": ("handle", "TextIOWrapper", "path"),
                "lock": ("guard", "lock", "consuming step")}
    for step, (var, type_name, fix) in expected.items():
        rec = record.step(step)
        assert rec.status == Status.FAILED, step
        assert rec.error.reason == "serialization", rec.error
        assert f"'{var}'" in rec.error.message and type_name in rec.error.message, rec.error.message
        assert fix in rec.error.message, rec.error.message
        assert rec.outputs == []
        assert s["use_" + step] == "skipped"
    # Only the serializable output reached the store.
    assert check_store(store) == 1
    with RunStore(store) as rs:
        names = {r[0] for r in rs._conn.execute("SELECT DISTINCT name FROM step_artifacts")}
    assert names == {"fine"}


TRICKY_SETUP = """
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression


def expected_frame():
    return pd.DataFrame({
        "cat": pd.Categorical(["a", "b", "a", "c"], categories=["c", "b", "a"], ordered=True),
        "when": pd.date_range("2024-03-30 22:00", periods=4, freq="h", tz="Europe/Berlin"),
        "f32": np.array([0.1, 1.5, -2.25, np.nan], dtype=np.float32),
    }, index=pd.Index([10, 20, 30, 40], name="key"))


def training_data():
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.5], [0.5, 2.0], [2.5, 2.5]])
    return X, np.array([0, 0, 1, 1, 0, 1])
"""

TRICKY = [
    ("setup", TRICKY_SETUP),
    ("step:produce", """
frame = expected_frame()
vector = np.linspace(0, 1, 7, dtype=np.float32)
X, y = training_data()
model = LogisticRegression().fit(X, y)
probabilities = model.predict_proba(X)
config = {"nested": {"k": [1, 2.5, None]}, "t": (1, "x"), 3: {"set"}}

def scale(v, factor=3):
    return v * factor + len(config)
"""),
    ("step:consume", """
pd.testing.assert_frame_equal(frame, expected_frame(), check_exact=True)
assert isinstance(frame["cat"].dtype, pd.CategoricalDtype) and frame["cat"].dtype.ordered
assert str(frame["when"].dt.tz) == "Europe/Berlin"
assert frame["f32"].dtype == np.float32
assert vector.dtype == np.float32 and np.array_equal(vector, np.linspace(0, 1, 7, dtype=np.float32))
X2, _ = training_data()
assert np.array_equal(model.predict_proba(X2), probabilities)
assert config == {"nested": {"k": [1, 2.5, None]}, "t": (1, "x"), 3: {"set"}}
assert scale(2) == 2 * 3 + 3
checked = True
"""),
]


def test_tricky_values_round_trip_exactly(tmp_path):
    store = tmp_path / "store"
    record = run_nb(make_nb(tmp_path, TRICKY), store)
    produce, consume = record.step("produce"), record.step("consume")
    assert consume.status == Status.SUCCEEDED, consume.error
    serializers = {a.name: a.serializer for a in produce.outputs}
    assert serializers["frame"] == "parquet"
    assert serializers["vector"] == "npy"
    assert serializers["model"] == "joblib"
    assert serializers["scale"] == "cloudpickle"  # defined in a cell: stored by value
    # ... and the same values load in this process too.
    import numpy as np
    import pandas as pd

    namespace: dict = {}
    exec(TRICKY_SETUP, namespace)
    frame = nb2pipe.load("frame", run=record.id, store=store)
    pd.testing.assert_frame_equal(frame, namespace["expected_frame"](), check_exact=True)
    vector = nb2pipe.load("vector", run=record.id, store=store)
    assert vector.dtype == np.float32 and vector.shape == (7,)
    model = nb2pipe.load("model", run=record.id, store=store)
    X, _ = namespace["training_data"]()
    assert np.array_equal(model.predict_proba(X), nb2pipe.load("probabilities", run=record.id, store=store))
    assert nb2pipe.load("scale", run=record.id, store=store)(2) == 9
    assert nb2pipe.load("config", run=record.id, store=store)[3] == {"set"}
    check_store(store)


def test_large_array_moves_by_reference(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, [
        ("step:make", "import numpy as np\nbig = np.arange(6_600_000, dtype=np.float64) * 0.5\nbig"),
        ("step:use", "import numpy as np\n"
                     "assert big.dtype == np.float64 and big.shape == (6_600_000,)\n"
                     "assert big[-1] == (6_600_000 - 1) * 0.5\n"
                     "total = float(big.sum())\nbig"),
    ])
    record = run_nb(nb, store)
    assert record.status == RunStatus.SUCCEEDED, [s.error for s in record.steps]
    ref = record.step("make").outputs[0]
    assert ref.size > 50_000_000 and ref.serializer == "npy"
    for step in record.steps:
        size = (store / step.output_notebook).stat().st_size
        assert size < 1_000_000, f"{step.name}'s notebook is {size} bytes"
    check_store(store)


# --- metrics, state, paths ----------------------------------------------------------------------

def test_metrics_with_non_finite_values(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, [
        ("step:score", "accuracy = 0.75\nsamples = 120\nloss = float('nan')\nratio = float('inf')"),
        ("metrics", "accuracy\nsamples\nloss\nratio"),
    ])
    record = run_nb(nb, store)
    metrics = {m.name: m for m in record.metrics}
    assert set(metrics) == {"accuracy", "samples", "loss", "ratio"}
    assert metrics["accuracy"].value == 0.75 and metrics["accuracy"].flag is None
    assert metrics["samples"].value == 120 and type(metrics["samples"].value) is int
    assert math.isnan(metrics["loss"].value) and metrics["loss"].flag == "nan"
    assert metrics["ratio"].value == math.inf and metrics["ratio"].flag == "inf"
    with RunStore(store) as rs:
        stored = {m.name: m for m in rs.get_run(record.id).metrics}
    assert stored["loss"].flag == "nan" and stored["ratio"].flag == "inf"
    json.dumps(record.to_dict(), allow_nan=False)
    # A cached rerun reports the same metrics.
    again = run_nb(nb, store)
    assert statuses(again) == {"score": "cached"}
    assert {m.name: m.flag for m in again.metrics} == {m.name: m.flag for m in record.metrics}


def test_steps_start_with_a_clean_interpreter_and_the_notebook_folder_as_cwd(tmp_path):
    (tmp_path / "data.txt").write_text("hello from a file")
    nb = make_nb(tmp_path, [
        ("setup", "import os"),
        ("step:a", "secret = 42\nimport json\nwith open('data.txt') as f:\n    text = f.read()"),
        ("step:b", "assert 'secret' not in globals()\nassert 'json' not in globals()\nassert 'text' not in globals()\n"
                   "assert os.getcwd() == os.path.dirname(os.path.abspath('data.txt'))"),
        ("step:c", "assert secret == 42 and text == 'hello from a file'"),
    ])
    record = run_nb(nb, tmp_path / "store", workers=2)
    assert statuses(record) == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}, \
        [s.error and s.error.message for s in record.steps]
    assert nb2pipe.load("text", run=record.id, store=tmp_path / "store") == "hello from a file"


# --- cache invalidation ---------------------------------------------------------------------------

CACHE_NB = [
    ("parameters", "n = 1\nm = 2"),
    ("step:a", "x = 10"),
    ("step:b", "y = x + n"),
    ("step:c", "z = y * 2"),
    ("step:d", "w = x + m"),
    ("step:e", "print(z)"),
]


def test_cache_invalidation(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, CACHE_NB)
    first = run_nb(nb, store)
    assert steps_ran(first) == {"a", "b", "c", "d", "e"}

    # Unchanged: every step cached, no kernel started.
    same = run_nb(nb, store)
    assert steps_cached(same) == {"a", "b", "c", "d", "e"}
    assert all(s.cached and s.attempts == 0 and s.cached_from == first.id for s in same.steps)
    assert same.ended - same.started < 1.0
    run_dir = store / "runs" / same.id
    log = run_dir / "kernels.log"
    assert not log.exists() or log.stat().st_size == 0
    assert not [p for p in run_dir.iterdir() if p.is_dir()] if run_dir.exists() else True

    # Edit one step's code: it and its downstream rerun, the rest is cached.
    edited = make_nb(tmp_path, [*CACHE_NB[:2], ("step:b", "y = x + n + 100"), *CACHE_NB[3:]])
    rec = run_nb(edited, store)
    assert steps_ran(rec) == {"b", "c", "e"} and steps_cached(rec) == {"a", "d"}
    assert nb2pipe.load("z", run=rec.id, store=store) == 222

    # A parameter: only the steps reading it (and downstream) rerun.
    rec = run_nb(edited, store, parameters={"m": 5})
    assert steps_ran(rec) == {"d"} and steps_cached(rec) == {"a", "b", "c", "e"}
    rec = run_nb(edited, store, parameters={"n": 2})
    assert steps_ran(rec) == {"b", "c", "e"} and steps_cached(rec) == {"a", "d"}

    # --no-cache runs everything again.
    rec = run_nb(edited, store, cache=False)
    assert steps_ran(rec) == {"a", "b", "c", "d", "e"}

    # cache:off on one step.
    off = make_nb(tmp_path, [*CACHE_NB[:2], ("step:b", "y = x + n + 100"), CACHE_NB[3],
                             ("step:d cache:off", "w = x + m"), CACHE_NB[5]])
    rec = run_nb(off, store)
    assert steps_ran(rec) == {"d"} and steps_cached(rec) == {"a", "b", "c", "e"}

    # --from b: b and its downstream rerun.
    edited = make_nb(tmp_path, [*CACHE_NB[:2], ("step:b", "y = x + n + 100"), *CACHE_NB[3:]])
    rec = run_nb(edited, store, from_step="b")
    assert steps_ran(rec) == {"b", "c", "e"} and steps_cached(rec) == {"a", "d"}
    latest_y = rec.step("b").outputs[0]

    # --step c: only c, from the stored outputs of its upstream.
    rec = run_nb(edited, store, steps=["c"])
    assert [s.name for s in rec.steps] == ["c"]
    assert steps_ran(rec) == {"c"}
    assert [(i.name, i.sha256) for i in rec.step("c").inputs] == [("y", latest_y.sha256)]
    assert nb2pipe.load("z", run=rec.id, store=store) == 222
    check_store(store)


def test_cache_hit_whose_object_vanished_reruns_the_producer(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, [("step:a", "x = list(range(50))"), ("step:b", "y = sum(x)"), ("step:c", "print(y)")])
    first = run_nb(nb, store)
    ref = first.step("a").outputs[0]
    path = store / "objects" / ref.sha256[:2] / ref.sha256[2:]
    assert path.exists()
    path.unlink()
    again = run_nb(nb, store)
    # a re-runs and stores the same bytes again; b's inputs are unchanged, so it stays cached.
    assert statuses(again) == {"a": "succeeded", "b": "cached", "c": "cached"}
    assert again.step("a").outputs[0].sha256 == ref.sha256 and path.exists()
    check_store(store)


def test_step_needing_an_upstream_that_never_ran(tmp_path):
    from nb2pipe.errors import UsageError

    nb = make_nb(tmp_path, [("step:a", "x = 1"), ("step:b", "y = x")])
    with pytest.raises(UsageError, match="never run"):
        run_nb(nb, tmp_path / "store", steps=["b"])
    with pytest.raises(UsageError, match="unknown step 'bb'"):
        run_nb(nb, tmp_path / "store", from_step="bb")
    assert sha256_of(nb)  # still readable, untouched


def test_notebook_without_step_tags_is_one_step(tmp_path):
    nb = make_nb(tmp_path, [(None, "a = 1"), (None, "b = a + 1\nassert b == 2")])
    record = run_nb(nb, tmp_path / "store")
    assert len(record.steps) == 1 and record.steps[0].status == Status.SUCCEEDED
    assert Path(tmp_path / "store" / record.steps[0].output_notebook).exists()


# --- executed step notebooks ----------------------------------------------------------------------

def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_executed_notebooks_name_no_store_path_and_a_replay_rewrites_nothing(tmp_path, monkeypatch):
    """Executing a stored step notebook by hand (to debug) loads its inputs from the store it
    sits in, but never writes its outputs over the run's."""
    import nbformat
    from nbclient import NotebookClient

    store = tmp_path / "store"
    nb = make_nb(tmp_path, [("step:make", "values = [1, 2, 3]"), ("step:use", "total = sum(values)\nprint(total)"),
                            ("step:last", "print(total * 2)")])
    record = run_nb(nb, store)
    assert record.status == RunStatus.SUCCEEDED
    path = store / record.step("use").output_notebook
    text = path.read_text()
    assert str(store) not in text and str(store.resolve()) not in text and str(tmp_path) not in text
    objects_before = check_store(store)
    before = _files(store / "runs")
    monkeypatch.delenv("NB2PIPE_STEP_STORE", raising=False)
    replay = nbformat.read(path, as_version=4)
    NotebookClient(replay, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = "".join(o.get("text", "") for c in replay.cells for o in c.get("outputs", []))
    assert "6" in outputs and "nothing was saved" in outputs
    assert _files(store / "runs") == before
    assert check_store(store) == objects_before
