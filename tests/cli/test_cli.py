"""The `inspect` and `validate` commands, plus the golden specs of the good fixture notebooks.

Golden files: tests/golden/<fixture>.json hold the exact `nb2pipe inspect --json` output of
tests/notebooks/<fixture>.ipynb. After an intended change to the spec format or the analysis,
regenerate them and review the diff:

    NB2PIPE_UPDATE_GOLDEN=1 python -m pytest tests/test_cli.py -k golden
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from core_helpers import GOLDEN, MALFORMED, NOTEBOOKS, ROOT, code, write_nb
from nbbuild import make_nb

from nb2pipe.cli import main

GOOD = ["ml_pipeline", "kale_pipeline", "kale_metrics", "kale_candies", "fanout", "magics", "untagged",
        "no_kernelspec", "r_untagged", "nbclient_tags", "legacy_v3"]
BAD = ["cycle_after", "cycle_data", "tag_typos", "duplicate_steps", "bad_options", "bad_parameters",
       "syntax_error", "after_unknown", "bad_step_names", "conflicting_roles", "r_tagged", "undefined_names"]
MALFORMED_FILES = sorted(p.name for p in MALFORMED.iterdir())


def run(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=True)
    # Anything other than a clean exit is an unexpected exception: show its traceback.
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def nb(name: str) -> str:
    return str(NOTEBOOKS / f"{name}.ipynb")


# --- golden specs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", GOOD)
def test_golden_inspect_json(name):
    result = run("inspect", nb(name), "--json")
    assert result.exit_code == 0, result.output
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("NB2PIPE_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(result.stdout, encoding="utf-8")
    assert golden.exists(), f"missing {golden.name}: run NB2PIPE_UPDATE_GOLDEN=1 pytest {__file__}"
    assert result.stdout == golden.read_text(encoding="utf-8"), (
        f"{name}: spec differs from tests/golden/{name}.json (if intended, regenerate with "
        "NB2PIPE_UPDATE_GOLDEN=1 and review the diff)")


def test_every_good_fixture_has_a_golden_file_and_no_stray_ones():
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(GOOD)


# --- inspect --------------------------------------------------------------------------------------

def test_inspect_text_table():
    result = run("inspect", nb("ml_pipeline"))
    assert result.exit_code == 0
    for word in ("ml_pipeline.ipynb: 5 steps (kernel python3)", "load", "features", "train_rf", "train_lr",
                 "evaluate", "parameters:", "setup cells: 2"):
        assert word in result.stdout


def test_inspect_json_is_the_spec():
    result = run("inspect", nb("fanout"), "--json")
    data = json.loads(result.stdout)
    assert data["notebook"] == "fanout.ipynb" and len(data["steps"]) == 10


def test_inspect_mermaid():
    result = run("inspect", nb("kale_pipeline"), "--format", "mermaid")
    assert result.exit_code == 0
    assert result.stdout == (
        "flowchart TD\n"
        '    s0["data-loading"]\n'
        '    s1["preprocess"]\n'
        '    s2["train-model"]\n'
        '    s3["evaluate"]\n'
        '    s0 -->|"train_df"| s1\n'
        '    s1 -->|"features, labels"| s2\n'
        '    s1 -->|"features, labels"| s3\n'
        '    s2 -->|"model"| s3\n'
    )


def test_inspect_dot():
    result = run("inspect", nb("kale_pipeline"), "--format", "dot")
    assert result.exit_code == 0
    assert result.stdout == (
        'digraph "kale-pipeline" {\n'
        "    rankdir=TB;\n"
        "    node [shape=box, style=rounded];\n"
        '    "data-loading";\n'
        '    "preprocess";\n'
        '    "train-model";\n'
        '    "evaluate";\n'
        '    "data-loading" -> "preprocess" [label="train_df"];\n'
        '    "preprocess" -> "train-model" [label="features, labels"];\n'
        '    "preprocess" -> "evaluate" [label="features, labels"];\n'
        '    "train-model" -> "evaluate" [label="model"];\n'
        "}\n"
    )


def test_after_only_edges_are_dashed(tmp_path):
    path = write_nb(tmp_path / "order.ipynb",
                    [code("a = 1", "step:first"), code("b = 2", "step:second", "after:first")])
    mermaid = run("inspect", str(path), "--format", "mermaid").stdout
    assert "    s0 -.-> s1\n" in mermaid
    dot = run("inspect", str(path), "--format", "dot").stdout
    assert '    "first" -> "second" [style=dashed];\n' in dot


def test_inspect_invalid_notebook_exits_2_with_located_messages():
    result = run("inspect", nb("cycle_after"))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{nb('cycle_after')}:cell 1 [a]: the steps form a cycle: a → b → c → a" in result.stderr


def test_inspect_fails_on_undefined_names_and_lenient_prints_warnings_on_stderr():
    lax = run("inspect", nb("undefined_names"), "--json", "--lenient")
    assert lax.exit_code == 0
    json.loads(lax.stdout)  # warnings never pollute the JSON on stdout
    assert "warning: step 'load' reads 'load_everything'" in lax.stderr
    default = run("inspect", nb("undefined_names"))
    assert default.exit_code == 2 and "reads 'load_everything'" in default.stderr and default.stdout == ""
    assert "Traceback" not in default.output
    both = run("inspect", nb("undefined_names"), "--strict", "--lenient")
    assert both.exit_code == 2 and "either --strict or --lenient" in both.stderr


@pytest.mark.parametrize("name", MALFORMED_FILES)
def test_inspect_malformed_file(name):
    path = str(MALFORMED / name)
    result = run("inspect", path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nb2pipe: {path}: ")
    assert "Traceback" not in result.output


def test_inspect_missing_file():
    result = run("inspect", "no/such/notebook.ipynb")
    assert result.exit_code == 2
    assert result.stderr.strip() == "nb2pipe: no/such/notebook.ipynb: file not found"


# --- validate ---------------------------------------------------------------------------------------

def test_validate_good_notebooks():
    result = run("validate", *(nb(n) for n in GOOD))
    assert result.exit_code == 0, result.output
    assert f"{nb('ml_pipeline')}: ok (5 steps)" in result.stdout
    assert f"{nb('untagged')}: ok (1 step)" in result.stdout


@pytest.mark.parametrize("name", BAD)
def test_validate_bad_notebook_exits_2(name):
    result = run("validate", nb(name))
    assert result.exit_code == 2
    lines = [line for line in result.stderr.strip().splitlines()  # an R kernel may not be installed here
             if not line.startswith(f"{nb(name)}: warning: kernel 'ir'")]
    assert lines and all(line.startswith(f"{nb(name)}:cell ") for line in lines), lines
    assert "(fix: " in result.stderr
    assert ": ok (" not in result.stdout


def test_validate_message_format():
    result = run("validate", nb("after_unknown"))
    assert result.stderr == (f"{nb('after_unknown')}:cell 2 [train]: after:lod names an unknown step "
                             "(fix: did you mean after:load?)\n")


def test_validate_undefined_names_are_errors_and_lenient_turns_them_into_warnings():
    default = run("validate", nb("undefined_names"))
    assert default.exit_code == 2
    assert f"{nb('undefined_names')}:cell 1 [c1]:line 1: step 'load' reads 'load_everything'" in default.stderr
    assert len(default.stderr.strip().splitlines()) == 2 and "Traceback" not in default.output
    lax = run("validate", "--lenient", nb("undefined_names"))
    assert lax.exit_code == 0
    assert f"{nb('undefined_names')}:cell 1 [c1]:line 1: warning: step 'load' reads 'load_everything'" in lax.stderr


def test_validate_reports_every_problem_of_a_notebook_at_once(tmp_path):
    path = make_nb(tmp_path, [
        ("parameters", "rate = 0.1\nlimit = 1e309\nd = rate == 3\nopts = {1: set()}"),
        ("step:load", "data = [1]"),
        ("step:train after:lod", "model = len(dta)"),
        ("step:load", "more = 2"),
    ])
    result = run("validate", str(path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    expected = [
        (":cell 1 [c1]:line 2: parameter 'limit' is inf", "write a finite number"),
        (":cell 1 [c1]:line 3: parameters cell: the value of 'd' is not a literal", "NAME = literal"),
        (":cell 1 [c1]:line 4: parameter 'opts' has a dict key that is not a string", "string keys"),
        (":cell 4 [c4]: step name 'load' is already used", "give this group another name"),
        (":cell 3 [c3]:line 1: step 'train' reads 'dta'", "did you mean data?"),
        (":cell 3 [c3]: after:lod names an unknown step", "did you mean after:load?"),
    ]
    for where, fix in expected:
        assert any(line.startswith(str(path) + where) and fix in line for line in lines), (where, lines)
    assert len(lines) == len(expected), lines


def test_validate_parameters_cell_syntax_error_has_its_line(tmp_path):
    path = make_nb(tmp_path, [("parameters", "a = 1\nb = (")])
    result = run("validate", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path}:cell 1 [c1]:line 2: parameters cell: syntax error: ")
    assert "no code cells" not in result.stderr


def test_validate_reports_a_kernel_that_is_not_installed(tmp_path):
    path = make_nb(tmp_path, [("step:a", "x = 1")])
    data = json.loads(path.read_text())
    data["metadata"]["kernelspec"] = {"name": "no-such-kernel-xyz", "display_name": "X", "language": "python"}
    path.write_text(json.dumps(data))
    result = run("validate", str(path))
    assert result.exit_code == 0  # a warning: another executor (docker, KFP) has its own kernel
    assert f"{path}: warning: kernel 'no-such-kernel-xyz' (the notebook's kernelspec) is not installed" in result.stderr
    assert "python3" in result.stderr  # what is installed


def test_validate_several_notebooks_reports_each():
    result = run("validate", nb("fanout"), nb("cycle_data"), str(MALFORMED / "array.ipynb"))
    assert result.exit_code == 2
    assert f"{nb('fanout')}: ok (10 steps)" in result.stdout
    assert f"{nb('cycle_data')}:cell 1 [load]: the steps form a cycle: load → train → load" in result.stderr
    assert f"{MALFORMED / 'array.ipynb'}: not a notebook: top level is a JSON array" in result.stderr


def test_validate_json():
    result = run("validate", "--json", nb("fanout"), nb("after_unknown"), str(MALFORMED / "empty.ipynb"))
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    fanout, after, empty = report["notebooks"]
    assert (fanout["valid"], fanout["steps"], fanout["errors"]) == (True, 10, [])
    assert after["valid"] is False
    [err] = after["errors"]
    assert (err["cell_index"], err["cell_id"], err["code"], err["fix"]) == (
        2, "train", "after", "did you mean after:load?")
    assert empty["errors"][0]["message"] == "empty file, not a notebook"


def test_validate_json_all_valid():
    result = run("validate", "--json", nb("magics"))
    assert result.exit_code == 0 and json.loads(result.stdout)["valid"] is True


@pytest.mark.parametrize("name", MALFORMED_FILES)
def test_validate_malformed_file(name):
    path = str(MALFORMED / name)
    result = run("validate", path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: "), lines
    assert "Traceback" not in result.output


def test_validate_missing_file():
    result = run("validate", "nope.ipynb")
    assert result.exit_code == 2
    assert result.stderr.strip() == "nope.ipynb: file not found"


# --- real processes -----------------------------------------------------------------------------------

def nb2pipe(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "nb2pipe", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)


def test_subprocess_validate_exit_codes():
    ok = nb2pipe("validate", "tests/notebooks/ml_pipeline.ipynb", "tests/notebooks/kale_pipeline.ipynb")
    assert ok.returncode == 0, ok.stderr
    assert "tests/notebooks/ml_pipeline.ipynb: ok (5 steps)" in ok.stdout
    bad = nb2pipe("validate", "tests/notebooks/cycle_after.ipynb")
    assert bad.returncode == 2
    assert "tests/notebooks/cycle_after.ipynb:cell 1 [a]: the steps form a cycle" in bad.stderr


def test_subprocess_malformed_files_never_print_a_traceback():
    paths = [f"tests/notebooks/malformed/{n}" for n in MALFORMED_FILES] + ["tests/notebooks/missing.ipynb"]
    proc = nb2pipe("validate", *paths)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == len(paths)
    proc = nb2pipe("inspect", "tests/notebooks/malformed/latin1.ipynb")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("nb2pipe: tests/notebooks/malformed/latin1.ipynb: not UTF-8")
