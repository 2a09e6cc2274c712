"""Step images: the build context written from the notebook's environment, built with the docker SDK.

Image names are a pure function of the pipeline spec, so the docker executor, `nb2pipe build`
and the Kubeflow export agree on them without a registry: `nb2pipe-<pipeline>:<spec hash>` for
the pipeline, and `...-<step>` for a step whose `image:` tag names its own base.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import re
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.errors import Diagnostic, UsageError
from nb2pipe.images.daemon import DockerError, docker_client, explain
from nb2pipe.images.reference import ImageRef
from nb2pipe.model.spec import ComponentSpec, PipelineSpec

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
    ref = ImageRef.parse(pipeline_image)
    return str(ref.with_tag(f"{ref.tag_or_default}-{comp.kfp_name}"[:128]))


# --- build contexts ---------------------------------------------------------------------------
# Two images per pipeline. The dependency image (`nb2pipe-deps:<lock digest>`) installs the
# pinned lock from a wheelhouse that pip fills *on this machine*, with this machine's index
# configuration: the image gets the very wheels the notebook ran with, the container needs no
# index access, and pipelines with the same lock share it. The pipeline image is built FROM it
# with a small context (nb2pipe's wheel, local modules, the spec), so editing the notebook
# re-sends kilobytes and rebuilds one layer.
LABEL = "org.nb2pipe"
IMAGE_ROOT = "/opt/nb2pipe"
VENV = f"{IMAGE_ROOT}/venv"
WORK_DIR = f"{IMAGE_ROOT}/app"  # the step's working directory: local modules live here
SPEC_PATH = f"{IMAGE_ROOT}/pipeline.json"
DEPS_REPOSITORY = "nb2pipe-deps"
# Files in a context get one fixed mtime, so identical inputs give byte-identical contexts.
_EPOCH = 315532800  # 1980-01-01, the earliest time a zip entry can hold
_PIP = "--no-cache-dir --disable-pip-version-check --no-input"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the legacy builder colours a step's stderr


class BuildError(DockerError):
    """`docker build` failed: carries the failing Dockerfile step and the tool's own message."""


@dataclass
class BuildContext:
    """The files of a build context, in memory until written; `digest` names their content."""

    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> content
    links: dict[str, Path] = field(default_factory=dict)  # relative path -> file to hard-link (wheels)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        for name in sorted(self.links):  # wheel file names carry name, version and platform
            h.update(name.encode() + b"\0")
        return h.hexdigest()

    def write(self, folder: Path) -> None:
        """Replace `folder` with exactly these files (stale files would leak into COPY)."""
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for name, data in self.files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.utime(path, (_EPOCH, _EPOCH))
        for name, src in self.links.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, path)
            except OSError:  # another filesystem
                shutil.copy2(src, path)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)


@dataclass
class BuildResult:
    tag: str
    image_id: str
    deps_image: str
    base_image: str
    context_dir: str
    built: bool  # False: an image of this exact context already existed
    step_images: dict[str, str] = field(default_factory=dict)  # step -> image it runs in
    cached_steps: int = 0
    total_steps: int = 0
    seconds: float = 0.0
    warnings: list[Diagnostic] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)


def deps_dockerfile(base: str, wheels: bool, ignore_requires_python: bool = False) -> str:
    source = f"--no-index --find-links {IMAGE_ROOT}/build/wheels" if wheels else ""
    if ignore_requires_python:
        source += " --ignore-requires-python"
    return "\n".join([
        "# Generated by `nb2pipe build`: the pinned environment of a notebook's steps.",
        f"FROM {base} AS wheels",
        f"COPY . {IMAGE_ROOT}/build/",
        f"RUN python3 -m venv {VENV} && {VENV}/bin/python -m pip install {_PIP} {source} "
        f"-r {IMAGE_ROOT}/build/requirements.lock",
        # Second stage: only the installed venv is kept, not the wheelhouse it came from.
        f"FROM {base}",
        f"COPY --from=wheels {VENV} {VENV}",
        f"COPY requirements.lock {IMAGE_ROOT}/requirements.lock",
        f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]) + "\n"


