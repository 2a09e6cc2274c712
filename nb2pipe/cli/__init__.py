"""The `nb2pipe` command line (click).

Errors nb2pipe understands become one line on stderr and the exit code of the contract in
errors.ExitCode; heavy modules are imported inside commands so that trivial invocations stay fast.
"""

from __future__ import annotations

import json
import sys

import click

from nb2pipe import __version__
from nb2pipe.errors import ExitCode, Nb2pipeError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Nb2pipeError as exc:
            click.echo(f"nb2pipe: {exc}", err=True)
            ctx.exit(int(exc.exit_code))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nb2pipe")
def main() -> None:
    """Turn tagged notebook cells into a pipeline of steps: inspect, validate, run, export."""


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the pipeline spec as JSON.")
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot"]), default="text",
              show_default=True, help="Picture of the step graph.")
@click.option("--strict", is_flag=True, help="Treat warnings (e.g. undefined names) as errors.")
def inspect(notebook: str, as_json: bool, fmt: str, strict: bool) -> None:
    """Show the steps of NOTEBOOK: upstreams, inputs, outputs and options."""
    from nb2pipe.compile.compiler import check_notebook
    from nb2pipe.errors import PipelineInvalid

    result = check_notebook(notebook, strict=strict)
    for d in result.warnings:
        click.echo(str(d), err=True)
    if result.errors or result.spec is None:
        raise PipelineInvalid(result.diagnostics)
    spec = result.spec
    if as_json:
        click.echo(spec.to_json(), nl=False)
    elif fmt == "mermaid":
        from nb2pipe.compile.render import mermaid

        click.echo(mermaid(spec), nl=False)
    elif fmt == "dot":
        from nb2pipe.compile.render import dot

        click.echo(dot(spec), nl=False)
    else:
        from nb2pipe.compile.render import text_table

        text_table(spec)


