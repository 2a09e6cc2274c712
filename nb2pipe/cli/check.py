"""`nb2pipe check`: the one-command CI gate over notebooks (validate, KFP compile, and a run
judged step by step with --execute)."""

from __future__ import annotations

import json
import sys

import click

from nb2pipe.cli.app import LENIENT_HELP, main

_LABELS = {"passed": "ok", "failed": "FAILED", "skipped": "skipped"}


@main.command("check")
@click.argument("notebooks", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--execute", is_flag=True, help="Also run each pipeline and check every step: cell errors, expected "
              "artifacts, NaN metrics, metric gates, regressions against --baseline.")
@click.option("-p", "--parameters", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A parameter value, typed like the parameters cell's default; each notebook takes those it "
                   "declares.")
@click.option("-f", "--parameters-file", "params_file", type=click.Path(dir_okay=False),
              help="A YAML file of parameter values (e.g. a small-data CI profile).")
@click.option("-y", "--parameters-yaml", "params_yaml", help="Parameter values as a YAML mapping string.")
@click.option("--store", type=click.Path(file_okay=False), help="Store folder [default: .nb2pipe/ beside each "
              "notebook, or $NB2PIPE_STORE].")
@click.option("--no-cache", is_flag=True, help="Execute every step even when a cached result exists.")
@click.option("--executor", default="local", show_default=True, metavar="NAME",
              help="Where steps execute with --execute: local or docker.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Steps run at once [default: CPUs].")
@click.option("--check-nan/--no-check-nan", default=None, help="Also fail a step whose numeric artifacts hold "
              "NaN or inf [default: check-nan of [tool.nb2pipe.checks], else off].")
@click.option("--baseline", metavar="RUN_ID|FILE", help="Fail a step whose metric is worse than this baseline's "
              "(a run id, or the JSON of `nb2pipe runs show --json`).")
@click.option("--tolerance", type=click.FloatRange(min=0), default=None, metavar="X",
              help="How much worse than the baseline a metric may be [default: tolerance of "
                   "[tool.nb2pipe.checks], else 0].")
@click.option("--export-dir", type=click.Path(file_okay=False), help="Write each exported KFP pipeline YAML "
              "(DIR/<notebook path>.yaml) and, with --execute, the executed step notebooks "
              "(DIR/<notebook path>/STEP.ipynb).")
@click.option("--junit", "junit", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write a JUnit XML report (testcases NB.ipynb::ITEM, as pytest --nb2pipe names them).")
@click.option("--strict", is_flag=True, help="Treat validation warnings (e.g. names a star import may define) as "
              "errors.")
@click.option("--lenient", is_flag=True, help=LENIENT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report for all notebooks.")
def check(notebooks, execute, params, params_file, params_yaml, store, no_cache, executor, workers, check_nan,
          baseline, tolerance, export_dir, junit, strict, lenient, as_json):
    """Check NOTEBOOKS for CI: validation (with the hidden-state guard), the KFP compile and, with
    --execute, a real run of each pipeline judged step by step.

    Exit 0 when everything passed, 1 when a step or a check (gate, NaN, regression) failed (or the
    step's own code: 124 timeout, 138 kernel died), 2 when a notebook is invalid.
    """
    import os

    from nb2pipe.checks.results import exit_code
    from nb2pipe.checks.suite import CheckOptions, CheckSuite
    from nb2pipe.compile.parameters import parse_cli
    from nb2pipe.errors import UsageError

    given, text_names = parse_cli(params, params_yaml, params_file)
    suite = CheckSuite(CheckOptions(parameters=given, text_parameters=text_names, store=store, executor=executor,
                                    cache=not no_cache, workers=workers, strict=strict, lenient=lenient,
                                    check_nan=check_nan,
                                    baseline=baseline, tolerance=tolerance, export_dir=export_dir,
                                    export_base=os.getcwd()))
    checks = [suite.add(path) for path in notebooks]
    unknown = suite.unknown_parameters()
    if unknown:  # nothing is checked: a typo in -p
        raise UsageError(suite.unknown_parameters_message(unknown))
    reports, everything = [], []
    try:
        for nb in checks:
            outcomes = []
            width = max(len(n) for n in ("validate", "export", *(nb.step_names if execute else [])))
            if not as_json:
                click.echo(nb.path)
            validated = _item(outcomes, nb.validate(), as_json, width)
            if execute and validated.passed:
                nb.start()  # the run and the KFP compile (a child process) go on side by side
            nb.start_export()
            _item(outcomes, nb.export(), as_json, width)
            if execute:
                for name in nb.step_names:
                    _item(outcomes, nb.step(name), as_json, width)
            reports.append((nb.path, outcomes, nb.run_id))
            everything.extend(outcomes)
    finally:
        suite.close()
    code = exit_code(everything)
    if junit:
        from nb2pipe.checks.junit import write_junit

        write_junit(junit, [(path, outcomes) for path, outcomes, _ in reports])
    if as_json:
        click.echo(json.dumps({"ok": code == 0, "exit_code": code, "notebooks": [
            {"path": path, "run": run_id, "items": [o.to_dict() for o in outcomes]}
            for path, outcomes, run_id in reports]}, indent=2, allow_nan=False, default=str))
    else:
        counts: dict[str, int] = {}
        for o in everything:
            key = "cached" if o.cached and o.passed else o.status
            counts[key] = counts.get(key, 0) + 1
        parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        click.echo(f"check: {len(reports)} notebook{'s' if len(reports) != 1 else ''}, {parts} (exit {code})",
                   err=True)
    sys.exit(code)


def _item(outcomes: list, outcome, quiet: bool, width: int):
    outcomes.append(outcome)
    if quiet:
        return outcome
    for warning in outcome.warnings:
        click.echo(warning, err=True)
    label = "cached" if outcome.cached and outcome.passed else _LABELS[outcome.status]
    took = f" {outcome.duration:.2f}s" if outcome.duration and not outcome.cached else ""
    summary = outcome.reason or "; ".join(outcome.notes[:1])
    click.echo(f"  {label:<8} {outcome.item:<{width}}" + (f"  {summary}" if summary else "") + took)
    if outcome.failed:
        text = outcome.report()
        extra = text.split("\n", 1)[1] if text.startswith(outcome.reason) and "\n" in text else \
            ("" if text == outcome.reason else text)
        for line in extra.splitlines():
            click.echo(f"           {line}")
        if outcome.output:
            click.echo("           --- output ---")
            for line in outcome.output.splitlines()[-20:]:
                click.echo(f"           {line}")
    return outcome
