"""A Python base image built without any registry: debootstrap a Debian rootfs, `docker import` it.

Companies often block Docker Hub and intercept TLS. This image needs neither a registry nor a
public CA: it carries the host's extra CA certificates, so pip inside trusts the same proxy the
host does, and a virtualenv on PATH, so steps can pip install without root. Nothing else from the
host enters it (no environment, pip config or credentials).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from nb2pipe.errors import UsageError
from nb2pipe.images.daemon import DockerError, docker_client, explain
from nb2pipe.images.reference import ImageRef

DEFAULT_TAG_FMT = "nb2pipe-base:py{python}"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# The Debian suite whose `python3` is that version: the image gets exactly the requested X.Y.
SUITES = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}

VENV = "/opt/venv"
HOME = "/home/nb2pipe"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
CA_LABEL = "org.nb2pipe.ca-certs"

# Only these reach chroot commands: the host's environment (PIP_*, tokens, proxies) must not
# influence, or be recorded in, the image.
_CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}


def host_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def suite_for(python: str) -> str:
    """The Debian suite whose python3 is `python` (X.Y); UsageError for any other version."""
    supported = ", ".join(SUITES)
    if not re.fullmatch(r"\d+\.\d+", python or ""):
        raise UsageError(f"--python takes a version as X.Y (e.g. 3.11), not {python!r}")
    if python not in SUITES:
        raise UsageError(f"no Debian release ships Python {python} as python3; base-image supports "
                         f"{supported} (fix: pass --python with one of those, or give "
                         f"`nb2pipe build --base-image IMAGE` an image that has Python {python})")
    return SUITES[python]


def base_image_tag(python: str | None = None) -> str:
    python = python or host_python()
    suite_for(python)
    return DEFAULT_TAG_FMT.format(python=python)


def host_ca_files() -> list[Path]:
    """The host's extra CA certificates, as update-ca-certificates finds them (subfolders too)."""
    if not HOST_CA_DIR.is_dir():
        return []
    return sorted(p for p in HOST_CA_DIR.rglob("*.crt") if p.is_file())


def ca_fingerprint(files: list[Path] | None = None) -> str:
    """A digest of the extra CA set, labelled on the image so a stale one can be noticed."""
    digest = hashlib.sha256()
    for path in files if files is not None else host_ca_files():
        digest.update(path.relative_to(HOST_CA_DIR).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def find_local_base(python: str | None = None) -> str | None:
    """A usable base image already in the daemon: python:X.Y-slim, else nb2pipe-base:pyX.Y."""
    from docker.errors import ImageNotFound

    python = python or host_python()
    client = docker_client()
    for tag in (f"python:{python}-slim", base_image_tag(python)):
        try:
            client.images.get(tag)
            return tag
        except ImageNotFound:
            continue
    return None


def ensure_base_image(python: str | None = None, log=print) -> str:
    """The tag of a base image for `nb2pipe build`: local python:X.Y-slim, local nb2pipe base,
    pulled python:X.Y-slim, or else a freshly built nb2pipe base."""
    from docker.errors import DockerException

    python = python or host_python()
    local = find_local_base(python)
    if local:
        return local
    try:
        docker_client().images.pull("python", tag=f"{python}-slim")
        return f"python:{python}-slim"
    except (DockerException, OSError) as exc:  # no registry reachable: the usual case offline
        log(f"cannot pull python:{python}-slim ({explain(exc, 200)}); building {base_image_tag(python)} instead")
    tag = base_image_tag(python)
    build_base_image(python, tag=tag, log=log)
    return tag


def build_base_image(python: str | None = None, tag: str | None = None, mirror: str = DEFAULT_MIRROR,
                     log=print) -> str:
    """Build the base image for Python X.Y (default: the host's) and return its image id."""
    python = python or host_python()
    suite = suite_for(python)
    tag = tag or base_image_tag(python)
    repository, image_tag = _split_tag(tag)
    client = docker_client()  # fail before the minute-long bootstrap, not after
    if os.geteuid() != 0:
        raise DockerError("base-image needs root: debootstrap creates device nodes and chroots "
                          "(fix: run it as root, e.g. with sudo)")
    if not shutil.which("debootstrap"):
        raise DockerError("debootstrap is not installed (fix: apt-get install debootstrap)")
    if not shutil.which("chroot"):
        raise DockerError("chroot is not on PATH (fix: add /usr/sbin to PATH)")

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="nb2pipe-base-"))
    rootfs, logfile, tarball = work / "rootfs", work / "debootstrap.log", work / "rootfs.tar"
    try:
        log(f"debootstrap {suite} (Python {python}) from {_public_url(mirror)} ...")
        _run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
              suite, str(rootfs), mirror], logfile, env=_debootstrap_env())
        cas = host_ca_files()
        _prune(rootfs)
        _scrub_host_files(rootfs, suite, mirror)
        _install_cas(rootfs, cas, logfile)
        log(f"creating the virtualenv {VENV} ...")
        _run(["chroot", str(rootfs), "python3", "-m", "venv", VENV], logfile, env=_CHROOT_ENV)
        home = rootfs / HOME.lstrip("/")
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o1777)  # steps run as arbitrary non-root uids with HOME here
        _check_python(rootfs, python, logfile)
        _clear_dev(rootfs)  # the container runtime mounts its own /dev
        log("importing into Docker ...")
        _run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball), "."], logfile)
        changes = _changes(python, suite, ca_fingerprint(cas))
        try:
            client.api.import_image_from_file(str(tarball), repository=repository, tag=image_tag,
                                              changes=changes)
            image = client.images.get(tag)
        except Exception as exc:  # docker.errors.APIError, or the connection dropping mid-upload
            raise DockerError(f"docker import of {tag} failed: {explain(exc, 200)}") from None
    finally:
        _remove(work)
    took = time.monotonic() - started
    log(f"built {tag}: {image.id} ({image.attrs.get('Size', 0) / 1e6:.0f} MB) in {took:.0f}s")
    return image.id


