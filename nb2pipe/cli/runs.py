"""`nb2pipe runs list|show|compare`: the recorded runs."""

from __future__ import annotations

import json

import click

from nb2pipe.cli.app import Group, main, open_store, store_option


@main.group(cls=Group)
def runs() -> None:
    """List, show and compare recorded runs."""


@runs.command("list")
@store_option
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def runs_list(store, notebook, limit, as_json):
    """Recorded runs, newest first."""
    with open_store(store, notebook) as rs:
        records = rs.list_runs(limit=limit)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2, allow_nan=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for col in ("run", "notebook", "status", "started", "duration", "steps", "cached"):
        table.add_column(col)
    import time as _time

    for r in records:
        took = f"{(r.ended - r.started):.2f}s" if r.ended and r.started else ""
        table.add_row(r.id, r.notebook, r.status.value,
                      _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(r.started)) if r.started else "",
                      took, str(len(r.steps)), str(sum(1 for s in r.steps if s.cached)))
    Console().print(table)


@runs.command("show")
@click.argument("run_id", default="latest")
@store_option
@click.option("--json", "as_json", is_flag=True)
def runs_show(run_id, store, notebook, as_json):
    """One run: parameters, metrics and every step (RUN is an id, a unique prefix or 'latest')."""
    with open_store(store, notebook) as rs:
        record = rs.get_run(run_id)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2, allow_nan=False))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    took = f"{(record.ended - record.started):.2f}s" if record.ended and record.started else "-"
    console.print(f"run {record.id}  {record.notebook}  [bold]{record.status.value}[/]  {took}"
                  + (f"  exit {record.exit_code}" if record.exit_code is not None else ""), highlight=False)
    if record.parameters:
        console.print("parameters: " + escape(", ".join(f"{k}={v!r}" for k, v in record.parameters.items())),
                      highlight=False)
    if record.metrics:
        console.print("metrics: " + escape(", ".join(f"{m.name}={m.value}" + (f" [{m.flag}]" if m.flag else "")
                                                      for m in record.metrics)), highlight=False)
    table = Table(box=None)
    for col in ("step", "status", "duration", "attempts", "inputs", "outputs", "error"):
        table.add_column(col, overflow="fold")
    for s in record.steps:
        err = ""
        if s.error:
            err = s.error.message + (f" (cell {s.error.cell_index})" if s.error.cell_index else "")
        table.add_row(escape(s.name), s.status.value + (" (cached)" if s.cached and s.status.value != "cached" else ""),
                      f"{s.duration:.2f}s" if s.duration is not None else "", str(s.attempts),
                      escape(", ".join(f"{a.name}:{a.sha256[:8]}" for a in s.inputs)),
                      escape(", ".join(f"{a.name}:{a.sha256[:8]} {a.serializer} {_size(a.size)}" for a in s.outputs)),
                      escape(err))
    console.print(table)
    failed = [s for s in record.steps if s.output_notebook and s.status.value == "failed"]
    for s in failed:
        console.print(f"executed notebook of {escape(s.name)}: {escape(s.output_notebook)}", highlight=False)


@runs.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@store_option
@click.option("--json", "as_json", is_flag=True)
def runs_compare(run_a, run_b, store, notebook, as_json):
    """Parameters and metrics of two runs side by side."""
    with open_store(store, notebook) as rs:
        a, b = rs.get_run(run_a), rs.get_run(run_b)
    # Metric dicts carry non-finite floats as "NaN"/"Infinity" text: strict JSON, and NaN == NaN.
    ma = {m.name: m.to_dict()["value"] for m in a.metrics}
    mb = {m.name: m.to_dict()["value"] for m in b.metrics}
    rows = []
    for kind, da, db in (("parameter", a.parameters, b.parameters), ("metric", ma, mb)):
        for key in sorted(set(da) | set(db), key=lambda k: (k not in da, k)):
            va, vb = da.get(key, "—"), db.get(key, "—")
            rows.append({"kind": kind, "name": key, "a": va, "b": vb, "changed": va != vb})
    if as_json:
        click.echo(json.dumps({"a": a.id, "b": b.id, "rows": rows}, indent=2, default=str, allow_nan=False))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None)
    for col in ("", "name", a.id, b.id):
        table.add_column(col)
    for r in rows:
        style = "bold" if r["changed"] else ""
        shown = [v if v == "—" else str(v) if r["kind"] == "metric" else repr(v) for v in (r["a"], r["b"])]
        table.add_row(r["kind"], escape(r["name"]), escape(shown[0]), escape(shown[1]), style=style)
    Console().print(table)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)
