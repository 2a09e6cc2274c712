"""The SQLite file under a run store: opening it (WAL for writers, read-only for readers of a
store they may not write), its transactions, and SQLite's errors as nb2pipe's (exit 3, 74, 75).

Concurrency model: WAL journal (readers never block the writer), one ``BEGIN IMMEDIATE``
transaction per state change (the write lock is taken up front, so a transaction never fails
half-way on a lock upgrade), and SQLite's busy timeout to queue writers from other processes.
Within a process one connection is shared by all threads behind a lock, because the runner
records step state changes from worker threads.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nb2pipe.errors import StoreBusyError, StoreError, StoreIOError
from nb2pipe.store.schema import migrate, schema_problems

DB_NAME = "runs.db"
DEFAULT_BUSY_TIMEOUT = 30.0


def index_problem(problem: str) -> bool:
    """Whether an integrity-check finding is about an index only (REINDEX mends it)."""
    return any(words in problem for words in ("missing from index", "wrong # of entries in index",
                                              "non-unique entry in index"))


class Database:
    """The connection to ``root/runs.db`` and its transactions (``_write``, ``_read``)."""

    def __init__(self, root: str | Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, *, reader: bool = False):
        """`reader`: the caller only reads (runs list, runs show, load), so a store it may not
        write (a read-only mount, another user's folder) is opened read-only instead of refused."""
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self.busy_timeout = float(busy_timeout)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        # Why this store cannot be written (None: it can), for the error a write then gives.
        self.read_only: str | None = None
        if reader and self.db_path.is_file() and not os.access(self.root, os.W_OK | os.X_OK):
            self.read_only = "its folder is not writable"
        else:
            self._prepare_root()
        with self._errors():
            try:
                if self.read_only:
                    self._conn = self._connect_read_only()
                else:
                    self._conn = sqlite3.connect(
                        str(self.db_path),
                        timeout=self.busy_timeout,
                        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                        check_same_thread=False,
                    )
                self._configure()
                self._migrate()
            except BaseException:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                raise

    # -- opening ---------------------------------------------------------------------------

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection. A WAL database needs its -shm file even to be read; when that
        cannot be created (no writer left one), the file is read as immutable: with no writer
        possible on a read-only folder, nothing changes under the reader."""
        uri = "file:" + urllib.parse.quote(str(self.db_path.resolve()))
        for options in ("mode=ro", "mode=ro&immutable=1"):
            conn = sqlite3.connect(f"{uri}?{options}", uri=True, timeout=self.busy_timeout,
                                   isolation_level=None, check_same_thread=False)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                if "unable to open" not in str(exc) or "immutable" in options:
                    raise
        raise AssertionError("unreachable")

    def _prepare_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreIOError(
                f"cannot create the run store directory {self.root}: {exc.strerror or exc}"
            ) from exc
        if not self.root.is_dir():
            raise StoreIOError(f"run store path {self.root} exists and is not a directory")
        # SQLite needs to create runs.db-wal/-shm next to the database, even to read it.
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreIOError(
                f"run store directory {self.root} is not writable (read-only file system or permissions): "
                "make it writable, or pass --store (or set NB2PIPE_STORE) with a writable folder"
            )

    def _configure(self) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        if self.read_only:
            return  # the journal mode is the writer's (WAL), recorded in the file
        # Switching to WAL needs a moment of exclusive access; on a store other processes are
        # opening at the same instant it can report busy without waiting, so retry briefly.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise StoreIOError(
                f"cannot enable WAL journaling on {self.db_path} (got {mode!r}); "
                "the store must live on a local file system"
            )
        conn.execute("PRAGMA synchronous = NORMAL")

    def _migrate(self) -> None:
        assert self._conn is not None
        migrate(self._conn, self._write, self.db_path)  # current already: a reader writes nothing

    # -- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate sqlite3 errors into nb2pipe's store errors (exit codes 3, 74, 75)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        except UnicodeDecodeError as exc:
            # The sqlite3 module decodes SQLite's error messages (and TEXT values) as UTF-8; nb2pipe
            # only ever stores str, so bytes that do not decode come from a damaged file, most often
            # "malformed database schema (...)" quoting the damaged schema text.
            raw = exc.object if isinstance(exc.object, bytes) else str(exc).encode()
            raise self._corrupt(raw.decode("utf-8", "replace")) from exc
        except json.JSONDecodeError as exc:  # nb2pipe stores json.dumps output: one that does not parse is damage
            raise self._corrupt(f"a stored record does not parse as JSON: {exc}") from exc

    def _corrupt(self, text: str) -> StoreError:
        damaged = self._damaged_indexes()
        if damaged:  # the tables are sound: rebuilding the indexes from them loses nothing
            return StoreError(f"the run store {self.db_path} has a damaged index ({damaged[0]}; {text}) "
                              "(fix: nb2pipe store verify --repair rebuilds it)")
        return StoreError(
            f"the run store {self.db_path} is corrupt ({text}). nb2pipe did not modify it. "
            f"To recover: keep a copy (cp {self.db_path} {self.db_path}.bak), then try "
            f"`sqlite3 {self.db_path} .recover | sqlite3 {self.root / 'runs-recovered.db'}` "
            f"and move the recovered file into place; or move {DB_NAME} aside to start "
            "an empty run history (stored artifacts are kept)"
        )

    def _damaged_indexes(self) -> list[str]:
        """SQLite's findings when they are about indexes only (REINDEX mends them), else []."""
        try:
            problems = [r[0] for r in self._conn.execute("PRAGMA integrity_check")] if self._conn else []
        except (sqlite3.Error, UnicodeDecodeError):
            return []
        return problems if problems != ["ok"] and all(index_problem(p) for p in problems) else []

    def _damaged_schema(self) -> list[str]:
        """schema_problems() of this database (a schema that cannot be read back is damaged too)."""
        try:
            return schema_problems(self._c) if self._conn is not None else []
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            return [f"its schema does not read back ({exc})"]

    def _translate(self, exc: sqlite3.Error) -> Exception:
        text = str(exc)
        low = text.lower()
        if "locked" in low or "busy" in low:
            return StoreBusyError(
                f"the run store {self.db_path} stayed locked by another process for more than "
                f"{self.busy_timeout:g} s ({text}); retry when the other nb2pipe command "
                "finishes, or raise the busy timeout"
            )
        if any(word in low for word in ("not a database", "malformed", "corrupt", "could not decode to utf-8",
                                        "unsupported file format", "foreign key mismatch")):
            return self._corrupt(text)
        if any(
            word in low
            for word in (
                "readonly", "read-only", "unable to open", "disk i/o", "is full", "permission"
            )
        ):
            fix = "free space on its disk" if "full" in low else "make it writable"
            return StoreIOError(f"cannot write the run store {self.db_path}: {text}; {fix} (or pass --store with "
                                "another folder), then run again: finished steps are reused")
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreError(f"run store constraint violated in {self.db_path}: {text}")
        if isinstance(exc, sqlite3.OperationalError) and ("no such" in low or "has no column" in low):
            damaged = self._damaged_schema()
            if damaged:  # e.g. "no such column: spec_hash" from a schema whose text was damaged
                return self._corrupt(f"{text}; {'; '.join(damaged)}")
        return exc  # anything else is a bug in nb2pipe: let it surface as-is

    @property
    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the run store {self.db_path} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the database write lock from its first statement."""
        if self.read_only:
            raise StoreIOError(f"cannot write the run store {self.db_path}: {self.read_only} (read-only file "
                               "system or permissions); make it writable, or pass --store with a writable folder")
        with self._lock, self._errors():
            conn = self._c
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # keep the original error; SQLite undoes the transaction anyway
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so a record assembled from several queries is one snapshot."""
        with self._lock, self._errors():
            conn = self._c
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

