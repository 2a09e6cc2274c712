"""`nb2pipe run`, `status` and `logs`: running a pipeline, what a run would do, what a step printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nb2pipe.cli.app import LENIENT_HELP, main
from nb2pipe.errors import ExitCode


def parameter_options(fn):
    """papermill's -p/-f/-y, shared by run, status and submit."""
    fn = click.option("-y", "--parameters-yaml", "params_yaml", help="Parameter values as a YAML mapping string.")(fn)
    fn = click.option("-f", "--parameters-file", "params_file", type=click.Path(dir_okay=False),
                      help="A YAML file of parameter values.")(fn)
    return click.option("-p", "--parameters", "params", nargs=2, multiple=True, metavar="NAME VALUE",
                        help="A parameter value, typed like the parameters cell's default (papermill's -p).")(fn)


def selection_options(fn):
    """The options that decide which steps a run covers and executes, shared by run and status."""
    fn = click.option("--strict", is_flag=True, help="Treat validation warnings as errors.")(fn)
    fn = click.option("--lenient", is_flag=True, help=LENIENT_HELP)(fn)
    fn = click.option("--from", "from_step", metavar="NAME",
                      help="Rerun this step and everything downstream of it.")(fn)
    fn = click.option("--step", "steps", multiple=True, metavar="NAME",
                      help="Run just this step (repeatable), reusing stored upstream artifacts.")(fn)
    fn = click.option("--no-cache", is_flag=True, help="Execute every step even when a cached result exists.")(fn)
    return click.option("--store", type=click.Path(file_okay=False), help="Store folder [default: .nb2pipe/ beside "
                        "the notebook, or $NB2PIPE_STORE].")(fn)


def _checked(notebook: str, strict: bool, steps, from_step, lenient: bool = False):
    """Read and check the notebook once (the engine is handed the result); warnings to stderr."""
    from nb2pipe.compile.compiler import check_notebook
    from nb2pipe.compile.notebook import read_notebook

    if steps and from_step:
        raise click.UsageError("use either --step or --from, not both")
    nb = read_notebook(notebook)
    checked = check_notebook(notebook, strict=strict, notebook=nb, lenient=lenient)
    for d in checked.warnings:
        click.echo(str(d), err=True)
    return nb, checked


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@parameter_options
@selection_options
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Steps run at once [default: CPUs].")
@click.option("--fail-fast", is_flag=True, help="Start no new step after the first failure.")
@click.option("--executor", default="local", show_default=True, metavar="NAME",
              help="Where steps execute: 'local' (kernels on this machine), 'docker' (containers of the pipeline's "
                   "image), or one a plugin adds.")
@click.option("--image", metavar="IMAGE", help="With --executor docker: run every step in IMAGE instead of the "
              "pipeline's image (which is otherwise built when missing or stale).")
@click.option("--base-image", metavar="IMAGE", help="With --executor docker: the base for building the image.")
@click.option("--log-output", is_flag=True, help="Show what each step prints as it runs, prefixed by its name "
              "(papermill's flag).")
@click.option("--events", "as_events", is_flag=True, help="Print the run's events as JSON lines on stdout (for a "
              "program watching the run; see README, 'Run events').")
@click.option("--note", metavar="TEXT", help="A note kept with the run (shown by `runs show`).")
@click.option("--dry-run", is_flag=True, help="Print what would execute and what would come from the cache, and "
              "why; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print only the run record as JSON.")
@click.option("--run-id", hidden=True, help="The id to give the run (a program that starts runs knows it at once).")
def run(notebook, params, params_file, params_yaml, store, no_cache, steps, from_step, strict, lenient, workers,
        fail_fast, executor, image, base_image, log_output, as_events, note, dry_run, as_json, run_id):
    """Run NOTEBOOK's pipeline: each step in a fresh kernel (or container), independent steps in
    parallel, unchanged steps from the cache. The notebook itself is never modified."""
    import os
    import signal

    from nb2pipe import api
    from nb2pipe.cli.progress import progress_for
    from nb2pipe.compile.parameters import parse_cli

    given, text_names = parse_cli(params, params_yaml, params_file)
    if (image or base_image) and executor != "docker":
        raise click.UsageError("--image and --base-image need --executor docker")
    if as_events and as_json:
        raise click.UsageError("use either --events or --json, not both")
    nb, checked = _checked(notebook, strict, steps, from_step, lenient)
    if dry_run:
        plan = api.plan(notebook, given, store=store, cache=not no_cache, steps=list(steps), from_step=from_step,
                        executor=executor, strict=strict, _text_parameters=text_names, _checked=(nb, checked))
        _print_plan(plan, as_json)
        return

    handle = None

    def on_signal(signum, frame):
        if handle is None or handle.done():
            os._exit(ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED)
        if getattr(on_signal, "hit", False):  # a second Ctrl-C: stop now
            os._exit(ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED)
        on_signal.hit = True
        handle.cancel(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    quiet = as_json or as_events
    names = [s.name for s in checked.spec.steps] if checked.spec else []
    with progress_for(names if not steps else list(steps), quiet=quiet, log_output=log_output) as progress:
        handle = api.start(notebook, given, store=store, workers=workers, cache=not no_cache, steps=list(steps),
                           from_step=from_step, executor=executor, fail_fast=fail_fast, strict=strict, image=image,
                           base_image=base_image, note=note, run_id=run_id,
                           build_log=None if quiet else lambda line: click.echo(line, err=True),
                           _text_parameters=text_names, _checked=(nb, checked))
        if not quiet:
            _say_reused(handle, checked.spec)
        handle.subscribe(_print_event if as_events else progress)
        record = handle.wait()
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2, allow_nan=False))
    elif not as_events:
        from nb2pipe.store.workspace import store_root

        _summary(record, checked.spec, store_root(notebook, store))
    sys.exit(record.exit_code or 0)


