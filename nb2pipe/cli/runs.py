"""`nb2pipe runs list|show|compare|tag` and `nb2pipe open`: the recorded runs.

Human output fits 80 columns when piped: ids are never cut (a run id can always be copied from
`runs list`), long values end in an ellipsis, paths get lines of their own. `--json` keeps
every value exact. A RUN is an id, a unique prefix of one, `latest` or `latest~N`.
"""

from __future__ import annotations

import json
import re
import time

import click

from nb2pipe.cli.app import Group, main, open_store, store_option
from nb2pipe.errors import UsageError

DEFAULT_COLUMNS = "run,status,started,took,steps,parameters,metrics"
COLUMNS = ("run", "notebook", "status", "started", "took", "steps", "cached", "parameters", "metrics", "tags",
           "note")


@main.group(cls=Group)
def runs() -> None:
    """List, show, compare and tag recorded runs."""


def parse_since(text: str) -> float:
    """`30m`, `2h`, `3d`, `1w` ago, or a date / date-time (`2026-12-01`, `2026-12-01T14:30`)."""
    found = re.fullmatch(r"(\d+)\s*([mhdw])", text.strip())
    if found:
        scale = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[found.group(2)]
        return time.time() - int(found.group(1)) * scale
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UsageError(f"--since {text!r}: give a duration (30m, 2h, 3d, 1w) or a date (2026-12-01, "
                         "2026-12-01T14:30)") from None


def _started(r) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else ""


def _cell(record, column: str) -> str:
    from nb2pipe.cli.show import metric_text, number, seconds

    if column == "run":
        return record.id
    if column == "notebook":
        return record.notebook
    if column == "status":
        return record.status.value
    if column == "started":
        return _started(record)
    if column == "took":
        return seconds(record.ended - record.started) if record.ended and record.started else ""
    if column == "steps":
        return str(len(record.steps))
    if column == "cached":
        return str(sum(1 for s in record.steps if s.cached))
    if column == "parameters":
        return ", ".join(f"{k}={number(v)}" for k, v in record.parameters.items())
    if column == "metrics":
        return ", ".join(metric_text(m) for m in record.metrics)
    if column == "tags":
        return ", ".join(record.tags)
    if column == "note":
        return record.note or ""
    if column.startswith("param:"):
        value = record.parameters.get(column[6:])
        return "" if value is None else number(value)
    if column.startswith("metric:"):
        found = next((m for m in record.metrics if m.name == column[7:]), None)
        return "" if found is None else number(found.value)
    raise UsageError(f"unknown column {column!r} (columns: {', '.join(COLUMNS)}, param:NAME, metric:NAME)")


@runs.command("list")
@store_option
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--tag", "tags", multiple=True, metavar="LABEL", help="Only runs with this label (repeatable: all).")
@click.option("--status", "statuses", multiple=True, metavar="STATUS",
              type=click.Choice(["running", "succeeded", "failed", "cancelled", "crashed"]),
              help="Only runs in this state (repeatable: any).")
@click.option("--since", metavar="WHEN", help="Only runs started since: 30m, 2h, 3d, 1w, or a date.")
@click.option("--columns", default=DEFAULT_COLUMNS, show_default=True, metavar="COLS",
              help=f"Comma-separated: {', '.join(COLUMNS)}, param:NAME, metric:NAME.")
@click.option("--json", "as_json", is_flag=True)
def runs_list(store, notebook, limit, tags, statuses, since, columns, as_json):
    """Recorded runs, newest first."""
    with open_store(store, notebook) as rs:
        records = rs.list_runs(limit=limit, notebook=notebook, tags=list(tags), statuses=list(statuses),
                               since=parse_since(since) if since else None)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2, allow_nan=False))
        _damaged_listed(records)
        return
    wanted = [c.strip() for c in columns.split(",") if c.strip()]
    rows = [[_cell(r, c) for c in wanted] for r in records]  # checks the columns even with no runs
    if not records:
        click.echo("no runs" + (" match" if tags or statuses or since else ""))
        return
    _show_table(wanted, rows, columns)
    _damaged_listed(records)


