"""`nb2pipe store verify|gc`: a store kept sound and small (see store/maintenance.py)."""

from __future__ import annotations

import json
import sys

import click

from nb2pipe.cli.app import Group, main
from nb2pipe.errors import ExitCode


def _root(store, notebook):
    from nb2pipe.store.workspace import store_root

    return store_root(notebook, store)


def _store_options(fn):
    fn = click.option("--notebook", type=click.Path(dir_okay=False), help="Use the store beside this notebook.")(fn)
    return click.option("--store", type=click.Path(file_okay=False), help="Store folder [default: .nb2pipe/ beside "
                        "--notebook, else $NB2PIPE_STORE, else ./.nb2pipe].")(fn)


@main.group(cls=Group)
def store() -> None:
    """Check and clean the store (objects, run records, run folders)."""


@store.command("verify")
@_store_options
@click.option("--repair", is_flag=True, help="Withdraw damaged or missing objects from the cache (their steps "
              "execute again), remove damaged files, and mend damaged record values (or remove their rows).")
@click.option("--json", "as_json", is_flag=True)
def store_verify(store, notebook, repair, as_json):
    """Re-hash every object, decode every record, check its references and the database.

    Exit 0 when the store is sound (or everything found was repaired), 3 otherwise.
    """
    from nb2pipe.store.maintenance import verify

    report = verify(_root(store, notebook), repair=repair)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(f"{report.objects} object{'s' if report.objects != 1 else ''} checked")
        for sha in report.damaged:
            click.echo(f"damaged: object {sha} does not match its sha256")
        for m in report.missing:
            click.echo(f"missing: {m['name']} ({m['sha256'][:12]}) of step {m['step']} in run {m['run']}")
        for problem in report.database:
            click.echo(f"database: {problem}")
        for problem in report.records:
            click.echo(f"record: {problem}")
        for line in report.repaired:
            click.echo(f"repaired: {line}")
        if report.ok:
            click.echo("store is sound")
        elif not repair:
            click.echo("(fix: nb2pipe store verify --repair)")
    sound = report.ok or (repair and not report.database and not report.records)
    sys.exit(ExitCode.OK if sound else ExitCode.STORE_INTEGRITY)


@store.command("gc")
@_store_options
@click.option("--keep-last", type=click.IntRange(0), metavar="N", help="Keep the N newest runs of each notebook.")
@click.option("--older-than", "older_than", type=click.FloatRange(0), metavar="DAYS",
              help="Remove runs started more than DAYS days ago.")
@click.option("--dry-run", is_flag=True, help="Say what would go; remove nothing.")
@click.option("--json", "as_json", is_flag=True)
def store_gc(store, notebook, keep_last, older_than, dry_run, as_json):
    """Remove old runs (with --keep-last / --older-than), then unreferenced objects, run folders
    without a record and stale temporary files. A running run is never removed."""
    from nb2pipe.cli.show import size
    from nb2pipe.store.maintenance import gc

    report = gc(_root(store, notebook), keep_last=keep_last, older_than_days=older_than, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(report.runs)} run{'s' if len(report.runs) != 1 else ''}, {report.objects} object"
               f"{'s' if report.objects != 1 else ''} ({size(report.bytes)}), {len(report.folders)} "
               f"abandoned run folder{'s' if len(report.folders) != 1 else ''}"
               + ("" if dry_run else f", {report.temp_files} temporary file{'s' if report.temp_files != 1 else ''}"))
    for run_id in report.runs:
        click.echo(f"  run {run_id}")
