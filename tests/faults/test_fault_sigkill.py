"""SIGKILL of the runner. Injected: `kill -9` of a real `python -m nb2pipe run` subprocess after a seeded
random delay, spread over the whole run (start-up, kernels starting, cells running, artifacts being
stored, records being written) of a 4-step pipeline passing numpy arrays, dicts and lists; 6 kill
points (NB2PIPE_FAULTS=long: 24). Checked after each kill: no process of the killed runner is left (its
zygote and kernels carry its socket folder `/tmp/nb2pipe-k-<pid>-` in their command line); every
published executed notebook (`step.ipynb`) is a valid notebook; `store verify` exits 0 (or `--repair`
makes it 0); the resumed `nb2pipe run` exits 0 with artifacts (values and hashes) and metrics equal to
a clean run's in a separate store; no run is left `running` and every run's record reads back (`runs
show`); the store passes the suite's own check (objects hash to their names, SQLite sound, lineage
complete)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time

import nbformat
import numpy as np
import pytest
from click.testing import CliRunner
from faultkit import LONG, SEED, leftovers, wait_no_leftovers
from nbbuild import NB2PIPE, check_store, cli, cli_env, make_nb, sha256_of

import nb2pipe
from nb2pipe.cli import main

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(1500 if LONG else 300)]

POINTS = 24 if LONG else 6

CELLS = [
    ("parameters", "n = 50"),
    ("step:load", "import numpy as np, time\nrng = np.random.default_rng(n)\narr = rng.normal(size=(n, 4))\n"
                  "meta = {'rows': n, 'names': ['a', 'b', 'c', 'd']}\ntime.sleep(0.3)"),
    ("step:features", "import time\nfeat = (arr - arr.mean(0)) / arr.std(0)\ncols = list(meta['names'])\n"
                      "time.sleep(0.3)"),
    ("step:stats", "import time\nsums = [round(float(x), 9) for x in feat.sum(0)]\ntime.sleep(0.3)"),
    ("step:report", "score = float(abs(feat).mean())\nsummary = {'score': score, 'cols': cols, 'sums': sums}"),
    ("metrics", "score"),
]


def outputs(record: dict) -> dict[str, str]:
    return {f"{s['name']}.{o['name']}": o["sha256"] for s in record["steps"] for o in s["outputs"]}


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The pipeline's notebook and a clean run of it in a store of its own: (nb, record, values, seconds)."""
    folder = tmp_path_factory.mktemp("sigkill")
    nb = make_nb(folder, CELLS)
    store = folder / "clean-store"
    began = time.monotonic()
    proc = cli("run", nb, "--store", store, "--json", cwd=folder)
    took = time.monotonic() - began
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads(proc.stdout)
    values = {name: nb2pipe.load(name.split(".", 1)[1], run=record["id"], store=store) for name in outputs(record)}
    assert {"load.arr", "load.meta", "features.feat", "features.cols", "stats.sums"} <= set(values)
    return nb, record, values, took


def kill_delays(total: float) -> list[float]:
    """One seeded random delay in each of POINTS equal slices of [0.05 s, 1.1 x the clean run's time]."""
    rng = random.Random(SEED)
    low, high = 0.05, 1.1 * total
    width = (high - low) / POINTS
    return [round(low + i * width + rng.random() * width, 3) for i in range(POINTS)]


def test_the_runner_sigkilled_at_random_points_leaves_a_sound_store_and_resumes(clean, tmp_path):
    nb, reference, values, took = clean
    before = sha256_of(nb)
    saw_kernels = 0
    report = []
    for i, delay in enumerate(kill_delays(took)):
        store = tmp_path / f"store-{i}"
        runner = subprocess.Popen([*NB2PIPE, "run", str(nb), "--store", str(store)], cwd=tmp_path, env=cli_env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        # Sleep to the kill point, looking on the way for the runner's kernels (proves the scan finds them).
        end = time.monotonic() + delay
        alive_seen = False
        while time.monotonic() < end and runner.poll() is None:
            alive_seen = alive_seen or bool(leftovers(runner.pid))
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))
        finished_first = runner.poll() is not None
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        saw_kernels += alive_seen
        left = wait_no_leftovers(runner.pid, within=10)
        assert not left, f"kill at {delay} s: processes of the killed runner {runner.pid} left: {left}"

        for executed in sorted(store.glob("runs/*/*/attempt-*/step.ipynb")):  # published atomically
            try:
                nbformat.validate(nbformat.read(str(executed), as_version=4))
            except Exception as exc:  # noqa: BLE001 - any failure to read it back is the finding
                raise AssertionError(f"kill at {delay} s: {executed} is not a sound notebook: {exc!r}") from exc

        repaired = False
        if (store / "runs.db").exists():
            verify = cli("store", "verify", "--store", store)
            if verify.returncode != 0:
                assert verify.returncode == 3, f"kill at {delay} s: verify: {verify.stdout}{verify.stderr}"
                fix = cli("store", "verify", "--repair", "--store", store)
                assert fix.returncode == 0, f"kill at {delay} s: repair: {fix.stdout}{fix.stderr}"
                repaired = True
                verify = cli("store", "verify", "--store", store)
            assert verify.returncode == 0, f"kill at {delay} s: verify after repair: {verify.stdout}{verify.stderr}"
            assert "Traceback" not in verify.stderr

        resumed = cli("run", nb, "--store", store, "--json", cwd=tmp_path)
        assert resumed.returncode == 0, f"kill at {delay} s: resume: {resumed.stdout[-2000:]}{resumed.stderr[-2000:]}"
        assert "Traceback" not in resumed.stderr
        record = json.loads(resumed.stdout)
        assert outputs(record) == outputs(reference), f"kill at {delay} s: artifact hashes differ from a clean run"
        assert record["metrics"] == reference["metrics"]
        for name, value in values.items():
            got = nb2pipe.load(name.split(".", 1)[1], run=record["id"], store=store)
            assert same(got, value), f"kill at {delay} s: {name} = {got!r}, clean run: {value!r}"
        listed = cli("runs", "list", "--json", "--store", store)
        assert listed.returncode == 0, listed.stderr
        states = [r["status"] for r in json.loads(listed.stdout)]
        assert "running" not in states, f"kill at {delay} s: a run of the dead runner still reads running: {states}"
        for run in json.loads(listed.stdout):  # the killed run's record reads back, whatever it holds
            shown = CliRunner().invoke(main, ["runs", "show", run["id"], "--json", "--store", str(store)])
            assert shown.exit_code == 0, \
                f"kill at {delay} s: runs show {run['id']}: {shown.exception!r} {shown.stderr[-500:]}"
        assert cli("store", "verify", "--store", store).returncode == 0
        check_store(store)
        cached = sum(1 for s in record["steps"] if s["cached"])
        report.append(f"{delay:.2f}s{' (ended first)' if finished_first else ''}: repaired={repaired} "
                      f"resumed with {cached} cached, runs {states}")
    assert sha256_of(nb) == before
    assert saw_kernels >= 1, "no kill point saw the runner's kernels: the leftover scan would prove nothing"
    print("\n".join(report))
