"""The run store's rows: records written as rows (a step with its lineage and cache entry, a
run's metrics) and read back (runs with their steps, lineage, metrics and tags), and a run id
from what a user typed. Functions of an open connection; RunStore owns the transactions."""

from __future__ import annotations

import json
import re
import sqlite3
import time

from nb2pipe.errors import UsageError
from nb2pipe.model.records import ArtifactRef, Metric, RunRecord, RunStatus, Status, StepError, StepRecord

STEP_COLUMNS = (
    "name, status, started, ended, duration, cached, attempts, cache_key, spec_hash, "
    "parameters, error, output_notebook, cached_from, image_digest, input_parameters, metrics"
)
RUN_COLUMNS = (
    "id, notebook, notebook_sha256, spec_hash, status, reason, started, ended, "
    "parameters, environment, pid, host, exit_code, note"
)
NEWEST_FIRST = "ORDER BY started DESC, id DESC"
MAX_LISTED = 20  # ids or names a message lists before '...'
def dumps(value: object) -> str:
    """JSON as the store keeps it: keys sorted, so equal values are equal text."""
    return json.dumps(value, sort_keys=True)


_LATEST = re.compile(r"latest(?:~(\d+))?")


def resolve(c: sqlite3.Connection, ref: str) -> str:
    """A run id from what a user typed: the id, a unique prefix, `latest` or `latest~N` (the
    Nth run before the newest, as git's HEAD~N)."""
    back = _LATEST.fullmatch(ref or "")
    if back:
        n = int(back.group(1) or 0)
        row = c.execute(f"SELECT id FROM runs {NEWEST_FIRST} LIMIT 1 OFFSET ?", (n,)).fetchone()
        if row is None:
            total = c.execute("SELECT count(*) FROM runs").fetchone()[0]
            raise UsageError(f"no run matches {ref!r} (the store has {total} run{'s' if total != 1 else ''})")
        return row[0]
    if not ref:
        raise UsageError("no run matches ''")
    if c.execute("SELECT 1 FROM runs WHERE id = ?", (ref,)).fetchone():
        return ref
    matches = [
        r[0]
        for r in c.execute(
            "SELECT id FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT ?",
            (len(ref), ref, MAX_LISTED + 1),
        )
    ]
    if not matches:
        raise UsageError(f"no run matches {ref!r}")
    if len(matches) > 1:
        listed = ", ".join(matches[:MAX_LISTED]) + (
            ", ..." if len(matches) > MAX_LISTED else ""
        )
        raise UsageError(f"{ref!r} is ambiguous: matches {listed}")
    return matches[0]

def load_runs(
    c: sqlite3.Connection, where: str, args: tuple, limit: int | None = None
) -> list[RunRecord]:
    query = f"SELECT {RUN_COLUMNS} FROM runs {where} {NEWEST_FIRST}"
    if limit is not None:
        query += f" LIMIT {max(int(limit), 0)}"
    runs = []
    for row in c.execute(query, args).fetchall():
        (rid, notebook, nb_sha, spec_hash, status, reason, started, ended,
         parameters, environment, pid, host, exit_code, note) = row
        metrics = [
            Metric.from_dict({"name": n, "value": json.loads(v), "flag": f})
            for n, v, f in c.execute(
                "SELECT name, value, flag FROM metrics WHERE run_id = ? ORDER BY position",
                (rid,),
            )
        ]
        runs.append(
            RunRecord(
                id=rid,
                notebook=notebook,
                notebook_sha256=nb_sha,
                spec_hash=spec_hash,
                status=RunStatus(status),
                reason=reason,
                started=started,
                ended=ended,
                parameters=json.loads(parameters),
                metrics=metrics,
                steps=load_steps(c, rid),
                environment=json.loads(environment),
                pid=pid,
                host=host,
                exit_code=exit_code,
                note=note,
                tags=[t for (t,) in c.execute(
                    "SELECT label FROM run_tags WHERE run_id = ? ORDER BY label", (rid,))],
            )
        )
    return runs

def load_steps(
    c: sqlite3.Connection, run_id: str, name: str | None = None
) -> list[StepRecord]:
    query = f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?"
    args: tuple = (run_id,)
    if name is not None:
        query += " AND name = ?"
        args += (name,)
    rows = c.execute(query + " ORDER BY position", args).fetchall()
    found = lineage(c, run_id, name)
    steps = []
    for row in rows:
        (sname, status, started, ended, duration, cached, attempts, cache_key, spec_hash,
         parameters, error, output_notebook, cached_from, image_digest, input_parameters, metrics) = row
        steps.append(
            StepRecord(
                name=sname,
                status=Status(status),
                started=started,
                ended=ended,
                duration=duration,
                cached=bool(cached),
                attempts=attempts,
                cache_key=cache_key,
                spec_hash=spec_hash,
                parameters=json.loads(parameters),
                inputs=found.get(("in", sname), []),
                outputs=found.get(("out", sname), []),
                error=StepError.from_dict(json.loads(error)) if error else None,
                output_notebook=output_notebook,
                cached_from=cached_from,
                image_digest=image_digest,
                input_parameters=json.loads(input_parameters or "{}"),
                metrics=[Metric.from_dict(m) for m in json.loads(metrics or "[]")],
            )
        )
    return steps

