"""The example pipelines: written by examples/make_examples.py, and passing `pytest --nb2pipe`."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import nbformat
import pytest
from nbbuild import ROOT, junit, load_toml, pytest_runner

pytest_plugins = ["pytester"]
EXAMPLES = ROOT / "examples"
NAMES = ["classifier", "diabetes", "text_classifier"]


def test_the_committed_notebooks_are_what_make_examples_writes():
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in NAMES:
        made = nbformat.writes(getattr(module, name)()) + "\n"  # as nbformat.write writes it
        assert (EXAMPLES / f"{name}.ipynb").read_text(encoding="utf-8") == made, \
            f"examples/{name}.ipynb differs from what examples/make_examples.py writes: run it"


def test_each_example_has_metric_gates():
    from nb2pipe.compile.compiler import compile_notebook

    for name in ("diabetes", "text_classifier"):
        spec = compile_notebook(EXAMPLES / f"{name}.ipynb")
        assert any(s.gates for s in spec.steps), name


@pytest.fixture
def nbtest(pytester, monkeypatch):
    return pytest_runner(pytester, monkeypatch)


@pytest.mark.kernel
def test_the_examples_pass_and_bad_data_stops_the_regression(nbtest):
    folder = nbtest.path / "examples"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(EXAMPLES / f"{name}.ipynb", folder)
    # The repository's own [tool.nb2pipe.checks] (gates kept outside the classifier notebook).
    checks = load_toml(ROOT / "pyproject.toml")["tool"]["nb2pipe"]["checks"]
    lines = ["[tool.nb2pipe.checks]", f"tolerance = {checks['tolerance']}", "[tool.nb2pipe.checks.gates]"]
    lines += [f"{json.dumps(key)} = {json.dumps(gates)}" for key, gates in checks["gates"].items()]
    (nbtest.path / "pyproject.toml").write_text("\n".join(lines) + "\n")
    result = nbtest("--nb2pipe", "-n", "2", "--nb2pipe-store", "store", "--junitxml=ok.xml", "examples",
                    timeout=420)
    result.assert_outcomes(passed=22)
    cases = junit(nbtest.path / "ok.xml")
    evaluate = cases["classifier.ipynb::evaluate"][4]
    assert float(evaluate["metric:forest_auc"]) >= 0.97
    assert float(cases["text_classifier.ipynb::evaluate"][4]["metric:accuracy"]) >= 0.8
    assert cases["diabetes.ipynb::validate_data"][4]["metric:n_rows"] == "442"
    # Bad data: the validation step fails, nothing downstream runs; the store's cache is reused.
    result = nbtest("--nb2pipe", "--nb2pipe-store", "store", "--nb2pipe-param", "corrupt_rows", "12", "-rfs",
                    "examples/diabetes.ipynb", timeout=300)
    result.assert_outcomes(passed=3, failed=1, skipped=4)
    result.stdout.fnmatch_lines(["*ValueError: data validation failed: missing values in bmi (12)*",
                                 "*upstream step 'validate_data' failed*"])
    assert os.environ.get("NB2PIPE_STORE") is None
