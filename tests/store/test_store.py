from __future__ import annotations

import math
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import traceback

import pytest

from nb2pipe.errors import ExitCode, StoreBusyError, StoreError, StoreIOError, UsageError
from nb2pipe.model.records import (
    ArtifactRef,
    Metric,
    RunRecord,
    RunStatus,
    Status,
    StepError,
    StepRecord,
    new_run_id,
)
from nb2pipe.store.runs import SCHEMA_VERSION, RunStore

STEPS = ("load", "clean", "features", "train", "report")


def sha(text: str) -> str:
    return (text.encode().hex() * 64)[:64]


def art(name: str, content: str, producer: str | None = None) -> ArtifactRef:
    return ArtifactRef(name, sha(content), len(content), "pickle", "builtins.str", producer)


def make_run(run_id: str, started: float, notebook="nb.ipynb", steps=STEPS, **kw) -> RunRecord:
    return RunRecord(
        id=run_id,
        notebook=notebook,
        notebook_sha256=kw.pop("notebook_sha256", sha("nb")),
        spec_hash="spec",
        status=RunStatus.RUNNING,
        started=started,
        parameters={"n": 1},
        steps=[StepRecord(name=s, status=Status.PENDING) for s in steps],
        environment={"nb2pipe_version": "0.1.0", "kernel_name": "python3", "executor": "local"},
        **kw,
    )


def succeeded(name: str, ended: float, cache_key=None, outputs=(), inputs=()) -> StepRecord:
    return StepRecord(
        name=name,
        status=Status.SUCCEEDED,
        started=ended - 1,
        ended=ended,
        duration=1.0,
        attempts=1,
        cache_key=cache_key,
        spec_hash=f"spec-{name}",
        inputs=list(inputs),
        outputs=list(outputs),
        output_notebook=f"runs/x/{name}.ipynb",
    )


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "store") as s:
        yield s


# -- basics -------------------------------------------------------------------------------


