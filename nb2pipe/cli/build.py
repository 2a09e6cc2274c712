"""`nb2pipe build` and `nb2pipe base-image`: container images."""

from __future__ import annotations

import json
import sys

import click

from nb2pipe.cli.app import main
from nb2pipe.errors import ExitCode


@main.command("build")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--base-image", metavar="IMAGE", help="Base image [default: python:X.Y-slim when it is on this machine "
              "or can be pulled, else nb2pipe-base:pyX.Y, built by `nb2pipe base-image` when missing].")
@click.option("--tag", metavar="NAME:TAG", help="Image name, e.g. REGISTRY/NAME:TAG for a cluster to pull "
              "[default: nb2pipe-<pipeline>:<spec hash>, local only]. Recorded in the store for export and submit.")
@click.option("--requirements", "requirements", type=click.Path(dir_okay=False, exists=True),
              help="Extra pip requirements for imports no installed distribution provides.")
@click.option("--push", is_flag=True, help="Push the image(s) to their registry afterwards.")
@click.option("--store", type=click.Path(file_okay=False), help="Run store the image is recorded in "
              "[default: as for `nb2pipe run`].")
@click.option("--json", "as_json", is_flag=True, help="Print the build result as JSON.")
def build(notebook, base_image, tag, requirements, push, store, as_json):
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
    from nb2pipe.images.recorded import record_build

    record_build(notebook, checked.spec, result, store)  # `export` and `submit` use it
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