def _say_reused(handle, spec) -> None:
    """--step: which run's artifacts the steps take, and what they were made with."""
    selected = set(handle.record().step_names())
    for producer, source in handle.reused.items():
        users = [s.name for s in spec.steps if s.name in selected and any(i.producer == producer for i in s.inputs)]
        made = ", ".join(f"{k}={v!r}" for k, v in source["parameters"].items())
        click.echo(f"{', '.join(users)} reuses the outputs of {producer} from run {source['run']}"
                   + (f" ({made})" if made else ""), err=True)


def _print_event(event: dict) -> None:
    sys.stdout.write(json.dumps(event, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@parameter_options
@selection_options
@click.option("--executor", default="local", show_default=True, metavar="NAME", help="The executor the run would use.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def status(notebook, params, params_file, params_yaml, store, no_cache, steps, from_step, strict, lenient, executor,
           as_json):
    """What `nb2pipe run NOTEBOOK` would do now, step by step: execute it or take it from the
    cache, and why (code changed, parameter X changed, input X changed, never run, cache off).
    Runs nothing."""
    from nb2pipe import api
    from nb2pipe.compile.parameters import parse_cli

    given, text_names = parse_cli(params, params_yaml, params_file)
    nb, checked = _checked(notebook, strict, steps, from_step, lenient)
    plan = api.plan(notebook, given, store=store, cache=not no_cache, steps=list(steps), from_step=from_step,
                    executor=executor, strict=strict, _text_parameters=text_names, _checked=(nb, checked))
    _print_plan(plan, as_json)


def _print_plan(plan, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(plan.to_dict(), indent=2, allow_nan=False))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    for col in ("step", "next run", "why"):
        table.add_column(col)
    for s in plan.steps:
        table.add_row(Text(s.step), Text(s.action, style="cyan" if s.action == "cached" else "yellow"), Text(s.reason))
    Console().print(table)
    counts = plan.counts()
    click.echo(", ".join(f"{n} {what}" for what, n in counts.items()) + " (nothing was run)")


@main.command()
@click.argument("run_id", metavar="RUN")
@click.argument("step")
@click.option("--attempt", type=click.IntRange(1), default=None, help="Which attempt [default: the last].")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as a running step prints, until it ends.")
@click.option("--notebook", "notebook", type=click.Path(dir_okay=False), help="Use the store beside this notebook.")
@click.option("--store", type=click.Path(file_okay=False), help="Store folder [default: .nb2pipe/ beside --notebook, "
              "else $NB2PIPE_STORE, else ./.nb2pipe].")
def logs(run_id, step, attempt, follow, notebook, store):
    """What STEP of RUN printed (stdout and stderr, as they came). RUN is an id, a unique prefix
    or 'latest'."""
    from nb2pipe.store.logs import follow_log, read_log
    from nb2pipe.store.workspace import store_root

    root = store_root(notebook, store)
    chunks = follow_log(root, run_id, step, attempt) if follow else iter([read_log(root, run_id, step, attempt)])
    for chunk in chunks:
        sys.stdout.write(chunk)
        sys.stdout.flush()


def _summary(record, spec=None, store_root=None) -> None:
    """The run in a few lines on stdout (progress went to stderr): counts, each failure with its
    cell and source line, where to look, and the metrics."""
    from rich.text import Text

    from nb2pipe.cli.show import console, failure_lines, metric_text, openable, seconds
    from nb2pipe.model.records import Status

    out = console()
    counts: dict[str, int] = {}
    for s in record.steps:
        counts[s.status.value] = counts.get(s.status.value, 0) + 1
    took = (record.ended or 0) - (record.started or 0)
    parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    out.print(Text(f"run {record.id}: {record.status.value} in {seconds(took)} ({parts})"))
    for s in record.steps:
        if s.status != Status.FAILED or not s.error:
            continue
        (first, style), *context = failure_lines(s.error, spec)
        out.print(Text(f"  {s.name} failed", style="bold") + Text(first, style=style))
        for text, style in context:
            out.print(Text(text, style=style))
        if s.output_notebook:
            out.print(Text(f"    executed notebook: {openable(store_root, s.output_notebook)}"))
            log = str(Path(s.output_notebook).parent / "output.log")
            out.print(Text(f"    output: {openable(store_root, log)}"))
    if record.metrics:
        out.print(Text("  metrics: " + ", ".join(metric_text(m) for m in record.metrics)))
