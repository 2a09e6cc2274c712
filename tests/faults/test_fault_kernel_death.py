"""Kernel death and timeouts. Injected: a step whose kernel SIGKILLs itself (`os.kill(os.getpid(), 9)`),
one that segfaults (`ctypes.string_at(0)`), and one tagged `timeout:2` that sleeps 60 s, each run by a
real `nb2pipe run --json` subprocess after the step started a `sleep 300` child. Checked: the step
fails with reason `kernel_died` (exit 138) or `timeout` (exit 124) within the promised time (10 s;
2 + 5 s), the step before it still succeeded, its executed partial notebook exists and holds what the
cell before the fault printed, the downstream step did not run, no process of the runner (zygote,
kernels, the step's child) is left, and the store verifies clean."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from faultkit import wait_no_leftovers
from nbbuild import NB2PIPE, cli, cli_env, make_nb, sha256_of

pytestmark = pytest.mark.kernel

FAULTS = {
    "sigkill": ("import os\nos.kill(os.getpid(), 9)", "kernel_died", 138, 10),
    "segfault": ("import ctypes\nctypes.string_at(0)", "kernel_died", 138, 10),
    "timeout": ("import time\ntime.sleep(60)", "timeout", 124, 2 + 5),
}


def run_cli(nb, store, cwd):
    """`nb2pipe run --json` in a subprocess: (returncode, record, stderr, seconds, runner pid)."""
    began = time.monotonic()
    proc = subprocess.Popen([*NB2PIPE, "run", str(nb), "--store", str(store), "--json"], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, json.loads(out), err, time.monotonic() - began, proc.pid


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_step_whose_kernel_dies_or_times_out_fails_cleanly(tmp_path, fault):
    code, reason, exit_code, within = FAULTS[fault]
    tags = "step:crash timeout:2" if fault == "timeout" else "step:crash"
    nb = make_nb(tmp_path, [("step:make", "data = list(range(5))"),
                            (tags, "import subprocess\nchild = subprocess.Popen(['sleep', '300'])\nmarker = sum(data)\n"
                                  "print('before the fault', marker, 'child', child.pid, flush=True)"),
                            (None, code),
                            ("step:after", "total = marker + 1")])
    before = sha256_of(nb)
    store = tmp_path / "store"
    returncode, record, stderr, took, pid = run_cli(nb, store, tmp_path)
    steps = {s["name"]: s for s in record["steps"]}
    assert returncode == exit_code, f"exit {returncode}: {stderr[-1500:]}"
    assert "Traceback" not in stderr
    assert record["status"] == "failed"
    crash = steps["crash"]
    assert crash["status"] == "failed" and crash["error"]["reason"] == reason, crash["error"]
    assert steps["make"]["status"] == "succeeded"
    assert steps["after"]["status"] not in ("succeeded", "cached", "running")
    # Bounded: the step's own time, and the whole command (interpreter start-up and the first kernel included).
    assert crash["duration"] is not None and crash["duration"] <= within, crash["duration"]
    assert took <= within + 8, f"the run took {took:.1f} s"
    # The executed partial notebook is kept, with what the step printed before the fault.
    assert crash["output_notebook"], crash
    partial = Path(store) / crash["output_notebook"]
    assert partial.exists(), partial
    executed = nbformat.read(str(partial), as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "before the fault 10 child " in printed, printed[-500:]
    child = int(printed.split("child ")[1].split()[0])  # a process the step started: it must end too
    left = wait_no_leftovers(pid, known={child}, within=5)
    assert not left, f"processes of the runner left: {left}"
    assert cli("store", "verify", "--store", store).returncode == 0
    assert sha256_of(nb) == before


@pytest.mark.parametrize("signame,exit_code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_the_runner_signalled_mid_step_cancels_cleanly(tmp_path, signame, exit_code):
    """Injected: SIGTERM / SIGINT to `nb2pipe run --events` while a step sleeps (after it started a child).
    Checked: README's code, the last event is the run's `cancelled`, the record says cancelled, nothing
    is left running, the store verifies clean."""
    import signal

    nb = make_nb(tmp_path, [("step:make", "data = list(range(5))"),
                            ("step:slow", "import subprocess, time\nchild = subprocess.Popen(['sleep', '300'])\n"
                                          "print('child', child.pid, flush=True)\ntime.sleep(60)\nout = data")])
    store = tmp_path / "store"
    runner = subprocess.Popen([*NB2PIPE, "run", str(nb), "--store", str(store), "--events"], cwd=tmp_path,
                              env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events, child = [], None
    for line in runner.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "output" and "child " in events[-1]["text"]:
            child = int(events[-1]["text"].split("child ")[1].split()[0])
            break
    assert child is not None, events
    began = time.monotonic()
    runner.send_signal(getattr(signal, signame))
    rest, err = runner.communicate(timeout=30)
    took = time.monotonic() - began
    events += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert runner.returncode == exit_code, err[-1500:]
    assert took < 10, f"{signame} took {took:.1f} s to end the run"
    assert "Traceback" not in err
    assert events[-1]["type"] == "run" and events[-1]["status"] == "cancelled", events[-1]
    left = wait_no_leftovers(runner.pid, known={child}, within=5)
    assert not left, f"processes of the runner left: {left}"
    listed = cli("runs", "list", "--json", "--store", store)
    assert [r["status"] for r in json.loads(listed.stdout)] == ["cancelled"]
    assert cli("store", "verify", "--store", store).returncode == 0