def pipeline_dockerfile(deps_image: str, wheel_name: str, has_work: bool) -> str:
    lines = [
        "# Generated by `nb2pipe build`; edit the notebook, not this file.",
        f"FROM {deps_image}",
        f"COPY dist/{wheel_name} {IMAGE_ROOT}/dist/{wheel_name}",
        f"RUN python -m pip install {_PIP} --no-deps {IMAGE_ROOT}/dist/{wheel_name} "
        f"&& mkdir -p {WORK_DIR} /home/nb2pipe && chmod 1777 /home/nb2pipe",
        # Steps run as the invoking user's uid, which has no passwd entry: give it a writable home.
        f"ENV HOME=/home/nb2pipe NB2PIPE_SPEC={SPEC_PATH} PYTHONUNBUFFERED=1",
        f"WORKDIR {WORK_DIR}",
    ]
    if has_work:
        lines.append(f"COPY app/ {WORK_DIR}/")
    lines.append(f"COPY pipeline/ {IMAGE_ROOT}/")  # last: the only layer a notebook edit changes
    return "\n".join(lines) + "\n"


def deps_context(lock_text: str, extra: bytes | None, wheelhouse: Path, base: str, log,
                 ignore_requires_python: bool = False) -> BuildContext:
    ctx = BuildContext()
    lock = lock_text
    if extra is not None:
        ctx.files["requirements.extra.txt"] = extra
        lock += "-r requirements.extra.txt\n"
    ctx.files["requirements.lock"] = lock.encode()
    wheels = fill_wheelhouse(lock_text, extra, wheelhouse, log)
    for w in wheels:
        ctx.links[f"wheels/{w.name}"] = w
    ctx.files["Dockerfile"] = deps_dockerfile(base, bool(wheels), ignore_requires_python).encode()
    return ctx


def pipeline_context(spec: PipelineSpec, folder: Path, local_modules: list[Path], deps_image: str) -> BuildContext:
    ctx = BuildContext()
    wheel_name, wheel = self_wheel()
    ctx.files[f"dist/{wheel_name}"] = wheel
    for rel in local_modules:
        src = folder / rel
        for f in ([src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())):
            if "__pycache__" in f.parts or f.suffix in (".pyc", ".pyo"):
                continue
            ctx.files[f"app/{f.relative_to(folder).as_posix()}"] = f.read_bytes()
    ctx.files["pipeline/pipeline.json"] = spec.to_json().encode()
    for comp in spec.steps:  # readable step sources beside the spec the runtime executes
        ctx.files[f"pipeline/steps/{comp.name}.py"] = _step_source(spec, comp).encode()
    ctx.files["Dockerfile"] = pipeline_dockerfile(deps_image, wheel_name, bool(local_modules)).encode()
    return ctx


def _step_source(spec: PipelineSpec, comp: ComponentSpec) -> str:
    parts = [f"# step '{comp.name}' of {spec.notebook} (reference copy; the runtime executes pipeline.json)"]
    parts += [f"# %% cell {c.index}\n{c.source}" for c in comp.cells]
    return "\n\n".join(parts) + "\n"


