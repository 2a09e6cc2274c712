"""`nb2pipe build` for real (Docker daemon and the nb2pipe base image; CI starts both)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import uuid

import pytest
from nbbuild import NB2PIPE, cli_env, make_nb

import nb2pipe
import nb2pipe.images.build
from nb2pipe.images.build import BuildError, build_image, default_tag, deps_dockerfile, pipeline_dockerfile

pytestmark = pytest.mark.docker

QUIET = {"log": lambda line: None}


@pytest.fixture(autouse=True)
def readable_tmp(tmp_path):
    tmp_path.chmod(0o755)  # steps run as another uid than pytest's private folders allow


def client():
    from nb2pipe.images.daemon import docker_client

    return docker_client()


def layers(tag: str) -> list[str]:
    return client().images.get(tag).attrs["RootFS"]["Layers"]


def test_dockerfiles_put_dependencies_first_and_the_pipeline_last():
    deps = deps_dockerfile("base:1", wheels=True).splitlines()
    assert deps[1] == "FROM base:1 AS wheels" and "--no-index" in deps[3]
    assert any(line.startswith("COPY --from=wheels") for line in deps)  # only the venv leaves that stage
    app = pipeline_dockerfile("nb2pipe-deps:abc", "nb2pipe-0.1.0-py3-none-any.whl", has_work=True).splitlines()
    assert app[1] == "FROM nb2pipe-deps:abc"
    assert app[-2].startswith("COPY app/") and app[-1].startswith("COPY pipeline/")


def test_edit_rebuilds_only_the_last_layer(tmp_path, base_image, monkeypatch):
    monkeypatch.setenv("NB2PIPE_TEST_TOKEN", "s3cr3t-value-123")
    (tmp_path / "helpers.py").write_text("import numpy\n\ndef double(x):\n    return 2 * x\n")
    # A fresh marker: images of earlier test sessions must not make this build a no-op.
    marker = f"# {uuid.uuid4().hex}\n"
    cells = [("step:a", marker + "from helpers import double\nimport numpy as np\na = double(np.arange(3))"),
             ("step:b", "b = a.sum()")]
    nb = make_nb(tmp_path, cells)
    first = build_image(nb, base_image=base_image, **QUIET)
    assert first.tag == default_tag(nb2pipe.compile.compiler.compile_notebook(nb))
    image = client().images.get(first.tag)
    assert image.labels["org.nb2pipe.spec-hash"] == nb2pipe.compile.compiler.compile_notebook(nb).spec_hash
    assert image.labels["org.nb2pipe.version"] == nb2pipe.__version__

    unchanged = build_image(nb, base_image=base_image, **QUIET)
    assert not unchanged.built and unchanged.image_id == first.image_id

    make_nb(tmp_path, [cells[0], ("step:b", "b = int(a.sum()) + 1")])
    edited = build_image(nb, base_image=base_image, **QUIET)
    assert edited.built and edited.tag != first.tag
    old, new = layers(first.tag), layers(edited.tag)
    assert len(old) == len(new) and old[:-1] == new[:-1] and old[-1] != new[-1]
    # Every instruction between FROM and the final COPY of the spec came from the cache.
    dockerfile = (tmp_path / ".nb2pipe" / "build" / "nb" / "Dockerfile").read_text().splitlines()
    instructions = [line for line in dockerfile if line and not line.startswith("#")]
    assert edited.cached_steps == len(instructions) - 2

    # Nothing from the host's environment in the image, its history or the build context.
    config = json.dumps(client().images.get(edited.tag).attrs)
    history = json.dumps(client().images.get(edited.tag).history())
    assert "s3cr3t-value-123" not in config + history
    for path in (tmp_path / ".nb2pipe" / "build").rglob("*"):
        if path.is_file() and path.suffix != ".whl":
            assert b"s3cr3t-value-123" not in path.read_bytes()
            assert str(tmp_path).encode() not in path.read_bytes(), path

    # The image holds the spec, the step sources, the local module and the lock.
    files = _files_in(edited.tag, "/opt/nb2pipe")
    assert {"opt/nb2pipe/pipeline.json", "opt/nb2pipe/steps/a.py", "opt/nb2pipe/app/helpers.py",
            "opt/nb2pipe/requirements.lock"} <= files


def _files_in(tag: str, folder: str) -> set[str]:
    c = client().containers.create(tag, ["true"])
    try:
        stream, _ = c.get_archive(folder)
        data = b"".join(stream)
    finally:
        c.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {"opt/" + m.name for m in tf.getmembers()}


def test_unresolved_import_warns_and_requirements_fix_it(tmp_path, base_image):
    nb = make_nb(tmp_path, [("step:a", "import tomli_w\ntext = tomli_w.dumps({'a': 1})"),
                            ("step:b", "n = len(text)")])
    proc = subprocess.run([*NB2PIPE, "build", str(nb), "--base-image", base_image], env=cli_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "imports 'tomli_w'" in proc.stderr and "--requirements" in proc.stderr and "cell 1" in proc.stderr
    (tmp_path / "requirements.txt").write_text("tomli-w\n")
    built = build_image(nb, base_image=base_image, requirements=str(tmp_path / "requirements.txt"), **QUIET)
    record = nb2pipe.run(nb, store=tmp_path / "store", executor="docker", image=built.tag)
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    assert nb2pipe.load("text", store=tmp_path / "store") == 'a = 1\n'


def test_step_image_tag_builds_on_that_base(tmp_path, base_image):
    alt = "nb2pipe-test-altbase:1"
    client().images.get(base_image).tag(alt)
    nb = make_nb(tmp_path, [("step:a", "a = 1"), (f"step:b image:{alt}", "b = a + 1")])
    built = build_image(nb, base_image=base_image, **QUIET)
    assert built.step_images["a"] == built.tag
    assert built.step_images["b"] == built.tag + "-b"
    record = nb2pipe.run(nb, store=tmp_path / "store", executor="docker", base_image=base_image)
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    ids = {s.name: s.image_digest for s in record.steps}
    assert ids["a"] == client().images.get(built.tag).id
    assert ids["b"] == client().images.get(built.tag + "-b").id


def test_failed_build_names_the_dockerfile_step_and_pips_message(tmp_path, base_image):
    # A base whose pip is constrained to a version no lock can satisfy: pip itself refuses.
    broken = "nb2pipe-test-brokenpip:1"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo 'click==0.1' > /constraints.txt\n"
                                    "ENV PIP_CONSTRAINT=/constraints.txt\n")
    client().images.build(path=str(ctx), tag=broken, rm=True)
    nb = make_nb(tmp_path / "nb", [("step:a", "import click\na = 1")])
    (tmp_path / "nb").chmod(0o755)
    with pytest.raises(BuildError) as info:
        build_image(nb, base_image=broken, **QUIET)
    message = str(info.value)
    assert "failed at Step 3/" in message and "pip install" in message
    assert "ERROR:" in message and "click" in message  # pip's own words
    proc = subprocess.run([*NB2PIPE, "build", str(nb), "--base-image", broken], env=cli_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "ERROR:" in proc.stderr


def test_missing_base_image_is_a_clear_error(tmp_path):
    nb = make_nb(tmp_path, [("step:a", "a = 1")])
    proc = subprocess.run([*NB2PIPE, "build", str(nb), "--base-image", "nb2pipe-no-such-base:0"],
                          env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 2
    assert "nb2pipe-no-such-base:0" in proc.stderr and "Traceback" not in proc.stderr


def test_self_wheel_is_reproducible_and_installable_metadata():
    name, first = nb2pipe.images.build.self_wheel()
    _, second = nb2pipe.images.build.self_wheel()
    assert first == second and name == f"nb2pipe-{nb2pipe.__version__}-py3-none-any.whl"
    import zipfile

    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        names = zf.namelist()
        assert "nb2pipe/step_runtime.py" in names
        record = zf.read(f"nb2pipe-{nb2pipe.__version__}.dist-info/RECORD").decode()
    assert all(line.split(",")[0] in names for line in record.splitlines())
    assert not [n for n in names if n.startswith("/") or ".." in n.split("/")]


def test_push_to_an_unreachable_registry_is_a_clear_error(tmp_path, base_image):
    # No registry can run here without extra packages: a closed loopback port proves the push
    # path and its error; the image itself is built and kept.
    nb = make_nb(tmp_path, [("step:a", "a = 1")])
    proc = subprocess.run([*NB2PIPE, "build", str(nb), "--base-image", base_image, "--tag",
                           "127.0.0.1:9/nb2pipe-push-test:1", "--push"], env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "push of 127.0.0.1:9/nb2pipe-push-test:1 failed" in proc.stderr and "Traceback" not in proc.stderr
    assert client().images.get("127.0.0.1:9/nb2pipe-push-test:1")