def _damaged_listed(records) -> None:
    """A listing shows every run it can; one whose record is damaged is listed as `damaged`, said
    on stderr, and the listing exits 3 (the store integrity code) so that scripts notice."""
    damaged = [r for r in records if r.damaged]
    if not damaged:
        return
    import sys

    from nb2pipe.errors import ExitCode

    for record in damaged:
        click.echo(f"nb2pipe: {record.damaged}", err=True)
    sys.exit(ExitCode.STORE_INTEGRITY)


def _show_table(wanted: list[str], rows: list[list[str]], columns: str) -> None:
    from nb2pipe.cli.show import fit_table

    if columns == DEFAULT_COLUMNS:  # the default set leaves out what no run has
        keep = [i for i, c in enumerate(wanted) if c == "run" or any(row[i] for row in rows)]
        wanted, rows = [wanted[i] for i in keep], [[row[i] for i in keep] for row in rows]
    # Ids, states, times and numbers keep their width; free text shares the rest.
    fixed = {i for i, c in enumerate(wanted) if c in ("run", "status", "started", "took", "steps", "cached")
             or c.startswith(("param:", "metric:"))}
    click.echo("\n".join(fit_table(wanted, rows, fixed)))


@runs.command("show")
@click.argument("run_id", metavar="RUN", default="latest")
@store_option
@click.option("--html", "html_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Also write the run's executed step notebooks as HTML, with an index page, into DIR.")
@click.option("--json", "as_json", is_flag=True)
def runs_show(run_id, store, notebook, html_dir, as_json):
    """One run: parameters, metrics, every step, and where its notebooks and logs are."""
    from nb2pipe.store.workspace import store_root

    with open_store(store, notebook) as rs:
        record = rs.get_run(run_id)
    root = store_root(notebook, store)
    if html_dir:
        index = write_run_html(record, root, html_dir)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2, allow_nan=False))
        return
    from rich.text import Text

    from nb2pipe.cli.show import (
        console,
        failure_lines,
        fit_table,
        metric_text,
        number,
        openable,
        seconds,
        size,
        wrapped,
    )

    out = console()
    took = seconds(record.ended - record.started) if record.ended and record.started else "-"
    out.print(Text(f"run {record.id}  ") + Text(record.status.value, style="bold")
              + Text(f"  {took}" + (f"  exit {record.exit_code}" if record.exit_code is not None else "")))
    env = record.environment
    images = sorted({s.image_digest for s in record.steps if s.image_digest})
    facts = [("notebook", record.notebook), ("started", _started(record)),
             ("executor", env.get("executor") or ""), ("image", ", ".join(i[:19] for i in images)),
             ("parameters", ", ".join(f"{k}={number(v)}" for k, v in record.parameters.items())),
             ("metrics", ", ".join(metric_text(m) for m in record.metrics)),
             ("tags", ", ".join(record.tags)), ("note", record.note or ""), ("reason", record.reason or "")]
    for label, value in facts:
        if value:
            for line in wrapped(f"{label + ':':12}", value, indent=12):
                out.print(Text(line))
    rows = []
    for s in record.steps:
        status = s.status.value + (" (cached)" if s.cached and s.status.value != "cached" else "")
        outputs = ", ".join(f"{a.name} {size(a.size)}" for a in s.outputs)
        rows.append([s.name, status, seconds(s.duration), str(s.attempts), outputs])
    for line in fit_table(["step", "status", "took", "try", "outputs"], rows, {0, 1, 2, 3}):
        out.print(Text(line))
    for s in record.steps:
        if not s.output_notebook:
            continue
        out.print(Text(f"{s.name}:", style="bold"))
        if s.error and s.status.value == "failed":
            (first, style), *context = failure_lines(s.error)
            out.print(Text("  failed") + Text(first, style=style))
        if s.output_notebook:
            out.print(Text(f"  notebook: {openable(root, s.output_notebook)}"))
            if s.attempts:
                log = s.output_notebook.rsplit("/", 1)[0] + "/output.log"
                out.print(Text(f"  output:   {openable(root, log)}"))
        reused = {a.run_id for a in s.inputs if a.run_id and a.run_id != record.id}
        if reused:
            made = ", ".join(f"{k}={number(v)}" for k, v in s.input_parameters.items())
            out.print(Text(f"  inputs from run {', '.join(sorted(reused))}" + (f" (made with {made})" if made else "")))
    if html_dir:
        out.print(Text(f"wrote {index}"))