@main.command()
@click.argument("notebooks", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report for all notebooks.")
def validate(notebooks: tuple[str, ...], strict: bool, as_json: bool) -> None:
    """Check tags, step graph and syntax of NOTEBOOKS without running anything.

    Exit 0 when every notebook is valid, 2 otherwise.
    """
    from nb2pipe.compile.compiler import check_notebook
    from nb2pipe.errors import Diagnostic, NotebookReadError

    reports, ok = [], True
    for path in notebooks:
        try:
            result = check_notebook(path, strict=strict)
            diagnostics = result.diagnostics
            valid = not result.errors and result.spec is not None
            steps = len(result.spec.steps) if result.spec else 0
        except NotebookReadError as exc:
            diagnostics = [Diagnostic(path, exc.problem, code="read")]
            valid, steps = False, 0
        ok &= valid
        reports.append({"path": path, "valid": valid, "steps": steps,
                        "errors": [d.to_dict() for d in diagnostics if d.severity == "error"],
                        "warnings": [d.to_dict() for d in diagnostics if d.severity == "warning"]})
        if not as_json:
            for d in diagnostics:
                click.echo(str(d), err=d.severity == "warning" or not valid)
            if valid:
                click.echo(f"{path}: ok ({steps} step{'s' if steps != 1 else ''})")
    if as_json:
        click.echo(json.dumps({"valid": ok, "notebooks": reports}, indent=2))
    sys.exit(ExitCode.OK if ok else ExitCode.INVALID)


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("-p", "--parameters", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A parameter value, typed like the parameters cell's default (papermill's -p).")
@click.option("-f", "--parameters-file", "params_file", type=click.Path(dir_okay=False),
              help="A YAML file of parameter values.")
@click.option("-y", "--parameters-yaml", "params_yaml", help="Parameter values as a YAML mapping string.")
@click.option("--store", type=click.Path(file_okay=False), help="Store folder [default: .nb2pipe/ beside the "
              "notebook, or $NB2PIPE_STORE].")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Steps run at once [default: CPUs].")
@click.option("--no-cache", is_flag=True, help="Execute every step even when a cached result exists.")
@click.option("--step", "steps", multiple=True, metavar="NAME",
              help="Run just this step (repeatable), reusing stored upstream artifacts.")
@click.option("--from", "from_step", metavar="NAME", help="Rerun this step and everything downstream of it.")
@click.option("--fail-fast", is_flag=True, help="Start no new step after the first failure.")
@click.option("--strict", is_flag=True, help="Treat validation warnings as errors.")
@click.option("--executor", type=click.Choice(["local", "docker"]), default="local", show_default=True,
              help="Where steps execute: kernels on this machine, or containers of the pipeline's image.")
@click.option("--image", metavar="IMAGE", help="With --executor docker: run every step in IMAGE instead of the "
              "pipeline's image (which is otherwise built when missing or stale).")
@click.option("--base-image", metavar="IMAGE", help="With --executor docker: the base for building the image.")
@click.option("--json", "as_json", is_flag=True, help="Print only the run record as JSON.")
def run(notebook, params, params_file, params_yaml, store, workers, no_cache, steps, from_step, fail_fast,
        strict, executor, image, base_image, as_json):
    """Run NOTEBOOK's pipeline locally: each step in a fresh kernel, independent steps in parallel,
    unchanged steps from the cache. The notebook itself is never modified."""
    import os
    import signal

    from nb2pipe import api
    from nb2pipe.compile.parameters import parse_cli
    from nb2pipe.cli.progress import progress_for

    given, text_names = parse_cli(params, params_yaml, params_file)
    if steps and from_step:
        raise click.UsageError("use either --step or --from, not both")
    if (image or base_image) and executor != "docker":
        raise click.UsageError("--image and --base-image need --executor docker")

    hits = {"n": 0}

    def on_signal(signum, frame):
        hits["n"] += 1
        if hits["n"] > 1:  # a second Ctrl-C: stop now
            os._exit(ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED)
        api.cancel_active(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    from nb2pipe.compile.compiler import check_notebook

    # Validate first (also gives the step list for the progress table); api.run checks again.
    from nb2pipe.compile.notebook import read_notebook

    nb = read_notebook(notebook)
    checked = check_notebook(notebook, strict=strict, notebook=nb)
    for d in checked.warnings:
        click.echo(str(d), err=True)
    names = [s.name for s in checked.spec.steps] if checked.spec else []
    with progress_for(names if not steps else list(steps), quiet=as_json) as progress:
        record = api.run(notebook, given, store=store, workers=workers, cache=not no_cache, steps=list(steps),
                         from_step=from_step, fail_fast=fail_fast, strict=strict, on_change=progress,
                         executor=executor, image=image, base_image=base_image,
                         build_log=None if as_json else lambda line: click.echo(line, err=True),
                         _text_parameters=text_names, _checked=(nb, checked))
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2, allow_nan=False))
    else:
        _summary(record)
    sys.exit(record.exit_code or 0)


def _summary(record) -> None:
    from nb2pipe.model.records import Status

    counts: dict[str, int] = {}
    for s in record.steps:
        counts[s.status.value] = counts.get(s.status.value, 0) + 1
    took = (record.ended or 0) - (record.started or 0)
    parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    click.echo(f"run {record.id}: {record.status.value} in {took:.2f}s ({parts})", err=True)
    for s in record.steps:
        if s.status == Status.FAILED and s.error:
            click.echo(f"  {s.name}: {s.error.message}; executed notebook: {s.output_notebook}", err=True)
    if record.metrics:
        click.echo("  metrics: " + ", ".join(f"{m.name}={m.value}" + (f" [{m.flag}]" if m.flag else "")
                                             for m in record.metrics), err=True)


@main.group(cls=_Group)
def runs() -> None:
    """List, show and compare recorded runs."""


def _open_store(store, notebook):
    from nb2pipe.api import store_root
    from nb2pipe.errors import UsageError
    from nb2pipe.store.runs import RunStore

    root = store_root(notebook, store)
    if not (root / "runs.db").exists():
        raise UsageError(f"no runs recorded in {root} (run a pipeline first, or pass --store)")
    return RunStore(root)


def _store_option(fn):
    fn = click.option("--notebook", "notebook", type=click.Path(dir_okay=False),
                      help="Use the store beside this notebook.")(fn)
    return click.option("--store", type=click.Path(file_okay=False), help="Store folder [default: .nb2pipe/ "
                        "beside --notebook, else $NB2PIPE_STORE, else ./.nb2pipe].")(fn)


