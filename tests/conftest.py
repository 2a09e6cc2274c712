"""Shared fixtures."""

from __future__ import annotations

import pytest

# jp_fetch, jp_serverapp, jp_root_dir...: the server extension's tests (tests/lab/)
pytest_plugins = ("pytest_jupyter.jupyter_server",)

BASE_PYTHON = "3.11"  # fixed, not the host's: 3.10 and 3.12 have no Debian base image


@pytest.fixture(scope="session")
def base_image() -> str:
    """The tag of nb2pipe's own base image for Python 3.11: reused when present and built for
    this host's CA certificates, else built (about a minute). No daemon is a failure, not a skip."""
    from docker.errors import ImageNotFound

    from nb2pipe.images.baseimage import CA_LABEL, base_image_tag, build_base_image, ca_fingerprint
    from nb2pipe.images.daemon import DockerError, docker_client

    try:
        client = docker_client()
    except DockerError as exc:
        pytest.fail(f"docker tests need a daemon: {exc}", pytrace=False)
    tag = base_image_tag(BASE_PYTHON)
    try:
        labels = client.images.get(tag).labels or {}
        if labels.get(CA_LABEL) == ca_fingerprint():
            return tag
    except ImageNotFound:
        pass
    build_base_image(BASE_PYTHON, tag=tag)
    return tag
