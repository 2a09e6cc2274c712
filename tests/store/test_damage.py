"""Damaged values in the run store's rows: found column by column, mended or removed, never raised as
a decoder's own exception."""

from __future__ import annotations

import sqlite3

import pytest

from nb2pipe.errors import DamagedRecord
from nb2pipe.model.records import RunRecord, RunStatus, Status, StepRecord
from nb2pipe.store.runs import RunStore


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path) as rs:
        for run_id in ("20261201-120000-aaaaaa", "20261201-120001-bbbbbb"):
            rs.create_run(RunRecord(id=run_id, notebook="nb.ipynb", status=RunStatus.SUCCEEDED, started=1.0,
                                    parameters={"n": 1}, steps=[StepRecord(name="a", status=Status.SUCCEEDED)]))
    return tmp_path


def damage(root, sql: str) -> None:
    con = sqlite3.connect(str(root / "runs.db"))
    con.execute(sql)
    con.commit()
    con.close()


@pytest.mark.parametrize("sql, column", [
    ("UPDATE runs SET status = 'fine' WHERE id LIKE '%aaaaaa'", "status"),
    ("UPDATE runs SET parameters = '{\"n\": ' WHERE id LIKE '%aaaaaa'", "parameters"),
    ("UPDATE runs SET ended = 'soon' WHERE id LIKE '%aaaaaa'", "ended"),
    ("UPDATE steps SET metrics = '[{\"value\": 1}]' WHERE run_id LIKE '%aaaaaa'", "metrics"),
    ("UPDATE steps SET cached = 'yes' WHERE run_id LIKE '%aaaaaa'", "cached"),
])
def test_a_damaged_value_is_named_listed_apart_and_repaired(store, sql, column):
    damage(store, sql)
    with RunStore(store) as rs:
        with pytest.raises(DamagedRecord, match=f"its {column} .* does not decode") as caught:
            rs.get_run("20261201-120000-aaaaaa")
        assert "runs delete 20261201-120000-aaaaaa" in str(caught.value)
        listed = {r.id: r for r in rs.list_runs()}
        assert listed["20261201-120000-aaaaaa"].status is RunStatus.DAMAGED
        assert listed["20261201-120001-bbbbbb"].status is RunStatus.SUCCEEDED
        found = rs.damaged_records()
        assert [getattr(d, "column", None) for d in found] == [column], found
        done = rs.repair_records()
        assert done and not rs.damaged_records()
        repaired = rs.get_run("20261201-120000-aaaaaa")
        assert repaired.steps and repaired.steps[0].name == "a"  # history kept
        if column == "status":
            assert repaired.status is RunStatus.CRASHED and "repair" in repaired.reason
