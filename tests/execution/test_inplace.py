"""In-place changes of received values: `df.dropna(inplace=True)`, `items.append(x)`, `df["b"] = 1`.

The step that may change a received name is its producer for later readers ("may modify"); at
the end of the step the value is hashed again and saved only when it changed.
"""

from __future__ import annotations

import json

import pytest
from core_helpers import code, spec_of
from nbbuild import make_nb

import nb2pipe
from nb2pipe.artifacts.values import save_outputs
from nb2pipe.model.records import RunStatus
from nb2pipe.store.runs import RunStore

# --- compile: the candidates -------------------------------------------------------------------


@pytest.mark.parametrize("source", [
    'df["b"] = 1', "df.dropna(inplace=True)", "df.x = 1", 'del df["a"]', 'df["a"] += 1', "df.append(3)",
    "model_fit(df)", "import random\nrandom.shuffle(df)", "df.sort()",
])
def test_changes_in_place_make_the_step_the_producer_for_later_readers(tmp_path, source):
    spec = spec_of(tmp_path, [code("df = [1]", "step:a"), code(source, "step:b"), code("print(df)", "step:c")]
                   if "model_fit" not in source else
                   [code("def model_fit(x):\n    x.append(1)", "setup"), code("df = [1]", "step:a"),
                    code(source, "step:b"), code("print(df)", "step:c")])
    b, c = spec.step("b"), spec.step("c")
    assert (b.outputs, b.modifies) == (["df"], ["df"])
    assert [(i.name, i.producer) for i in c.inputs] == [("df", "b")] and c.upstreams == ["b"]


@pytest.mark.parametrize("source", [
    "print(df)", "n = len(df)", "top = df.head()", "clean = df.dropna()", "copy = df.copy()\ncopy.append(1)",
    "df = df + [2]", "f = lambda: df.append(1)", "model.fit(df, [1])",
])
def test_reads_and_rebinding_are_no_in_place_change(tmp_path, source):
    spec = spec_of(tmp_path, [code("df = [1]\nmodel = None", "step:a"), code(source, "step:b"),
                              code("print(df)", "step:c")])
    b, c = spec.step("b"), spec.step("c")
    assert b.modifies == []
    assert [(i.name, i.producer) for i in c.inputs] == [("df", "b" if source.startswith("df =") else "a")]


def test_a_change_nobody_reads_later_is_no_output(tmp_path):
    spec = spec_of(tmp_path, [code("df = [1]", "step:a"), code("df.append(2)", "step:b")])
    assert spec.step("b").outputs == [] and spec.step("b").modifies == []
    assert "modifies" not in spec.step("b").to_dict()  # specs without in-place changes read as before


def test_inspect_shows_may_modify_outputs(tmp_path):
    from click.testing import CliRunner

    from nb2pipe.cli import main

    path = make_nb(tmp_path, [("step:a", "items = [1]"), ("step:b", "items.append(2)"), ("step:c", "print(items)")])
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0 and "items (may modify)" in result.output


# --- save: a hash, not a write, when unchanged -------------------------------------------------


def test_an_unchanged_received_value_costs_a_hash_not_a_write(tmp_path):
    first = save_outputs({"items": [1, 2]}, tmp_path / "a")
    source = {"path": str(tmp_path / "a" / "items.pkl"), "serializer": "pickle", "sha256": first["items"]["sha256"]}
    kept = save_outputs({"items": [1, 2]}, tmp_path / "b", received={"items": source})
    assert kept["items"]["file"] is None and kept["items"]["unchanged"] is True
    assert kept["items"]["sha256"] == first["items"]["sha256"] and kept["items"]["source"] == source["path"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["manifest.json"]
    changed = save_outputs({"items": [1, 2, 3]}, tmp_path / "c", received={"items": source})
    assert changed["items"]["file"] == "items.pkl" and "unchanged" not in changed["items"]
    assert changed["items"]["sha256"] != first["items"]["sha256"]


# --- run: the changed value reaches downstream --------------------------------------------------


@pytest.mark.kernel
def test_in_place_changes_reach_downstream_and_unchanged_ones_are_not_stored_again(tmp_path):
    path = make_nb(tmp_path, [
        ("setup", "import pandas as pd"),
        ("parameters", "drop = True"),
        ("step:load", "df = pd.DataFrame({'a': [1.0, None, 3.0]})\nitems = [1]\nsame = [5, 6]"),
        ("step:clean", "if drop:\n    df.dropna(inplace=True)\nitems.append(2)\nsame.sort()"),
        ("step:use", "rows = len(df)\nn_items = len(items)\nn_same = len(same)"),
        ("metrics", "rows\nn_items\nn_same"),
    ])
    store = tmp_path / "store"
    record = nb2pipe.run(str(path), store=str(store))
    assert record.status == RunStatus.SUCCEEDED, [s.error for s in record.steps]
    assert {m.name: m.value for m in record.metrics} == {"rows": 2, "n_items": 2, "n_same": 2}
    load, clean = (record.step(n) for n in ("load", "clean"))
    made = {o.name: o.sha256 for o in load.outputs}
    again = {o.name: o.sha256 for o in clean.outputs}
    assert again["same"] == made["same"]  # unchanged: the very same object
    assert again["df"] != made["df"] and again["items"] != made["items"]
    outputs = store / "runs" / record.id / "clean" / "attempt-1" / "outputs"
    manifest = json.loads((outputs / "manifest.json").read_text())
    assert manifest["same"]["file"] is None and manifest["same"]["unchanged"] is True  # no write for `same`
    assert manifest["df"]["file"] == "df.parquet" and "unchanged" not in manifest["df"]

    kept = nb2pipe.run(str(path), {"drop": False}, store=str(store))
    assert kept.status == RunStatus.SUCCEEDED
    assert {m.name: m.value for m in kept.metrics}["rows"] == 3
    assert {o.name: o.sha256 for o in kept.step("clean").outputs}["df"] == made["df"]
    with RunStore(store) as runs:
        assert runs.get_run(kept.id).step("clean").outputs
