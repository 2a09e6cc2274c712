"""Damaged values in the run store's rows: found by decoding every column of every row (what
`store verify` reports), and repaired in place (what `store verify --repair` does).

A repair keeps the history it can: a damaged column gets its neutral value (columns.REPAIRED: a status
becomes crashed/failed, a JSON object `{}`), a row that cannot stand without the damaged value (a metric,
a lineage entry, a cache entry, a run or step whose key is damaged) goes, and every step a finding
touches is withdrawn from the cache so that it executes again instead of being served. Functions of an
open connection inside RunStore's transactions.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from nb2pipe.store import columns as col

# table -> (its run id column, its step column or None, {column: decoder}).
CHECKED = {
    "runs": ("id", None, {
        "id": col.text, "notebook": col.text, "notebook_sha256": col.optional_text, "spec_hash": col.optional_text,
        "status": col.run_status, "reason": col.optional_text, "started": col.number, "ended": col.number,
        "parameters": col.json_object, "environment": col.json_object, "pid": col.integer,
        "host": col.optional_text, "exit_code": col.integer, "note": col.optional_text}),
    "steps": ("run_id", "name", {
        "name": col.text, "status": col.step_status, "started": col.number, "ended": col.number,
        "duration": col.number, "cached": col.count, "attempts": col.count, "cache_key": col.optional_text,
        "spec_hash": col.optional_text, "parameters": col.json_object, "error": col.step_error,
        "output_notebook": col.optional_text, "cached_from": col.optional_text, "image_digest": col.optional_text,
        "input_parameters": col.optional_json_object, "metrics": col.step_metrics}),
    "metrics": ("run_id", None, {"name": col.text, "value": col.json_value, "flag": col.optional_text}),
    "run_tags": ("run_id", None, {"label": col.text}),
    "step_artifacts": ("run_id", "step", {
        "name": col.text, "sha256": col.sha256, "producer_step": col.optional_text, "source_run": col.optional_text}),
    "artifacts": (None, None, {
        "sha256": col.sha256, "size": col.count, "serializer": col.text, "type_name": col.text}),
    "cache_index": ("run_id", "step", {"cache_key": col.text, "recorded": col.number}),
}
# Keys: a row whose key is damaged cannot be mended, only removed.
KEYS = {"runs": {"id"}, "steps": {"name"}}


@dataclass
class Damage:
    """One column of one row that does not decode."""

    table: str
    rowid: int
    column: str
    run: str | None
    step: str | None
    value: str
    problem: str

    def __str__(self) -> str:
        where = f"run {self.run}" if self.run else f"{self.table} row {self.rowid}"
        if self.step:
            where += f", step {self.step}"
        if self.column == "reference":
            return f"{where}: its {self.table} row refers to a missing {self.value} row"
        return f"{where}: {self.table}.{self.column} {self.value} does not decode ({self.problem})"

    def to_dict(self) -> dict:
        return {"table": self.table, "rowid": self.rowid, "column": self.column, "run": self.run, "step": self.step,
                "value": self.value, "problem": self.problem}


def find(c: sqlite3.Connection) -> list[Damage]:
    """Every column of every checked row that does not decode."""
    found = []
    for table, (run_column, step_column, checks) in CHECKED.items():
        names = list(checks)
        extra = [n for n in (run_column, step_column) if n and n not in checks]
        query = f"SELECT rowid, {', '.join(names + extra)} FROM {table} ORDER BY rowid"
        for rowid, *values in c.execute(query).fetchall():
            row = dict(zip(names + extra, values))
            for column, decode in checks.items():
                try:
                    decode(row[column])
                except col.DECODING_ERRORS as exc:
                    found.append(Damage(table, rowid, column, _label(row.get(run_column)),
                                        _label(row.get(step_column)), col.shown(row[column]), col.problem(exc)))
            if table == "metrics" and not any(d.table == "metrics" and d.rowid == rowid for d in found):
                try:  # the three columns make one Metric
                    col.metric({"name": row["name"], "value": json.loads(row["value"]), "flag": row["flag"]})
                except col.DECODING_ERRORS as exc:
                    found.append(Damage(table, rowid, "value", _label(row.get(run_column)), None,
                                        col.shown(row["value"]), col.problem(exc)))
    for table, rowid, parent, _ in c.execute("PRAGMA foreign_key_check").fetchall():
        if table not in CHECKED or any(d.table == table and d.rowid == rowid for d in found):
            continue
        run_column, step_column, _ = CHECKED[table]
        keys = [n for n in (run_column, step_column) if n]
        row = c.execute(f"SELECT {', '.join(keys)} FROM {table} WHERE rowid = ?", (rowid,)).fetchone() if keys else ()
        row = dict(zip(keys, row or ()))
        found.append(Damage(table, rowid, "reference", _label(row.get(run_column)), _label(row.get(step_column)),
                            parent, "the row it refers to is missing"))
    return found


def _label(value: object) -> str | None:
    return value if isinstance(value, str) else (None if value is None else repr(value))


def repair(c: sqlite3.Connection, found: list[Damage]) -> list[str]:
    """Mend or remove what `find` reported; returns what was done, one line each."""
    done = []
    withdrawn: set[tuple[str, str]] = set()
    for d in found:
        decoder = CHECKED[d.table][2].get(d.column)  # None: a reference to a missing row
        neutral = {**{c: None for c, f in CHECKED[d.table][2].items() if f in col.NULLABLE},
                   **col.REPAIRED.get(d.table, {})}
        if d.column in neutral and d.column not in KEYS.get(d.table, set()) and decoder is not col.sha256:
            if not c.execute(f"SELECT 1 FROM {d.table} WHERE rowid = ?", (d.rowid,)).fetchone():
                continue  # went with a row removed before
            c.execute(f"UPDATE {d.table} SET {d.column} = ? WHERE rowid = ?", (neutral[d.column], d.rowid))
            if d.column == "status":  # what the status was is unknown: say why it reads crashed/failed
                other = "reason" if d.table == "runs" else "error"
                c.execute(f"UPDATE {d.table} SET {other} = ? WHERE rowid = ?", (col.REPAIRED_WHY[d.table], d.rowid))
            done.append(f"{d}: set to {neutral[d.column] if neutral[d.column] is not None else 'NULL'}")
        else:
            if d.table == "artifacts":
                withdrawn_steps = _forget_artifact(c, d.rowid)
                if withdrawn_steps:
                    done.append(f"withdrew {withdrawn_steps} cache entr{'y' if withdrawn_steps == 1 else 'ies'} "
                                "that served it (their steps execute again)")
            cur = c.execute(f"DELETE FROM {d.table} WHERE rowid = ?", (d.rowid,))
            if cur.rowcount:
                done.append(f"{d}: removed the {d.table} row")
        if d.table != "runs" and d.run and d.step is not None and (d.run, d.step) not in withdrawn:
            withdrawn.add((d.run, d.step))
            cur = c.execute("DELETE FROM cache_index WHERE run_id = ? AND step = ?", (d.run, d.step))
            if cur.rowcount:
                done.append(f"run {d.run}, step {d.step}: withdrawn from the cache (it executes again)")
    return done


def _forget_artifact(c: sqlite3.Connection, rowid: int) -> int:
    """Before an artifact row whose description is damaged goes: the lineage naming it (the steps
    that made or read it no longer say so) and the cache entries that would serve it."""
    (sha,) = c.execute("SELECT sha256 FROM artifacts WHERE rowid = ?", (rowid,)).fetchone() or (None,)
    if not isinstance(sha, str):
        return 0
    withdrawn = c.execute(
        "DELETE FROM cache_index WHERE EXISTS (SELECT 1 FROM step_artifacts sa WHERE sa.run_id = cache_index.run_id "
        "AND sa.step = cache_index.step AND sa.sha256 = ?)", (sha,)).rowcount
    c.execute("DELETE FROM step_artifacts WHERE sha256 = ?", (sha,))
    return withdrawn
