"""nb2pipe.model.spec: round trips, determinism, no absolute paths, and what the content hash covers."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from core_helpers import NOTEBOOKS, code, md, spec_of, write_nb

from nb2pipe.compile.compiler import compile_notebook
from nb2pipe.errors import UsageError
from nb2pipe.model.spec import (
    SCHEMA_VERSION,
    CellSpec,
    ComponentSpec,
    PipelineSpec,
    StepOptions,
    canonical_json,
)

GOOD = ["ml_pipeline", "kale_pipeline", "fanout", "magics", "untagged", "no_kernelspec", "r_untagged",
        "nbclient_tags", "legacy_v3"]


@pytest.mark.parametrize("name", GOOD)
def test_to_dict_from_dict_round_trip(name):
    spec = compile_notebook(NOTEBOOKS / f"{name}.ipynb")
    again = PipelineSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec
    assert again.to_json() == spec.to_json()
    for step in spec.steps:
        assert ComponentSpec.from_dict(step.to_dict()) == step


def test_round_trip_keeps_types():
    spec = compile_notebook(NOTEBOOKS / "ml_pipeline.ipynb")
    again = PipelineSpec.from_dict(json.loads(spec.to_json()))
    train = again.step("train_rf")
    assert isinstance(train.options, StepOptions) and train.options.retries == 2
    assert isinstance(train.cells[0], CellSpec)
    assert again.parameter_defaults["feature_columns"] == ["tenure", "monthly_charges", "support_calls"]


def test_unknown_schema_version_is_refused():
    data = compile_notebook(NOTEBOOKS / "fanout.ipynb").to_dict()
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(UsageError, match="schema version 2 is not supported"):
        PipelineSpec.from_dict(data)


def test_step_options_ignore_unknown_keys():
    assert StepOptions.from_dict({"cpu": 2, "future_option": True}) == StepOptions(cpu=2)


@pytest.mark.parametrize("name", GOOD)
def test_compiling_twice_gives_identical_json(name):
    first = compile_notebook(NOTEBOOKS / f"{name}.ipynb").to_json()
    second = compile_notebook(NOTEBOOKS / f"{name}.ipynb").to_json()
    assert first == second


def test_spec_does_not_depend_on_where_the_notebook_lives(tmp_path, monkeypatch):
    here = compile_notebook(NOTEBOOKS / "ml_pipeline.ipynb").to_json()
    elsewhere = tmp_path / "deep" / "er"
    elsewhere.mkdir(parents=True)
    shutil.copy(NOTEBOOKS / "ml_pipeline.ipynb", elsewhere)
    assert compile_notebook(elsewhere / "ml_pipeline.ipynb").to_json() == here
    monkeypatch.chdir(elsewhere)
    assert compile_notebook("ml_pipeline.ipynb").to_json() == here


@pytest.mark.parametrize("name", GOOD)
def test_no_absolute_paths_in_the_spec(name):
    path = (NOTEBOOKS / f"{name}.ipynb").resolve()
    text = compile_notebook(path).to_json()
    assert str(path.parent) not in text
    data = json.loads(text)
    assert data["notebook"] == f"{name}.ipynb"
    assert "/" not in data["notebook"] and "\\" not in data["notebook"]


def test_spec_json_is_sorted_and_stable_in_order():
    text = compile_notebook(NOTEBOOKS / "fanout.ipynb").to_json()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert [s["name"] for s in data["steps"]] == ["prepare", *[f"shard_{i}" for i in range(8)], "combine"]
    assert set(data) == {"schema_version", "name", "notebook", "kernel_name", "language", "parameters",
                         "setup", "steps", "spec_hash"}  # nothing time- or machine-dependent


# --- content hash -------------------------------------------------------------------------------

BASE = [
    ("import math", ["setup"]),
    ("n = 10", ["parameters"]),
    ("xs = list(range(n))", ["step:make"]),
    ("total = sum(xs)", ["step:add"]),
    ("root = math.sqrt(total)", ["step:root"]),
]


def hashes(tmp_path, cells=BASE, mutate=None, name="nb.ipynb") -> dict[str, str]:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    for i, (source, tags) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source, id=f"cell-{i}")
        cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    if mutate:
        mutate(nb)
    path = tmp_path / name
    nbformat.write(nb, str(path))
    spec = compile_notebook(path)
    return {s.name: s.content_hash for s in spec.steps} | {"<pipeline>": spec.spec_hash}


def test_hash_changes_with_code(tmp_path):
    base = hashes(tmp_path)

    def edit(nb):
        nb.cells[3].source = "total = sum(xs) + 1"
    changed = hashes(tmp_path, mutate=edit)
    assert changed["add"] != base["add"]
    assert changed["make"] == base["make"]  # an unrelated step keeps its cache key


def test_hash_changes_with_setup_code(tmp_path):
    def edit(nb):
        nb.cells[0].source = "import math\nimport os"
    assert hashes(tmp_path, mutate=edit)["root"] != hashes(tmp_path)["root"]


def test_hash_changes_with_inputs(tmp_path):
    def edit(nb):  # `add` now also reads n (a parameter) - what it computes depends on more
        nb.cells[3].source = "total = sum(xs) * n"
    assert hashes(tmp_path, mutate=edit)["add"] != hashes(tmp_path)["add"]


def test_hash_changes_with_nbclient_tags(tmp_path):
    def edit(nb):
        nb.cells[3].metadata["tags"].append("raises-exception")
    assert hashes(tmp_path, mutate=edit)["add"] != hashes(tmp_path)["add"]


def test_hash_ignores_outputs_execution_counts_ids_and_other_metadata(tmp_path):
    base = hashes(tmp_path)

    def noise(nb):
        for i, cell in enumerate(nb.cells):
            cell.id = f"other-{i}"
            cell.execution_count = 40 + i
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"run {i}\n"),
                            nbformat.v4.new_output("execute_result", data={"text/plain": "42"},
                                                   execution_count=40 + i)]
            cell.metadata["collapsed"] = True
            cell.metadata["scrolled"] = "auto"
            cell.metadata["jupyter"] = {"source_hidden": True}
            cell.metadata["execution"] = {"iopub.execute_input": "2024-01-01T00:00:00Z"}
        nb.metadata["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
        nb.metadata["widgets"] = {"state": {}}
        nb.cells.insert(0, nbformat.v4.new_markdown_cell("# a new heading", id="new-md"))
    assert hashes(tmp_path, mutate=noise) == base


def test_hash_ignores_run_only_options_but_pipeline_hash_does_not(tmp_path):
    base = hashes(tmp_path)

    def edit(nb):
        nb.cells[3].metadata["tags"] += ["retries:3", "timeout:60", "cpu:2", "cache:off"]
    changed = hashes(tmp_path, mutate=edit)
    assert changed["add"] == base["add"]
    assert changed["<pipeline>"] != base["<pipeline>"]


def test_hash_changes_with_image_and_kernel(tmp_path):
    base = hashes(tmp_path)

    def image(nb):
        nb.cells[3].metadata["tags"].append("image:python:3.12")

    def kernel(nb):
        nb.metadata["kernelspec"]["name"] = "python3-gpu"
    assert hashes(tmp_path, mutate=image)["add"] != base["add"]
    assert hashes(tmp_path, mutate=kernel)["add"] != base["add"]


def test_pipeline_hash_changes_with_parameter_defaults(tmp_path):
    def edit(nb):
        nb.cells[1].source = "n = 11"
    changed = hashes(tmp_path, mutate=edit)
    assert changed["<pipeline>"] != hashes(tmp_path)["<pipeline>"]


# --- helpers on the dataclasses ------------------------------------------------------------------

def test_pipeline_helpers(tmp_path):
    spec = spec_of(tmp_path, [md("# t"), code("n = 3", "parameters"), code("a = n", "step:one"),
                              code("b = a", "step:two"), code("c = b")])
    assert spec.step_names == ["one", "two"]
    assert spec.parameter_defaults == {"n": 3}
    assert spec.step("two").source == "b = a\n\nc = b"
    with pytest.raises(KeyError):
        spec.step("three")


def test_canonical_json_is_compact_sorted_and_refuses_nan():
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_untagged_notebook_spec_is_named_after_the_file(tmp_path):
    path = write_nb(tmp_path / "tiny.ipynb", [code("x = 1")])
    spec = compile_notebook(path)
    assert (spec.name, spec.notebook, spec.step_names) == ("tiny", "tiny.ipynb", ["tiny"])


def test_spec_is_identical_across_processes(tmp_path):
    """Set iteration order of strings changes per process (hash randomisation); specs must not."""
    import os
    import subprocess
    import sys

    from core_helpers import ROOT

    path = write_nb(tmp_path / "hs.ipynb", [
        code("alpha = 1\nbeta = 2\ngamma = 3\ndelta = 4\neps = 5", "step:a"),
        code("def f():\n    global zeta, eta, theta\n    zeta = eta = theta = 0\n"
             "    return alpha + beta + gamma + delta + eps\n"
             "g = lambda: eps * delta * gamma * beta", "step:b"),
        code("print(zeta, eta, theta)", "step:c"),
    ])
    script = ("import sys; from nb2pipe.compile.compiler import compile_notebook; "
              "sys.stdout.write(compile_notebook(sys.argv[1]).to_json())")
    outputs = set()
    for seed in ("1", "2", "3", "4"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                              env=env, check=True)
        outputs.add(proc.stdout)
    assert len(outputs) == 1
    spec = PipelineSpec.from_dict(json.loads(outputs.pop()))
    assert [i.name for i in spec.step("b").inputs] == ["alpha", "beta", "gamma", "delta", "eps"]
    assert spec.step("b").outputs == ["eta", "theta", "zeta"]
