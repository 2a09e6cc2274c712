"""`nb2pipe inspect` and `nb2pipe validate`: the pipeline a notebook declares, without running it."""

from __future__ import annotations

import json
import sys

import click

from nb2pipe.cli.app import main
from nb2pipe.errors import ExitCode


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
            result = check_notebook(path, strict=strict, saved_state=True)
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
