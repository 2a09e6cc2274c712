"""The in-image KFP runtime (nb2pipe/kfp_runtime.py) and the proof that exported pipelines run.

* unit tests of the naming and typing rules;
* the runtime started as KFP starts it (`python -m nb2pipe.step_runtime --step S --executor-input
  JSON`), with executor inputs made by kfp.local's own code from the exported YAML;
* the exported YAML run by kfp.local's DockerRunner with each container replaced by the same
  command on this machine (fast, no image needed), compared with a local `nb2pipe.run`;
* the proof (docker): the YAML run by kfp.local's DockerRunner on the image `nb2pipe build` made,
  compared with a local run: the same metrics and the same artifact bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from nbbuild import ROOT, make_nb

from nb2pipe.model.spec import ParameterSpec
from nb2pipe.runtime.kfp_executor import _local_path as local_path
from nb2pipe.runtime.kfp_executor import input_name, output_name, safe_name, typed

# kfp.local honours neither resources nor display names, and says so for every task.
pytestmark = pytest.mark.filterwarnings("ignore:Task .* have no effect in the current local runner:UserWarning")

# Parameters of every type, a fan-out after make_data (fit, summarise, audit) joined by report,
# options on two steps, an after: edge without data, and a metrics cell.
SMALL = [
    ("setup", "import numpy as np\nimport pandas as pd"),
    ("parameters", "n_rows = 6\nscale = 1.5\nlabel = 'run'\nweights = [1, 2, 3]\nflags = {'center': True, 'k': 2}"),
    ("step:make_data", "df = pd.DataFrame({'x': np.arange(n_rows, dtype=float), 'y': np.arange(n_rows) * scale})"),
    ("step:fit cpu:500m memory:512Mi",
     "from sklearn.linear_model import LinearRegression\nmodel = LinearRegression().fit(df[['x']], df['y'])"),
    ("step:summarise cache:off retries:1 timeout:300",
     "total = float(df['y'].sum()) * sum(weights)\nnote = f\"{label}:{n_rows}:{flags['k']}:{flags['center']}\""),
    ("step:audit after:make_data", "print('audit', label)"),
    ("step:report", "score = float(model.score(df[['x']], df['y']))\nprint(note, score)"),
    ("metrics", "r2 = score\ngrand_total = total"),
]
# Overrides of every kind: KFP carries them as JSON numbers, the runtime types them back.
OVERRIDES = {"n_rows": 5, "label": "kfp", "weights": [2, 2], "flags": {"center": False, "k": 3}}


# --- rules --------------------------------------------------------------------------------------

class Comp:
    def __init__(self, outputs):
        self.outputs = outputs


def test_names():
    assert [safe_name(n) for n in ("df", "X_train", "_cache", "größe", "__x")] == [
        "df", "X_train", "v_cache", "gr__e", "v__x"]
    assert [output_name(n) for n in ("df", "metrics", "executed_notebook", "_x")] == [
        "df", "metrics_out", "executed_notebook_out", "v_x"]
    step = Comp(["df", "metrics"])
    assert [input_name(n, step) for n in ("df", "model", "metrics", "notebook_html")] == [
        "df_in", "model", "metrics_in", "notebook_html_in"]


def test_parameter_values_are_typed_like_the_defaults():
    def p(kind, default):
        return ParameterSpec("p", kind, default, 1)

    assert typed(p("int", 1), 7.0) == 7 and type(typed(p("int", 1), 7.0)) is int
    assert type(typed(p("float", 1.0), 2)) is float
    assert typed(p("bool", True), False) is False and typed(p("str", ""), "x") == "x"
    assert typed(p("list", [1, 2]), [1.0, 2.0]) == [1, 2] and type(typed(p("list", [1, 2]), [3.0])[0]) is int
    assert type(typed(p("list", [1.5]), [3.0])[0]) is float
    assert typed(p("list", ["a", 1]), ["b", 2.0]) == ["b", 2]
    got = typed(p("dict", {"k": 2, "f": 0.5, "n": {"i": 1}}), {"k": 3.0, "f": 1.0, "n": {"i": 4.0}, "new": 5.0})
    assert got == {"k": 3, "f": 1.0, "n": {"i": 4}, "new": 5.0}
    assert type(got["k"]) is int and type(got["f"]) is float and type(got["n"]["i"]) is int


def test_remote_uris_map_to_the_launcher_mounts():
    assert local_path("gs://bucket/a/b") == "/gcs/bucket/a/b"
    assert local_path("s3://bucket/a") == "/s3/bucket/a"
    assert local_path("minio://mlpipeline/v2/x") == "/minio/mlpipeline/v2/x"
    assert local_path("/tmp/root/task/df") == "/tmp/root/task/df"


# --- helpers ------------------------------------------------------------------------------------

def spec_file(nb: Path, folder: Path) -> Path:
    """The in-image spec (/opt/nb2pipe/pipeline.json) for a run on this machine."""
    from nb2pipe.compile.compiler import compile_notebook

    path = folder / "pipeline.json"
    path.write_text(compile_notebook(nb).to_json(), encoding="utf-8")
    return path


def executor_input(doc: dict, task: str, arguments: dict, task_root: Path) -> tuple[str, dict]:
    """The executor input JSON kfp.local would give `task`, and the task's container env."""
    from google.protobuf import json_format
    from kfp.local import executor_input_utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    name = doc["root"]["dag"]["tasks"][task]["componentRef"]["name"]
    component = json_format.ParseDict(doc["components"][name], pipeline_spec_pb2.ComponentSpec())
    message = executor_input_utils.construct_executor_input(component, arguments, str(task_root), False)
    container = doc["deploymentSpec"]["executors"][doc["components"][name]["executorLabel"]]["container"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    return json.dumps(executor_input_utils.executor_input_to_dict(message, component)), env


def run_runtime(spec: Path, step: str, payload: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nb2pipe.step_runtime", "--spec", str(spec), "--step", step,
                           "--executor-input", payload], env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def kfp_outputs(pipeline_root: Path) -> dict[str, dict[str, dict]]:
    """task -> artifact name -> {"uri", "metadata"}, from the executor outputs a kfp.local run left."""
    found: dict = {}
    for path in sorted(pipeline_root.glob("*/*/executor_output.json")):
        written = json.loads(path.read_text())
        found[path.parent.name] = {name: entry["artifacts"][0] for name, entry in written["artifacts"].items()}
    return found


def assert_same_as_local_run(nb: Path, pipeline_root: Path, record) -> None:
    """Metrics and every passed artifact of the kfp.local run equal those of the local run."""
    from nb2pipe.compile.compiler import compile_notebook

    spec = compile_notebook(nb)
    outputs = kfp_outputs(pipeline_root)
    assert sorted(outputs) == sorted(c.kfp_name for c in spec.steps)
    local = {(s.name, ref.name): ref for s in record.steps for ref in s.outputs}
    for comp in spec.steps:
        task = outputs[comp.kfp_name]
        assert {"executed_notebook", "notebook_html"} <= set(task)
        notebook = json.loads(Path(task["executed_notebook"]["uri"]).read_text())
        assert notebook["metadata"]["nb2pipe"]["step"] == comp.name
        assert "<html" in Path(task["notebook_html"]["uri"]).read_text()[:2000].lower()
        for var in comp.outputs:
            artifact = task[output_name(var)]
            ref = local[(comp.name, var)]
            assert artifact["metadata"]["serializer"] == ref.serializer, (comp.name, var)
            assert sha256_of(artifact["uri"]) == artifact["metadata"]["sha256"] == ref.sha256, (comp.name, var)
    metrics = {name: value for task in outputs.values() for name, value in task.get("metrics", {})
               .get("metadata", {}).items()}
    assert metrics == {m.name: m.value for m in record.metrics}
    assert metrics  # the notebooks here all have a metrics cell


@pytest.fixture
def kfp_local(tmp_path):
    """kfp.local's global session, reset afterwards."""
    from kfp import local
    from kfp.local.config import LocalExecutionConfig

    def init(runner, root: Path):
        local.init(runner=runner, pipeline_root=str(root), workspace_root=str(tmp_path / "kfp-workspace"))

    yield init
    LocalExecutionConfig.instance = None


def load_pipeline(path: Path):
    from kfp import components

    return components.load_component_from_file(str(path))


# --- the runtime, started as KFP starts it -----------------------------------------------------------

@pytest.mark.kernel
def test_runtime_publishes_outputs_notebook_and_metrics(tmp_path):
    from nb2pipe.kubeflow.ir import compile_pipeline

    nb = make_nb(tmp_path, [("parameters", "k = 2"), ("step:make", "values = list(range(k))\nprint('made', values)"),
                            ("metrics", "count = len(values)\nfirst = values[0]"), ("step:use", "print(values)")])
    doc = yaml.safe_load(compile_pipeline(nb, artifact_types={}))
    payload, env = executor_input(doc, "make", {"k": 3}, tmp_path / "root" / "make")
    proc = run_runtime(spec_file(nb, tmp_path), "make", payload, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "made [0, 1, 2]" in proc.stdout  # cell output reaches the task log
    written = json.loads((tmp_path / "root" / "make" / "executor_output.json").read_text())
    artifacts = {name: entry["artifacts"][0] for name, entry in written["artifacts"].items()}
    assert sorted(artifacts) == ["executed_notebook", "metrics", "notebook_html", "values"]
    values = artifacts["values"]
    assert values["uri"] == str(tmp_path / "root" / "make" / "values") and values["name"] == "values"
    assert values["metadata"]["serializer"] == "pickle" and values["metadata"]["sha256"] == sha256_of(values["uri"])
    assert pickle.loads(Path(values["uri"]).read_bytes()) == [0, 1, 2]  # k=3 came in as the int 3
    assert artifacts["metrics"]["metadata"] == {"count": 3, "first": 0}
    assert json.loads(Path(artifacts["metrics"]["uri"]).read_text()) == {"count": 3, "first": 0}
    assert json.loads(Path(artifacts["executed_notebook"]["uri"]).read_text())["nbformat"] == 4
    assert artifacts["notebook_html"]["metadata"]["status"] == "succeeded"


@pytest.mark.kernel
def test_failed_step_still_publishes_its_notebook_and_names_the_cell(tmp_path):
    from nb2pipe.kubeflow.ir import compile_pipeline

    nb = make_nb(tmp_path, [("step:boom", "x = 1\nraise ValueError('bad row 7')"), ("step:after", "print(x)")])
    doc = yaml.safe_load(compile_pipeline(nb, artifact_types={}))
    task_root = tmp_path / "root" / "boom"
    payload, env = executor_input(doc, "boom", {}, task_root)
    proc = run_runtime(spec_file(nb, tmp_path), "boom", payload, env, tmp_path)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("nb2pipe:")]
    assert lines == ["nb2pipe: step 'boom' failed: ValueError: bad row 7 at cell 1"], proc.stderr
    written = json.loads((task_root / "executor_output.json").read_text())["artifacts"]
    assert sorted(written) == ["executed_notebook", "notebook_html"]
    meta = written["executed_notebook"]["artifacts"][0]["metadata"]
    assert meta["status"] == "failed" and meta["failed_cell"] == 1
    executed = (task_root / "executed_notebook").read_text()
    assert "bad row 7" in executed
    assert "bad row 7" in (task_root / "notebook_html").read_text()


@pytest.mark.kernel
def test_timeout_tag_is_enforced_by_the_runtime(tmp_path):
    from nb2pipe.kubeflow.ir import compile_pipeline

    nb = make_nb(tmp_path, [("step:slow timeout:2", "import time\nstarted = 1\ntime.sleep(60)"),
                            ("step:next", "print(started)")])
    doc = yaml.safe_load(compile_pipeline(nb, artifact_types={}))
    task_root = tmp_path / "root" / "slow"
    payload, env = executor_input(doc, "slow", {}, task_root)
    assert env["NB2PIPE_TIMEOUT"] == "2"
    started = time.monotonic()
    proc = run_runtime(spec_file(nb, tmp_path), "slow", payload, env, tmp_path)
    assert proc.returncode == 124, proc.stderr
    assert time.monotonic() - started < 40
    assert "timed out after 2 s" in proc.stderr
    # The notebook artifact is the step as far as it ran, with a banner at the cell that was running.
    import nbformat

    kept = nbformat.read(str(task_root / "executed_notebook"), as_version=4)
    banners = [c for c in kept.cells if "nb2pipe-interrupted" in c.metadata.get("tags", [])]
    assert len(banners) == 2 and "timed out after 2 s while running cell 1" in banners[0].source
    assert "timed out after 2 s" in (task_root / "notebook_html").read_text()


@pytest.mark.kernel
def test_runtime_refuses_an_image_with_another_version_of_the_step(tmp_path):
    from nb2pipe.kubeflow.ir import compile_pipeline

    nb = make_nb(tmp_path, [("step:a", "x = 1"), ("step:b", "print(x)")])
    doc = yaml.safe_load(compile_pipeline(nb, artifact_types={}))
    (tmp_path / "exported").mkdir()
    spec = spec_file(nb, tmp_path / "exported")
    make_nb(tmp_path, [("step:a", "x = 2"), ("step:b", "print(x)")])  # the notebook changed after the export
    (tmp_path / "rebuilt").mkdir()
    payload, env = executor_input(doc, "a", {}, tmp_path / "root" / "a")
    proc = run_runtime(spec_file(nb, tmp_path / "rebuilt"), "a", payload, env, tmp_path)
    assert proc.returncode == 2
    assert "different version of step 'a'" in proc.stderr
    assert "rebuild with nb2pipe build and export again" in proc.stderr
    assert run_runtime(spec, "a", payload, env, tmp_path).returncode == 0  # the matching spec runs


@pytest.mark.kernel
def test_input_artifact_without_nb2pipe_metadata_is_refused(tmp_path):
    from kfp import dsl

    from nb2pipe.kubeflow.ir import compile_pipeline

    nb = make_nb(tmp_path, [("step:a", "x = 1"), ("step:b", "print(x)")])
    doc = yaml.safe_load(compile_pipeline(nb, artifact_types={}))
    (tmp_path / "x").write_bytes(b"not from nb2pipe")
    foreign = dsl.Artifact(name="x", uri=str(tmp_path / "x"), metadata={})
    payload, env = executor_input(doc, "b", {"x": foreign}, tmp_path / "root" / "b")
    proc = run_runtime(spec_file(nb, tmp_path), "b", payload, env, tmp_path)
    assert proc.returncode == 2
    assert "input artifact 'x' has no nb2pipe serializer in its metadata" in proc.stderr


# --- kfp.local, containers replaced by the same command on this machine --------------------------

@pytest.fixture
def on_this_machine(monkeypatch):
    """Make kfp.local's DockerRunner run each task's command here: the in-image spec comes from
    NB2PIPE_SPEC, the working directory is the notebook's folder (as /opt/nb2pipe/app is)."""
    from kfp.local import docker_task_handler, status

    where: dict = {}

    def run(self):
        assert self.full_command[:3] == ["python3", "-m", "nb2pipe.step_runtime"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self.env_vars, "NB2PIPE_SPEC": str(where["spec"])}
        code = subprocess.call([sys.executable, *self.full_command[1:]], env=env, cwd=where["cwd"])
        return status.Status.SUCCESS if code == 0 else status.Status.FAILURE

    monkeypatch.setattr(docker_task_handler.DockerTaskHandler, "run", run)
    return where


@pytest.mark.kernel
def test_exported_pipeline_runs_under_kfp_local_like_a_local_run(tmp_path, kfp_local, on_this_machine):
    from kfp import local

    import nb2pipe
    from nb2pipe.kubeflow.ir import export

    folder = tmp_path / "project"
    nb = make_nb(folder, SMALL)
    record = nb2pipe.run(nb, parameters=OVERRIDES, store=tmp_path / "store")
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    yaml_path = tmp_path / "small.yaml"
    export(nb, output=yaml_path, store=tmp_path / "store")
    on_this_machine.update(spec=spec_file(nb, tmp_path), cwd=folder)

    kfp_local(local.DockerRunner(), tmp_path / "kfp-root")
    load_pipeline(yaml_path)(**OVERRIDES)
    assert_same_as_local_run(nb, tmp_path / "kfp-root", record)
    note = kfp_outputs(tmp_path / "kfp-root")["summarise"]["note"]
    assert pickle.loads(Path(note["uri"]).read_bytes()) == "kfp:5:3:False"  # ints stayed ints


# --- the proof: kfp.local DockerRunner on the image `nb2pipe build` made -------------------------

@pytest.fixture(scope="session")
def built_pipelines(tmp_path_factory, base_image):
    """The classifier example and SMALL, each in its own folder, with the image `nb2pipe build`
    makes (built once per session; docker's layer cache makes a rebuild quick)."""
    from nb2pipe.images.build import build_image

    top = tmp_path_factory.mktemp("kfp-proof")
    classifier = top / "classifier" / "classifier.ipynb"
    classifier.parent.mkdir()
    shutil.copy(ROOT / "examples" / "classifier.ipynb", classifier)
    small = make_nb(top / "small", SMALL, name="small.ipynb")
    lines: list[str] = []
    images = {}
    for nb in (classifier, small):
        images[nb] = build_image(nb, base_image=base_image, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    return top, images


@pytest.mark.docker
@pytest.mark.parametrize("which", ["classifier", "small"])
def test_exported_pipeline_runs_under_docker_runner_on_the_built_image(built_pipelines, kfp_local, which,
                                                                       monkeypatch):
    from kfp import local

    import nb2pipe
    from nb2pipe.kubeflow.ir import export

    top, images = built_pipelines
    nb = next(p for p in images if p.parent.name == which)
    parameters = OVERRIDES if which == "small" else {}
    work = top / f"run-{which}-{time.monotonic_ns()}"
    # kfp.local's containers get no host environment: the local reference run must not pick other
    # BLAS kernels (they change a logistic regression's last bits) than the containers do.
    from nb2pipe.execution.docker import NUMERIC_ENV

    for name in NUMERIC_ENV:
        monkeypatch.delenv(name, raising=False)
    record = nb2pipe.run(nb, parameters=parameters, store=work / "store")
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    yaml_path = work / "pipeline.yaml"
    result = export(nb, output=yaml_path, store=work / "store")
    assert result.image == images[nb].tag  # the export references exactly the image build made

    kfp_local(local.DockerRunner(), work / "kfp-root")
    started = time.monotonic()
    load_pipeline(yaml_path)(**parameters)
    took = time.monotonic() - started
    assert_same_as_local_run(nb, work / "kfp-root", record)
    print(f"{which}: {len(record.steps)} steps under kfp.local DockerRunner in {took:.1f} s")
