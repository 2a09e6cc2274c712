"""The run store's SQL schema, its version, and the migration that brings a database up to it.

``PRAGMA user_version`` holds the version of a database file. Opening an older one migrates it
under a write transaction; a newer one (written by a newer nb2pipe) is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from nb2pipe.errors import StoreError

SCHEMA_VERSION = 4

# Applied in order under BEGIN IMMEDIATE; IF NOT EXISTS makes a lost race harmless.
STATEMENTS = (
    """
    CREATE TABLE IF NOT EXISTS runs (
        id              TEXT PRIMARY KEY,
        notebook        TEXT NOT NULL,
        notebook_key    TEXT NOT NULL,      -- realpath at creation: matches ./nb and nb alike
        notebook_sha256 TEXT,
        spec_hash       TEXT,
        status          TEXT NOT NULL,
        reason          TEXT,
        started         REAL,
        ended           REAL,
        parameters      TEXT NOT NULL DEFAULT '{}',
        environment     TEXT NOT NULL DEFAULT '{}',
        pid             INTEGER,
        host            TEXT,
        exit_code       INTEGER
    )
    """,
    "CREATE INDEX IF NOT EXISTS runs_by_started ON runs (started, id)",
    "CREATE INDEX IF NOT EXISTS runs_by_notebook ON runs (notebook_key, started)",
    "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status)",
    """
    CREATE TABLE IF NOT EXISTS steps (
        run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        name            TEXT NOT NULL,
        position        INTEGER NOT NULL,   -- declaration order within the run
        status          TEXT NOT NULL,
        started         REAL,
        ended           REAL,
        duration        REAL,
        cached          INTEGER NOT NULL DEFAULT 0,
        attempts        INTEGER NOT NULL DEFAULT 0,
        cache_key       TEXT,
        spec_hash       TEXT,
        parameters      TEXT NOT NULL DEFAULT '{}',
        error           TEXT,               -- StepError as JSON
        output_notebook TEXT,
        cached_from     TEXT,
        image_digest    TEXT,
        PRIMARY KEY (run_id, name)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS artifacts (
        sha256     TEXT PRIMARY KEY,
        size       INTEGER NOT NULL,
        serializer TEXT NOT NULL,
        type_name  TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS step_artifacts (
        run_id        TEXT NOT NULL,
        step          TEXT NOT NULL,
        direction     TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        name          TEXT NOT NULL,
        sha256        TEXT NOT NULL REFERENCES artifacts (sha256),
        producer_step TEXT,
        position      INTEGER NOT NULL,
        PRIMARY KEY (run_id, step, direction, name),
        FOREIGN KEY (run_id, step) REFERENCES steps (run_id, name) ON DELETE CASCADE
    )
    """,
    "CREATE INDEX IF NOT EXISTS lineage_by_sha ON step_artifacts (sha256)",
    "CREATE INDEX IF NOT EXISTS lineage_by_name ON step_artifacts (name, direction)",
    """
    CREATE TABLE IF NOT EXISTS metrics (
        run_id   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        name     TEXT NOT NULL,
        value    TEXT NOT NULL,             -- JSON; non-finite floats as "NaN"/"Infinity" + flag
        flag     TEXT,
        position INTEGER NOT NULL,
        PRIMARY KEY (run_id, name)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS cache_index (
        cache_key TEXT NOT NULL,
        run_id    TEXT NOT NULL,
        step      TEXT NOT NULL,
        recorded  REAL NOT NULL,
        PRIMARY KEY (cache_key, run_id, step),
        FOREIGN KEY (run_id, step) REFERENCES steps (run_id, name) ON DELETE CASCADE
    )
    """,
    "CREATE INDEX IF NOT EXISTS cache_by_key ON cache_index (cache_key, recorded)",
)


# What brings version N-1 to N, for N >= 2 (version 1 is STATEMENTS), applied in order.
MIGRATIONS = {
    2: (  # lineage: the parameters a step's inputs were made with, and the run each artifact came from
        "ALTER TABLE steps ADD COLUMN input_parameters TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE step_artifacts ADD COLUMN source_run TEXT",
    ),
    3: (  # runs people can find again (a note, labels), and the images `nb2pipe build` made
        "ALTER TABLE runs ADD COLUMN note TEXT",
        """
        CREATE TABLE IF NOT EXISTS run_tags (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            label  TEXT NOT NULL,
            PRIMARY KEY (run_id, label)
        )
        """,
        "CREATE INDEX IF NOT EXISTS tags_by_label ON run_tags (label)",
        """
        CREATE TABLE IF NOT EXISTS images (
            notebook_key TEXT NOT NULL,     -- realpath of the notebook the image was built for
            spec_hash    TEXT NOT NULL,     -- the pipeline version it holds
            tag          TEXT NOT NULL,     -- what `nb2pipe build --tag` named it
            image_id     TEXT NOT NULL,
            repo_digests TEXT NOT NULL DEFAULT '[]',  -- JSON: what --push gave
            built        REAL NOT NULL,
            PRIMARY KEY (notebook_key, spec_hash, tag)
        )
        """,
    ),
    4: (  # each step's metrics with the step, recorded when it finishes: a run killed before it was
          # closed loses none, and a cache hit reports its producer's metrics
        "ALTER TABLE steps ADD COLUMN metrics TEXT NOT NULL DEFAULT '[]'",
    ),
}


def migrate(conn: sqlite3.Connection, write: Callable[[], AbstractContextManager[sqlite3.Connection]],
            db_path: Path) -> None:
    """Bring the database behind `conn` to SCHEMA_VERSION; `write()` opens a write transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version < 0:
        raise StoreError(
            f"the run store {db_path} is corrupt (schema version {version}: its header is damaged). "
            f"nb2pipe did not modify it; move {db_path.name} aside to start an empty run history "
            "(stored artifacts are kept)"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{db_path} has schema version {version}, newer than this nb2pipe "
            f"understands ({SCHEMA_VERSION}); upgrade nb2pipe"
        )
    with write() as c:
        # Re-read under the write lock: another process may have migrated meanwhile.
        current = c.execute("PRAGMA user_version").fetchone()[0]
        for target in range(current + 1, SCHEMA_VERSION + 1):
            for statement in STATEMENTS if target == 1 else MIGRATIONS[target]:
                c.execute(statement)
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


_EXPECTED: dict[str, frozenset[str]] | None = None


def expected_columns() -> dict[str, frozenset[str]]:
    """Table -> column names of a database at SCHEMA_VERSION (built once, in memory)."""
    global _EXPECTED
    if _EXPECTED is None:
        conn = sqlite3.connect(":memory:")
        try:
            for target in range(1, SCHEMA_VERSION + 1):
                for statement in STATEMENTS if target == 1 else MIGRATIONS[target]:
                    conn.execute(statement)
            _EXPECTED = table_columns(conn)
        finally:
            conn.close()
    return _EXPECTED


def table_columns(conn: sqlite3.Connection) -> dict[str, frozenset[str]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: frozenset(r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')) for t in tables}


def schema_problems(conn: sqlite3.Connection) -> list[str]:
    """Tables or columns of SCHEMA_VERSION the database behind `conn` lacks: a damaged schema (its
    text is stored in the file like any row, and SQLite's integrity check does not compare it with
    what nb2pipe created). Empty when every one is there."""
    have = table_columns(conn)
    problems = []
    for table, columns in sorted(expected_columns().items()):
        if table not in have:
            problems.append(f"table {table} is missing from the schema")
        elif columns - have[table]:
            problems.append(f"table {table} lacks column(s) {', '.join(sorted(columns - have[table]))}")
    return problems
