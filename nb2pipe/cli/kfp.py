"""`nb2pipe export` and `nb2pipe submit`: Kubeflow Pipelines (and other exporters)."""

from __future__ import annotations

import json

import click

from nb2pipe.cli.app import main


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
@click.option("--allow-local-image", is_flag=True, help="Accept an image name without a registry host (a cluster "
              "that shares this Docker daemon: kind, minikube).")
@click.option("--json", "as_json", is_flag=True, help="Print the run (id, URL, experiment, parameters) as JSON.")
def submit_command(notebook, host, experiment, run_name, params, params_file, params_yaml, image, namespace,
                   store, token_env, strict, allow_local_image, as_json):
    """Start a run of NOTEBOOK's pipeline on Kubeflow Pipelines and print the run's URL.

    Only the URL goes to stdout (for scripts); everything else to stderr. The notebook and the
    parameters are checked first: when anything is invalid nothing is uploaded (exit 2). Only the
    parameters given are sent; the others keep the parameters cell's defaults. An unreachable host
    or an HTTP error (401, 403, 404, 5xx) is one line naming the host and status, exit 2: no run
    was started.
    """
    import os

    from nb2pipe.compile.compiler import check_notebook
    from nb2pipe.compile.parameters import parse_cli
    from nb2pipe.errors import PipelineInvalid
    from nb2pipe.kubeflow.submit import submit

    given, text_names = parse_cli(params, params_yaml, params_file)
    checked = check_notebook(notebook, strict=strict)
    for d in checked.warnings:
        click.echo(str(d), err=True)
    if checked.errors or checked.spec is None:
        raise PipelineInvalid(checked.diagnostics)
    result = submit(notebook, host, experiment=experiment, run_name=run_name, parameters=given, image=image,
                    namespace=namespace, existing_token=(os.environ.get(token_env) or "").strip() or None,
                    store=store, strict=strict, allow_local_image=allow_local_image, _text_parameters=text_names)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        click.echo(f"started run '{result.run_name}' in experiment {result.experiment_id}", err=True)
        click.echo(result.run_url)





@main.command("export")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--to", "target", default="kfp", show_default=True, metavar="FORMAT",
              help="Pipeline format: kfp (Kubeflow Pipelines v2), or one a plugin adds.")
@click.option("-o", "--output", metavar="FILE", help="Where to write the pipeline YAML ('-': stdout) "
              "[default: the notebook's path with .yaml].")
@click.option("--image", metavar="IMAGE", help="Image the steps run in [default: the one `nb2pipe build` tags].")
@click.option("--py", "py", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also write the pipeline as a standalone KFP DSL Python file.")
@click.option("--allow-local-image", is_flag=True, help="Accept an image name without a registry host (a cluster "
              "that shares this Docker daemon: kind, minikube).")
@click.option("--store", type=click.Path(file_okay=False), help="Run store whose latest run types the artifacts "
              "[default: as for `nb2pipe run`].")
def export_command(notebook, target, output, image, py, store, allow_local_image):
    """Export NOTEBOOK's pipeline, e.g. to Kubeflow Pipelines v2 IR YAML (`--to kfp`).

    Each step becomes a task running its cells with papermill in the image of `nb2pipe build`;
    run `nb2pipe run` first so passed variables get typed artifacts (Dataset, Model).
    """
    from nb2pipe.registry import EXPORTERS  # an unknown FORMAT is a UsageError naming the installed ones

    options = {"allow_local_image": True} if allow_local_image else {}  # exporters of plugins need not know it
    result = EXPORTERS[target](notebook, output=output, image=image, py=py, store=store,
                                warn=lambda message: click.echo(f"nb2pipe: warning: {message}", err=True), **options)
    if result.path is None:
        click.echo(result.text, nl=False)
    else:
        click.echo(f"wrote {result.path}", err=True)
    if result.py_path:
        click.echo(f"wrote {result.py_path}", err=True)
    click.echo(f"{result.tasks} task{'s' if result.tasks != 1 else ''}, image {result.image}", err=True)