def _split_tag(tag: str) -> tuple[str, str]:
    """repo[:tag] → (repo, tag), docker's implicit "latest" when no tag is given."""
    try:
        ref = ImageRef.parse(tag)
        ref.check()
        if ref.digest:
            raise ValueError("an imported image gets a tag, not a digest")
    except ValueError:
        example = DEFAULT_TAG_FMT.format(python="3.11")
        raise UsageError(f"invalid image tag {tag!r} (expected NAME[:TAG], e.g. {example})") from None
    return ref.repository, ref.tag_or_default


def _public_url(url: str) -> str:
    """The mirror without user:password, for the image's sources.list and for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _debootstrap_env() -> dict[str, str]:
    # debootstrap runs on the host and may need its proxy settings to reach the mirror; they
    # are not written into the rootfs.
    env = dict(os.environ)
    env.update(LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    return env


def _run(cmd: list[str], logfile: Path, env: dict[str, str] | None = None) -> None:
    """Run cmd with its output appended to logfile; DockerError naming it, with the log's tail."""
    with open(logfile, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            code = proc.wait()
        except BaseException:
            # Ctrl-C reached the child too; give debootstrap time to run its unmount traps
            # before it is killed, so no host /proc or /dev stays mounted in the rootfs.
            _stop(proc)
            raise
    if code != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-15:]
        shown = " ".join(_public_url(arg) if "://" in arg else arg for arg in cmd)
        raise DockerError(f"`{shown}` failed with exit code {code}; last lines of its output:\n"
                          + "\n".join("  " + line for line in tail))


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait()


def _prune(rootfs: Path) -> None:
    """Drop what a container never reads: apt caches and lists, docs, man pages, translations."""
    keep = {"lock", "partial", "locale.alias"}  # apt expects its lock/partial entries; glibc reads the alias
    for pattern in ("var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*",
                    "usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*",
                    "var/cache/debconf/*-old", "var/log/*.log"):
        for path in rootfs.glob(pattern):
            if path.name not in keep:
                _delete(path)


def _scrub_host_files(rootfs: Path, suite: str, mirror: str) -> None:
    # debootstrap copies the host's resolv.conf and hostname; Docker provides its own at run time.
    for name in ("etc/resolv.conf", "etc/hostname"):
        _delete(rootfs / name)
    # A mirror URL may carry credentials; the image only keeps the public part.
    sources = rootfs / "etc/apt/sources.list"
    if sources.exists():
        sources.write_text(f"deb {_public_url(mirror)} {suite} main\n")


def _install_cas(rootfs: Path, cas: list[Path], logfile: Path) -> None:
    target = rootfs / HOST_CA_DIR.relative_to("/")
    for path in cas:
        dest = target / path.relative_to(HOST_CA_DIR)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)  # contents only: no host ownership or modes
        dest.chmod(0o644)
    _run(["chroot", str(rootfs), "update-ca-certificates"], logfile, env=_CHROOT_ENV)


def _check_python(rootfs: Path, python: str, logfile: Path) -> None:
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    out = subprocess.run(["chroot", str(rootfs), f"{VENV}/bin/python", "-c", probe], env=_CHROOT_ENV,
                         capture_output=True, text=True)
    found = out.stdout.strip()
    if out.returncode != 0 or found != python:
        raise DockerError(f"the bootstrapped {VENV}/bin/python is {found or 'broken'} ({out.stderr.strip()[-300:]}), "
                          f"not Python {python}: the Debian suite {SUITES[python]} changed its python3")


def _clear_dev(rootfs: Path) -> None:
    dev = rootfs / "dev"
    if dev.is_dir() and not _mounts_under(dev):
        for path in dev.iterdir():
            _delete(path)


def _changes(python: str, suite: str, cas: str) -> list[str]:
    return [
        "ENV LANG=C.UTF-8",
        f"ENV VIRTUAL_ENV={VENV}",
        f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV PIP_DISABLE_PIP_VERSION_CHECK=1",
        "ENV PYTHONUNBUFFERED=1",
        f"ENV HOME={HOME}",
        f"ENV SSL_CERT_FILE={CA_BUNDLE}",
        f"ENV PIP_CERT={CA_BUNDLE}",
        f"ENV REQUESTS_CA_BUNDLE={CA_BUNDLE}",
        "LABEL org.nb2pipe.base=1",
        f"LABEL org.nb2pipe.python={python}",
        f"LABEL org.nb2pipe.debian={suite}",
        f"LABEL {CA_LABEL}={cas}",
        'CMD ["python3"]',
    ]


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _mounts_under(folder: Path) -> list[str]:
    """Mount points at or below folder, deepest first (from /proc/self/mountinfo)."""
    prefix = str(folder.resolve())
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def _remove(work: Path) -> None:
    """Delete the work folder, but never through a mount left behind: rmtree would descend into
    the host's /proc or /dev."""
    for point in _mounts_under(work):
        subprocess.run(["umount", "--lazy", point], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    left = _mounts_under(work)
    if left:
        print(f"nb2pipe: left {work} in place: still mounted: {', '.join(left)}", file=sys.stderr)
        return
    shutil.rmtree(work, ignore_errors=True)