@runs.command("compare")
@click.argument("run_ids", metavar="RUN RUN [RUN...]", nargs=-1, required=True)
@store_option
@click.option("--json", "as_json", is_flag=True)
def runs_compare(run_ids, store, notebook, as_json):
    """Parameters and metrics of runs side by side; a `*` marks what differs, and metrics show
    their change from the first run."""
    if len(run_ids) < 2:
        raise click.UsageError("compare needs at least two runs")
    with open_store(store, notebook) as rs:
        records = [rs.get_run(r) for r in run_ids]
    rows = compare_rows(records)
    if as_json:
        click.echo(json.dumps({"runs": [r.id for r in records], "rows": rows}, indent=2, default=str,
                              allow_nan=False))
        return
    from nb2pipe.cli.show import fit_table, number

    # Columns are lettered and the ids listed whole above: ids are never cut, the table fits.
    letters = [chr(ord("A") + i) if i < 26 else f"R{i + 1}" for i in range(len(records))]
    for letter, r in zip(letters, records):
        click.echo(f"{letter}: {r.id}  {r.status.value}  {_started(r)}")
    lines = []
    floors: dict[int, int] = {}  # a number is never cut: its column is at least that wide
    for row in rows:
        cells = []
        for i, value in enumerate(row["values"]):
            text = "—" if value is None else number(value)
            delta = row.get("deltas", [None] * len(records))[i]
            if delta is not None and i > 0:
                text += f" ({'+' if delta >= 0 else ''}{number(delta)})"
            cells.append(text)
            if value is None or _numeric(value) or row["kind"] == "metric":
                floors[i + 2] = max(floors.get(i + 2, 1), len(text))
        # `*` marks a difference: readable in a pipe and a CI log, not only as bold on a terminal
        lines.append(["*" if row["changed"] else "", f"{row['kind']:<6} {row['name']}", *cells])
    click.echo("\n".join(fit_table(["", "name", *letters], lines, {0, 1}, min_free=8, floors=floors)))


def compare_rows(records) -> list[dict]:
    """One row per parameter and metric: its value in each run (None: absent), whether they
    differ, and for numeric metrics the change from the first run. Non-finite metric values are
    their strict-JSON text ("NaN"), so NaN in two runs is no change."""
    rows = []
    tables = (("parameter", [r.parameters for r in records]),
              ("metric", [{m.name: m.to_dict()["value"] for m in r.metrics} for r in records]))
    for kind, dicts in tables:
        names: list[str] = []
        for d in dicts:
            names += [k for k in d if k not in names]
        for name in names:
            values = [d.get(name) for d in dicts]
            row = {"kind": kind, "name": name, "values": values, "changed": len({json.dumps(v) for v in values}) > 1}
            if kind == "metric" and _numeric(values[0]):
                row["deltas"] = [v - values[0] if _numeric(v) else None for v in values]
            rows.append(row)
    return rows


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@runs.command("tag")
@click.argument("run_id", metavar="RUN")
@click.argument("label")
@click.option("--remove", is_flag=True, help="Take the label off instead.")
@store_option
def runs_tag(run_id, label, remove, store, notebook):
    """Label RUN (e.g. `baseline`, `paper-v2`) to find it again with `runs list --tag LABEL`."""
    if not re.fullmatch(r"[\w.:/@+-]{1,64}", label):
        raise UsageError(f"label {label!r}: use up to 64 letters, digits and . _ : / @ + -")
    with open_store(store, notebook, reader=False) as rs:
        found = rs.tag_run(run_id, label, remove=remove)
    click.echo(f"{'removed' if remove else 'tagged'} {found} {label}")


