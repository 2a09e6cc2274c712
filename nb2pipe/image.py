"""Step images: the build context written from the notebook's environment, built with the docker SDK.

Image names are a pure function of the pipeline spec, so the docker executor, `nb2pipe build`
and the Kubeflow export agree on them without a registry: `nb2pipe-<pipeline>:<spec hash>` for
the pipeline, and `...-<step>` for a step whose `image:` tag names its own base.
"""

from __future__ import annotations

from .spec import ComponentSpec, PipelineSpec

REPOSITORY_PREFIX = "nb2pipe-"
HASH_CHARS = 12


def default_tag(spec: PipelineSpec) -> str:
    """The pipeline image's name:tag, e.g. `nb2pipe-classifier:3f2a9c1b7d4e`."""
    return f"{REPOSITORY_PREFIX}{spec.name}:{spec.spec_hash[:HASH_CHARS]}"


def step_image_tag(pipeline_image: str, comp: ComponentSpec) -> str:
    """The image a step runs in: the pipeline image, or for a step tagged `image:BASE` the image
    built FROM that base with the same layers (tag suffixed with the step's KFP name)."""
    if not comp.options.image:
        return pipeline_image
    repo, _, tag = pipeline_image.rpartition(":")
    if not repo or "/" in tag:  # no tag given: docker's implicit "latest"
        repo, tag = pipeline_image, "latest"
    return f"{repo}:{tag}-{comp.kfp_name}"[: len(repo) + 1 + 128]
