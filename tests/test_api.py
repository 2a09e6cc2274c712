"""nb2pipe.run / nb2pipe.load with real kernels: typed parameters, stores, loading artifacts."""

from __future__ import annotations

import json
import math

import pytest
from nbbuild import make_nb, run_nb, sha256_of, statuses

import nb2pipe
from nb2pipe.errors import NotebookReadError, PipelineInvalid, StoreError, UsageError
from nb2pipe.model.records import RunStatus
from nb2pipe.store.runs import RunStore

PARAMS_NB = [
    ("parameters", "n = 3\nrate = 0.5\nname = 'abc'\nflag = False\nitems = [1, 2]\nopts = {'a': 1}\nnothing = None"),
    ("step:show", "seen = {'n': n, 'rate': rate, 'name': name, 'flag': flag, 'items': items, 'opts': opts,\n"
                  "        'nothing': nothing}"),
    ("step:use", "count = len(seen)"),
]

DEFAULTS = {"n": 3, "rate": 0.5, "name": "abc", "flag": False, "items": [1, 2], "opts": {"a": 1}, "nothing": None}


def same_typed(a: dict, b: dict) -> bool:
    return a == b and all(type(a[k]) is type(b[k]) for k in a)


@pytest.mark.kernel
def test_parameters_of_every_literal_type(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, PARAMS_NB)
    record = run_nb(nb, store)
    assert record.status == RunStatus.SUCCEEDED
    assert same_typed(nb2pipe.load("seen", run=record.id, store=store), DEFAULTS)
    assert record.parameters == DEFAULTS

    given = {"n": -7, "rate": 2, "name": "it's \"quoted\"\n", "flag": True, "items": ["x", [1.5, None]],
             "opts": {"nested": {"k": [True]}}, "nothing": 4.25}
    record = run_nb(nb, store, parameters=given)
    assert record.status == RunStatus.SUCCEEDED, [s.error for s in record.steps]
    expected = {**given, "rate": 2.0}  # an int for a float parameter becomes a float
    assert same_typed(nb2pipe.load("seen", run=record.id, store=store), expected)
    assert record.step("show").parameters == expected
    # Only the parameters changed reran; `use` got a new input so it reran too.
    assert statuses(record) == {"show": "succeeded", "use": "succeeded"}

    # Non-finite floats reach the kernel and are recorded as strict JSON.
    record = run_nb(nb, store, parameters={"rate": float("inf")})
    seen = nb2pipe.load("seen", run=record.id, store=store)
    assert seen["rate"] == math.inf
    json.dumps(record.to_dict(), allow_nan=False)
    with RunStore(store) as rs:
        json.dumps(rs.get_run(record.id).to_dict(), allow_nan=False)


def test_unknown_parameter_raises_before_anything_runs(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, PARAMS_NB)
    before = sha256_of(nb)
    with pytest.raises(UsageError) as info:
        nb2pipe.run(str(nb), parameters={"nn": 1}, store=str(store))
    message = str(info.value)
    assert "'nn'" in message
    for name in DEFAULTS:
        assert name in message
    assert info.value.exit_code == 2
    with pytest.raises(UsageError, match="'n' expects int"):
        nb2pipe.run(str(nb), parameters={"n": "five"}, store=str(store))
    assert not (store / "runs").exists()
    assert sha256_of(nb) == before


def test_invalid_notebooks_raise(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(NotebookReadError):
        nb2pipe.run(str(bad), store=str(tmp_path / "store"))
    dup = make_nb(tmp_path, [("step:a", "x = 1"), ("step:b after:zz", "y = 2")], "dup.ipynb")
    with pytest.raises(PipelineInvalid):
        nb2pipe.run(str(dup), store=str(tmp_path / "store"))
    assert not (tmp_path / "store" / "runs").exists()


@pytest.mark.kernel
def test_load_returns_stored_values(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, [
        ("step:a", "x = {'values': [1, 2, 3]}\nlabel = 'first'"),
        ("step:b", "y = len(x['values'])\nprint(label)"),
        ("step:c", "print(y)"),
    ])
    first = run_nb(nb, store)
    assert nb2pipe.load("x", run=first.id, store=store) == {"values": [1, 2, 3]}
    assert nb2pipe.load("y", run=first.id[:17], store=store) == 3  # a unique prefix works
    nb2 = make_nb(tmp_path, [("step:a", "x = {'values': [4]}\nlabel = 'second'"), *[
        ("step:b", "y = len(x['values'])\nprint(label)"), ("step:c", "print(y)")]])
    second = run_nb(nb2, store)
    # Without a run: the latest run that produced it; with one: that run's value.
    assert nb2pipe.load("x", store=store) == {"values": [4]}
    assert nb2pipe.load("x", run=first.id, store=store) == {"values": [1, 2, 3]}
    assert nb2pipe.load("label", run=second.id, store=store) == "second"
    assert nb2pipe.load("y", store=store, notebook=nb2) == 1
    with pytest.raises(UsageError) as info:
        nb2pipe.load("nope", run=first.id, store=store)
    assert "label" in str(info.value) and "x" in str(info.value)
    with pytest.raises(UsageError, match="no nb2pipe store"):
        nb2pipe.load("x", store=tmp_path / "elsewhere")

    # A stored object whose bytes changed is refused, not loaded.
    ref = next(a for a in second.step("a").outputs if a.name == "label")
    path = store / "objects" / ref.sha256[:2] / ref.sha256[2:]
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as info:
        nb2pipe.load("label", run=second.id, store=store)
    assert info.value.exit_code == 3


@pytest.mark.kernel
def test_default_store_is_beside_the_notebook(tmp_path, monkeypatch):
    monkeypatch.delenv("NB2PIPE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "project"
    nb = make_nb(folder, [("step:a", "x = 5"), ("step:b", "y = x")])
    before = sha256_of(nb)
    record = nb2pipe.run(str(nb))
    assert sha256_of(nb) == before
    assert record.status == RunStatus.SUCCEEDED
    assert (folder / ".nb2pipe" / "runs.db").exists()
    assert nb2pipe.load("x", notebook=nb) == 5
    # $NB2PIPE_STORE overrides it.
    monkeypatch.setenv("NB2PIPE_STORE", str(tmp_path / "env-store"))
    again = nb2pipe.run(str(nb))
    assert (tmp_path / "env-store" / "runs.db").exists()
    assert statuses(again) == {"a": "succeeded", "b": "succeeded"}  # a new, empty store
    assert nb2pipe.load("x", run=again.id) == 5
