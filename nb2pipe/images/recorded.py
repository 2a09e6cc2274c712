"""Which image a pipeline's steps run in on a cluster, and whether a cluster can pull it.

`nb2pipe build --tag REGISTRY/NAME:TAG [--push]` records the image it made for this version of
the notebook in the run store; `export` and `submit` use that record (a pushed image first),
else the tag `build` gives by default. That default (`nb2pipe-NAME:HASH`) names no registry
host: it exists only in this machine's Docker, and pods on a cluster could never pull it.
"""

from __future__ import annotations

from pathlib import Path

from nb2pipe.images.reference import ImageRef


def record_build(notebook, spec, result, store=None) -> None:
    """Remember a build's image for `notebook`'s current version (its spec hash)."""
    from nb2pipe.store.runs import RunStore
    from nb2pipe.store.workspace import store_root

    with RunStore(store_root(notebook, store)) as runs:
        runs.record_image(str(notebook), spec.spec_hash, result.tag, result.image_id, list(result.repo_digests))


def pipeline_image(notebook, spec, store=None) -> str:
    """The image recorded for this version of the notebook (pushed first), else build's default."""
    from nb2pipe.images.build import default_tag
    from nb2pipe.store.workspace import store_root

    root = store_root(notebook, store)
    if (Path(root) / "runs.db").exists():
        from nb2pipe.store.runs import RunStore

        with RunStore(root, reader=True) as runs:
            found = runs.built_image(str(notebook), spec.spec_hash)
        if found is not None:
            return found["tag"]
    return default_tag(spec)


def pull_problem(image: str, notebook) -> str | None:
    """Why a cluster could not pull `image` (no registry host in its name), with the fix; else None."""
    try:
        if ImageRef.parse(image).registry is not None:
            return None
    except ValueError as exc:
        return f"{exc} (fix: --image REGISTRY/NAME:TAG)"
    return (f"image '{image}' names no registry, so a cluster cannot pull it (it exists only in this machine's "
            f"Docker) (fix: `nb2pipe build {notebook} --tag REGISTRY/NAME:TAG --push`, or --image "
            "REGISTRY/NAME:TAG; for a cluster that shares this Docker daemon, such as kind or minikube, "
            "--allow-local-image)")
