"""`nb2pipe check`: the one-command CI gate, its exit codes, --json and --junit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from nbbuild import cli, make_nb

GOOD = [
    ("parameters", "n = 4"),
    ("step:make", "values = list(range(n))"),
    ("step:score", "score = sum(values) / 10"),
    ("metrics assert:score>=0.5", "score"),
]
MIDDLE_FAILS = [
    ("step:load", "rows = [1, 2, 3]"),
    ("step:clean", "cleaned = [r / 0 for r in rows]"),
    ("step:train", "model = sum(cleaned)"),
]


def test_without_execute_validates_and_exports_only(tmp_path):
    nb = make_nb(tmp_path, GOOD, name="good.ipynb")
    proc = cli("check", nb.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "good.ipynb"
    assert lines[1].split()[:2] == ["ok", "validate"] and "2 steps: make, score" in lines[1]
    assert lines[2].split()[:2] == ["ok", "export"] and "2 tasks" in lines[2]
    assert len(lines) == 3 and not (tmp_path / ".nb2pipe" / "runs.db").exists()  # nothing ran
    assert "check: 1 notebook, 2 passed (exit 0)" in proc.stderr


def test_an_invalid_notebook_is_exit_2_with_the_problem(tmp_path):
    good = make_nb(tmp_path, GOOD, name="good.ipynb")
    bad = make_nb(tmp_path, [("step:a", "x = 1"), ("metrics assert:y>=1", "x")], name="bad.ipynb")
    proc = cli("check", good.name, bad.name, "--execute", cwd=tmp_path)
    assert proc.returncode == 2
    assert "gate assert:y>=1 names 'y', which this metrics cell does not report" in proc.stdout
    rows = [line.split()[:2] for line in proc.stdout.splitlines()]
    assert rows[rows.index(["bad.ipynb"]) + 1:] == [["FAILED", "validate"], ["skipped", "export"]]
    same = cli("validate", bad.name, cwd=tmp_path)  # validate knows the gate rule too
    assert same.returncode == 2 and "names 'y', which this metrics cell does not report" in same.stderr


def test_hidden_state_is_a_warning_on_stderr(tmp_path):
    nb = make_nb(tmp_path, GOOD, name="good.ipynb")
    node = json.loads(nb.read_text())
    for cell, count in zip(node["cells"], [1, 5, 2, 3]):
        cell["execution_count"] = count
    nb.write_text(json.dumps(node))
    proc = cli("check", nb.name, cwd=tmp_path)
    assert proc.returncode == 0
    assert "good.ipynb:cell 3 [c3]: warning: the saved notebook was executed out of order" in proc.stderr
    assert "warning" not in proc.stdout


@pytest.mark.kernel
def test_execute_a_failing_middle_step_is_exit_1_with_junit_and_json(tmp_path):
    good = make_nb(tmp_path, GOOD, name="good.ipynb")
    bad = make_nb(tmp_path, MIDDLE_FAILS, name="broken.ipynb")
    proc = cli("check", good.name, bad.name, "--execute", "--junit", "out/junit.xml", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "step 'clean' failed: ZeroDivisionError: division by zero at cell 2" in out
    assert "broken.ipynb:cell 2 [c2]:" in out and "    cleaned = [r / 0 for r in rows]" in out
    assert "upstream step 'clean' failed" in out
    suites = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    cases = {c.get("name"): c for c in suites.iter("testcase")}
    assert list(cases) == ["good.ipynb::validate", "good.ipynb::export", "good.ipynb::make", "good.ipynb::score",
                           "broken.ipynb::validate", "broken.ipynb::export", "broken.ipynb::load",
                           "broken.ipynb::clean", "broken.ipynb::train"]
    assert cases["broken.ipynb::clean"].get("classname") == "broken.ipynb"
    failure = cases["broken.ipynb::clean"].find("failure")
    assert failure.get("message").startswith("step 'clean' failed: ZeroDivisionError")
    assert "cleaned = [r / 0 for r in rows]" in failure.text
    assert cases["broken.ipynb::train"].find("skipped").get("message") == "upstream step 'clean' failed"
    props = {p.get("name"): p.get("value") for p in cases["good.ipynb::score"].iter("property")}
    assert props["metric:score"] == "0.6" and props["status"] == "succeeded"
    # --json: the same verdicts for a program; the second run takes every good step from the cache.
    proc = cli("check", good.name, "--execute", "--json", cwd=tmp_path)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"] and report["exit_code"] == 0
    items = {i["item"]: i for i in report["notebooks"][0]["items"]}
    assert items["score"]["cached"] and items["score"]["properties"]["metric:score"] == "0.6"


@pytest.mark.kernel
def test_execute_gates_parameters_and_a_baseline(tmp_path):
    nb = make_nb(tmp_path, GOOD, name="good.ipynb")
    (tmp_path / "ci.yaml").write_text("n: 3\n")
    proc = cli("check", nb.name, "--execute", "-f", "ci.yaml", cwd=tmp_path)  # score = 0.3 < 0.5
    assert proc.returncode == 1
    assert "gate score>=0.5 failed: score = 0.3, threshold >= 0.5 (assert: tag on cell 4)" in proc.stdout
    assert cli("check", nb.name, "--execute", "-p", "n", "5", cwd=tmp_path).returncode == 0  # score = 1.0
    runs = cli("runs", "show", "latest", "--notebook", nb.name, "--json", cwd=tmp_path)
    (tmp_path / "base.json").write_text(runs.stdout)
    proc = cli("check", nb.name, "--execute", "-p", "n", "4", "--baseline", "base.json", "--tolerance", "0.1",
               cwd=tmp_path)  # 0.6 against 1.0
    assert proc.returncode == 1
    assert "metric 'score' regressed against baseline base.json" in proc.stdout
    assert "0.6 vs baseline 1 (higher is better; tolerance 0.1)" in proc.stdout
    typo = cli("check", nb.name, "-p", "nn", "1", cwd=tmp_path)
    assert typo.returncode == 2 and "no notebook checked here has a parameter 'nn' (parameters: n)" in typo.stderr
