"""The docker executor, for real: a Docker daemon and the nb2pipe base image (CI starts both).

The example pipeline and small probes run in containers and are compared with local runs of the
same notebooks: artifacts, records, isolation (non-root, read-only inputs and notebook folder,
no host environment), limits, and that no container outlives a run however it ends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from nbbuild import NB2PIPE, ROOT, cli_env, make_nb

import nb2pipe
import nb2pipe.compile.compiler
import nb2pipe.images.build
from nb2pipe.model.records import RunStatus

pytestmark = [pytest.mark.docker, pytest.mark.kernel]

LABEL = "org.nb2pipe.run"


def containers_of(run_id: str | None = None) -> list:
    from nb2pipe.images.daemon import docker_client

    label = f"{LABEL}={run_id}" if run_id else LABEL
    return docker_client().containers.list(all=True, filters={"label": label})


def outputs(record) -> dict:
    return {s.name: {o.name: o.sha256 for o in s.outputs} for s in record.steps}


@pytest.fixture(autouse=True)
def readable_tmp(tmp_path):
    # pytest makes private (0700) folders; a step runs as another uid and needs to enter them.
    tmp_path.chmod(0o755)


@pytest.fixture(scope="module")
def example(tmp_path_factory, base_image):
    folder = tmp_path_factory.mktemp("example")
    folder.chmod(0o755)
    shutil.copy(ROOT / "examples" / "classifier.ipynb", folder / "classifier.ipynb")
    return folder / "classifier.ipynb"


def test_example_in_containers_equals_local_run(example, base_image):
    docker = nb2pipe.run(example, store=example.parent / "store-docker", executor="docker",
                         base_image=base_image, cache=False)
    assert docker.status == RunStatus.SUCCEEDED, [s.error for s in docker.steps]
    local = nb2pipe.run(example, store=example.parent / "store-local", cache=False)
    assert local.status == RunStatus.SUCCEEDED
    # Deterministic steps give byte-identical artifacts, models included.
    assert outputs(docker) == outputs(local)
    assert {m.name: m.value for m in docker.metrics} == {m.name: m.value for m in local.metrics}
    assert docker.environment["executor"] == "docker"
    from nb2pipe.images.daemon import docker_client

    spec = nb2pipe.compile.compiler.compile_notebook(example)
    image = docker_client().images.get(nb2pipe.images.build.default_tag(spec))
    assert {s.image_digest for s in docker.steps} == {image.id}
    for s in docker.steps:  # the executed notebook of every step is kept, as locally
        assert (example.parent / "store-docker" / s.output_notebook).is_file()
    assert containers_of(docker.id) == []

    # An unchanged re-run is served from the cache: no container starts at all.
    again = nb2pipe.run(example, store=example.parent / "store-docker", executor="docker", base_image=base_image)
    assert {s.status.value for s in again.steps} == {"cached"}
    # The local executor's cache is not the container's (another environment).
    assert again.step("load").cache_key != local.step("load").cache_key


PROBE = [
    ("step:make", "import numpy as np\nvalues = np.arange(10)"),
    ("step:probe cpu:0.5 memory:300Mi", "\n".join([
        "import os",
        "uid = os.getuid()",
        "total = int(values.sum())",
        "def writable(path):",
        "    try:",
        "        with open(path, 'w') as f:",
        "            f.write('x')",
        "        return True",
        "    except OSError:",
        "        return False",
        "cwd_writable = writable('probe.txt')",
        "inputs_writable = writable('/nb2pipe/in/new.txt')",
        "secret = os.environ.get('NB2PIPE_TEST_SECRET')",
        "def read(path):",
        "    try:",
        "        return open(path).read().strip()",
        "    except OSError:",
        "        return None",
        "memory_limit = read('/sys/fs/cgroup/memory/memory.limit_in_bytes') or read('/sys/fs/cgroup/memory.max')",
        "cpu_quota = read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us') or read('/sys/fs/cgroup/cpu.max')",
        "data_file = open('data.txt').read()",
    ])),
    ("step:report", "report = dict(uid=uid, total=total, cwd_writable=cwd_writable, inputs_writable=inputs_writable,"
                    " secret=secret, memory_limit=memory_limit, cpu_quota=cpu_quota, data_file=data_file)"),
]


def test_steps_are_isolated_non_root_and_limited(tmp_path, base_image, monkeypatch):
    nb = make_nb(tmp_path, PROBE)
    (tmp_path / "data.txt").write_text("beside the notebook")
    monkeypatch.setenv("NB2PIPE_TEST_SECRET", "hunter2")
    record = nb2pipe.run(nb, store=tmp_path / "store", executor="docker", base_image=base_image)
    assert record.status == RunStatus.SUCCEEDED, [s.error for s in record.steps]
    names = ["uid", "total", "cwd_writable", "inputs_writable", "secret", "memory_limit", "cpu_quota", "data_file"]
    report = {n: nb2pipe.load(n, store=tmp_path / "store") for n in names}
    assert report["uid"] != 0 and report["uid"] == (os.getuid() or 65534)
    assert report["total"] == 45
    assert report["data_file"] == "beside the notebook"  # the notebook folder is the working directory...
    assert report["cwd_writable"] is False  # ...read-only
    assert report["inputs_writable"] is False
    assert report["secret"] is None  # no host environment reaches a step
    assert str(300 * 1024 * 1024) in report["memory_limit"]
    assert report["cpu_quota"].split()[0] in ("50000", "50000 100000")
    assert not (tmp_path / "probe.txt").exists()
    assert containers_of(record.id) == []


def test_failed_step_names_cell_and_leaves_no_container(tmp_path, base_image):
    nb = make_nb(tmp_path, [
        ("step:a", "a = 1"),
        ("step:b", "b = a + 1\nraise ValueError('bad value')"),
        ("step:c", "c = b + 1"),
    ])
    record = nb2pipe.run(nb, store=tmp_path / "store", executor="docker", base_image=base_image)
    assert record.status == RunStatus.FAILED and record.exit_code == 1
    b = record.step("b")
    assert b.error.reason == "error" and b.error.ename == "ValueError" and b.error.cell_index == 2
    assert record.step("c").status.value == "skipped"
    nb_file = tmp_path / "store" / b.output_notebook
    assert "bad value" in nb_file.read_text()  # the executed notebook shows the error, as locally
    assert containers_of(record.id) == []


def test_timeout_kills_the_step(tmp_path, base_image):
    nb = make_nb(tmp_path, [("step:slow timeout:2", "import time\ntime.sleep(60)\nx = 1")])
    started = time.monotonic()
    record = nb2pipe.run(nb, store=tmp_path / "store", executor="docker", base_image=base_image)
    assert time.monotonic() - started < 40
    assert record.exit_code == 124 and record.step("slow").error.reason == "timeout"
    assert containers_of(record.id) == []


def test_out_of_memory_is_reported(tmp_path, base_image):
    nb = make_nb(tmp_path, [("step:hog memory:128Mi", "blocks = [bytearray(50 * 2**20) for _ in range(20)]")])
    record = nb2pipe.run(nb, store=tmp_path / "store", executor="docker", base_image=base_image)
    assert record.status == RunStatus.FAILED
    error = record.step("hog").error
    assert error.reason in ("kernel_died", "error"), error
    assert containers_of(record.id) == []


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cancelled_run_removes_its_containers(tmp_path, base_image, signum, code):
    nb = make_nb(tmp_path, [("step:a", "a = 1"), ("step:sleepy", "import time\ntime.sleep(120)\nb = a")])
    # Build first, so the cancel hits a running step rather than the build.
    nb2pipe.images.build.build_image(nb, base_image=base_image, log=lambda line: None)
    proc = subprocess.Popen([*NB2PIPE, "run", str(nb), "--executor", "docker", "--base-image", base_image,
                             "--store", str(tmp_path / "store")], env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            running = [c for c in containers_of() if c.labels.get("org.nb2pipe.step") == "sleepy"
                       and c.labels.get("org.nb2pipe.store") and str(tmp_path) in json.dumps(c.attrs["Mounts"])]
            if running and (tmp_path / "store").exists() and list((tmp_path / "store").rglob("job.json")):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the step container never started")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    run_id = running[0].labels[LABEL]
    assert containers_of(run_id) == []


def test_sigkilled_runner_containers_are_reaped_by_next_run(tmp_path, base_image):
    nb = make_nb(tmp_path, [("step:sleepy", "import time\ntime.sleep(120)\nb = 1")])
    nb2pipe.images.build.build_image(nb, base_image=base_image, log=lambda line: None)
    store = tmp_path / "store"
    proc = subprocess.Popen([*NB2PIPE, "run", str(nb), "--executor", "docker", "--store", str(store),
                             "--base-image", base_image], env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not list(store.rglob("job.json")):
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    left = [c for c in containers_of() if str(store) in json.dumps(c.attrs["Mounts"])]
    assert left, "expected the SIGKILLed runner's container to be left running"
    fixed = make_nb(tmp_path, [("step:sleepy", "b = 1")])
    record = nb2pipe.run(fixed, store=store, executor="docker", base_image=base_image)
    assert record.status == RunStatus.SUCCEEDED
    assert [c for c in containers_of() if str(store) in json.dumps(c.attrs["Mounts"])] == []


def test_image_option_and_missing_image(tmp_path, base_image):
    nb = make_nb(tmp_path, [("step:a", "a = 41"), ("step:b", "b = a + 1")])
    built = nb2pipe.images.build.build_image(nb, base_image=base_image, tag="nb2pipe-test-explicit:1",
                                             log=lambda line: None)
    record = nb2pipe.run(nb, store=tmp_path / "store", executor="docker", image="nb2pipe-test-explicit:1")
    assert record.status == RunStatus.SUCCEEDED
    assert {s.image_digest for s in record.steps} == {built.image_id}
    proc = subprocess.run([*NB2PIPE, "run", str(nb), "--executor", "docker", "--image", "nb2pipe-no-such:1",
                           "--store", str(tmp_path / "store")], env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 2
    assert "nb2pipe-no-such:1" in proc.stderr and "nb2pipe build" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_private_notebook_folder_is_a_clear_error(tmp_path, base_image):
    folder = tmp_path / "private"
    nb = make_nb(folder, [("step:a", "a = 1")])
    folder.chmod(0o700)
    if os.getuid() != 0:
        pytest.skip("steps run as the invoking user, who can read their own folder")
    proc = subprocess.run([*NB2PIPE, "run", str(nb), "--executor", "docker", "--base-image", base_image,
                           "--store", str(tmp_path / "store")], env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 2
    assert "chmod o+rx" in proc.stderr and "Traceback" not in proc.stderr


def test_no_daemon_is_one_line_exit_2(tmp_path):
    nb = make_nb(tmp_path, [("step:a", "a = 1")])
    env = {**cli_env(), "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    for args in (["run", str(nb), "--executor", "docker"], ["build", str(nb)]):
        proc = subprocess.run([*NB2PIPE, *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "no Docker daemon answers" in lines[0] and "dockerd" in lines[0]


def test_runtime_entry_point_is_lean():
    """The in-image runtime must not drag in docker, kfp or the run store."""
    code = ("import sys, nb2pipe.step_runtime, nb2pipe.runtime.job, nb2pipe.runtime.kfp_executor, "
            "nb2pipe.runtime.execute, nb2pipe.runtime.engine; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'kfp', 'sqlite3', 'rich')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cells_and_output_of_a_step_in_a_container_are_events_and_logs(tmp_path, base_image):
    """A step in a container is watched like a local one: cell and output events (through the
    attempt folder's events.jsonl), its output.log, and cancel of this run only."""
    nb = make_nb(tmp_path / "project", [
        ("step:talk", "import sys, time\nfor i in range(3):\n    print('epoch', i, flush=True)\n    time.sleep(0.2)"),
        (None, "print('warn', file=sys.stderr)\nx = 1"),
        ("step:wait", "import time\nprint('waiting', flush=True)\ntime.sleep(120)\ny = x"),
    ])
    (tmp_path / "project").chmod(0o755)
    run = nb2pipe.start(nb, store=tmp_path / "store", executor="docker", base_image=base_image)
    seen: list[dict] = []
    run.subscribe(seen.append)
    deadline = time.monotonic() + 240
    while not any(e["type"] == "output" and e["step"] == "wait" for e in seen):
        assert time.monotonic() < deadline and not run.done(), [e for e in seen if e["type"] == "run"]
        time.sleep(0.1)
    run.cancel()
    record = run.wait(timeout=60)
    assert record.status == RunStatus.CANCELLED and record.step("talk").status.value == "succeeded"
    cells = [(e["cell_index"], e["cells"]) for e in seen if e["type"] == "cell" and e["step"] == "talk"]
    assert cells == [(1, 2), (2, 2)]
    talk = "".join(e["text"] for e in seen if e["type"] == "output" and e["step"] == "talk")
    assert talk == "epoch 0\nepoch 1\nepoch 2\nwarn\n"
    log = tmp_path / "store" / "runs" / run.id / "talk" / "attempt-1" / "output.log"
    assert log.read_text() == talk
    assert [e["status"] for e in seen if e["type"] == "step" and e["step"] == "wait"][-1] == "cancelled"
    deadline = time.monotonic() + 30
    while containers_of(run.id):
        assert time.monotonic() < deadline, "a container of the cancelled run is left"
        time.sleep(0.5)