@runs.command("list")
@_store_option
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def runs_list(store, notebook, limit, as_json):
    """Recorded runs, newest first."""
    with _open_store(store, notebook) as rs:
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
@_store_option
@click.option("--json", "as_json", is_flag=True)
def runs_show(run_id, store, notebook, as_json):
    """One run: parameters, metrics and every step (RUN is an id, a unique prefix or 'latest')."""
    with _open_store(store, notebook) as rs:
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
@_store_option
@click.option("--json", "as_json", is_flag=True)
def runs_compare(run_a, run_b, store, notebook, as_json):
    """Parameters and metrics of two runs side by side."""
    with _open_store(store, notebook) as rs:
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


# --- containers: build ---


@main.command("build")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--base-image", metavar="IMAGE", help="Base image [default: python:X.Y-slim when it is on this machine "
              "or can be pulled, else nb2pipe-base:pyX.Y, built by `nb2pipe base-image` when missing].")
@click.option("--tag", metavar="NAME:TAG", help="Image name [default: nb2pipe-<pipeline>:<spec hash>].")
@click.option("--requirements", "requirements", type=click.Path(dir_okay=False, exists=True),
              help="Extra pip requirements for imports no installed distribution provides.")
@click.option("--push", is_flag=True, help="Push the image(s) to their registry afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print the build result as JSON.")
def build(notebook, base_image, tag, requirements, push, as_json):
    """Build the container image NOTEBOOK's steps run in, from the environment it runs in here.

    The steps' imports are pinned to the versions installed here (plus what the step runtime
    needs), installed from wheels this machine's pip fetches, and the pipeline spec goes in the
    last layer: an edit of the notebook rebuilds only that layer. An unchanged notebook reuses
    the image without building.
    """
    from dataclasses import asdict

    from nb2pipe.compile.compiler import check_notebook
    from nb2pipe.errors import PipelineInvalid
    from nb2pipe.images.build import build_image

    checked = check_notebook(notebook)
    for d in checked.warnings:
        click.echo(str(d), err=True)
    if checked.errors or checked.spec is None:
        raise PipelineInvalid(checked.diagnostics)
    result = build_image(notebook, tag=tag, base_image=base_image, requirements=requirements, push=push,
                         spec=checked.spec, log=lambda line: click.echo(line, err=True))
    if as_json:
        data = asdict(result)
        data["warnings"] = [w.to_dict() for w in result.warnings]
        click.echo(json.dumps(data, indent=2))
        return
    how = "built" if result.built else "up to date"
    click.echo(f"{result.tag}: {how} in {result.seconds:.2f}s (from {result.base_image})", err=True)
    for step, image in result.step_images.items():
        if image != result.tag:
            click.echo(f"  step {step}: {image}", err=True)
    for digest in result.repo_digests:
        click.echo(f"  pushed {digest}", err=True)
    click.echo(result.image_id)


# --- containers: base image ---


@main.command("base-image")
@click.option("--tag", help="Image name[:tag] [default: nb2pipe-base:pyX.Y].")
@click.option("--python", "python", metavar="X.Y",
              help="Python version: 3.9, 3.11 or 3.13 [default: this interpreter's].")
@click.option("--mirror", default="http://deb.debian.org/debian", show_default=True, metavar="URL",
              help="Debian mirror debootstrap downloads from.")
def base_image(tag, python, mirror):
    """Build a Python base image without any registry (debootstrap + docker import), with a
    virtualenv on PATH and this host's extra CA certificates. Needs root and debootstrap."""
    from nb2pipe.images.baseimage import build_base_image

    try:
        image_id = build_base_image(python, tag=tag, mirror=mirror, log=lambda msg: click.echo(msg, err=True))
    except KeyboardInterrupt:
        click.echo("nb2pipe: interrupted; the temporary rootfs was removed", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    click.echo(image_id)  # stdout carries just the id, for scripts (as `build` does)


# --- submit ---


@main.command("submit")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--host", envvar="KF_PIPELINES_ENDPOINT", required=True, metavar="URL",
              help="Kubeflow Pipelines endpoint, e.g. http://localhost:8080 [env: KF_PIPELINES_ENDPOINT].")
@click.option("--experiment", metavar="NAME", help="Experiment to file the run under, created if missing "
              "[default: as kfp.Client: $KF_PIPELINES_DEFAULT_EXPERIMENT_NAME, else 'Default'].")
