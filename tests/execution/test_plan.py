"""nb2pipe.plan / `nb2pipe status` / `run --dry-run`: what the next run would do, and why."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbbuild import build, cli, make_nb

import nb2pipe
from nb2pipe.model.records import RunStatus
from nb2pipe.store.runs import RunStore

pytestmark = pytest.mark.kernel


def test_plan_says_why_each_step_would_run(tmp_path):

    cells = [
        ("parameters", "n = 3\nscale = 2.0"),
        ("step:load", "data = list(range(n))"),
        ("step:double", "doubled = [d * scale for d in data]"),
        ("step:total cache:off", "total = sum(doubled)"),
    ]
    nb = make_nb(tmp_path, cells)
    store = tmp_path / "store"
    fresh = nb2pipe.plan(nb, store=store)
    assert [(s.step, s.action, s.reason) for s in fresh.steps] == [
        ("load", "run", "never run"), ("double", "run", "never run"), ("total", "run", "cache off (cache:off tag)")]
    assert not store.exists()  # a plan creates no store
    record = nb2pipe.run(nb, store=store)
    assert record.status == RunStatus.SUCCEEDED
    same = nb2pipe.plan(nb, store=store)
    assert [(s.step, s.action) for s in same.steps] == [("load", "cached"), ("double", "cached"), ("total", "run")]
    assert same.step("load").reason == f"unchanged since run {record.id}"
    param = nb2pipe.plan(nb, {"scale": 3.0}, store=store)
    assert [(s.step, s.action, s.reason) for s in param.steps][:2] == [
        ("load", "cached", f"unchanged since run {record.id}"), ("double", "run", "parameter scale changed")]
    upstream = nb2pipe.plan(nb, {"n": 4}, store=store)
    assert upstream.step("load").reason == "parameter n changed"
    assert upstream.step("double").reason == "upstream load runs first"
    assert nb2pipe.plan(nb, store=store, cache=False).step("load").reason == "cache off (--no-cache)"
    assert nb2pipe.plan(nb, store=store, from_step="double").step("double").reason == "--from double"
    # The input of `double` changes when `load` ran with other parameters in a --step run.
    assert nb2pipe.run(nb, {"n": 5}, store=store, steps=["load"]).status == RunStatus.SUCCEEDED
    changed = nb2pipe.plan(nb, {"n": 5}, store=store)
    assert [(s.step, s.action) for s in changed.steps][:2] == [("load", "cached"), ("double", "run")]
    assert changed.step("double").reason == "input data changed"
    assert nb2pipe.plan(nb, store=store, steps=["double"]).step("double").reason == "--step"
    # Editing a step's code.
    edited = build(cells)
    edited.cells[2].source = "doubled = [d * scale * 1 for d in data]"
    nb.write_text(nbformat.writes(edited))
    code = nb2pipe.plan(nb, store=store)
    assert code.step("double").reason == "code changed" and code.step("load").action == "cached"
    # The CLI renders the same plan; `run --dry-run` too, and neither runs anything.
    shown = cli("status", nb, "--store", store, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["steps"][1] == {**json.loads(shown.stdout)["steps"][1], "reason": "code changed"}
    dry = cli("run", nb, "--store", store, "--dry-run")
    assert dry.returncode == 0 and "code changed" in dry.stdout and "nothing was run" in dry.stdout
    with RunStore(store) as rs:
        assert len(rs.list_runs()) == 2
