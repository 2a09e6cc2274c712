"""SIGKILL of the runner inside a write. Injected: `kill -9` of a real `nb2pipe run` held (NB2PIPE_PAUSE) at
one of the instants the random kills of test_fault_sigkill.py almost never land on, each a few
milliseconds wide: an object's bytes complete in its temp file but not under its name (`object-written`),
a step's objects stored but the record naming them not committed (`published`), and a succeeded step's
rows written inside the open transaction that holds the database's write lock (`recording`). Checked:
no object is visible that does not hash to its name, and no record names an object that is not there;
the killed run reads `crashed` at once and another command gets the write lock at once (SQLite rolled
the transaction back: the step is not recorded succeeded); `store verify` is clean; `store gc` takes the
orphaned object; the resumed run's artifacts and metrics equal a clean run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from faultkit import LONG, wait_no_leftovers
from nbbuild import NB2PIPE, check_store, cli, cli_env, make_nb

import nb2pipe

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]

CELLS = [("parameters", "n = 40"),
         ("step:make", "import numpy as np\narr = np.arange(n * 3, dtype='float64').reshape(n, 3)\n"
                       "meta = {'rows': n}"),
         ("step:use", "score = float(arr.mean()) + meta['rows']"),
         ("metrics", "score")]
POINTS = ["object-written", "published", "recording"] if LONG else ["published", "recording"]


def outputs(record: dict) -> dict[str, str]:
    return {f"{s['name']}.{o['name']}": o["sha256"] for s in record["steps"] for o in s["outputs"]}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    folder = tmp_path_factory.mktemp("writes")
    nb = make_nb(folder, CELLS)
    proc = cli("run", nb, "--store", folder / "clean-store", "--json", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-1500:]
    return nb, json.loads(proc.stdout)


@pytest.mark.parametrize("point", POINTS)
def test_the_runner_killed_inside_a_write_leaves_nothing_half_done(clean, tmp_path, point):
    nb, reference = clean
    store, mark = tmp_path / "store", tmp_path / "paused"
    runner = subprocess.Popen([*NB2PIPE, "run", str(nb), "--store", str(store)], cwd=nb.parent,
                              env={**cli_env(), "NB2PIPE_PAUSE": f"{point}=60", "NB2PIPE_PAUSE_MARK": str(mark)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not mark.exists():
        assert runner.poll() is None, f"the run ended before {point}: {runner.communicate()[1][-1500:]}"
        assert time.monotonic() < deadline, f"the run never reached {point}"
        time.sleep(0.02)
    os.kill(runner.pid, signal.SIGKILL)
    runner.communicate(timeout=30)
    assert not wait_no_leftovers(runner.pid, within=15)

    objects = store / "objects"
    temps = [p.name for p in objects.iterdir() if p.name.startswith(".tmp-")]
    if point == "object-written":
        assert temps, "the kill was to leave an object's temp file"
    check_store(store)  # every visible object hashes to its name; no record names a missing one

    began = time.monotonic()
    listed = cli("runs", "list", "--json", "--store", store, timeout=30)  # writes: it closes out the dead run
    assert listed.returncode == 0 and time.monotonic() - began < 15, listed.stderr
    (killed,) = json.loads(listed.stdout)
    assert killed["status"] == "crashed", killed
    make = next(s for s in killed["steps"] if s["name"] == "make")
    assert make["status"] == "failed" and not make["outputs"], make  # never recorded succeeded
    verify = cli("store", "verify", "--store", store)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    gc = cli("store", "gc", "--json", "--store", store)
    assert gc.returncode == 0, gc.stderr
    if point != "object-written":
        assert json.loads(gc.stdout)["objects"] >= 1, gc.stdout  # the orphans of the killed commit

    resumed = cli("run", nb, "--store", store, "--json", cwd=nb.parent)
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    record = json.loads(resumed.stdout)
    assert outputs(record) == outputs(reference) and record["metrics"] == reference["metrics"]
    assert nb2pipe.load("arr", run=record["id"], store=store).tolist() == [[i * 3 + j for j in range(3)]
                                                                           for i in range(40)]
    assert cli("store", "verify", "--store", store).returncode == 0
    check_store(store)