def lineage(c: sqlite3.Connection, run_id: str, step: str | None = None) -> dict:
    """Artifacts of a run's steps (or of one step), keyed by (direction, step)."""
    query = (
        "SELECT sa.step, sa.direction, sa.name, sa.sha256, sa.producer_step, "
        "a.size, a.serializer, a.type_name, sa.source_run "
        "FROM step_artifacts sa JOIN artifacts a ON a.sha256 = sa.sha256 "
        "WHERE sa.run_id = ?"
    )
    args: tuple = (run_id,)
    if step is not None:
        query += " AND sa.step = ?"
        args += (step,)
    found: dict = {}
    for sname, direction, name, sha, producer, size, serializer, type_name, source in c.execute(
        query + " ORDER BY sa.step, sa.direction, sa.position", args
    ):
        ref = ArtifactRef(name, sha, size, serializer, type_name, producer, source)
        found.setdefault((direction, sname), []).append(ref)
    return found


def put_step(
    c: sqlite3.Connection, run_id: str, step: StepRecord, position: int
) -> None:
    status = Status(step.status)
    c.execute(
        f"INSERT INTO steps (run_id, position, {STEP_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (run_id, name) DO UPDATE SET "
        "status = excluded.status, started = excluded.started, ended = excluded.ended, "
        "duration = excluded.duration, cached = excluded.cached, "
        "attempts = excluded.attempts, cache_key = excluded.cache_key, "
        "spec_hash = excluded.spec_hash, parameters = excluded.parameters, "
        "error = excluded.error, output_notebook = excluded.output_notebook, "
        "cached_from = excluded.cached_from, image_digest = excluded.image_digest, "
        "input_parameters = excluded.input_parameters, metrics = excluded.metrics",
        (
            run_id,
            position,
            step.name,
            status.value,
            step.started,
            step.ended,
            step.duration,
            int(bool(step.cached)),
            step.attempts,
            step.cache_key,
            step.spec_hash,
            dumps(step.parameters),
            dumps(step.error.to_dict()) if step.error else None,
            step.output_notebook,
            step.cached_from,
            step.image_digest,
            dumps(step.input_parameters),
            dumps([m.to_dict() for m in step.metrics]),
        ),
    )
    for direction, refs in (("in", step.inputs), ("out", step.outputs)):
        if not refs:
            continue
        c.execute(
            "DELETE FROM step_artifacts WHERE run_id = ? AND step = ? AND direction = ?",
            (run_id, step.name, direction),
        )
        for i, ref in enumerate(refs):
            c.execute(
                "INSERT OR IGNORE INTO artifacts (sha256, size, serializer, type_name) "
                "VALUES (?, ?, ?, ?)",
                (ref.sha256, ref.size, ref.serializer, ref.type_name),
            )
            c.execute(
                "INSERT OR REPLACE INTO step_artifacts "
                "(run_id, step, direction, name, sha256, producer_step, position, source_run) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, step.name, direction, ref.name, ref.sha256, ref.producer_step, i, ref.run_id),
            )
    if status is Status.SUCCEEDED and step.cache_key:
        recorded = step.ended if step.ended is not None else time.time()
        c.execute(
            "INSERT OR REPLACE INTO cache_index (cache_key, run_id, step, recorded) "
            "VALUES (?, ?, ?, ?)",
            (step.cache_key, run_id, step.name, recorded),
        )
    else:
        # Only succeeded steps may serve the cache; a later state change withdraws it.
        c.execute(
            "DELETE FROM cache_index WHERE run_id = ? AND step = ?", (run_id, step.name)
        )

def put_metrics(c: sqlite3.Connection, run_id: str, metrics: list[Metric]) -> None:
    for i, metric in enumerate(metrics):
        d = metric.to_dict()
        c.execute(
            "INSERT OR REPLACE INTO metrics (run_id, name, value, flag, position) "
            "VALUES (?, ?, ?, ?, ?)",
            (run_id, d["name"], json.dumps(d["value"], allow_nan=False), d["flag"], i),
        )