def test_open_creates_root_schema_and_wal(tmp_path):
    root = tmp_path / "a" / "b"
    with RunStore(root) as s:
        assert (root / "runs.db").exists()
        assert s.integrity_check() == []
    conn = sqlite3.connect(root / "runs.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "steps", "artifacts", "step_artifacts", "metrics", "cache_index"} <= tables
    conn.close()
    RunStore(root).close()  # reopening an existing store is a no-op migration


def test_create_update_finish_get(store):
    run = make_run("20240101-000000-aaaaaa", 100.0)
    store.create_run(run)
    assert store.get_run(run.id) == run

    running = StepRecord(name="load", status=Status.RUNNING, started=101.0, attempts=1)
    store.update_step(run.id, running)
    got = store.get_run(run.id)
    assert got.step("load").status is Status.RUNNING
    assert got.step("clean").status is Status.PENDING

    load = succeeded("load", 102.0, "k-load", outputs=[art("df", "d1"), art("meta", "m1")])
    store.update_step(run.id, load)
    clean = succeeded("clean", 103.0, inputs=[art("df", "d1", "load")], outputs=[art("df", "d2")])
    store.update_step(run.id, clean)
    fail = StepRecord(
        name="train",
        status=Status.FAILED,
        started=104.0,
        ended=105.0,
        duration=1.0,
        attempts=2,
        error=StepError("error", "boom", 3, "cid", "ValueError", "boom", ["tb"]),
    )
    store.update_step(run.id, fail)
    metrics = [Metric("acc", 0.5), Metric("loss", float("nan")), Metric("best", True)]
    store.finish_run(run.id, RunStatus.FAILED, 106.0, "step train failed", metrics, 1)

    got = store.get_run(run.id)
    assert got.status is RunStatus.FAILED
    assert (got.ended, got.reason, got.exit_code) == (106.0, "step train failed", 1)
    assert [s.name for s in got.steps] == list(STEPS)  # declaration order kept
    assert got.step("load") == load
    assert got.step("clean") == clean
    assert got.step("train") == fail
    assert [m.name for m in got.metrics] == ["acc", "loss", "best"]
    assert math.isnan(got.metrics[1].value) and got.metrics[1].flag == "nan"
    assert got.metrics[2].value is True
    assert got.parameters == {"n": 1} and got.environment["executor"] == "local"


def test_status_only_update_keeps_lineage(store):
    run = make_run("r1", 1.0)
    store.create_run(run)
    running = StepRecord(name="clean", status=Status.RUNNING, inputs=[art("df", "d")])
    store.update_step(run.id, running)
    store.update_step(run.id, StepRecord(name="clean", status=Status.FAILED))
    assert store.get_run("r1").step("clean").inputs == [art("df", "d")]


def test_update_step_adds_undeclared_step_at_end(store):
    store.create_run(make_run("r1", 1.0, steps=("a",)))
    store.update_step("r1", StepRecord(name="b", status=Status.SKIPPED))
    assert [s.name for s in store.get_run("r1").steps] == ["a", "b"]


def test_unknown_run_on_write_is_usage_error(store):
    with pytest.raises(UsageError):
        store.update_step("nope", StepRecord(name="a"))
    with pytest.raises(UsageError):
        store.finish_run("nope", RunStatus.SUCCEEDED, 1.0, None, [], 0)


def test_duplicate_run_id_is_store_error(store):
    store.create_run(make_run("r1", 1.0))
    with pytest.raises(StoreError):
        store.create_run(make_run("r1", 2.0))


# -- resolving and listing -------------------------------------------------------------------


def test_prefix_latest_and_ambiguity(store):
    for run_id, started in (("20240101-000000-aaaaaa", 1.0), ("20240101-000000-aabbbb", 2.0),
                            ("20240202-000000-cccccc", 3.0)):
        store.create_run(make_run(run_id, started))
    assert store.get_run("20240202").id == "20240202-000000-cccccc"
    assert store.get_run("20240101-000000-aab").id == "20240101-000000-aabbbb"
    assert store.get_run("latest").id == "20240202-000000-cccccc"
    with pytest.raises(UsageError) as e:
        store.get_run("20240101-000000-aa")
    assert str(e.value) == (
        "'20240101-000000-aa' is ambiguous: matches 20240101-000000-aaaaaa, 20240101-000000-aabbbb"
    )
    with pytest.raises(UsageError) as e:
        store.get_run("1999")
    assert str(e.value) == "no run matches '1999'"
    assert e.value.exit_code == ExitCode.INVALID


def test_latest_on_empty_store(store):
    with pytest.raises(UsageError, match="no run matches 'latest'"):
        store.get_run("latest")


def test_list_runs_newest_first_with_limit_and_notebook(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i in range(5):
        store.create_run(make_run(f"r{i}", float(i), notebook="a.ipynb" if i % 2 else "b.ipynb"))
    assert [r.id for r in store.list_runs()] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r.id for r in store.list_runs(limit=2)] == ["r4", "r3"]
    assert [r.id for r in store.list_runs(notebook="a.ipynb")] == ["r3", "r1"]
    # The same file spelled differently, or by content hash, matches too.
    assert [r.id for r in store.list_runs(notebook="./a.ipynb")] == ["r3", "r1"]
    assert [r.id for r in store.list_runs(notebook=str(tmp_path / "a.ipynb"))] == ["r3", "r1"]
    assert len(store.list_runs(notebook=sha("nb"))) == 5
    assert all(len(r.steps) == len(STEPS) for r in store.list_runs())


# -- cache and reuse ------------------------------------------------------------------------


def test_cache_lookup_only_succeeded_and_newest_wins(store):
    store.create_run(make_run("r1", 1.0))
    store.create_run(make_run("r2", 2.0))
    store.create_run(make_run("r3", 3.0))
    assert store.lookup_cache("k") is None

    store.update_step("r1", succeeded("load", 10.0, "k", outputs=[art("df", "old")]))
    store.update_step("r2", succeeded("load", 20.0, "k", outputs=[art("df", "new")]))
    # A newer but failed (or merely running) attempt with the same key must not be served.
    failed = StepRecord(name="load", status=Status.FAILED, ended=30.0, cache_key="k",
                        error=StepError("error", "x"))
    store.update_step("r3", failed)

    hit = store.lookup_cache("k")
    assert hit is not None
    assert hit.cached_from == "r2"
    assert hit.status is Status.SUCCEEDED
    assert hit.outputs == [art("df", "new")]

    # A step that is re-recorded as not succeeded withdraws its cache entry.
    store.update_step("r2", StepRecord(name="load", status=Status.FAILED, cache_key="k"))
    assert store.lookup_cache("k").cached_from == "r1"
    assert store.lookup_cache("other") is None


def test_latest_outputs(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store.create_run(make_run("r1", 1.0))
    store.create_run(make_run("r2", 2.0))
    store.create_run(make_run("r3", 3.0, notebook="other.ipynb", notebook_sha256=sha("other")))
    store.update_step("r1", succeeded("load", 10.0, outputs=[art("df", "v1")]))
    cached = StepRecord(name="load", status=Status.CACHED, cached=True, cached_from="r1",
                        outputs=[art("df", "v2")])
    store.update_step("r2", cached)
    store.update_step("r3", succeeded("load", 30.0, outputs=[art("df", "elsewhere")]))
    store.update_step("r2", StepRecord(name="clean", status=Status.FAILED))

    # The newest record is a cache hit: its outputs were made by r1, and say so.
    expected = [art("df", "v2", producer="load")]
    expected[0].run_id = "r1"
    assert store.latest_outputs("nb.ipynb", "load") == expected
    assert store.latest_outputs("./nb.ipynb", "load") == expected
    assert store.latest_outputs(sha("nb"), "load") == expected
    assert store.latest_outputs("nb.ipynb", "clean") is None
    assert store.latest_outputs("missing.ipynb", "load") is None


def test_find_artifact(store):
    store.create_run(make_run("r1", 1.0))
    store.create_run(make_run("r2", 2.0))
    store.update_step("r1", succeeded("load", 10.0, outputs=[art("df", "v1"), art("model", "m1")]))
    store.update_step("r2", succeeded("load", 20.0, outputs=[art("df", "v2")]))
    store.update_step("r2", succeeded("clean", 21.0, outputs=[art("df", "v3")]))

    assert store.find_artifact("df") == art("df", "v3", "clean")  # newest run, last writer
    assert store.find_artifact("df", run_id="r1") == art("df", "v1", "load")
    assert store.find_artifact("model") == art("model", "m1", "load")  # latest run that has it
    assert store.find_artifact("df", notebook="nb.ipynb").sha256 == sha("v3")

    with pytest.raises(UsageError) as e:
        store.find_artifact("model", run_id="r2")
    assert "'model'" in str(e.value) and "artifacts: df" in str(e.value)
    with pytest.raises(UsageError) as e:
        store.find_artifact("nope")
    assert "artifacts: df, model" in str(e.value)
    with pytest.raises(UsageError, match="no run matches 'zz'"):
        store.find_artifact("df", run_id="zz")


def test_find_artifact_lists_at_most_20_names(store):
    store.create_run(make_run("r1", 1.0))
    outputs = [art(f"v{i:02d}", str(i)) for i in range(30)]
    store.update_step("r1", succeeded("load", 10.0, outputs=outputs))
    with pytest.raises(UsageError) as e:
        store.find_artifact("missing")
    listed = str(e.value).split("artifacts: ", 1)[1]
    assert listed.split(", ")[:20] == [f"v{i:02d}" for i in range(20)]
    assert listed.endswith(", ...") and "v20" not in listed


def test_referenced_objects(store):
    store.create_run(make_run("r1", 1.0))
    store.update_step("r1", succeeded("load", 10.0, outputs=[art("df", "a")]))
    store.update_step("r1", succeeded("clean", 11.0, inputs=[art("df", "a", "load")],
                                      outputs=[art("x", "b")]))
    assert store.referenced_objects() == {sha("a"), sha("b")}


# -- crash recovery -------------------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_mark_crashed(store):
    pid = dead_pid()
    host = socket.gethostname()
    store.create_run(make_run("alive", 2.0, pid=os.getpid(), host=host))
    store.create_run(make_run("remote", 3.0, pid=pid, host=host + "-elsewhere"))
    store.create_run(make_run("dead", 1.0, pid=pid, host=host))  # last: create_run sweeps too
    store.update_step("dead", succeeded("load", 5.0, "k-load"))
    store.update_step("dead", StepRecord(name="clean", status=Status.RUNNING, started=6.0))

    assert store.mark_crashed() == ["dead"]
    run = store.get_run("dead")
    assert run.status is RunStatus.CRASHED
    assert run.reason == "runner died"
    assert run.ended == 6.0  # last recorded activity
    assert run.step("load").status is Status.SUCCEEDED
    clean = run.step("clean")
    assert clean.status is Status.FAILED
    assert clean.error == StepError(reason="crashed", message="runner died")
    assert run.step("train").status is Status.PENDING  # never started
    assert store.lookup_cache("k-load").cached_from == "dead"  # finished work stays reusable
    assert store.get_run("alive").status is RunStatus.RUNNING
    assert store.get_run("remote").status is RunStatus.RUNNING
    assert store.mark_crashed() == []


def test_create_run_marks_crashed_runs(store):
    store.create_run(make_run("dead", 1.0, pid=dead_pid(), host=socket.gethostname()))
    store.create_run(make_run("next", 2.0))
    assert store.get_run("dead").status is RunStatus.CRASHED


# -- failure modes --------------------------------------------------------------------------


def test_garbage_database_is_store_error_and_left_alone(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    garbage = b"this is definitely not an SQLite database \x00\xff" * 200
    (root / "runs.db").write_bytes(garbage)
    with pytest.raises(StoreError) as e:
        RunStore(root)
    assert type(e.value) is StoreError
    assert e.value.exit_code == ExitCode.STORE_INTEGRITY
    assert "corrupt" in str(e.value) and "recover" in str(e.value)
    assert (root / "runs.db").read_bytes() == garbage


def test_damaged_pages_are_store_error(tmp_path):
    root = tmp_path / "store"
    with RunStore(root) as s:
        for i in range(30):
            s.create_run(make_run(f"r{i:02d}", float(i)))
    db = root / "runs.db"
    data = bytearray(db.read_bytes())
    assert len(data) > 8192
    data[4096:] = b"\xa5" * (len(data) - 4096)  # keep the header, wreck every page after it
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError) as e:
        with RunStore(root) as s:
            s.list_runs()
    assert type(e.value) is StoreError and "corrupt" in str(e.value)


def test_root_under_a_file_is_io_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    root = tmp_path / "afile" / "store"
    with pytest.raises(StoreIOError) as e:
        RunStore(root)
    assert e.value.exit_code == ExitCode.IO_ERROR
    assert str(root) in str(e.value)


def test_read_only_root_is_io_error(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        try:
            (root / "probe").write_text("x")
        except PermissionError:
            pass
        else:
            pytest.skip("running as root: permission bits do not stop root from writing")
        with pytest.raises(StoreIOError) as e:
            RunStore(root)
        assert str(root) in str(e.value)
    finally:
        root.chmod(0o755)


def test_locked_beyond_busy_timeout_is_busy_error(tmp_path):
    root = tmp_path / "store"
    with RunStore(root) as s:
        s.create_run(make_run("r1", 1.0))
    holder = sqlite3.connect(root / "runs.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with RunStore(root, busy_timeout=0.2) as s:
            assert s.get_run("r1").id == "r1"  # WAL: reads never wait for the writer
            with pytest.raises(StoreBusyError) as e:
                s.update_step("r1", StepRecord(name="load", status=Status.RUNNING))
            assert e.value.exit_code == ExitCode.STORE_BUSY
            assert "retry" in str(e.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_disk_full_is_io_error(store):
    store.create_run(make_run("r1", 1.0))
    # Cap the file at its current size so the next growth fails as a full disk would.
    pages = store._c.execute("PRAGMA page_count").fetchone()[0]
    store._c.execute(f"PRAGMA max_page_count = {pages}")
    big = [art(f"o{i}", f"{i}" * 200) for i in range(500)]
    with pytest.raises(StoreIOError) as e:
        store.update_step("r1", succeeded("load", 2.0, outputs=big))
    assert "runs.db" in str(e.value) and "full" in str(e.value)
    assert store.get_run("r1").step("load").status is Status.PENDING  # rolled back whole


def test_closed_store_raises(tmp_path):
    s = RunStore(tmp_path / "store")
    s.close()
    s.close()
    with pytest.raises(StoreError):
        s.list_runs()


# -- concurrency ----------------------------------------------------------------------------


def test_threads_share_one_store(store):
    store.create_run(make_run("r1", 1.0, steps=[f"s{i}" for i in range(16)]))
    errors = []

    def work(i: int) -> None:
        try:
            for attempt in range(5):
                store.update_step("r1", succeeded(f"s{i}", 10.0 + attempt, f"k{i}",
                                                  outputs=[art(f"o{i}", f"{i}-{attempt}")]))
                store.get_run("r1")
        except Exception:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    run = store.get_run("r1")
    assert all(s.status is Status.SUCCEEDED for s in run.steps)
    assert run.step("s3").outputs == [art("o3", "3-4")]


N_PROCS = 8
RUNS_PER_PROC = 20


def _hammer(root: str, worker: int, barrier, errors) -> None:
    try:
        barrier.wait(timeout=60)
        with RunStore(root) as store:
            for n in range(RUNS_PER_PROC):
                run_id = f"{new_run_id()}-w{worker}-{n:02d}"
                store.create_run(make_run(run_id, float(n)))
                for i, name in enumerate(STEPS):
                    outputs = [art(f"{name}_out", f"{worker}-{n}-{name}")]
                    prev = STEPS[i - 1]
                    inputs = [art(f"{prev}_out", f"{worker}-{n}-{prev}")] if i else []
                    store.update_step(run_id, succeeded(name, float(n) + i, f"k-{name}",
                                                        outputs=outputs, inputs=inputs))
                store.finish_run(run_id, RunStatus.SUCCEEDED, float(n) + 9, None,
                                 [Metric("worker", worker)], 0)
    except BaseException:
        errors.put(traceback.format_exc())
        raise


def test_eight_processes_open_fresh_store_and_write_at_once(tmp_path):
    root = tmp_path / "shared"  # does not exist yet: every worker races to create it
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_PROCS)
    errors = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(root), w, barrier, errors))
             for w in range(N_PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
    assert [p.exitcode for p in procs] == [0] * N_PROCS

    with RunStore(root) as store:
        runs = store.list_runs(limit=1000)
        assert len(runs) == N_PROCS * RUNS_PER_PROC
        assert len({r.id for r in runs}) == N_PROCS * RUNS_PER_PROC
        for run in runs:
            assert run.status is RunStatus.SUCCEEDED
            assert [s.name for s in run.steps] == list(STEPS)
            assert all(s.status is Status.SUCCEEDED and len(s.outputs) == 1 for s in run.steps)
        assert store.integrity_check() == []
        assert len(store.referenced_objects()) == N_PROCS * RUNS_PER_PROC * len(STEPS)
    conn = sqlite3.connect(root / "runs.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_version_1_store_is_migrated_in_place(tmp_path):
    """Stores written before lineage was recorded open, keep their runs, and gain the columns."""
    import sqlite3

    from nb2pipe.store import schema

    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "runs.db")
    for statement in schema.STATEMENTS:
        conn.execute(statement)
    conn.execute("INSERT INTO runs (id, notebook, notebook_key, status, started) "
                 "VALUES ('r1', 'nb.ipynb', 'nb.ipynb', 'succeeded', 1.0)")
    conn.execute("INSERT INTO steps (run_id, name, position, status) VALUES ('r1', 'load', 0, 'succeeded')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with RunStore(root) as store:
        record = store.get_run("r1")
        assert record.step("load").input_parameters == {}
        store.update_step("r1", succeeded("load", 2.0, outputs=[art("df", "v1")]))
        assert store.get_run("r1").step("load").outputs[0].sha256 == art("df", "v1").sha256
    conn = sqlite3.connect(root / "runs.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert "input_parameters" in {row[1] for row in conn.execute("PRAGMA table_info(steps)")}
    assert "source_run" in {row[1] for row in conn.execute("PRAGMA table_info(step_artifacts)")}
    assert "note" in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    assert {"run_tags", "images"} <= {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
