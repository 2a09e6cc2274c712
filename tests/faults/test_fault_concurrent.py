"""Concurrent runs on one store. Injected: 8 `nb2pipe run` subprocesses of the same notebook started at
once on one store, each with its own parameter value (`-p n K`), so every one writes objects, records and
cache entries into the same SQLite database and object folder at the same time. Checked: all exit 0
without a traceback, `runs list --json` has the 8 runs, all `succeeded`, each run's artifacts and
metrics are its own parameter's, `store verify` is clean and the suite's own store check passes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from faultkit import LONG
from nbbuild import NB2PIPE, check_store, cli, cli_env, make_nb

import nb2pipe

pytestmark = pytest.mark.kernel

RUNS = 16 if LONG else 8

CELLS = [("parameters", "n = 1"),
         ("step:make", "data = [i * n for i in range(10)]\nlabel = {'n': n}"),
         ("step:use", "total = sum(data)\nname = f\"run {label['n']}\""),
         ("metrics", "total")]


def test_concurrent_runs_on_one_store_all_succeed_and_keep_their_own_results(tmp_path):
    nb = make_nb(tmp_path, CELLS)
    store = tmp_path / "store"
    procs = {k: subprocess.Popen([*NB2PIPE, "run", str(nb), "--store", str(store), "-p", "n", str(k), "--json"],
                                 cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
             for k in range(1, RUNS + 1)}
    records = {}
    for k, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"n={k}: exit {proc.returncode}: {err[-1500:]}"
        assert "Traceback" not in err
        records[k] = json.loads(out)
    listed = cli("runs", "list", "--json", "--store", store)
    assert listed.returncode == 0, listed.stderr
    runs = {r["id"]: r for r in json.loads(listed.stdout)}
    assert set(runs) == {r["id"] for r in records.values()}
    assert all(r["status"] == "succeeded" for r in runs.values()), {i: r["status"] for i, r in runs.items()}
    for k, record in records.items():
        assert record["parameters"] == {"n": k}
        assert {m["name"]: m["value"] for m in record["metrics"]} == {"total": 45 * k}
        assert nb2pipe.load("data", run=record["id"], store=store) == [i * k for i in range(10)]
        assert nb2pipe.load("label", run=record["id"], store=store) == {"n": k}
    verify = cli("store", "verify", "--store", store)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    check_store(store)


# One runner SIGKILLed among concurrent runs. Injected: `kill -9` of one `nb2pipe run` (the runner only,
# not its process group) while its second step sleeps (the step wrote a marker with the pid of a child it
# started), with other runs of two notebooks going on in the same store. Checked: the others all exit 0
# with their own results; `runs list` reads the killed run `crashed` at once; nothing of the killed
# runner is left (kernels, zygote, the step's child); `store verify` is clean; running the killed
# notebook again completes, reusing the step that had finished.
OTHER = [("parameters", "k = 2"), ("step:square", "sq = [i * i for i in range(k * 5)]"),
         ("step:sum", "s = sum(sq)"), ("metrics", "s")]


def victim_cells(mark: Path) -> list:
    return [("parameters", "n = 5"), ("step:first", "base = list(range(n))"),
            ("step:slow", "import os, subprocess, time\n"
                          f"if not os.path.exists({str(mark)!r}):\n"
                          "    child = subprocess.Popen(['sleep', '300'])\n"
                          f"    with open({str(mark)!r} + '.tmp', 'w') as f:\n"
                          "        f.write(str(child.pid))\n"
                          f"    os.replace({str(mark)!r} + '.tmp', {str(mark)!r})\n"
                          "    time.sleep(300)\n"
                          "doubled = [x * 2 for x in base]\ntotal = sum(doubled)"),
            ("metrics", "total")]


def start(nb, store, *args, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([*NB2PIPE, "run", str(nb), "--store", str(store), "--json", *map(str, args)],
                            cwd=Path(nb).parent, env={**cli_env(), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_one_runner_sigkilled_among_concurrent_runs_loses_nothing(tmp_path):
    import os
    import signal
    import time

    from faultkit import wait_no_leftovers

    nb, other = make_nb(tmp_path, CELLS), make_nb(tmp_path, OTHER, "other.ipynb")
    mark = tmp_path / "slow-started"
    victim_nb = make_nb(tmp_path, victim_cells(mark), "victim.ipynb")
    store = tmp_path / "store"
    victim = start(victim_nb, store)
    others = {("nb", k): start(nb, store, "-p", "n", k) for k in (1, 2, 3)}
    others |= {("other", k): start(other, store, "-p", "k", k) for k in (2, 3)}
    deadline = time.monotonic() + 180
    while not mark.exists():
        assert victim.poll() is None, f"the victim ended first: {victim.communicate()[1][-1500:]}"
        assert time.monotonic() < deadline, "the victim's slow step never started"
        time.sleep(0.05)
    child = int(mark.read_text())
    os.kill(victim.pid, signal.SIGKILL)  # the runner only: its kernels must go with it
    victim.communicate(timeout=30)

    listed = cli("runs", "list", "--json", "--store", store)
    assert listed.returncode == 0, listed.stderr
    (killed,) = [r for r in json.loads(listed.stdout) if r["notebook"].endswith("victim.ipynb")]
    assert killed["status"] == "crashed", killed["status"]
    steps = {s["name"]: s for s in killed["steps"]}
    assert steps["first"]["status"] == "succeeded"
    assert steps["slow"]["status"] == "failed" and steps["slow"]["error"]["reason"] == "crashed", steps["slow"]
    shown = cli("runs", "show", killed["id"], "--store", store)
    assert shown.returncode == 0 and "crashed" in shown.stdout, shown.stdout + shown.stderr
    left = wait_no_leftovers(victim.pid, known={child}, within=15)
    assert not left, f"processes of the killed runner {victim.pid} left: {left}"

    for (which, k), proc in others.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0 and "Traceback" not in err, f"{which} {k}: exit {proc.returncode}: {err[-1500:]}"
        record = json.loads(out)
        metrics = {m["name"]: m["value"] for m in record["metrics"]}
        if which == "nb":
            assert metrics == {"total": 45 * k}
            assert nb2pipe.load("data", run=record["id"], store=store) == [i * k for i in range(10)]
        else:
            assert metrics == {"s": sum(i * i for i in range(k * 5))}
        assert not wait_no_leftovers(proc.pid, within=10)
    verify = cli("store", "verify", "--store", store)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    again = cli("run", victim_nb, "--store", store, "--json", timeout=180)
    assert again.returncode == 0, again.stderr[-1500:]
    record = json.loads(again.stdout)
    assert {s["name"]: s["cached"] for s in record["steps"]} == {"first": True, "slow": False}
    assert {m["name"]: m["value"] for m in record["metrics"]} == {"total": 20}
    assert cli("store", "verify", "--store", store).returncode == 0
    check_store(store)


# gc and verify while runs go on. Injected: `store gc --keep-last 0` (every finished run goes, then every
# object no record names) and `store verify` in a loop, while concurrent runs of a 4-step pipeline both
# serve their steps from the cache of the runs gc is deleting (n already run) and store new outputs (new n);
# the runners pause (NB2PIPE_PAUSE) between storing or finding objects and committing the record naming
# them, the window in which gc would see them unreferenced (without the collection lock, a run then fails
# on an input gc took). Checked: every run exits 0 with its own results, every verify during the runs is
# clean (no record ever names a missing object), and the store is sound at the end.
CHAIN = [("parameters", "n = 1"), ("step:a", "xs = [i * n for i in range(50)]"),
         ("step:b", "ys = [x + 1 for x in xs]"), ("step:c", "zs = sorted(ys, reverse=True)"),
         ("step:d", "total = sum(zs)"), ("metrics", "total")]
GC_ROUNDS = 3 if LONG else 1
WINDOWS = {"NB2PIPE_PAUSE": "published=0.4,cache-found=0.4"}


def test_gc_and_verify_while_runs_go_on_take_nothing_a_live_run_needs(tmp_path):
    import threading

    nb = make_nb(tmp_path, CHAIN)
    store = tmp_path / "store"
    seeds = [start(nb, store, "-p", "n", k) for k in (1, 2)]
    for proc in seeds:
        assert proc.wait(timeout=240) == 0, proc.communicate()[1][-1500:]
    findings: list[str] = []
    rounds = {"gc": 0, "verify": 0}
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            for name, args in (("gc", ["store", "gc", "--keep-last", "0"]),
                               ("gc", ["store", "gc", "--older-than", "0"]), ("verify", ["store", "verify"])):
                proc = cli(*args, "--store", store)
                rounds[name] += 1
                if proc.returncode != 0 or "Traceback" in proc.stderr:
                    findings.append(f"{name}: exit {proc.returncode}: {proc.stdout[-800:]}{proc.stderr[-800:]}")

    def wave(ns: list[int]) -> None:
        procs = [start(nb, store, "-p", "n", k, env=WINDOWS) for k in ns]
        for k, proc in zip(ns, procs):
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0 and "Traceback" not in err, f"n={k}: exit {proc.returncode}: {err[-1500:]}"
            metrics = {m["name"]: m["value"] for m in json.loads(out)["metrics"]}
            assert metrics == {"total": sum(i * k + 1 for i in range(50))}, f"n={k}: {metrics}"

    for round_ in range(GC_ROUNDS):
        collector = threading.Thread(target=collect)
        collector.start()
        try:
            fresh = 3 + round_
            wave([1, 2, fresh])  # served by the seeds' cache (unless gc took them first) and new outputs
            wave([fresh, 1, 2])  # served by the cache of the runs just made, which gc is deleting
        finally:
            done.set()
            collector.join(timeout=120)
        done.clear()
    assert not findings, "\n".join(findings[:5])
    assert rounds["gc"] >= 2, rounds  # gc ran while the runs went on
    final = cli("store", "verify", "--store", store)
    assert final.returncode == 0, final.stdout + final.stderr
    check_store(store)
