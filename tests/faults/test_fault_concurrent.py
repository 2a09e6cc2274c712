"""Concurrent runs on one store. Injected: 8 `nb2pipe run` subprocesses of the same notebook started at
once on one store, each with its own parameter value (`-p n K`), so every one writes objects, records and
cache entries into the same SQLite database and object folder at the same time. Checked: all exit 0
without a traceback, `runs list --json` has the 8 runs, all `succeeded`, each run's artifacts and
metrics are its own parameter's, `store verify` is clean and the suite's own store check passes."""

from __future__ import annotations

import json
import subprocess

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