@click.option("--run-name", metavar="NAME", help="The run's display name [default: '<pipeline> <UTC time>'].")
@click.option("-p", "--parameters", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A parameter value, typed like the parameters cell's default (papermill's -p).")
@click.option("-f", "--parameters-file", "params_file", type=click.Path(dir_okay=False),
              help="A YAML file of parameter values.")
@click.option("-y", "--parameters-yaml", "params_yaml", help="Parameter values as a YAML mapping string.")
@click.option("--image", metavar="IMAGE", help="Image the steps run in [default: the one `nb2pipe build` tags].")
@click.option("--namespace", metavar="NS", help="Kubernetes namespace of a multi-user Kubeflow.")
@click.option("--store", type=click.Path(file_okay=False), help="Run store whose latest local run types the "
              "artifacts [default: .nb2pipe/ beside the notebook, or $NB2PIPE_STORE].")
@click.option("--token-env", default="KF_PIPELINES_TOKEN", show_default=True, metavar="VAR",
              help="Environment variable holding a bearer token (never a flag: it would stay in shell history).")
@click.option("--strict", is_flag=True, help="Treat validation warnings as errors.")
@click.option("--json", "as_json", is_flag=True, help="Print the run (id, URL, experiment, parameters) as JSON.")
def submit_command(notebook, host, experiment, run_name, params, params_file, params_yaml, image, namespace,
                   store, token_env, strict, as_json):
    """Start a run of NOTEBOOK's pipeline on Kubeflow Pipelines and print the run's URL.

    Only the URL goes to stdout (for scripts); everything else to stderr. The notebook and the
    parameters are checked first: when anything is invalid nothing is uploaded (exit 2). Only the
    parameters given are sent; the others keep the parameters cell's defaults. An unreachable host
    or an HTTP error (401, 403, 404, 5xx) is one line naming the host and status, exit 2: no run
    was started.
    """
    import os

    from nb2pipe.compile.compiler import check_notebook
    from nb2pipe.errors import PipelineInvalid
    from nb2pipe.compile.parameters import parse_cli
    from nb2pipe.kubeflow.submit import submit

    given, text_names = parse_cli(params, params_yaml, params_file)
    checked = check_notebook(notebook, strict=strict)
    for d in checked.warnings:
        click.echo(str(d), err=True)
    if checked.errors or checked.spec is None:
        raise PipelineInvalid(checked.diagnostics)
    result = submit(notebook, host, experiment=experiment, run_name=run_name, parameters=given, image=image,
                    namespace=namespace, existing_token=(os.environ.get(token_env) or "").strip() or None,
                    store=store, strict=strict, _text_parameters=text_names)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        click.echo(f"started run '{result.run_name}' in experiment {result.experiment_id}", err=True)
        click.echo(result.run_url)


# --- export ---
from nb2pipe.registry import EXPORTERS as _EXPORTERS  # noqa: E402  (tiny: the exporters themselves load lazily)


@main.command("export")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--to", "target", type=click.Choice(sorted(_EXPORTERS)), default="kfp", show_default=True,
              help="Pipeline format.")
@click.option("-o", "--output", metavar="FILE", help="Where to write the pipeline YAML ('-': stdout) "
              "[default: the notebook's path with .yaml].")
@click.option("--image", metavar="IMAGE", help="Image the steps run in [default: the one `nb2pipe build` tags].")
@click.option("--py", "py", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also write the pipeline as a standalone KFP DSL Python file.")
@click.option("--store", type=click.Path(file_okay=False), help="Run store whose latest run types the artifacts "
              "[default: as for `nb2pipe run`].")
def export_command(notebook, target, output, image, py, store):
    """Export NOTEBOOK's pipeline, e.g. to Kubeflow Pipelines v2 IR YAML (`--to kfp`).

    Each step becomes a task running its cells with papermill in the image of `nb2pipe build`;
    run `nb2pipe run` first so passed variables get typed artifacts (Dataset, Model).
    """
    result = _EXPORTERS[target](notebook, output=output, image=image, py=py, store=store,
                                warn=lambda message: click.echo(f"nb2pipe: warning: {message}", err=True))
    if result.path is None:
        click.echo(result.text, nl=False)
    else:
        click.echo(f"wrote {result.path}", err=True)
    if result.py_path:
        click.echo(f"wrote {result.py_path}", err=True)
    click.echo(f"{result.tasks} task{'s' if result.tasks != 1 else ''}, image {result.image}", err=True)
