"""The run handle with real kernels: nb2pipe.start, events, subscribe, per-run cancel, wait, logs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from nbbuild import cli, make_nb, start_cli, statuses

import nb2pipe
from nb2pipe.execution.run import RunTimeout
from nb2pipe.model.records import RunStatus, Status
from nb2pipe.store.runs import RunStore

pytestmark = pytest.mark.kernel


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (kernels, the fork server), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] in (b"Z", b"X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def wait_until(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


PRINTS = [
    ("step:make", "x = 2\nprint('made', x)"),
    ("step:train", "import sys, time\nfor epoch in range(3):\n    print('epoch', epoch)\n    time.sleep(0.1)"),
    (None, "print('to stderr', file=sys.stderr)\ny = x * 10"),
    ("step:report", "z = y + 1\nprint('z is', z)"),
]


def test_events_tell_the_whole_run_in_order(tmp_path):
    nb = make_nb(tmp_path, PRINTS)
    run = nb2pipe.start(nb, store=tmp_path / "store", workers=1)
    assert run.id and isinstance(run.id, str)
    events = list(run.events(timeout=120))
    record = run.wait()
    assert record.status == RunStatus.SUCCEEDED and record.id == run.id
    json.dumps(events, allow_nan=False)  # plain, strict JSON
    assert all(e["id"] == run.id and "time" in e for e in events)
    assert events[0]["type"] == "run" and events[0]["status"] == "running"
    assert events[0]["steps"] == ["make", "train", "report"]
    assert events[-1]["type"] == "run" and events[-1]["status"] == "succeeded" and events[-1]["exit_code"] == 0
    for step in ("make", "train", "report"):
        states = [e["status"] for e in events if e["type"] == "step" and e["step"] == step]
        assert states == ["queued", "running", "succeeded"], (step, states)
    # Cells of train: its two own cells, counted within the step, with their notebook position.
    cells = [e for e in events if e["type"] == "cell" and e["step"] == "train"]
    assert [(c["cell_index"], c["cells"], c["source_cell"], c["cell_id"]) for c in cells] == [
        (1, 2, 2, "c2"), (2, 2, 3, "c3")]
    out = "".join(e["text"] for e in events if e["type"] == "output" and e["step"] == "train"
                  and e["stream"] == "stdout")
    assert out == "epoch 0\nepoch 1\nepoch 2\n"
    err = [e for e in events if e["type"] == "output" and e["stream"] == "stderr"]
    assert [e["step"] for e in err] == ["train"] and err[0]["text"] == "to stderr\n"
    # A step's output comes after it started running and before it ended.
    kinds = [(e["type"], e.get("step"), e.get("status")) for e in events]
    first_out = next(i for i, e in enumerate(events) if e["type"] == "output" and e["step"] == "train")
    assert kinds.index(("step", "train", "running")) < first_out < kinds.index(("step", "train", "succeeded"))
    # What a step printed is kept in the store, per attempt, and `logs` prints it.
    log = tmp_path / "store" / "runs" / run.id / "train" / "attempt-1" / "output.log"
    assert log.read_text() == "epoch 0\nepoch 1\nepoch 2\nto stderr\n"
    shown = cli("logs", run.id[:12], "train", "--store", tmp_path / "store")
    assert shown.returncode == 0 and shown.stdout == log.read_text()


def test_subscribe_sees_what_events_sees_and_a_late_subscriber_gets_the_history(tmp_path):
    nb = make_nb(tmp_path, PRINTS[:1])
    run = nb2pipe.start(nb, store=tmp_path / "store")
    live: list[dict] = []
    run.subscribe(live.append)
    record = run.wait()
    late: list[dict] = []
    run.subscribe(late.append)
    assert live == late == list(run.events())
    assert [e["status"] for e in live if e["type"] == "run"] == ["running", "succeeded"]
    assert record.step("make").status == Status.SUCCEEDED
    assert run.record().to_dict() == record.to_dict() and run.done()


def test_two_runs_in_one_process_cancel_one_mid_step_the_other_goes_on(tmp_path):
    slow = make_nb(tmp_path / "a", [
        ("step:first", "x = 1"),
        ("step:sleepy", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\ny = x"),
        ("step:after", "z = y"),
    ])
    other = make_nb(tmp_path / "b", [
        ("step:one", "import time\ntime.sleep(1.5)\na = 1"),
        ("step:two", "b = a + 1"),
    ])
    before = descendants(os.getpid())
    doomed = nb2pipe.start(slow, store=tmp_path / "store-a", workers=1)
    keeper = nb2pipe.start(other, store=tmp_path / "store-b", workers=1)
    wait_until(lambda: any(e["type"] == "output" and e["step"] == "sleepy" for e in doomed.events(timeout=0)),
               what="the sleepy step to print")
    doomed.cancel()
    cancelled = doomed.wait(timeout=30)
    assert cancelled.status == RunStatus.CANCELLED and cancelled.exit_code == 130
    assert statuses(cancelled) == {"first": "succeeded", "sleepy": "failed", "after": "skipped"}
    assert cancelled.step("sleepy").error.reason == "cancelled"
    assert cancelled.step("after").error.reason == "cancelled"
    states = {e["step"]: e["status"] for e in doomed.events() if e["type"] == "step"}
    assert states == {"first": "succeeded", "sleepy": "cancelled", "after": "cancelled"}
    with RunStore(tmp_path / "store-a") as rs:
        assert rs.get_run(doomed.id).status == RunStatus.CANCELLED
    # The other run was not touched: it finishes as it would alone.
    assert not keeper.done() or keeper.record().status != RunStatus.CANCELLED
    kept = keeper.wait(timeout=120)
    assert kept.status == RunStatus.SUCCEEDED and statuses(kept) == {"one": "succeeded", "two": "succeeded"}
    # No kernel (nor fork server) of either run is left.
    wait_until(lambda: descendants(os.getpid()) <= before, timeout=20, what="kernels to exit")


def test_wait_with_a_timeout_and_cancel_before_any_step(tmp_path):
    nb = make_nb(tmp_path, [("step:s", "import time\ntime.sleep(30)")])
    run = nb2pipe.start(nb, store=tmp_path / "store")
    with pytest.raises(RunTimeout) as caught:
        run.wait(timeout=0.2)
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, nb2pipe.errors.Nb2pipeError)
    run.cancel()
    run.cancel()  # twice is harmless
    record = run.wait(timeout=30)
    assert record.status == RunStatus.CANCELLED


def test_bad_input_raises_from_start_before_anything_runs(tmp_path):
    from nb2pipe.errors import UsageError

    nb = make_nb(tmp_path, PRINTS)
    with pytest.raises(UsageError, match="unknown step 'trian'; did you mean 'train'"):
        nb2pipe.start(nb, store=tmp_path / "store", steps=["trian"])
    with pytest.raises(UsageError, match="unknown executor"):
        nb2pipe.start(nb, store=tmp_path / "store", executor="nowhere")
    with RunStore(tmp_path / "store") as rs:
        assert rs.list_runs() == []


def test_a_failed_step_event_carries_its_error_and_retries_are_attempts(tmp_path):
    nb = make_nb(tmp_path, [
        ("step:flaky retries:1", "import os\nflag = 'tried'\nif not os.path.exists(flag):\n"
                                  "    open(flag, 'w').close()\n    raise RuntimeError('first time')\nok = 1"),
        ("step:bad", "raise ValueError('nope')"),
    ])
    run = nb2pipe.start(nb, store=tmp_path / "store", workers=1)
    record = run.wait()
    events = [e for e in run.events() if e["type"] == "step"]
    flaky = [(e["status"], e["attempt"]) for e in events if e["step"] == "flaky"]
    assert flaky == [("queued", 0), ("running", 1), ("running", 2), ("succeeded", 2)]
    retry = [e for e in events if e["step"] == "flaky" and e["attempt"] == 2 and e["status"] == "running"][0]
    assert "first time" in retry["error"]["message"]  # why it is retried
    bad = [e for e in events if e["step"] == "bad"][-1]
    assert bad["status"] == "failed" and bad["error"]["ename"] == "ValueError" and bad["error"]["cell_index"] == 2
    assert record.exit_code == 1
    # Each attempt has its own log.
    first = cli("logs", run.id, "flaky", "--attempt", "1", "--store", tmp_path / "store")
    assert first.returncode == 0 and "RuntimeError" not in first.stdout  # tracebacks are not stdout
    missing = cli("logs", run.id, "flaky", "--attempt", "3", "--store", tmp_path / "store")
    assert missing.returncode == 2 and "has 2 attempt(s)" in missing.stderr


def test_a_finished_step_event_carries_the_metrics_it_reported_also_from_the_cache(tmp_path):
    nb = make_nb(tmp_path, [
        ("step:train", "acc = 0.75"),
        ("step:evaluate", "auc = acc + 0.1\nloss = float('nan')"),
        ("metrics", "auc\nloss"),
    ])

    def finals(run):
        return {e["step"]: e for e in run.events() if e["type"] == "step" and e["status"] in ("succeeded", "cached")}

    first = nb2pipe.start(nb, store=tmp_path / "store")
    record = first.wait()
    steps = finals(first)
    assert "metrics" not in [e for e in first.events() if e["type"] == "step" and e["step"] == "evaluate"][0]
    assert steps["train"]["metrics"] == []
    assert steps["evaluate"]["metrics"] == [{"name": "auc", "value": 0.85, "flag": None},
                                            {"name": "loss", "value": "NaN", "flag": "nan"}]
    assert [m.to_dict() for m in record.metrics] == steps["evaluate"]["metrics"]
    again = nb2pipe.start(nb, store=tmp_path / "store")
    record = again.wait()
    cached = finals(again)
    assert cached["evaluate"]["status"] == "cached"
    assert cached["evaluate"]["metrics"] == steps["evaluate"]["metrics"]
    assert [m.to_dict() for m in record.metrics] == steps["evaluate"]["metrics"]


def test_cli_events_are_json_lines_on_stdout(tmp_path):
    nb = make_nb(tmp_path, PRINTS)
    proc = cli("run", nb, "--store", tmp_path / "store", "--events")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["type"] == "run" and events[-1] == {**events[-1], "type": "run", "status": "succeeded"}
    assert {e["type"] for e in events} == {"run", "step", "cell", "output"}
    assert len({e["id"] for e in events}) == 1


def test_cli_events_of_a_terminated_worker_end_with_cancelled(tmp_path):
    import signal

    nb = make_nb(tmp_path, [("step:slow", "import time\nprint('go', flush=True)\ntime.sleep(60)")])
    proc = start_cli("run", nb, "--store", tmp_path / "store", "--events")
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        if lines[-1]["type"] == "output":
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=60)
    lines += [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 143
    assert lines[-1]["type"] == "run" and lines[-1]["status"] == "cancelled" and lines[-1]["exit_code"] == 143
    assert [e["status"] for e in lines if e["type"] == "step"][-1] == "cancelled"


def test_prepare_failure_ends_the_run_and_wait_raises(tmp_path):
    from nb2pipe.errors import UsageError

    nb = make_nb(tmp_path, PRINTS[:1])
    text = nb.read_text().replace('"name": "python3"', '"name": "no-such-kernel"')
    nb.write_text(text)
    run = nb2pipe.start(nb, store=tmp_path / "store")
    with pytest.raises(UsageError, match="kernel 'no-such-kernel' is not installed"):
        run.wait(timeout=30)
    events = list(run.events())
    assert events[-1]["type"] == "run" and events[-1]["status"] == "failed" and events[-1]["exit_code"] == 2
    with RunStore(tmp_path / "store") as rs:
        assert rs.list_runs() == []  # nothing recorded for a run that could not start
    assert not Path(tmp_path / "store" / "runs" / run.id).exists()


def test_step_run_records_the_parameters_its_reused_inputs_were_made_with(tmp_path):
    """After `-p n_samples 3000`, `--step evaluate` reuses the 3000-sample artifacts: its record
    (and the run's parameters) say 3000, not the default, and name the run it reused."""
    nb = make_nb(tmp_path, [
        ("parameters", "n_samples = 5000\nthreshold = 0.5"),
        ("step:load", "data = list(range(n_samples))"),
        ("step:fit", "mean = sum(data) / len(data)"),
        ("step:evaluate", "score = mean > threshold"),
    ])
    store = tmp_path / "store"
    made = nb2pipe.run(nb, {"n_samples": 3000}, store=store)
    assert made.status == RunStatus.SUCCEEDED
    assert made.step("fit").input_parameters == {"n_samples": 3000}
    assert made.step("evaluate").input_parameters == {"n_samples": 3000}
    assert made.step("fit").outputs[0].run_id == made.id
    again = nb2pipe.start(nb, store=store, steps=["evaluate"])
    record = again.wait()
    assert record.status == RunStatus.SUCCEEDED
    assert record.parameters == {"n_samples": 3000, "threshold": 0.5}
    evaluate = record.step("evaluate")
    assert evaluate.parameters == {"threshold": 0.5}
    assert evaluate.input_parameters == {"n_samples": 3000}
    assert [(a.name, a.producer_step, a.run_id) for a in evaluate.inputs] == [("mean", "fit", made.id)]
    started = next(iter(again.events()))
    assert started["reused"] == {"fit": {"run": made.id, "parameters": {"n_samples": 3000}}}
    with RunStore(store) as rs:
        stored = rs.get_run(record.id)
    assert stored.parameters == record.parameters and stored.step("evaluate").input_parameters == {"n_samples": 3000}
    assert stored.step("evaluate").inputs[0].run_id == made.id
    # The CLI says which run's artifacts it reused.
    shown = cli("run", nb, "--store", store, "--step", "evaluate")
    assert shown.returncode == 0, shown.stderr
    assert f"evaluate reuses the outputs of fit from run {made.id} (n_samples=3000)" in shown.stderr


def test_metrics_of_a_run_killed_before_it_was_closed_are_not_lost(tmp_path):
    """The runner dies after its last step finished but before it recorded the run's end: the
    next, fully cached run still reports the metrics (each step records its own)."""
    import subprocess
    import sys

    from nbbuild import ROOT, cli_env

    nb = make_nb(tmp_path, [("step:train", "score = 0.75\nloss = float('nan')"), ("metrics", "score\nloss")])
    script = (
        "import os, sys\n"
        "from nb2pipe.store.runs import RunStore\n"
        "RunStore.finish_run = lambda *a, **k: os._exit(9)  # killed right before the run is closed\n"
        "import nb2pipe\n"
        f"nb2pipe.run({str(nb)!r}, store={str(tmp_path / 'store')!r})\n"
    )
    died = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=cli_env(), capture_output=True, text=True)
    assert died.returncode == 9, died.stderr
    again = nb2pipe.run(nb, store=tmp_path / "store")
    assert again.step("train").status == Status.CACHED
    got = {m.name: m.value for m in again.metrics}
    assert got["score"] == 0.75 and got["loss"] != got["loss"]  # NaN survives too
    with RunStore(tmp_path / "store") as rs:
        first = rs.list_runs()[-1]
    assert first.status == RunStatus.CRASHED  # read as crashed at once: its runner is gone
    assert {m.name for m in first.step("train").metrics} == {"score", "loss"}
