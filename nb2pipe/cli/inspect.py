"""`nb2pipe inspect` and `nb2pipe validate`: the pipeline a notebook declares, without running it."""

from __future__ import annotations

import json
import sys

import click

from nb2pipe.cli.app import LENIENT_HELP, main
from nb2pipe.errors import ExitCode

FORMATS = ("text", "tree", "mermaid", "dot", "svg", "png")


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the pipeline spec as JSON.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text: the DAG as a tree and the step table; tree: the DAG only; mermaid, dot: for docs; "
                   "svg, png: a picture (with -o FILE).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the picture (or text) to FILE instead of stdout.")
@click.option("--run", "run_id", metavar="RUN", help="Colour each step by its status in RUN (tree, svg, png).")
@click.option("--store", type=click.Path(file_okay=False), help="Store of --run [default: beside the notebook].")
@click.option("--strict", is_flag=True, help="Treat warnings (e.g. names a star import may define) as errors.")
@click.option("--lenient", is_flag=True, help=LENIENT_HELP)
def inspect(notebook: str, as_json: bool, fmt: str, output: str | None, run_id: str | None, store: str | None,
            strict: bool, lenient: bool) -> None:
    """Show the steps of NOTEBOOK: the DAG, upstreams, inputs, outputs and options."""
    if as_json and fmt != "text":
        raise click.UsageError(f"--json prints the pipeline spec; it cannot be combined with --format {fmt}")
    if fmt == "png" and not output:
        raise click.UsageError("--format png writes an image: give -o FILE.png")
    if run_id and fmt in ("mermaid", "dot") or run_id and as_json:
        raise click.UsageError("--run colours the tree, svg and png formats only")
    from nb2pipe.compile.compiler import check_notebook
    from nb2pipe.errors import PipelineInvalid

    result = check_notebook(notebook, strict=strict, lenient=lenient)
    for d in result.warnings:
        click.echo(str(d), err=True)
    if result.errors or result.spec is None:
        raise PipelineInvalid(result.diagnostics)
    spec = result.spec
    statuses = _statuses(notebook, store, run_id) if run_id else None
    if as_json:
        return _emit(spec.to_json(), output)
    if fmt == "text" and not output:
        from nb2pipe.compile.render import tree

        click.echo(tree(spec, statuses))
        return _step_table(spec)
    from nb2pipe.compile import drawing, render

    make = {"text": render.tree, "tree": render.tree, "mermaid": lambda s, _: render.mermaid(s),
            "dot": lambda s, _: render.dot(s), "svg": drawing.svg, "png": drawing.png}[fmt]
    _emit(make(spec, statuses), output)
    if output:
        click.echo(f"wrote {output}", err=True)


def _step_table(spec) -> None:
    """The steps one a line (inputs as name←producer), fitted to the terminal without cutting a
    name: what does not fit goes to indented lines of its own."""
    from nb2pipe.cli.show import fit_table, wrapped
    from nb2pipe.compile.render import options_text

    click.echo(f"{spec.notebook}: {len(spec.steps)} step{'s' if len(spec.steps) != 1 else ''} "
               f"(kernel {spec.kernel_name})")
    rows = []
    for s in spec.steps:
        inputs = [f"{i.name}←{i.producer}" for i in s.inputs]
        inputs += [f"after {u}" for u in s.upstreams if not any(i.producer == u for i in s.inputs)]
        outputs = [f"{n} (may modify)" if n in s.modifies else n for n in s.outputs]
        rows.append([s.name, ",".join(str(c.index) for c in s.cells), ", ".join(inputs), ", ".join(outputs),
                     ", ".join(s.parameters), options_text(s.options)])
    click.echo("\n".join(fit_table(["step", "cells", "inputs", "outputs", "parameters", "options"], rows, {0, 1})))
    if spec.parameters:
        click.echo("\n".join(wrapped("parameters: ", ", ".join(f"{p.name}: {p.type} = {p.default!r}"
                                                                for p in spec.parameters))))
    if spec.setup:
        click.echo("setup cells: " + ", ".join(str(c.index) for c in spec.setup))


def _statuses(notebook: str, store: str | None, run_id: str) -> dict[str, str]:
    from nb2pipe.cli.app import open_store
    from nb2pipe.execution.events import step_event_status

    with open_store(store, notebook) as rs:
        record = rs.get_run(run_id)
    return {s.name: step_event_status(s) for s in record.steps}


def _emit(content: str | bytes, output: str | None) -> None:
    if output is None:
        click.echo(content, nl=False)
        return
    from nb2pipe.store.files import write_bytes

    write_bytes(output, content if isinstance(content, bytes) else content.encode("utf-8"))


@main.command()
@click.argument("notebooks", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--lenient", is_flag=True, help=LENIENT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report for all notebooks.")
def validate(notebooks: tuple[str, ...], strict: bool, lenient: bool, as_json: bool) -> None:
    """Check tags, step graph and syntax of NOTEBOOKS without running anything.

    Exit 0 when every notebook is valid, 2 otherwise.
    """
    from nb2pipe.compile.compiler import check_notebook
    from nb2pipe.compile.notebook import read_notebook
    from nb2pipe.errors import Diagnostic, NotebookReadError
    from nb2pipe.runtime.kernelspecs import kernel_diagnostic  # reported here, not first by `run`

    reports, ok = [], True
    for path in notebooks:
        try:
            nb = read_notebook(path)
            result = check_notebook(path, strict=strict, notebook=nb, saved_state=True, lenient=lenient)
            diagnostics = result.diagnostics + [d for d in [kernel_diagnostic(nb)] if d]
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
