"""The Docker daemon connection every container feature goes through.

One place turns "no daemon answering" and "docker SDK missing" into a one-line DockerError
(exit 2) that says how to fix it, instead of a urllib3 traceback.
"""

from __future__ import annotations

from nb2pipe.errors import Nb2pipeError

START_HINT = ("start one (as root: `dockerd &`, or `systemctl start docker`), or point DOCKER_HOST at a "
              "running daemon")


class DockerError(Nb2pipeError):
    """The Docker daemon is unreachable, or an image/container operation failed (exit 2)."""


_client = None


def docker_client():
    """A connected docker SDK client (cached per process); DockerError if no daemon answers."""
    global _client
    if _client is not None:
        return _client
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise DockerError("the docker Python SDK is not installed (fix: pip install 'docker>=7,<8')") from None
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as exc:
        raise DockerError(f"no Docker daemon answers ({explain(exc, 160)}); {START_HINT}") from None
    except Exception as exc:  # requests/urllib3 connection errors surface untranslated at ping()
        raise DockerError(f"no Docker daemon answers ({explain(exc, 160)}); {START_HINT}") from None
    _client = client
    return client


def explain(exc: BaseException, limit: int = 300) -> str:
    """One line for a docker SDK error: the daemon's own explanation when it gave one."""
    text = str(getattr(exc, "explanation", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
