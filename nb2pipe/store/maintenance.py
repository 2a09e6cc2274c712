"""Keeping a store sound and small: `nb2pipe store verify [--repair]`, `store gc`, `runs delete`.

verify re-hashes every object, checks that every artifact a record names is in the object
store, decodes every stored value (store/damage.py), and asks SQLite for its own integrity and
foreign-key checks. With repair, a damaged or
missing object is withdrawn from the cache (the steps that made it execute again next time,
instead of serving it) and a damaged file is removed; the records stay, so history is kept.

gc removes runs (`keep_last` newest per notebook, or older than `older_than_days`; never one
that is still running), then every object no record refers to, run folders with no record
(left by a runner killed before it recorded anything; an hour after the run started) and stale
temporary files. It deletes objects under the store's collection lock (store/locks.py), so what a
live run has just published or is about to serve from the cache is never taken.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nb2pipe.errors import StoreBusyError, StoreError, UsageError
from nb2pipe.store.database import index_problem
from nb2pipe.store.locks import collecting, publishing
from nb2pipe.store.objects import is_sha256


@dataclass
class VerifyReport:
    objects: int = 0  # objects re-hashed
    damaged: list[str] = field(default_factory=list)  # sha256 whose content no longer matches
    missing: list[dict] = field(default_factory=list)  # {"sha256", "run", "step", "name"} named but absent
    database: list[str] = field(default_factory=list)  # SQLite's own findings
    records: list[str] = field(default_factory=list)  # stored values that do not decode, one line each
    repaired: list[str] = field(default_factory=list)  # what --repair did, one line each

    @property
    def ok(self) -> bool:
        return not (self.damaged or self.missing or self.database or self.records)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


@dataclass
class GcReport:
    dry_run: bool
    runs: list[str] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0
    folders: list[str] = field(default_factory=list)
    temp_files: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _open(root: Path, reader: bool = False):
    from nb2pipe.store.objects import ObjectStore
    from nb2pipe.store.runs import RunStore
    from nb2pipe.store.workspace import existing_store

    existing_store(root)
    return RunStore(root, reader=reader), ObjectStore(root)


def verify(root: str | Path, repair: bool = False) -> VerifyReport:
    root = Path(root)
    runs, objects = _open(root, reader=not repair)  # checking only reads: a read-only store will do
    report = VerifyReport()
    with runs:
        report.database = runs.integrity_check()
        if repair and report.database and all(index_problem(p) for p in report.database):
            runs.reindex()
            report.repaired += [f"rebuilt the database's indexes ({p})" for p in report.database]
            report.database = runs.integrity_check()
        try:
            report.records = [str(d) for d in runs.damaged_records()]
            if repair and report.records:
                report.repaired += runs.repair_records()
                report.records = [str(d) for d in runs.damaged_records()]  # what it could not mend
                report.database = runs.integrity_check()
        except StoreBusyError:
            raise
        except StoreError as exc:  # a file too damaged to read its rows: SQLite's findings say why
            if not report.database:
                raise
            report.database.append(f"its rows do not read back: {exc}")
        for sha in objects.iter_objects():
            if objects.verify(sha):
                report.objects += 1
            elif objects.exists(sha):  # else gone since listed (a gc): nothing to check
                report.objects += 1
                report.damaged.append(sha)
        with publishing(root):  # shared, as a runner's: a gc going on now does not read as missing objects
            for sha, run_id, step, name in runs.artifact_references():
                if not is_sha256(sha):
                    continue  # a damaged reference: reported (and repaired) with the records
                if sha not in report.damaged and not objects.exists(sha):
                    report.missing.append({"sha256": sha, "run": run_id, "step": step, "name": name})
        if repair:
            bad = sorted(set(report.damaged) | {m["sha256"] for m in report.missing})
            if bad:
                withdrawn = runs.withdraw_from_cache(bad)
                report.repaired.append(f"withdrew {withdrawn} cache entr{'y' if withdrawn == 1 else 'ies'} that "
                                       "served damaged or missing objects (their steps execute again)")
            for sha in report.damaged:
                objects.remove_damaged(sha)
                report.repaired.append(f"removed damaged object {sha[:12]}")
    return report


def gc(root: str | Path, keep_last: int | None = None, older_than_days: float | None = None,
       dry_run: bool = False) -> GcReport:
    root = Path(root)
    runs, objects = _open(root)
    report = GcReport(dry_run=dry_run)
    run_dirs = root / "runs"
    # Folders are listed before the records are read: a runner records its run before it makes the
    # run's folder, so a folder listed here whose record is not read below never got one.
    folders = sorted(f for f in run_dirs.iterdir() if f.is_dir()) if run_dirs.is_dir() else []
    # Live runs wait at their next publish while gc decides and deletes (store/locks.py).
    with runs, collecting(root):
        runs.mark_crashed()
        cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
        report.runs = runs.runs_to_collect(keep_last, cutoff)
        recorded = set(runs.run_ids())
        if not dry_run and report.runs:
            runs.delete_runs(report.runs)
            for run_id in report.runs:
                shutil.rmtree(root / "runs" / run_id, ignore_errors=True)
        keep = runs.referenced_objects() if not dry_run else runs.referenced_objects(excluding=report.runs)
        for sha in list(objects.iter_objects()):
            if sha in keep:
                continue
            path = objects.path(sha)
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # another gc took it
                continue
            report.objects += 1
            report.bytes += size
            if not dry_run:
                path.chmod(0o600)
                path.unlink(missing_ok=True)
    now = time.time()
    for folder in folders:
        if folder.name in recorded or folder.name in report.runs or _recent(folder, now):
            continue
        report.folders.append(str(folder.relative_to(root)))  # a runner killed before recording
        if not dry_run:
            shutil.rmtree(folder, ignore_errors=True)
    if not dry_run:
        report.temp_files = objects.gc_temp()
    return report


# A folder without a record is left alone this long after the time in its run id (or, for another
# name, its last change): a runner may set up its executor (build an image) in it before recording.
UNRECORDED_GRACE_S = 3600


def _recent(folder: Path, now: float) -> bool:
    import calendar

    try:
        since = calendar.timegm(time.strptime(folder.name[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        try:
            since = folder.stat().st_mtime
        except FileNotFoundError:
            return True  # gone already
    return now - since < UNRECORDED_GRACE_S


def delete_run(root: str | Path, run_ref: str) -> str:
    """Forget one run (record, lineage, metrics, folder); its objects go at the next gc."""
    root = Path(root)
    runs, _ = _open(root)
    with runs:
        record = runs.get_run(run_ref, salvage=True)  # a damaged record can always be deleted
        if record.status.value == "running":
            raise UsageError(f"run {record.id} is still running (cancel it first)")
        runs.delete_runs([record.id])
    shutil.rmtree(root / "runs" / record.id, ignore_errors=True)
    return record.id
