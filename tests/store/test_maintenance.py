"""store verify/gc and runs delete: tampered and missing objects found (and repaired), old runs
and unreferenced objects collected, nothing a record still needs removed."""

from __future__ import annotations

import json
import os

import pytest
from nbbuild import cli, make_nb

import nb2pipe
from nb2pipe.model.records import Status
from nb2pipe.store.runs import RunStore

pytestmark = pytest.mark.kernel

CELLS = [("parameters", "n = 3"), ("step:make", "data = list(range(n))"), ("step:use", "total = sum(data) + 100"),
         ("step:report", "text = f'total {total}'")]


def tamper(path) -> None:
    os.chmod(path, 0o600)
    with open(path, "r+b") as f:
        f.seek(0)
        f.write(b"\x00tampered")


def test_verify_finds_tampered_and_missing_objects_and_repair_makes_the_steps_run_again(tmp_path):
    nb = make_nb(tmp_path, CELLS)
    store = tmp_path / "store"
    first = nb2pipe.run(nb, store=store)
    clean = cli("store", "verify", "--store", store)
    assert clean.returncode == 0 and "store is sound" in clean.stdout
    data = first.step("make").outputs[0]
    total = first.step("use").outputs[0]
    tamper(store / "objects" / data.sha256[:2] / data.sha256[2:])
    os.remove(store / "objects" / total.sha256[:2] / total.sha256[2:])
    found = cli("store", "verify", "--store", store, "--json")
    assert found.returncode == 3
    report = json.loads(found.stdout)
    assert report["damaged"] == [data.sha256] and [m["name"] for m in report["missing"]] == ["total"]
    assert "fix: nb2pipe store verify --repair" in cli("store", "verify", "--store", store).stdout
    repaired = cli("store", "verify", "--repair", "--store", store)
    assert repaired.returncode == 0, repaired.stdout
    assert "withdrew 2 cache entries" in repaired.stdout and "removed damaged object" in repaired.stdout
    again = nb2pipe.run(nb, store=store)  # served nothing damaged: the two steps made them again
    assert {s.name: s.status for s in again.steps} == {"make": Status.SUCCEEDED, "use": Status.SUCCEEDED,
                                                       "report": Status.CACHED}  # its inputs came out the same
    assert cli("store", "verify", "--store", store).returncode == 0


def test_a_tampered_cached_object_is_caught_before_use_and_its_step_runs_again(tmp_path):
    """Without any verify: a cache hit re-hashes what it would serve (same size, other bytes)."""
    nb = make_nb(tmp_path, CELLS)
    store = tmp_path / "store"
    first = nb2pipe.run(nb, store=store)
    data = first.step("make").outputs[0]
    path = store / "objects" / data.sha256[:2] / data.sha256[2:]
    size = path.stat().st_size
    tamper(path)
    assert path.stat().st_size == size
    again = nb2pipe.run(nb, store=store)
    assert again.status.value == "succeeded"
    assert again.step("make").status == Status.SUCCEEDED  # executed, not served from the damaged object
    assert again.step("use").status == Status.CACHED  # the same bytes came out, so its key held
    assert nb2pipe.load("data", run=again.id, store=store) == [0, 1, 2]
    assert cli("store", "verify", "--store", store).returncode == 0  # written afresh


def test_a_step_run_alone_refuses_damaged_upstream_outputs(tmp_path):
    nb = make_nb(tmp_path, CELLS)
    store = tmp_path / "store"
    first = nb2pipe.run(nb, store=store)
    tamper(store / "objects" / first.step("make").outputs[0].sha256[:2] / first.step("make").outputs[0].sha256[2:])
    alone = cli("run", nb, "--store", store, "--step", "use")
    assert alone.returncode == 3, alone.stdout + alone.stderr
    assert "damaged or missing" in alone.stderr and "store verify --repair" in alone.stderr
    assert "Traceback" not in alone.stderr


def test_gc_keeps_what_records_need_and_removes_the_rest(tmp_path):
    nb = make_nb(tmp_path, CELLS)
    store = tmp_path / "store"
    old = nb2pipe.run(nb, {"n": 1}, store=store)
    nb2pipe.run(nb, {"n": 2}, store=store)
    newest = nb2pipe.run(nb, {"n": 3}, store=store)
    (store / "runs" / "20200101-000000-abcdef" / "make" / "attempt-1").mkdir(parents=True)  # a killed runner's
    dry = cli("store", "gc", "--keep-last", "2", "--dry-run", "--json", "--store", store)
    plan = json.loads(dry.stdout)
    assert plan["runs"] == [old.id] and plan["folders"] == ["runs/20200101-000000-abcdef"] and plan["objects"] == 2
    with RunStore(store) as rs:
        assert len(rs.list_runs()) == 3  # a dry run removes nothing
    done = cli("store", "gc", "--keep-last", "2", "--store", store)
    assert done.returncode == 0 and "removed 1 run, 2 objects (" in done.stdout  # data and total of n=1
    assert "1 abandoned run folder" in done.stdout
    assert not (store / "runs" / old.id).exists() and not (store / "runs" / "20200101-000000-abcdef").exists()
    with RunStore(store) as rs:
        assert [r.id for r in rs.list_runs()][-1] != old.id
    assert cli("store", "verify", "--store", store).returncode == 0
    assert nb2pipe.run(nb, {"n": 3}, store=store).step("make").status == Status.CACHED
    deleted = cli("runs", "delete", newest.id, "--store", store)
    assert deleted.returncode == 0 and deleted.stdout == f"deleted {newest.id}\n"
    assert cli("runs", "show", newest.id, "--store", store).returncode == 2
    missing = cli("store", "gc", "--store", tmp_path / "none")
    assert missing.returncode == 2 and "no nb2pipe store" in missing.stderr
