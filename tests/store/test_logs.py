"""Step logs in the store: `nb2pipe logs RUN STEP [--attempt N] [-f]`, whole or followed live."""

from __future__ import annotations

import pytest
from nbbuild import by_name, cli, make_nb, start_cli

import nb2pipe
from nb2pipe.model.records import RunStatus, Status

pytestmark = pytest.mark.kernel

PRINTS = [
    ("step:make", "x = 2\nprint('made', x)"),
    ("step:train", "import sys, time\nfor epoch in range(3):\n    print('epoch', epoch)\n    time.sleep(0.1)"),
    (None, "print('to stderr', file=sys.stderr)\ny = x * 10"),
    ("step:report", "z = y + 1\nprint('z is', z)"),
]


def wait_until(predicate, timeout: float = 60.0, what: str = "condition"):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_logs_follow_a_running_step_until_it_ends(tmp_path):
    nb = make_nb(tmp_path, [("step:ticker", "import time\nfor i in range(5):\n    print('tick', i, flush=True)\n"
                                           "    time.sleep(0.4)")])
    run = nb2pipe.start(nb, store=tmp_path / "store")
    wait_until(lambda: any(e["type"] == "output" for e in run.events(timeout=0)), what="the first tick")
    follower = start_cli("logs", run.id, "ticker", "-f", "--store", tmp_path / "store")
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert out == "".join(f"tick {i}\n" for i in range(5))
    assert run.wait().status == RunStatus.SUCCEEDED


def test_a_cached_step_shows_the_log_of_the_run_that_made_it(tmp_path):
    nb = make_nb(tmp_path, PRINTS[:1])
    first = nb2pipe.run(nb, store=tmp_path / "store")
    second = nb2pipe.run(nb, store=tmp_path / "store")
    assert by_name(second)["make"].status == Status.CACHED
    shown = cli("logs", "latest", "make", "--store", tmp_path / "store")
    assert shown.returncode == 0 and shown.stdout == "made 2\n"
    assert first.id != second.id


def test_log_output_prefixes_each_line_with_its_step(tmp_path):
    nb = make_nb(tmp_path, PRINTS)
    proc = cli("run", nb, "--store", tmp_path / "store", "--log-output", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "[make] made 2" in lines and "[train] epoch 2" in lines and "[train] to stderr" in lines
    assert "[report] z is 21" in lines
    quiet = cli("run", nb, "--store", tmp_path / "store2")
    assert "[train] epoch" not in quiet.stderr


def test_logs_of_unknown_steps_and_unexecuted_steps_are_clear_errors(tmp_path):
    nb = make_nb(tmp_path, [("step:a", "raise ValueError('x')"), ("step:b", "y = 1")])
    nb2pipe.run(nb, store=tmp_path / "store")
    unknown = cli("logs", "latest", "zz", "--store", tmp_path / "store")
    assert unknown.returncode == 2 and "has no step 'zz' (steps: a, b)" in unknown.stderr
    fine = cli("logs", "latest", "b", "--store", tmp_path / "store")
    assert fine.returncode == 0 and fine.stdout == ""
    none = cli("logs", "latest", "a", "--store", tmp_path / "empty")
    assert none.returncode == 2 and "no runs recorded" in none.stderr
