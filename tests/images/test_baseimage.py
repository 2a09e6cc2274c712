"""`nb2pipe base-image`: version → Debian suite, error paths, and the real image (marked docker)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from nb2pipe.cli import main
from nb2pipe.errors import ExitCode, UsageError
from nb2pipe.images import baseimage
from nb2pipe.images.baseimage import (
    DEFAULT_TAG_FMT,
    SUITES,
    base_image_tag,
    build_base_image,
    ensure_base_image,
    suite_for,
)
from nb2pipe.images.daemon import DockerError

# --- version → suite, tags, helpers (no docker) ---


@pytest.mark.parametrize("python, suite", [("3.9", "bullseye"), ("3.11", "bookworm"), ("3.13", "trixie")])
def test_suite_for_supported_versions(python, suite):
    assert suite_for(python) == suite


@pytest.mark.parametrize("python", ["3.10", "3.12", "2.7", "3.14"])
def test_unsupported_version_lists_supported_and_suggests_base_image(python):
    with pytest.raises(UsageError) as err:
        suite_for(python)
    text = str(err.value)
    assert all(v in text for v in SUITES) and "--base-image" in text and python in text
    assert err.value.exit_code == ExitCode.INVALID


@pytest.mark.parametrize("python", ["3.11.7", "3", "three", ""])
def test_malformed_version_is_a_usage_error(python):
    with pytest.raises(UsageError, match="X.Y"):
        suite_for(python)


def test_default_tag():
    assert DEFAULT_TAG_FMT == "nb2pipe-base:py{python}"
    assert base_image_tag("3.11") == "nb2pipe-base:py3.11"
    with pytest.raises(UsageError):
        base_image_tag("3.12")


@pytest.mark.parametrize("tag, parts", [
    ("nb2pipe-base:py3.11", ("nb2pipe-base", "py3.11")),
    ("mybase", ("mybase", "latest")),
    ("registry.local:5000/team/base", ("registry.local:5000/team/base", "latest")),
    ("registry.local:5000/team/base:v1", ("registry.local:5000/team/base", "v1")),
])
def test_split_tag(tag, parts):
    assert baseimage._split_tag(tag) == parts


@pytest.mark.parametrize("tag", ["Upper:case", "bad tag", "x:", "x:a/b c"])
def test_invalid_tag(tag):
    with pytest.raises(UsageError, match="invalid image tag"):
        baseimage._split_tag(tag)


def test_mirror_credentials_never_shown():
    assert baseimage._public_url("http://user:secret@mirror.corp/debian") == "http://mirror.corp/debian"
    assert baseimage._public_url("http://deb.debian.org/debian") == "http://deb.debian.org/debian"


def test_image_config():
    changes = baseimage._changes("3.11", "bookworm", "abc")
    for line in ("ENV LANG=C.UTF-8", "ENV PIP_DISABLE_PIP_VERSION_CHECK=1", "ENV PYTHONUNBUFFERED=1",
                 "ENV HOME=/home/nb2pipe", "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                 "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt", "LABEL org.nb2pipe.base=1",
                 "LABEL org.nb2pipe.python=3.11", "LABEL org.nb2pipe.debian=bookworm", 'CMD ["python3"]'):
        assert line in changes
    path = next(c for c in changes if c.startswith("ENV PATH="))
    assert path.startswith("ENV PATH=/opt/venv/bin:")


def test_host_cas_include_subfolders_and_fingerprint_tracks_them(tmp_path, monkeypatch):
    monkeypatch.setattr(baseimage, "HOST_CA_DIR", tmp_path)
    assert baseimage.host_ca_files() == []
    (tmp_path / "corp").mkdir()
    (tmp_path / "a.crt").write_text("A")
    (tmp_path / "corp" / "b.crt").write_text("B")
    (tmp_path / "notes.txt").write_text("not a certificate")
    assert baseimage.host_ca_files() == [tmp_path / "a.crt", tmp_path / "corp" / "b.crt"]
    before = baseimage.ca_fingerprint()
    (tmp_path / "corp" / "b.crt").write_text("B2")
    assert baseimage.ca_fingerprint() != before


def test_failed_command_names_itself_and_shows_the_tail(tmp_path):
    log = tmp_path / "log"
    with pytest.raises(DockerError) as err:
        baseimage._run(["sh", "-c", "for i in $(seq 30); do echo line$i; done; exit 3"], log)
    text = str(err.value)
    assert "`sh -c" in text and "exit code 3" in text
    assert "line30" in text and "line16" in text and "line15" not in text
    assert "line30" in log.read_text()  # the full output stays in the log


@pytest.fixture
def fake_client(monkeypatch):
    """A docker client stand-in: images present locally, pulls refused as offline."""
    from docker.errors import APIError, ImageNotFound

    class Images:
        present: set[str] = set()
        pulled: list[str] = []

        def get(self, tag):
            if tag not in self.present:
                raise ImageNotFound(tag)
            return object()

        def pull(self, repo, tag):
            self.pulled.append(f"{repo}:{tag}")
            raise APIError("no such host registry-1.docker.io")

    class Client:
        images = Images()

    client = Client()
    monkeypatch.setattr(baseimage, "docker_client", lambda: client)
    return client


def test_not_root_and_missing_debootstrap_are_clear_errors(fake_client, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(DockerError, match="needs root"):
        build_base_image("3.11")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(baseimage.shutil, "which", lambda name: None)
    with pytest.raises(DockerError, match="apt-get install debootstrap"):
        build_base_image("3.11")


def test_ensure_base_image_order(fake_client, monkeypatch):
    built = []
    monkeypatch.setattr(baseimage, "build_base_image", lambda python, tag, log: built.append(tag) or "sha256:x")
    images = fake_client.images
    images.present = {"python:3.11-slim", "nb2pipe-base:py3.11"}
    assert ensure_base_image("3.11", log=lambda m: None) == "python:3.11-slim"
    images.present = {"nb2pipe-base:py3.11"}
    assert ensure_base_image("3.11", log=lambda m: None) == "nb2pipe-base:py3.11"
    assert images.pulled == [] and built == []
    images.present = set()
    messages = []
    assert ensure_base_image("3.11", log=messages.append) == "nb2pipe-base:py3.11"
    assert images.pulled == ["python:3.11-slim"] and built == ["nb2pipe-base:py3.11"]
    assert "cannot pull python:3.11-slim" in messages[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_cleanup_never_deletes_through_a_mount(tmp_path):
    # A mount debootstrap left behind (e.g. after a kill) must be unmounted, not emptied.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host data")
    work = tmp_path / "work"
    (work / "rootfs" / "proc").mkdir(parents=True)
    mounted = subprocess.run(["mount", "--bind", str(outside), str(work / "rootfs" / "proc")])
    if mounted.returncode != 0:
        pytest.skip("bind mounts are not permitted here")
    baseimage._remove(work)
    assert (outside / "keep").read_text() == "host data"
    assert not work.exists()


def test_cli_unsupported_python():
    result = CliRunner().invoke(main, ["base-image", "--python", "3.12"])
    assert result.exit_code == 2
    assert "3.9, 3.11, 3.13" in result.output and "--base-image" in result.output


def test_cli_without_a_daemon_is_one_line_exit_2(tmp_path):
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-such-docker.sock")
    proc = subprocess.run([sys.executable, "-m", "nb2pipe", "base-image", "--python", "3.11"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "no Docker daemon answers" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- the real image ---


def run_in(image: str, command: str, user: str | None = None) -> str:
    from nb2pipe.images.daemon import docker_client

    out = docker_client().containers.run(image, ["sh", "-c", command], user=user, remove=True,
                                         stdout=True, stderr=True)
    return out.decode()


def _pem_bodies(text: str) -> list[str]:
    return ["".join(body.split()) for body in
            re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)]


@pytest.mark.docker
def test_base_image_python_is_the_venv(base_image):
    out = run_in(base_image, "command -v python3; python3 -c \"import sys; print('%d.%d' % sys.version_info[:2])\"")
    assert out.split() == ["/opt/venv/bin/python3", "3.11"]
    assert "pip " in run_in(base_image, "python3 -m pip --version")


@pytest.mark.docker
def test_base_image_labels(base_image):
    from nb2pipe.images.daemon import docker_client

    labels = docker_client().images.get(base_image).labels
    assert labels["org.nb2pipe.base"] == "1"
    assert labels["org.nb2pipe.python"] == "3.11" and labels["org.nb2pipe.debian"] == "bookworm"


@pytest.mark.docker
def test_base_image_trusts_the_hosts_extra_cas(base_image):
    bundle = "".join(run_in(base_image, "cat /etc/ssl/certs/ca-certificates.crt").split())
    assert len(_pem_bodies(run_in(base_image, "cat /etc/ssl/certs/ca-certificates.crt"))) > 50
    for path in baseimage.host_ca_files():
        for body in _pem_bodies(path.read_text(errors="replace")):
            assert body in bundle, f"{path} is missing from the image's CA bundle"


@pytest.mark.docker
def test_base_image_runs_as_an_arbitrary_uid_with_a_writable_home(base_image):
    out = run_in(base_image, "id -u; echo $HOME; touch $HOME/probe && echo writable", user="65534")
    assert out.split() == ["65534", "/home/nb2pipe", "writable"]


@pytest.mark.docker
def test_base_image_pip_reaches_pypi_through_the_proxy(base_image):
    # Fails with CERTIFICATE_VERIFY_FAILED if the host's intercepting CA did not make it in.
    out = run_in(base_image, "pip download --no-deps -d /tmp/dl six && ls /tmp/dl", user="65534")
    assert re.search(r"six-[\d.]+-py2\.py3-none-any\.whl", out), out


@pytest.mark.docker
def test_find_local_base_sees_it(base_image):
    assert baseimage.find_local_base("3.11") in ("python:3.11-slim", base_image)