def fill_wheelhouse(lock_text: str, extra: bytes | None, wheelhouse: Path, log) -> list[Path]:
    """Wheels for every pin (and the extra requirements), fetched or built by this machine's pip
    with its own index configuration; kept in a shared wheelhouse across builds."""
    import tempfile

    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

    wheelhouse.mkdir(parents=True, exist_ok=True)
    pins = [line.strip() for line in lock_text.splitlines() if line.strip() and not line.startswith("#")]

    def have() -> dict[tuple[str, str], Path]:
        found = {}
        for w in wheelhouse.glob("*.whl"):
            try:
                name, version, _, _ = parse_wheel_filename(w.name)
            except InvalidWheelFilename:
                continue
            found[(canonicalize_name(name), str(version))] = w
        return found

    present = have()
    missing = [p for p in pins if (canonicalize_name(p.split("==")[0]), p.split("==")[1]) not in present]
    with tempfile.TemporaryDirectory() as tmp:
        if missing:
            (Path(tmp) / "missing.txt").write_text("\n".join(missing) + "\n")
            log(f"  fetching {len(missing)} wheels into {wheelhouse}")
            _pip_wheel(["--no-deps", "-r", str(Path(tmp) / "missing.txt")], wheelhouse)
    present = have()
    wheels = []
    for p in pins:
        key = (canonicalize_name(p.split("==")[0]), p.split("==")[1])
        if key not in present:
            raise BuildError(f"pip produced no wheel for {p}")
        wheels.append(present[key])
    if extra is not None:
        # Resolved with their dependencies (the lock does not pin them), into a folder of their own.
        extra_dir = wheelhouse / "extra" / hashlib.sha256(extra).hexdigest()[:HASH_CHARS]
        if not extra_dir.is_dir():
            tmp_dir = extra_dir.with_name(extra_dir.name + f".{os.getpid()}.tmp")
            tmp_dir.mkdir(parents=True, exist_ok=True)
            (tmp_dir / "requirements.txt").write_bytes(extra)
            _pip_wheel(["-r", str(tmp_dir / "requirements.txt")], tmp_dir)
            os.replace(tmp_dir, extra_dir)
        wheels += sorted(extra_dir.glob("*.whl"))
    return sorted(set(wheels))


def _pip_wheel(args: list[str], wheelhouse: Path) -> None:
    import subprocess

    cmd = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input",
           "--prefer-binary", "-w", str(wheelhouse), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()][-12:]
        raise BuildError("pip could not fetch the wheels for the image:\n" + "\n".join("  | " + t for t in tail))


