"""The run store: every run, step, artifact reference and metric, in one SQLite file.

What is recorded and read back. How the file is opened, its transactions and its errors are in
database.py, the tables and their migration in schema.py, the rows' encoding in rows.py.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from pathlib import Path

from nb2pipe.errors import DamagedRecord, StoreBusyError, StoreError, StoreIOError, UsageError
from nb2pipe.model.records import (
    ArtifactRef,
    Metric,
    RunRecord,
    RunStatus,
    Status,
    StepError,
    StepRecord,
)
from nb2pipe.store import damage
from nb2pipe.store.columns import artifact, decoded, optional_json_object
from nb2pipe.store.damage import Damage
from nb2pipe.store.database import DB_NAME, DEFAULT_BUSY_TIMEOUT, Database  # noqa: F401  (DB_NAME: re-exported)
from nb2pipe.store.processes import pid_alive
from nb2pipe.store.rows import (
    MAX_LISTED,
    NEWEST_FIRST,
    RUN_COLUMNS,
    dumps,
    lineage,
    load_run,
    load_runs,
    load_steps,
    put_metrics,
    put_step,
    resolve,
)
from nb2pipe.store.schema import SCHEMA_VERSION, schema_problems  # noqa: F401  (SCHEMA_VERSION: re-exported)

logger = logging.getLogger("nb2pipe.store")




def _decodable(read, *args):
    """`read(*args)`, or None (logged) when the record it reads is damaged."""
    try:
        return read(*args)
    except DamagedRecord as exc:
        logger.warning("%s", exc)
        return None


def _one_step(c: sqlite3.Connection, run_id: str, name: str) -> StepRecord:
    return load_steps(c, run_id, name=name)[0]


def _execution(c: sqlite3.Connection, run_id: str, name: str, environment: object) -> tuple[StepRecord, dict]:
    return _one_step(c, run_id, name), decoded(run_id, None, "environment", optional_json_object, environment)


def _notebook_key(notebook: str) -> str:
    return os.path.realpath(notebook)


class RunStore(Database):
    """SQLite-backed record of runs under ``root/runs.db``."""

    def __init__(self, root: str | Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, *, reader: bool = False):
        """`reader`: the caller only reads (runs list, runs show, load), so a store it may not
        write (a read-only mount, another user's folder) is opened read-only instead of refused."""
        super().__init__(root, busy_timeout, reader=reader)
        self.host = socket.gethostname()

    # -- writing ---------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        """Record a new run and its steps (build them as ``Status.PENDING``)."""
        self.mark_crashed()
        with self._write() as c:
            try:
                c.execute(
                    f"INSERT INTO runs ({RUN_COLUMNS}, notebook_key) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run.id,
                        run.notebook,
                        run.notebook_sha256,
                        run.spec_hash,
                        RunStatus(run.status).value,
                        run.reason,
                        run.started,
                        run.ended,
                        dumps(run.parameters),
                        dumps(run.environment),
                        run.pid,
                        run.host,
                        run.exit_code,
                        run.note,
                        _notebook_key(run.notebook),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"run id {run.id!r} already exists in {self.db_path}") from exc
            for position, step in enumerate(run.steps):
                put_step(c, run.id, step, position)
            put_metrics(c, run.id, run.metrics)

    def update_step(self, run_id: str, step: StepRecord) -> None:
        """Upsert one step's state, its artifacts and lineage, and its cache entry, atomically.

        Lineage for a direction is replaced only when the record carries artifacts for it, so
        a bare status change never erases inputs recorded earlier.
        """
        with self._write() as c:
            if c.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise UsageError(f"no run matches {run_id!r}")
            row = c.execute(
                "SELECT position FROM steps WHERE run_id = ? AND name = ?", (run_id, step.name)
            ).fetchone()
            if row is not None:
                position = row[0]
            else:
                position = c.execute(
                    "SELECT COALESCE(MAX(position) + 1, 0) FROM steps WHERE run_id = ?", (run_id,)
                ).fetchone()[0]
            put_step(c, run_id, step, position)

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        ended: float,
        reason: str | None,
        metrics: list[Metric],
        exit_code: int,
    ) -> None:
        with self._write() as c:
            cur = c.execute(
                "UPDATE runs SET status = ?, ended = ?, reason = ?, exit_code = ? WHERE id = ?",
                (RunStatus(status).value, ended, reason, exit_code, run_id),
            )
            if cur.rowcount == 0:
                raise UsageError(f"no run matches {run_id!r}")
            c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            put_metrics(c, run_id, metrics)

    def mark_crashed(self) -> list[str]:
        """Close out runs left RUNNING by a runner on this host that no longer exists.

        Running steps become FAILED (reason "crashed"); pending steps stay PENDING since they
        never started. The run's end time is its last recorded activity.
        """
        with self._read() as c:
            candidates = c.execute(
                "SELECT id, pid FROM runs WHERE status = ? AND host = ?",
                (RunStatus.RUNNING.value, self.host),
            ).fetchall()
        dead = [run_id for run_id, pid in candidates if not pid_alive(pid or 0)]
        crashed: list[str] = []
        error = dumps(StepError(reason="crashed", message="runner died").to_dict())
        for run_id in dead:
            with self._write() as c:
                times = c.execute(
                    "SELECT started FROM runs WHERE id = :id "
                    "UNION ALL SELECT started FROM steps WHERE run_id = :id "
                    "UNION ALL SELECT ended FROM steps WHERE run_id = :id",
                    {"id": run_id},
                ).fetchall()
                known = [t for (t,) in times if t is not None]
                last = max(known) if known else time.time()
                cur = c.execute(
                    "UPDATE runs SET status = ?, reason = ?, ended = ? "
                    "WHERE id = ? AND status = ?",
                    (RunStatus.CRASHED.value, "runner died", last, run_id, RunStatus.RUNNING.value),
                )
                if cur.rowcount == 0:
                    continue  # another process closed it out first
                c.execute(
                    "UPDATE steps SET status = ?, error = ? WHERE run_id = ? AND status = ?",
                    (Status.FAILED.value, error, run_id, Status.RUNNING.value),
                )
                crashed.append(run_id)
        return crashed

    # -- reading ---------------------------------------------------------------------------

    def get_run(self, run_id_or_prefix: str, *, salvage: bool = False) -> RunRecord:
        """The run with this id, unique id prefix, or ``"latest"``. A record that does not decode
        raises DamagedRecord, or with `salvage` reads back as DAMAGED (as list_runs shows it)."""
        self._close_out_dead_runners()
        with self._read() as c:
            run_id = resolve(c, run_id_or_prefix)
            return self._as_seen(load_runs(c, "WHERE id = ?", (run_id,), salvage=salvage))[0]

    def list_runs(self, limit: int = 50, notebook: str | None = None, *, tags: list[str] | None = None,
                  statuses: list[str] | None = None, since: float | None = None) -> list[RunRecord]:
        """Runs newest first, with their steps and metrics; optionally only those of a notebook,
        carrying every label in `tags`, in one of `statuses`, or started at or after `since`. A run
        whose record does not decode is listed as DAMAGED (its `damaged` says why)."""
        clauses, args = [], ()
        if notebook is not None:
            where, args = self._notebook_filter(notebook)
            clauses.append(where)
        for label in tags or []:
            clauses.append("EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.id AND t.label = ?)")
            args += (label,)
        if statuses:
            clauses.append(f"runs.status IN ({', '.join('?' * len(statuses))})")
            args += tuple(RunStatus(s).value for s in statuses)
        if since is not None:
            clauses.append("runs.started >= ?")
            args += (since,)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        self._close_out_dead_runners()
        with self._read() as c:
            return self._as_seen(load_runs(c, where, args, limit=limit, salvage=True))

    def _close_out_dead_runners(self) -> None:
        """Readers see a run whose runner died as crashed at once, not only after the next run;
        a store this process may not write is closed out in what it reads (_as_seen)."""
        if self.read_only:
            return
        try:
            self.mark_crashed()
        except (StoreIOError, StoreBusyError):
            pass

    def _as_seen(self, records: list[RunRecord]) -> list[RunRecord]:
        """On a read-only store, what mark_crashed would have recorded, in the records only."""
        if not self.read_only:
            return records
        for run in records:
            if run.status == RunStatus.RUNNING and run.host == self.host and not pid_alive(run.pid or 0):
                run.status, run.reason = RunStatus.CRASHED, "runner died"
                times = [t for s in run.steps for t in (s.started, s.ended) if t is not None]
                run.ended = max([run.started or 0.0, *times]) or None
                for step in run.steps:
                    if step.status == Status.RUNNING:
                        step.status, step.error = Status.FAILED, StepError(reason="crashed", message="runner died")
        return records

    def tag_run(self, run_ref: str, label: str, remove: bool = False) -> str:
        """Add (or remove) a label on a run; returns the run's id."""
        with self._write() as c:
            run_id = resolve(c, run_ref)
            if remove:
                c.execute("DELETE FROM run_tags WHERE run_id = ? AND label = ?", (run_id, label))
            else:
                c.execute("INSERT OR IGNORE INTO run_tags (run_id, label) VALUES (?, ?)", (run_id, label))
        return run_id

    def record_image(self, notebook: str, spec_hash: str, tag: str, image_id: str,
                     repo_digests: list[str] | None = None) -> None:
        """Remember the image `nb2pipe build --tag` made for this version of the notebook."""
        with self._write() as c:
            c.execute(
                "INSERT OR REPLACE INTO images (notebook_key, spec_hash, tag, image_id, repo_digests, built) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_notebook_key(notebook), spec_hash, tag, image_id, dumps(list(repo_digests or [])), time.time()),
            )

    def built_image(self, notebook: str, spec_hash: str) -> dict | None:
        """The newest image recorded for this version of the notebook, pushed ones first."""
        with self._read() as c:
            row = c.execute(
                "SELECT tag, image_id, repo_digests, built FROM images WHERE notebook_key = ? AND spec_hash = ? "
                "ORDER BY repo_digests != '[]' DESC, built DESC LIMIT 1",
                (_notebook_key(notebook), spec_hash),
            ).fetchone()
        if row is None:
            return None
        return {"tag": row[0], "image_id": row[1], "repo_digests": json.loads(row[2]), "built": row[3]}

    def lookup_cache(self, cache_key: str) -> StepRecord | None:
        """The newest succeeded step recorded under ``cache_key``, with its outputs.

        ``cached_from`` is set to the run that produced them; whether the objects still exist
        is for the caller to check. A record that does not decode is passed over (a miss, logged):
        the step executes again rather than the run failing on someone else's damaged record.
        """
        with self._read() as c:
            rows = c.execute(
                "SELECT ci.run_id, ci.step FROM cache_index ci "
                "JOIN steps s ON s.run_id = ci.run_id AND s.name = ci.step "
                "WHERE ci.cache_key = ? AND s.status = ? "
                "ORDER BY ci.recorded DESC, ci.run_id DESC",
                (cache_key, Status.SUCCEEDED.value),
            ).fetchall()
            for run_id, name in rows:
                step = _decodable(_one_step, c, run_id, name)
                if step is not None:
                    step.cached_from = run_id
                    return step
        return None

    def latest_outputs(self, notebook_sha_or_path: str, step_name: str) -> list[ArtifactRef] | None:
        """Outputs of the newest succeeded or cached record of a step of this notebook.

        The notebook matches by the path as given, by its resolved path, or by content sha256.
        """
        where, args = self._notebook_filter(notebook_sha_or_path, alias="r")
        with self._read() as c:
            row = c.execute(
                "SELECT s.run_id, s.cached_from FROM steps s JOIN runs r ON r.id = s.run_id "
                f"WHERE s.name = ? AND s.status IN (?, ?) AND {where} "
                "ORDER BY r.started DESC, r.id DESC LIMIT 1",
                (step_name, Status.SUCCEEDED.value, Status.CACHED.value, *args),
            ).fetchone()
            if row is None:
                return None
            outputs = lineage(c, row[0], step_name).get(("out", step_name), [])
        # Reused as someone's inputs, so say where they came from (records older than the
        # source_run column: the run of that record, or the one its cache hit came from).
        for ref in outputs:
            ref.producer_step = ref.producer_step or step_name
            ref.run_id = ref.run_id or row[1] or row[0]
        return outputs

    def last_execution(self, notebook_sha_or_path: str, step_name: str) -> tuple[StepRecord, dict] | None:
        """The newest record of a step of this notebook that executed and succeeded (not a cache
        hit), with its run's environment: what a cache miss is explained against."""
        where, args = self._notebook_filter(notebook_sha_or_path, alias="r")
        with self._read() as c:
            rows = c.execute(
                "SELECT s.run_id, r.environment FROM steps s JOIN runs r ON r.id = s.run_id "
                f"WHERE s.name = ? AND s.status = ? AND {where} "
                "ORDER BY r.started DESC, r.id DESC",
                (step_name, Status.SUCCEEDED.value, *args),
            ).fetchall()
            for run_id, environment in rows:
                found = _decodable(_execution, c, run_id, step_name, environment)
                if found is not None:
                    found[0].cached_from = run_id  # the run it executed in
                    return found
        return None

    def find_artifact(
        self, name: str, run_id: str | None = None, notebook: str | None = None
    ) -> ArtifactRef:
        """The output named ``name`` of a run (or of the newest run that produced it)."""
        with self._read() as c:
            if run_id is not None:
                scope, args = "r.id = ?", (resolve(c, run_id),)
                where_scope = f"run {args[0]}"
            elif notebook is not None:
                scope, args = self._notebook_filter(notebook, alias="r")
                where_scope = f"runs of {notebook}"
            else:
                scope, args, where_scope = "1", (), "any run"
            select = (
                "SELECT sa.run_id, sa.step, sa.name, sa.sha256, sa.producer_step, "
                "a.size, a.serializer, a.type_name "
                "FROM step_artifacts sa "
                "LEFT JOIN artifacts a ON a.sha256 = sa.sha256 "  # a dangling one reads as damage
                "JOIN runs r ON r.id = sa.run_id "
                "JOIN steps s ON s.run_id = sa.run_id AND s.name = sa.step "
                f"WHERE sa.direction = 'out' AND {scope}"
            )
            # The last writer of a name within a run wins (a later step may reassign it).
            row = c.execute(
                select + " AND sa.name = ? "
                "ORDER BY r.started DESC, r.id DESC, COALESCE(s.ended, 0) DESC, "
                "s.position DESC LIMIT 1",
                (*args, name),
            ).fetchone()
            if row is not None:
                run, step, aname, sha, producer, size, serializer, type_name = row
                ref = decoded(run, step, f"output {aname!r}", lambda f: artifact(*f),
                              (aname, sha, size, serializer, type_name, producer, None))
                ref.producer_step = ref.producer_step or step
                return ref
            names = [
                r[0]
                for r in c.execute(
                    "SELECT DISTINCT sa.name FROM step_artifacts sa "
                    "JOIN runs r ON r.id = sa.run_id "
                    f"WHERE sa.direction = 'out' AND {scope} ORDER BY sa.name LIMIT ?",
                    (*args, MAX_LISTED + 1),
                )
            ]
        if not names:
            raise UsageError(f"no artifact named {name!r} in {where_scope}; no artifacts recorded")
        listed = ", ".join(names[:MAX_LISTED]) + (", ..." if len(names) > MAX_LISTED else "")
        raise UsageError(f"no artifact named {name!r} in {where_scope}; artifacts: {listed}")

    def referenced_objects(self, excluding: list[str] | None = None) -> set[str]:
        """Every object sha256 some run's lineage refers to (what gc must keep), leaving out the
        runs in `excluding` (what would be kept once they are gone)."""
        skip = list(excluding or [])
        with self._read() as c:
            query = "SELECT DISTINCT sha256 FROM step_artifacts"
            if skip:
                query += f" WHERE run_id NOT IN ({', '.join('?' * len(skip))})"
            return {r[0] for r in c.execute(query, tuple(skip))}

    def artifact_references(self) -> list[tuple[str, str, str, str]]:
        """(sha256, run id, step, variable) of every artifact a step record names, once each: by
        the step that made it where a record says so."""
        with self._read() as c:
            rows = c.execute("SELECT sha256, run_id, step, name FROM step_artifacts "
                             "ORDER BY direction = 'in', run_id, step, name").fetchall()
        seen: set[str] = set()
        return [row for row in rows if not (row[0] in seen or seen.add(row[0]))]

    def withdraw_from_cache(self, shas: list[str]) -> int:
        """Stop the cache serving any step whose outputs include one of `shas`; returns how many
        entries went. The records stay (history), only the cache index forgets them."""
        with self._write() as c:
            marks = ", ".join("?" * len(shas))
            cur = c.execute(
                "DELETE FROM cache_index WHERE EXISTS (SELECT 1 FROM step_artifacts sa WHERE sa.run_id = "
                "cache_index.run_id AND sa.step = cache_index.step AND sa.direction = 'out' "
                f"AND sa.sha256 IN ({marks}))",
                tuple(shas),
            )
            return cur.rowcount

    def run_ids(self) -> list[str]:
        with self._read() as c:
            return [r for (r,) in c.execute("SELECT id FROM runs")]

    def runs_to_collect(self, keep_last: int | None, before: float | None) -> list[str]:
        """Finished runs beyond the `keep_last` newest of each notebook, and those started before
        `before` (either rule alone, or both); a running run is never collected."""
        with self._read() as c:
            rows = c.execute(f"SELECT id, notebook_key, started, status FROM runs {NEWEST_FIRST}").fetchall()
        seen: dict[str, int] = {}
        out = []
        for run_id, key, started, status in rows:
            seen[key] = seen.get(key, 0) + 1
            if status == RunStatus.RUNNING.value:
                continue
            beyond = keep_last is not None and seen[key] > keep_last
            old = before is not None and (started or 0) < before
            if beyond or old:
                out.append(run_id)
        return out

    def delete_runs(self, run_ids: list[str]) -> None:
        """Delete runs with their steps, lineage, metrics, tags and cache entries (one transaction)."""
        with self._write() as c:
            for run_id in run_ids:
                for table in ("cache_index", "step_artifacts", "metrics", "run_tags", "steps"):
                    c.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
                c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            c.execute("DELETE FROM artifacts WHERE sha256 NOT IN (SELECT sha256 FROM step_artifacts)")

    def damaged_records(self) -> list[Damage | DamagedRecord]:
        """Every stored value that does not decode (damage.find), and any run whose record still
        does not read back for a reason the column checks did not name."""
        with self._read() as c:
            found: list[Damage | DamagedRecord] = list(damage.find(c))
            named = {d.run for d in found}
            for row in c.execute(f"SELECT {RUN_COLUMNS} FROM runs {NEWEST_FIRST}").fetchall():
                if row[0] in named:
                    continue
                try:
                    load_run(c, row)
                except DamagedRecord as exc:
                    found.append(exc)
        return found

    def reindex(self) -> None:
        """Rebuild every index from its table (an index that disagrees with its rows is damage
        SQLite can mend on its own: the tables hold the records)."""
        with self._write() as c:
            c.execute("REINDEX")

    def repair_records(self) -> list[str]:
        """Mend or remove the damaged values damage.find reports (one transaction); what was done."""
        with self._write() as c:
            return damage.repair(c, damage.find(c))

    def integrity_check(self) -> list[str]:
        """Problems SQLite finds in the database file and its foreign keys; empty when sound."""
        with self._read() as c:
            problems = [r[0] for r in c.execute("PRAGMA integrity_check")]
            if problems == ["ok"]:
                problems = []
            problems += schema_problems(c)
            for table, rowid, parent, _ in c.execute("PRAGMA foreign_key_check"):
                problems.append(f"{table} row {rowid} refers to a missing {parent} row")
        return problems

    # -- helpers ---------------------------------------------------------------------------

    def _notebook_filter(self, notebook: str, alias: str = "runs") -> tuple[str, tuple]:
        return (
            f"({alias}.notebook = ? OR {alias}.notebook_key = ? OR {alias}.notebook_sha256 = ?)",
            (notebook, _notebook_key(notebook), notebook),
        )
