"""`nb2pipe export --to kfp`: the KFP v2 IR YAML, its structure, determinism, names, errors, --py.

Golden files: tests/golden/kfp/<fixture>.yaml hold the exact export of tests/notebooks/<fixture>.ipynb
(artifact types given explicitly, so no run store is involved). After an intended change, regenerate
them and review the diff:

    NB2PIPE_UPDATE_GOLDEN=1 python -m pytest tests/test_kubeflow.py -k golden

Running the exported pipelines (kfp.local) is in test_kfp_runtime.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from core_helpers import GOLDEN, NOTEBOOKS, ROOT
from nbbuild import cli, make_nb

from nb2pipe.errors import ExitCode, PipelineInvalid, UsageError
from nb2pipe.kubeflow.ir import compile_pipeline, export
from nb2pipe.kubeflow.plan import _cpu, _memory

KFP_GOLDEN = GOLDEN / "kfp"
# Types as a local run would find them, so the goldens show Dataset and Model artifacts too.
GOLDEN_TYPES = {
    "ml_pipeline": {"raw": "Dataset", "model_rf": "Model", "model_lr": "Model"},
    "fanout": {},
    "kale_pipeline": {"train_df": "Dataset", "model": "Model"},
}


def exported(name: str, **kwargs) -> str:
    return compile_pipeline(NOTEBOOKS / f"{name}.ipynb", artifact_types=GOLDEN_TYPES.get(name, {}), **kwargs)


def parsed(text: str) -> dict:
    return yaml.safe_load(text)


def tasks_of(doc: dict) -> dict:
    return doc["root"]["dag"]["tasks"]


def executor(doc: dict, task: str) -> dict:
    label = doc["components"][tasks_of(doc)[task]["componentRef"]["name"]]["executorLabel"]
    return doc["deploymentSpec"]["executors"][label]["container"]


def env_of(container: dict) -> dict:
    return {e["name"]: e["value"] for e in container.get("env", [])}


# --- golden files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GOLDEN_TYPES))
def test_golden_kfp_yaml(name):
    text = exported(name)
    golden = KFP_GOLDEN / f"{name}.yaml"
    if os.environ.get("NB2PIPE_UPDATE_GOLDEN") == "1":
        KFP_GOLDEN.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"missing {golden.name}: run NB2PIPE_UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == golden.read_text(encoding="utf-8"), (
        f"{name}: export differs from tests/golden/kfp/{name}.yaml (if intended, regenerate with "
        "NB2PIPE_UPDATE_GOLDEN=1 and review the diff)")


def test_every_kfp_golden_file_is_tested():
    assert sorted(p.stem for p in KFP_GOLDEN.glob("*.yaml")) == sorted(GOLDEN_TYPES)


@pytest.mark.parametrize("name", sorted(GOLDEN_TYPES))
def test_golden_files_load_back_with_kfp(name):
    from kfp import components

    component = components.load_component_from_file(str(KFP_GOLDEN / f"{name}.yaml"))
    assert component.name == name.replace("_", "-")


# --- structure ------------------------------------------------------------------------------------

def test_ml_pipeline_structure():
    doc = parsed(exported("ml_pipeline"))
    tasks = tasks_of(doc)
    assert sorted(tasks) == ["evaluate", "features", "load", "train-lr", "train-rf"]
    assert {t: sorted(v.get("dependentTasks", [])) for t, v in tasks.items()} == {
        "load": [], "features": ["load"], "train-rf": ["features"], "train-lr": ["features"],
        "evaluate": ["features", "train-lr", "train-rf"]}
    # Task display names are the step names; component/task names their KFP form.
    assert tasks["train-rf"]["taskInfo"]["name"] == "train_rf"

    params = doc["root"]["inputDefinitions"]["parameters"]
    assert {n: p["parameterType"] for n, p in params.items()} == {
        "data_url": "STRING", "test_size": "NUMBER_DOUBLE", "seed": "NUMBER_INTEGER",
        "n_estimators": "NUMBER_INTEGER", "feature_columns": "LIST"}
    assert params["feature_columns"]["defaultValue"] == ["tenure", "monthly_charges", "support_calls"]
    assert params["test_size"]["defaultValue"] == 0.2 and params["seed"]["defaultValue"] == 42
    assert all(p["isOptional"] for p in params.values())
    assert tasks["load"]["inputs"]["parameters"] == {"data_url": {"componentInputParameter": "data_url"}}

    # Artifacts: typed from the values' serializers, wired producer -> consumer.
    features = doc["components"]["comp-features"]
    assert features["inputDefinitions"]["artifacts"]["raw"]["artifactType"]["schemaTitle"] == "system.Dataset"
    rf_out = doc["components"]["comp-train-rf"]["outputDefinitions"]["artifacts"]
    assert rf_out["model_rf"]["artifactType"]["schemaTitle"] == "system.Model"
    assert rf_out["executed_notebook"]["artifactType"]["schemaTitle"] == "system.Artifact"
    assert rf_out["notebook_html"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert tasks["evaluate"]["inputs"]["artifacts"]["model_rf"] == {
        "taskOutputArtifact": {"outputArtifactKey": "model_rf", "producerTask": "train-rf"}}
    evaluate_out = doc["components"]["comp-evaluate"]["outputDefinitions"]["artifacts"]
    assert evaluate_out["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert "metrics" not in rf_out

    # Resources, retries, caching, timeout, image.
    load = executor(doc, "load")
    assert load["resources"]["resourceCpuRequest"] == load["resources"]["resourceCpuLimit"] == "1"
    assert load["resources"]["resourceMemoryRequest"] == load["resources"]["resourceMemoryLimit"] == "2Gi"
    rf = executor(doc, "train-rf")
    assert rf["resources"]["resourceCpuLimit"] == "4" and rf["resources"]["resourceMemoryLimit"] == "8Gi"
    assert tasks["train-rf"]["retryPolicy"]["maxRetryCount"] == 2
    assert "retryPolicy" not in tasks["load"]
    assert env_of(rf)["NB2PIPE_TIMEOUT"] == "3600"
    assert "NB2PIPE_TIMEOUT" not in env_of(load)
    assert tasks["train-lr"]["cachingOptions"] == {}  # cache:off: enableCache false (proto default)
    assert tasks["load"]["cachingOptions"] == {"enableCache": True}
    image = load["image"]
    assert image.startswith("nb2pipe-ml-pipeline:")
    assert executor(doc, "evaluate")["image"] == f"{image}-evaluate"  # image:python:3.11-slim step
    assert load["command"] == ["python3", "-m", "nb2pipe.step_runtime"]
    assert load["args"] == ["--step", "load", "--executor-input", "{{$}}"]


def test_gpu_limit_and_kale_tags():
    doc = parsed(exported("kale_pipeline"))
    train = executor(doc, "train-model")
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert train["resources"]["accelerator"]["resourceCount"] == "1"
    assert train["resources"]["resourceMemoryLimit"] == "4Gi"
    assert tasks_of(doc)["evaluate"]["cachingOptions"] == {}  # cache:disabled


def test_fanout_structure():
    doc = parsed(exported("fanout"))
    tasks = tasks_of(doc)
    shards = [f"shard-{i}" for i in range(8)]
    assert all(tasks[s]["dependentTasks"] == ["prepare"] for s in shards)
    assert sorted(tasks["combine"]["dependentTasks"]) == shards
    # Each shard reads only the parameters it uses.
    assert set(tasks["shard-0"]["inputs"]["parameters"]) == {"threshold"}
    assert set(tasks["combine"]["inputs"]["parameters"]) == {"n_rows"}


def test_after_edge_without_data_is_a_dependency(tmp_path):
    nb = make_nb(tmp_path, [("step:a", "x = 1"), ("step:b", "print('b')"), ("step:c after:b", "y = x + 1")])
    c = tasks_of(parsed(compile_pipeline(nb, artifact_types={})))["c"]
    assert sorted(c["dependentTasks"]) == ["a", "b"]
    assert list(c["inputs"]["artifacts"]) == ["x"]  # b only orders c: no data from it


def test_default_image_is_the_build_tag_and_image_option_overrides(tmp_path):
    from nb2pipe.compile.compiler import compile_notebook
    from nb2pipe.images.build import default_tag

    nb = NOTEBOOKS / "fanout.ipynb"
    doc = parsed(compile_pipeline(nb, artifact_types={}))
    assert executor(doc, "prepare")["image"] == default_tag(compile_notebook(nb))
    doc = parsed(compile_pipeline(nb, image="registry.example.com/team/fanout:v1", artifact_types={}))
    assert {executor(doc, t)["image"] for t in tasks_of(doc)} == {"registry.example.com/team/fanout:v1"}


def test_resource_quantities_kfp_accepts():
    assert [_cpu(2), _cpu(0.5), _cpu(0.25), _cpu(1.5)] == ["2", "500m", "250m", "1500m"]
    assert [_memory(m) for m in ("2Gi", "512M", "4GB", "1.5Gi", "512m", "4gi", "0.5G", "1000")] == [
        "2Gi", "512M", "4G", "1536Mi", "512M", "4Gi", "500M", "1000"]


# --- artifact types from the run store ------------------------------------------------------------

TYPED = [
    ("setup", "import pandas as pd"),
    ("step:make", "df = pd.DataFrame({'x': [1.0, 2.0, 3.0], 'y': [2.0, 4.0, 6.1]})\nitems = [1, 2]"),
    ("step:fit", "from sklearn.linear_model import LinearRegression\n"
                 "model = LinearRegression().fit(df[['x']], df['y'])"),
    ("step:use", "score = model.score(df[['x']], df['y']) + len(items)"),
]


@pytest.mark.kernel
def test_artifact_types_come_from_the_latest_local_run(tmp_path):
    import nb2pipe

    nb = make_nb(tmp_path, TYPED)
    warnings: list[str] = []
    before = parsed(compile_pipeline(nb, warn=warnings.append))
    assert len(warnings) == 1 and "nb2pipe run" in warnings[0] and "make, fit" in warnings[0]
    assert not (tmp_path / ".nb2pipe").exists()  # exporting never creates a store
    titles = {n: a["artifactType"]["schemaTitle"]
              for n, a in before["components"]["comp-use"]["inputDefinitions"]["artifacts"].items()}
    assert titles == {"df": "system.Artifact", "items": "system.Artifact", "model": "system.Artifact"}

    record = nb2pipe.run(nb)
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    warnings.clear()
    text = compile_pipeline(nb, warn=warnings.append)
    assert warnings == []
    doc = parsed(text)
    use = doc["components"]["comp-use"]["inputDefinitions"]["artifacts"]
    assert {n: a["artifactType"]["schemaTitle"] for n, a in use.items()} == {
        "df": "system.Dataset", "items": "system.Artifact", "model": "system.Model"}
    make_out = doc["components"]["comp-make"]["outputDefinitions"]["artifacts"]
    assert "DataFrame, parquet" in make_out["df"]["description"]
    # Same notebook, same store state: the same bytes.
    assert compile_pipeline(nb, warn=warnings.append) == text


def test_explicit_artifact_types_are_checked(tmp_path):
    nb = make_nb(tmp_path, TYPED[:2] + [("step:use2", "print(df, items)")])
    doc = parsed(compile_pipeline(nb, artifact_types={"make.df": "Dataset", "items": "system.Model"}))
    out = doc["components"]["comp-make"]["outputDefinitions"]["artifacts"]
    assert out["df"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert out["items"]["artifactType"]["schemaTitle"] == "system.Model"
    with pytest.raises(UsageError, match="not one of"):
        compile_pipeline(nb, artifact_types={"df": "Table"})


# --- determinism and hygiene --------------------------------------------------------------------

EXPORT_SCRIPT = ("import sys; from nb2pipe.kubeflow.ir import compile_pipeline; "
                 "sys.stdout.write(compile_pipeline(sys.argv[1], artifact_types={'raw': 'Dataset'}))")


def test_same_notebook_same_bytes_across_processes(tmp_path):
    outputs = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT),
               "NB2PIPE_SECRET_FOR_TEST": "s3cr3t-value-8f1e2d",
               # kfp's own switch for the caching default must not leak into the YAML either.
               "KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT": "true" if seed == "1" else ""}
        proc = subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(NOTEBOOKS / "ml_pipeline.ipynb")],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0] == compile_pipeline(NOTEBOOKS / "ml_pipeline.ipynb", artifact_types={"raw": "Dataset"})
    text = outputs[0]
    for secret in ("s3cr3t-value-8f1e2d", str(ROOT), str(tmp_path), os.path.expanduser("~") + "/", sys.executable):
        assert secret not in text


def test_no_local_paths_even_for_a_notebook_in_a_deep_folder(tmp_path):
    folder = tmp_path / "projects" / "secret-client-name"
    nb = make_nb(folder, [("parameters", "path = 'data.csv'"), ("step:a", "x = open(path).read()"),
                          ("step:b", "print(x)")])
    text = compile_pipeline(nb, artifact_types={})
    assert "secret-client-name" not in text and str(tmp_path) not in text


# --- names and errors ---------------------------------------------------------------------------

def test_variables_named_like_reserved_outputs_or_updated_in_place_are_mapped(tmp_path):
    nb = make_nb(tmp_path, [
        ("step:load", "df = [3, 1, 2]\nmetrics = {'n': 3}\n_cache = 'c'"),
        ("step:clean", "df = sorted(df)\nprint(_cache)"),
        ("step:report", "print(df, metrics['n'])"),
        ("metrics", "n = len(df)"),
    ])
    doc = parsed(compile_pipeline(nb, artifact_types={}))
    load_out = doc["components"]["comp-load"]["outputDefinitions"]["artifacts"]
    assert {"metrics_out", "df", "v_cache"} <= set(load_out)
    clean = doc["components"]["comp-clean"]
    assert set(clean["inputDefinitions"]["artifacts"]) == {"df_in", "v_cache"}
    assert "df" in clean["outputDefinitions"]["artifacts"]
    report = tasks_of(doc)["report"]["inputs"]["artifacts"]
    assert report["df"]["taskOutputArtifact"] == {"outputArtifactKey": "df", "producerTask": "clean"}
    assert report["metrics_in"]["taskOutputArtifact"] == {"outputArtifactKey": "metrics_out", "producerTask": "load"}
    assert "metrics" in doc["components"]["comp-report"]["outputDefinitions"]["artifacts"]


def test_a_leftover_name_clash_is_rejected_clearly(tmp_path):
    nb = make_nb(tmp_path, [("step:a", "df = 1\ndf_in = 2"), ("step:b", "df = df + df_in"), ("step:c", "print(df)")])
    with pytest.raises(PipelineInvalid, match=r"step 'b'.*'df_in'.*\(fix: rename one of the variables\)"):
        compile_pipeline(nb, artifact_types={})


def test_none_parameter_is_a_clear_error(tmp_path):
    nb = make_nb(tmp_path, [("parameters", "limit = None\nname = 'x'"), ("step:a", "print(limit, name)")])
    with pytest.raises(PipelineInvalid) as info:
        compile_pipeline(nb, artifact_types={})
    message = str(info.value)
    assert "cell 1" in message and "parameter 'limit' defaults to None" in message
    assert "Kubeflow Pipelines has no parameter type" in message and "fix:" in message
    assert info.value.exit_code == ExitCode.INVALID


def test_parameter_name_kfp_cannot_take_is_rejected(tmp_path):
    nb = make_nb(tmp_path, [("parameters", "_limit = 3"), ("step:a", "print(_limit)")])
    with pytest.raises(PipelineInvalid, match=r"parameter '_limit' cannot be a Kubeflow Pipelines parameter name"):
        compile_pipeline(nb, artifact_types={})


def test_dict_parameter_with_non_string_keys_is_rejected(tmp_path):
    nb = make_nb(tmp_path, [("parameters", "weights = {1: 0.5, 2: 0.5}"), ("step:a", "print(weights)")])
    with pytest.raises(PipelineInvalid, match=r"parameter 'weights' has a dict key that is not a string"):
        compile_pipeline(nb, artifact_types={})


def test_non_python_notebook_is_rejected():
    with pytest.raises(PipelineInvalid, match="Python kernel"):
        compile_pipeline(NOTEBOOKS / "r_untagged.ipynb", artifact_types={})


def test_invalid_notebook_is_the_usual_pipeline_error():
    with pytest.raises(PipelineInvalid, match="cycle"):
        compile_pipeline(NOTEBOOKS / "cycle_after.ipynb", artifact_types={})


def test_kfp_missing_gives_the_install_hint(monkeypatch):
    for name in [m for m in sys.modules if m == "kfp" or m.startswith("kfp.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "kfp", None)  # `import kfp` now raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'nb2pipe\[kfp\]'") as info:
        compile_pipeline(NOTEBOOKS / "fanout.ipynb", artifact_types={})
    assert info.value.exit_code == ExitCode.INVALID


# --- the CLI --------------------------------------------------------------------------------------

def test_cli_export_writes_yaml_and_reports(tmp_path):
    out = tmp_path / "pipe.yaml"
    proc = cli("export", NOTEBOOKS / "fanout.ipynb", "--to", "kfp", "-o", out, "--store", tmp_path / "store",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stderr and "10 tasks, image nb2pipe-fanout:" in proc.stderr
    assert "nb2pipe run" in proc.stderr  # the one warning: no local run to type artifacts
    assert parsed(out.read_text())["pipelineInfo"]["name"] == "fanout"

    proc = cli("export", NOTEBOOKS / "fanout.ipynb", "-o", "-", "--image", "img:1", cwd=tmp_path)
    assert proc.returncode == 0 and parsed(proc.stdout)["pipelineInfo"]["name"] == "fanout"
    assert "image img:1" in proc.stderr


def test_cli_export_errors(tmp_path):
    proc = cli("export", NOTEBOOKS / "fanout.ipynb", "--to", "airflow", cwd=tmp_path)
    assert proc.returncode == 2 and "kfp" in proc.stderr
    nb = make_nb(tmp_path, [("parameters", "limit = None"), ("step:a", "print(limit)")])
    proc = cli("export", nb, cwd=tmp_path)
    assert proc.returncode == 2
    assert "parameter 'limit' defaults to None" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "nb.yaml").exists()


def test_cli_help_does_not_import_kfp():
    code = ("import sys\nfrom nb2pipe.cli import main\n"
            "print(any(m == 'kfp' or m.startswith('kfp.') for m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


# --- --py: the same pipeline as KFP DSL Python ----------------------------------------------------

@pytest.mark.parametrize("name", ["ml_pipeline", "fanout"])
def test_py_file_compiles_to_the_same_yaml(tmp_path, name):
    nb = NOTEBOOKS / f"{name}.ipynb"
    py, out = tmp_path / "pipeline.py", tmp_path / "pipeline.yaml"
    result = export(nb, output=out, py=py, artifact_types=GOLDEN_TYPES[name])
    assert result.py_path == str(py) and result.tasks == len(tasks_of(parsed(result.text)))
    source = py.read_text()
    assert "@dsl.container_component" in source and "@dsl.pipeline" in source
    proc = subprocess.run([sys.executable, str(py), str(tmp_path / "from_py.yaml")], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "from_py.yaml").read_text() == out.read_text()


def test_py_file_survives_names_that_shadow(tmp_path):
    # A step named like a module the file imports, a parameter named like a step.
    nb = make_nb(tmp_path, [("parameters", "compiler = 1\nload = 2"), ("step:compiler", "x = compiler + load"),
                            ("step:load", "y = x * 2"), ("step:sys", "print(y)")])
    py = tmp_path / "p.py"
    export(nb, output=tmp_path / "p.yaml", py=py, artifact_types={})
    proc = subprocess.run([sys.executable, str(py), str(tmp_path / "q.yaml")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "q.yaml").read_text() == (tmp_path / "p.yaml").read_text()

