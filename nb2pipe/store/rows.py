"""The run store's rows: records written as rows (a step with its lineage and cache entry, a
run's metrics) and read back (runs with their steps, lineage, metrics and tags), and a run id
from what a user typed. Functions of an open connection; RunStore owns the transactions."""

from __future__ import annotations

import json
import re
import sqlite3
import time

from nb2pipe.errors import DamagedRecord, UsageError
from nb2pipe.model.records import Metric, RunRecord, RunStatus, Status, StepRecord
from nb2pipe.store import columns
from nb2pipe.store.columns import decoded
from nb2pipe.store.pauses import pause

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
    c: sqlite3.Connection, where: str, args: tuple, limit: int | None = None, *, salvage: bool = False
) -> list[RunRecord]:
    """The runs `where` selects, newest first. A record that does not decode raises DamagedRecord,
    or with `salvage` reads back as a DAMAGED record carrying the problem (listings go on)."""
    query = f"SELECT {RUN_COLUMNS} FROM runs {where} {NEWEST_FIRST}"
    if limit is not None:
        query += f" LIMIT {max(int(limit), 0)}"
    runs = []
    for row in c.execute(query, args).fetchall():
        try:
            runs.append(load_run(c, row))
        except DamagedRecord as exc:
            if not salvage:
                raise
            runs.append(damaged_run(row, exc))
    return runs


def load_run(c: sqlite3.Connection, row: tuple) -> RunRecord:
    (rid, notebook, nb_sha, spec_hash, status, reason, started, ended,
     parameters, environment, pid, host, exit_code, note) = row

    def d(column, decode, raw):
        return decoded(rid, None, column, decode, raw)

    metrics = [
        d(f"metric {n!r}", lambda m: columns.metric({"name": m[0], "value": json.loads(m[1]), "flag": m[2]}),
          (n, v, f))
        for n, v, f in c.execute(
            "SELECT name, value, flag FROM metrics WHERE run_id = ? ORDER BY position", (rid,))
    ]
    return RunRecord(
        id=d("id", columns.text, rid),
        notebook=d("notebook", columns.text, notebook),
        notebook_sha256=d("notebook_sha256", columns.optional_text, nb_sha),
        spec_hash=d("spec_hash", columns.optional_text, spec_hash),
        status=d("status", columns.run_status, status),
        reason=d("reason", columns.optional_text, reason),
        started=d("started", columns.number, started),
        ended=d("ended", columns.number, ended),
        parameters=d("parameters", columns.json_object, parameters),
        metrics=metrics,
        steps=load_steps(c, rid),
        environment=d("environment", columns.json_object, environment),
        pid=d("pid", columns.integer, pid),
        host=d("host", columns.optional_text, host),
        exit_code=d("exit_code", columns.integer, exit_code),
        note=d("note", columns.optional_text, note),
        tags=[d("tag", columns.text, t) for (t,) in c.execute(
            "SELECT label FROM run_tags WHERE run_id = ? ORDER BY label", (rid,))],
    )


def damaged_run(row: tuple, exc: DamagedRecord) -> RunRecord:
    """What a listing shows of a run whose record does not decode: its id, notebook and start
    (when those decode), status DAMAGED and the problem."""
    rid, notebook, started = row[0], row[1], row[6]
    return RunRecord(
        id=str(rid), notebook=notebook if isinstance(notebook, str) else "?", status=RunStatus.DAMAGED,
        started=started if isinstance(started, int | float) and not isinstance(started, bool) else None,
        pid=0, host="", damaged=str(exc),
    )


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

        def d(column, decode, raw, sname=sname):
            return decoded(run_id, sname, column, decode, raw)

        steps.append(
            StepRecord(
                name=decoded(run_id, None, "step name", columns.text, sname),
                status=d("status", columns.step_status, status),
                started=d("started", columns.number, started),
                ended=d("ended", columns.number, ended),
                duration=d("duration", columns.number, duration),
                cached=bool(d("cached", columns.count, cached)),
                attempts=d("attempts", columns.count, attempts),
                cache_key=d("cache_key", columns.optional_text, cache_key),
                spec_hash=d("spec_hash", columns.optional_text, spec_hash),
                parameters=d("parameters", columns.json_object, parameters),
                inputs=found.get(("in", sname), []),
                outputs=found.get(("out", sname), []),
                error=d("error", columns.step_error, error),
                output_notebook=d("output_notebook", columns.optional_text, output_notebook),
                cached_from=d("cached_from", columns.optional_text, cached_from),
                image_digest=d("image_digest", columns.optional_text, image_digest),
                input_parameters=d("input_parameters", columns.optional_json_object, input_parameters),
                metrics=d("metrics", columns.step_metrics, metrics),
            )
        )
    return steps

def lineage(c: sqlite3.Connection, run_id: str, step: str | None = None) -> dict:
    """Artifacts of a run's steps (or of one step), keyed by (direction, step)."""
    query = (
        "SELECT sa.step, sa.direction, sa.name, sa.sha256, sa.producer_step, "
        "a.size, a.serializer, a.type_name, sa.source_run "
        "FROM step_artifacts sa LEFT JOIN artifacts a ON a.sha256 = sa.sha256 "  # a dangling one is damage
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
        ref = decoded(run_id, sname, f"{'input' if direction == 'in' else 'output'} {name!r}",
                      lambda f: columns.artifact(*f), (name, sha, size, serializer, type_name, producer, source))
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
    if status is Status.SUCCEEDED:
        pause("recording")
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