@runs.command("delete")
@click.argument("run_ids", metavar="RUN...", nargs=-1, required=True)
@store_option
def runs_delete(run_ids, store, notebook):
    """Forget runs: their records, lineage, metrics and folders (`store gc` then frees their
    objects that no other run uses)."""
    from nb2pipe.store.maintenance import delete_run
    from nb2pipe.store.workspace import store_root

    for ref in run_ids:
        click.echo(f"deleted {delete_run(store_root(notebook, store), ref)}")


@main.command("open")
@click.argument("run_id", metavar="RUN")
@click.argument("step")
@click.option("--html", "as_html", is_flag=True, help="Convert it to HTML (beside it) and give that instead.")
@click.option("--browser", is_flag=True, help="Also open it in the web browser (implies --html).")
@store_option
def open_step(run_id, step, as_html, browser, store, notebook):
    """The executed notebook of STEP in RUN: prints its path (openable from here), or with
    --browser shows it as HTML."""
    from nb2pipe.cli.show import openable
    from nb2pipe.store.workspace import store_root

    with open_store(store, notebook) as rs:
        record = rs.get_run(run_id)
    rec = record.step(step)
    if rec is None:
        raise UsageError(f"run {record.id} has no step '{step}' (steps: {', '.join(record.step_names())})")
    if not rec.output_notebook:
        raise UsageError(f"step '{step}' of run {record.id} did not execute ({rec.status.value}): no notebook")
    root = store_root(notebook, store)
    path = root.resolve() / rec.output_notebook
    if not path.exists():
        raise UsageError(f"the executed notebook of '{step}' is missing from the store: "
                         f"{openable(root, rec.output_notebook)}")
    if as_html or browser:
        from nb2pipe.runtime.html import notebook_html
        from nb2pipe.store.files import write_text

        html_path = path.with_suffix(".html")
        write_text(html_path, notebook_html(path, step))
        path = html_path
    click.echo(openable(root, str(path.relative_to(root.resolve()))))
    if browser:
        import webbrowser

        webbrowser.open(path.as_uri())


def write_run_html(record, root, folder) -> str:
    """Every executed step notebook of a run as HTML in `folder`, with an index page linking them
    (status, duration, error); returns the index's path. Step names and errors are escaped."""
    import html
    from pathlib import Path

    from nb2pipe.cli.show import seconds
    from nb2pipe.runtime.html import notebook_html
    from nb2pipe.store.files import write_text

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in record.steps:
        link = ""
        source = Path(root).resolve() / s.output_notebook if s.output_notebook else None
        if source is not None and source.exists():
            name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', s.name)}.html"
            write_text(out / name, notebook_html(source, s.name))
            link = f'<a href="{html.escape(name)}">notebook</a>'
        error = html.escape(s.error.message) if s.error else ""
        rows.append(f"<tr><td>{html.escape(s.name)}</td><td>{html.escape(s.status.value)}</td>"
                    f"<td>{html.escape(seconds(s.duration))}</td><td>{link}</td><td>{error}</td></tr>")
    metrics = "".join(f"<li>{html.escape(m.name)} = {html.escape(str(m.value))}</li>" for m in record.metrics)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>nb2pipe run {html.escape(record.id)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em 1em;text-align:left}</style></head>"
            f"<body><h1>run {html.escape(record.id)}: {html.escape(record.status.value)}</h1>"
            f"<p>{html.escape(record.notebook)}</p>"
            + (f"<h2>metrics</h2><ul>{metrics}</ul>" if metrics else "")
            + "<h2>steps</h2><table><tr><th>step</th><th>status</th><th>took</th><th></th><th>error</th></tr>"
            + "".join(rows) + "</table></body></html>")
    index = out / "index.html"
    write_text(index, page)
    return str(index)