def self_wheel() -> tuple[str, bytes]:
    """A wheel of the nb2pipe installed here (also from an editable install), byte-reproducible.

    nb2pipe goes into images from this wheel, never from an index: the image gets exactly the
    nb2pipe that ran the notebook.
    """
    import base64
    from importlib import metadata

    from nb2pipe._version import __version__

    pkg = Path(__file__).resolve().parents[1]  # the nb2pipe package folder
    dist_info = f"nb2pipe-{__version__}.dist-info"
    files: dict[str, bytes] = {}
    for f in sorted(pkg.rglob("*.py")):
        if "__pycache__" not in f.parts:
            files[f"nb2pipe/{f.relative_to(pkg).as_posix()}"] = f.read_bytes()
    try:
        meta = metadata.distribution("nb2pipe").read_text("METADATA")
    except metadata.PackageNotFoundError:
        meta = None
    meta = meta or f"Metadata-Version: 2.1\nName: nb2pipe\nVersion: {__version__}\n"
    files[f"{dist_info}/METADATA"] = meta.encode()
    files[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: nb2pipe\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return f"nb2pipe-{__version__}-py3-none-any.whl", buf.getvalue()


# --- building -------------------------------------------------------------------------------
def build_image(notebook_path, tag: str | None = None, base_image: str | None = None,
                requirements: str | None = None, push: bool = False, log=print,
                spec: PipelineSpec | None = None, wheelhouse: str | None = None) -> BuildResult:
    """Build (or reuse) the pipeline's image, and one per distinct `image:` base of its steps."""
    from nb2pipe._version import __version__
    from nb2pipe.compile.compiler import compile_notebook
    from nb2pipe.images.requirements import analyse
    from nb2pipe.store.workspace import store_root

    started = time.perf_counter()
    spec = spec or compile_notebook(notebook_path)
    folder = Path(notebook_path).resolve().parent
    client = docker_client()
    base = base_image or _default_base(log)
    if base_image:
        _require_local_or_pull(client, base_image)
    extra = None
    if requirements:
        try:
            extra = Path(requirements).read_bytes()
        except OSError as exc:
            raise UsageError(f"{requirements}: cannot read the requirements file ({exc.strerror})") from None
    req = analyse(spec, notebook_path)
    for w in req.warnings:
        log(str(w))
    tag = tag or default_tag(spec)
    build_root = store_root(notebook_path) / "build"
    wheels_dir = Path(wheelhouse) if wheelhouse else _default_wheelhouse()
    # No notebook name here: pipelines with the same imports share one dependency image.
    header = (f"generated by nb2pipe {__version__}: the distributions a pipeline's steps import and\n"
              "those the step runtime needs, pinned to the versions the notebook ran with")
    lock_text = req.lock_text(header)
    result = BuildResult(tag=tag, image_id="", deps_image="", base_image=base,
                         context_dir=str(build_root / spec.name), built=False, warnings=req.warnings)
    bases = [base] + sorted({c.options.image for c in spec.steps if c.options.image} - {base})
    images: dict[str, str] = {}
    for b in bases:
        recipe = deps_dockerfile(b, True) + deps_dockerfile(b, True, True)  # a changed recipe is a new image
        deps_input = f"{_image_id(client, b)}\0{lock_text}\0{recipe}\0".encode() + (extra or b"")
        deps_key = hashlib.sha256(deps_input).hexdigest()
        deps_tag = f"{DEPS_REPOSITORY}:{deps_key[:HASH_CHARS]}"
        deps_labels = {f"{LABEL}.deps": deps_key, f"{LABEL}.base": b, f"{LABEL}.version": __version__}
        if _image_with_labels(client, deps_tag, deps_labels) is None:
            older = _check_python(client, b)
            if older:
                log(f"warning: {b} has Python {older}, older than this machine's {platform.python_version()}; "
                    "installing the pinned wheels regardless of their Requires-Python")
            ctx = deps_context(lock_text, extra, wheels_dir, b, log, ignore_requires_python=bool(older))
            where = build_root / f"deps-{deps_key[:HASH_CHARS]}"
            ctx.write(where)
            log(f"building {deps_tag} (dependencies, from {b})")
            _docker_build(client, where, deps_tag, deps_labels, log, result)
        image_tag = tag if b == base else step_image_tag(tag, next(c for c in spec.steps if c.options.image == b))
        ctx = pipeline_context(spec, folder, req.local_modules, deps_tag)
        labels = {f"{LABEL}.spec-hash": spec.spec_hash, f"{LABEL}.version": __version__,
                  f"{LABEL}.context": ctx.digest, f"{LABEL}.pipeline": spec.name,
                  f"{LABEL}.notebook": spec.notebook, f"{LABEL}.deps": deps_key}
        existing = _image_with_labels(client, image_tag, labels)
        if existing is None:
            where = build_root / (spec.name if b == base else f"{spec.name}-{deps_key[:HASH_CHARS]}")
            ctx.write(where)
            log(f"building {image_tag}")
            image_id = _docker_build(client, where, image_tag, labels, log, result)
        else:
            image_id = existing.id
        images[b] = image_tag
        if b == base:
            result.image_id, result.deps_image = image_id, deps_tag
    for comp in spec.steps:
        result.step_images[comp.name] = images[comp.options.image] if comp.options.image else tag
    if result.built:
        _prune_replaced(client, spec.name)
    if push:
        for image_tag in sorted(set(images.values())):
            result.repo_digests += _push(client, image_tag, log)
    result.seconds = time.perf_counter() - started
    return result


def _prune_replaced(client, pipeline: str) -> None:
    """Drop this pipeline's images that a rebuild left untagged: each rebuild would otherwise
    leave a few hundred megabytes behind. Tagged images (other versions) are kept."""
    try:
        client.images.prune(filters={"dangling": True, "label": f"{LABEL}.pipeline={pipeline}"})
    except Exception:
        pass  # housekeeping only


def _default_wheelhouse() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nb2pipe" / "wheels"


def _default_base(log) -> str:
    from nb2pipe.images.baseimage import ensure_base_image

    return ensure_base_image(f"{sys.version_info.major}.{sys.version_info.minor}", log)


def _image_id(client, image: str) -> str:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(image).id
    except ImageNotFound:
        raise UsageError(f"image '{image}' is not on this machine (fix: build or pull it first)") from None


def _check_python(client, base: str) -> str | None:
    """The wheels are this interpreter's: the base image must run the same Python X.Y.

    Returns the image's full version when its patch level is older than ours (Debian's 3.11.2
    against a 3.11.7 here): some pins then declare a Requires-Python the image misses by a
    patch release, and the wheels themselves are the same ABI.
    """
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        out = client.containers.run(base, ["python3", "-c", "import platform; print(platform.python_version())"],
                                    remove=True, network_disabled=True, stdout=True, stderr=True)
    except Exception as exc:
        raise BuildError(f"base image '{base}' cannot run python3 ({explain(exc)}) (fix: pick a base image with "
                         f"Python {want}, or leave out --base-image)") from None
    full = out.decode().strip()
    have = ".".join(full.split(".")[:2])
    if have != want:
        raise BuildError(f"base image '{base}' has Python {have}, but the notebook's environment is Python {want} "
                         f"(fix: `nb2pipe base-image --python {want}`, or a --base-image with Python {want})")
    from packaging.version import Version

    return full if Version(full) < Version(platform.python_version()) else None


def _require_local_or_pull(client, image: str) -> None:
    from docker.errors import APIError, ImageNotFound

    try:
        client.images.get(image)
        return
    except ImageNotFound:
        pass
    ref = ImageRef.parse(image)
    try:
        client.images.pull(ref.repository, tag=ref.digest or ref.tag_or_default)
    except APIError as exc:
        raise UsageError(f"base image '{image}' is not on this machine and cannot be pulled "
                         f"({explain(exc)}) (fix: build or load it first, or leave out --base-image to use "
                         "the nb2pipe base image)") from None


def _image_with_labels(client, tag: str, labels: dict[str, str]):
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return None
    have = image.labels or {}
    return image if all(have.get(k) == v for k, v in labels.items()) else None


def _docker_build(client, folder: Path, tag: str, labels: dict, log, result: BuildResult) -> str:
    """Run one build, streaming its steps into `log`; the image id."""
    from docker.errors import APIError

    current_step = ""
    step_output: list[str] = []
    image_id = None
    result.built = True
    try:
        stream = client.api.build(path=str(folder), tag=tag, labels=labels, rm=True, forcerm=True, pull=False,
                                  decode=True)
        for chunk in stream:
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error", "")
                raise BuildError(_build_failure(tag, current_step, step_output, detail))
            if "ID" in (chunk.get("aux") or {}):
                image_id = chunk["aux"]["ID"]
            for line in chunk.get("stream", "").splitlines():
                if line.startswith("Step ") and " : " in line:
                    current_step, step_output = line.strip(), []
                    result.total_steps += 1
                    log(f"  {current_step[:160]}")
                elif "Using cache" in line:
                    result.cached_steps += 1
                elif line.startswith("Successfully built ") and image_id is None:
                    image_id = line.split()[-1]
                elif line.strip():
                    step_output.append(_ANSI.sub("", line).rstrip())
    except APIError as exc:
        raise BuildError(f"docker build of {tag} failed: {explain(exc)}") from None
    if image_id is None:
        raise BuildError(_build_failure(tag, current_step, step_output, "the build ended without an image"))
    return client.images.get(image_id).id


def _build_failure(tag: str, step: str, output: list[str], detail: str) -> str:
    """The failing Dockerfile step and the tail of its own output (pip's message)."""
    tail = [line for line in output if line.strip() and not line.startswith((" ---> ", "INFO: pip is looking"))][-15:]
    text = f"docker build of {tag} failed at {step or 'the first step'}: {detail.strip()}"
    if tail:
        text += "\n" + "\n".join("  | " + line for line in tail)
    return text


def _push(client, tag: str, log) -> list[str]:
    ref = ImageRef.parse(tag)
    errors = []
    for chunk in client.images.push(ref.repository, tag=ref.tag_or_default, stream=True, decode=True):
        if "error" in chunk:
            errors.append(chunk.get("errorDetail", {}).get("message") or chunk["error"])
    if errors:
        raise DockerError(f"push of {tag} failed: {errors[-1]} (fix: `docker login` to the registry, or tag the "
                          "image for a registry you can write to: --tag REGISTRY/NAME:TAG)")
    log(f"pushed {tag}")
    return list(client.images.get(tag).attrs.get("RepoDigests") or [])
