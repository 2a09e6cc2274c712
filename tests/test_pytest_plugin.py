"""The pytest plugin, through pytester: `pytest --nb2pipe` in a fresh process, as CI runs it.

Every run here is a real pytest session in a subprocess, with real kernels: items and their
order, outcomes, the failure report, JUnit XML, parameters and profiles, gates, baselines, NaN
checks, the cache, --lf, pytest-xdist and nbval side by side.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import nbformat
import pytest
from nbbuild import ROOT, build, cli, junit, load_toml, pytest_runner

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.kernel


@pytest.fixture
def nbtest(pytester, monkeypatch):
    return pytest_runner(pytester, monkeypatch)


def write(folder, name, cells, outputs=None):
    """A notebook of (tags, source) cells; `outputs` maps a 0-based cell position to its saved outputs."""
    nb = build(cells)
    for position, (count, outs) in (outputs or {}).items():
        nb.cells[position].execution_count = count
        nb.cells[position].outputs = outs
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


def verbose_items(result) -> list[tuple[str, str]]:
    """(node id, outcome) of each item line of a -v run, in the order they ran ("PASSED (cached)")."""
    items = []
    for line in result.outlines:
        m = re.match(r"^(\S+\.ipynb::.+?) ((?:PASSED|FAILED|SKIPPED|ERROR)(?: \(cached\))?)\s+\[\s*\d+%\]$", line)
        if m:
            items.append((m.group(1), m.group(2)))
            continue
        m = re.match(r"^\[gw\d+\] \[\s*\d+%\] ((?:PASSED|FAILED|SKIPPED|ERROR)(?: \(cached\))?) (\S+\.ipynb::.+?)\s*$",
                     line)
        if m:
            items.append((m.group(2), m.group(1)))
    return items


PIPELINE = [
    ("parameters", "n = 4\nquality = 0.9"),
    ("step:load", "rows = list(range(n))\nprint('loaded', len(rows))"),
    ("step:clean", "cleaned = [r * 2 for r in rows]"),
    ("step:train", "model = sum(cleaned) * quality"),
    ("step:evaluate", "accuracy = quality\nrmse = round(1 - quality, 6)"),
    ("metrics assert:accuracy>=0.85 assert:rmse<=0.2", "accuracy\nrmse"),
]
MIDDLE_FAILS = [
    ("step:load", "rows = [1, 2, 3]"),
    ("step:clean", "print('cleaning', rows)\ncleaned = [r / 0 for r in rows]"),
    ("step:train", "model = sum(cleaned)"),
    ("step:report", "summary = model + 1"),
    ("step:audit", "checked = len(rows)"),
]


def test_the_plugin_is_declared_and_stays_off_without_the_flag(nbtest):
    entry_points = load_toml(ROOT / "pyproject.toml")["project"]["entry-points"]["pytest11"]
    assert entry_points == {"nb2pipe": "nb2pipe.pytest_plugin"}
    write(nbtest.path / "nbs", "nb.ipynb", PIPELINE)
    result = nbtest("nbs")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED and "nb.ipynb::" not in result.stdout.str()
    result = nbtest("--collect-only", "nbs/nb.ipynb")  # a notebook is not a test file without --nb2pipe
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "nb.ipynb::" not in result.stdout.str()
    # Loading the plugin imports nothing of nb2pipe but the module itself and its error classes.
    code = ("import sys, pytest, nb2pipe.pytest_plugin\n"
            "print(sorted(m for m in sys.modules if m.startswith('nb2pipe')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert proc.stdout.strip() == "['nb2pipe', 'nb2pipe._version', 'nb2pipe.errors', 'nb2pipe.pytest_plugin']"


def test_items_in_dag_order_and_pytest_selection(nbtest):
    write(nbtest.path / "nbs", "flow.ipynb", [
        ("step:a", "x = 1"),
        ("step:c after:b", "z = x + 1"),  # after: puts c behind b although it comes first
        ("step:b", "y = x * 2"),
    ])
    write(nbtest.path / "nbs", "broken.ipynb", [("step:a", "x = 1"), ("after:nope", "y = x")])
    write(nbtest.path / "nbs", "named.ipynb", [("step:validate", "x = 1"), ("step:export", "y = x")])
    result = nbtest("--nb2pipe", "--collect-only", "-q", "nbs")
    result.stdout.fnmatch_lines(["nbs/broken.ipynb::validate", "nbs/broken.ipynb::export",
                                 "nbs/flow.ipynb::validate", "nbs/flow.ipynb::export", "nbs/flow.ipynb::a",
                                 "nbs/flow.ipynb::b", "nbs/flow.ipynb::c",
                                 "nbs/named.ipynb::validate", "nbs/named.ipynb::export",
                                 "nbs/named.ipynb::step:validate", "nbs/named.ipynb::step:export",
                                 "*11 tests collected*"])
    named = nbtest("--nb2pipe", "-v", "nbs/named.ipynb")
    named.assert_outcomes(passed=4)
    result = nbtest("--nb2pipe", "--collect-only", "-q", "nbs", "-k", "flow and not export",
                    "--deselect", "nbs/flow.ipynb::b")
    assert [line for line in result.outlines if "::" in line] == [
        "nbs/flow.ipynb::validate", "nbs/flow.ipynb::a", "nbs/flow.ipynb::c"]
    result = nbtest("--nb2pipe", "-v", "nbs/broken.ipynb", "--ignore", "nbs/flow.ipynb")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*after:nope names an unknown step*"])


def test_outcomes_failure_report_and_junit_xml(nbtest):
    write(nbtest.path, "good.ipynb", PIPELINE)
    write(nbtest.path, "broken.ipynb", MIDDLE_FAILS)
    result = nbtest("--nb2pipe", "-rfs", "--junitxml=out.xml", "--nb2pipe-export-dir", "ci-out", "good.ipynb",
                    "broken.ipynb")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=10, failed=1, skipped=2)
    result.stdout.fnmatch_lines([
        "*_ clean (broken.ipynb) _*",
        "step 'clean' failed: ZeroDivisionError: division by zero at cell 2",
        "*broken.ipynb:cell 2 [[]c2[]]:",
        "    print('cleaning', rows)",
        "    cleaned = [r / 0 for r in rows]",
        "*ZeroDivisionError*Traceback (most recent call last)",
        "*----> 2 cleaned = [[]r / 0 for r in rows[]]*",
        "ZeroDivisionError: division by zero",
        "executed notebook: */ci-out/broken/clean.ipynb",
        "*Captured step output call*",
        "cleaning [1, 2, 3]",
    ])
    result.stdout.fnmatch_lines([
        "FAILED broken.ipynb::clean - step 'clean' failed: ZeroDivisionError*",
        "SKIPPED [[]1[]] broken.ipynb:3: upstream step 'clean' failed",
        "SKIPPED [[]1[]] broken.ipynb:4: upstream step 'clean' failed",
    ])
    assert "\x1b[" not in result.stdout.str()
    cases = junit(nbtest.path / "out.xml")
    assert list(cases) == [f"good.ipynb::{n}" for n in ("validate", "export", "load", "clean", "train", "evaluate")] \
        + [f"broken.ipynb::{n}" for n in ("validate", "export", "load", "clean", "train", "report", "audit")]
    classname, outcome, message, text, props = cases["broken.ipynb::clean"]
    assert (classname, outcome) == ("broken.ipynb", "failure")
    assert message == "step 'clean' failed: ZeroDivisionError: division by zero at cell 2"
    assert "cleaned = [r / 0 for r in rows]" in text and props["nb2pipe"] == "step"
    assert cases["broken.ipynb::report"][1:3] == ("skipped", "upstream step 'clean' failed")
    assert cases["broken.ipynb::audit"][1] == "passed"  # not downstream of clean: it ran
    evaluate = cases["good.ipynb::evaluate"][4]
    assert (evaluate["metric:accuracy"], evaluate["metric:rmse"], evaluate["status"]) == ("0.9", "0.1", "succeeded")
    assert cases["good.ipynb::load"][4]["artifact:rows"].startswith("builtins.list as ")
    assert cases["good.ipynb::export"][4]["tasks"] == "4"
    # The CI build artifacts: each pipeline's YAML and each executed step notebook.
    out = nbtest.path / "ci-out"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "broken.yaml", "broken/audit.ipynb", "broken/clean.ipynb", "broken/load.ipynb", "good.yaml",
        "good/clean.ipynb", "good/evaluate.ipynb", "good/load.ipynb", "good/train.ipynb"]
    assert props["executed_notebook"] == str(out.resolve() / "broken" / "clean.ipynb")
    executed = nbformat.read(out / "broken" / "clean.ipynb", as_version=4)
    assert any(o.get("ename") == "ZeroDivisionError" for c in executed.cells for o in c.get("outputs", []))


def test_parameters_profiles_and_gates(nbtest):
    write(nbtest.path, "good.ipynb", PIPELINE)
    write(nbtest.path, "other.ipynb", [("parameters", "k = 1"), ("step:s", "v = k"), ("metrics", "v")])
    (nbtest.path / "ci.yaml").write_text("quality: 0.8\nn: 2\n")
    result = nbtest("--nb2pipe", "--nb2pipe-params", "ci.yaml", "--nb2pipe-param", "k", "7", "--junitxml=p.xml",
                    "good.ipynb", "other.ipynb")
    result.assert_outcomes(passed=8, failed=1)
    result.stdout.fnmatch_lines([
        "gate accuracy>=0.85 failed: accuracy = 0.8, threshold >= 0.85 (assert: tag on cell 6)",
        "gate rmse<=0.2 held: rmse = 0.2",
    ])
    cases = junit(nbtest.path / "p.xml")
    assert cases["other.ipynb::s"][4]["metric:v"] == "7"  # each notebook takes the parameters it declares
    result = nbtest("--nb2pipe", "--nb2pipe-params", "ci.yaml", "--nb2pipe-param", "quality", "0.95",
                    "good.ipynb")
    result.assert_outcomes(passed=6)  # -p wins over the profile, as papermill does
    result = nbtest("--nb2pipe", "--nb2pipe-param", "qualty", "1", "-n", "2", "good.ipynb", "other.ipynb")
    result.assert_outcomes(passed=2, failed=2, skipped=5)  # each validate says why; nothing runs
    result.stdout.fnmatch_lines(["*no notebook checked here has a parameter 'qualty' (parameters: k, n, quality)*"])
    # Thresholds kept outside the notebook, in the nearest pyproject.toml.
    (nbtest.path / "pyproject.toml").write_text('[tool.nb2pipe.checks.gates]\n"good.ipynb" = ["accuracy >= 0.99"]\n')
    result = nbtest("--nb2pipe", "good.ipynb")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*gate accuracy>=0.99 failed: accuracy = 0.9, threshold >= 0.99 (pyproject.toml "
                                 "gates 'good.ipynb')*"])


def test_cached_steps_pass_as_cached_and_a_baseline_catches_a_regression(nbtest):
    write(nbtest.path / "nbs", "good.ipynb", PIPELINE)
    first = nbtest("--nb2pipe", "--nb2pipe-store", "store", "--junitxml=a.xml", "nbs")
    first.assert_outcomes(passed=6)
    run_id = junit(nbtest.path / "a.xml")["good.ipynb::evaluate"][4]["run"]
    again = nbtest("--nb2pipe", "--nb2pipe-store", "store", "-v", "nbs", ".")  # the store is not collected
    again.assert_outcomes(passed=6)
    assert verbose_items(again) == [("nbs/good.ipynb::validate", "PASSED"), ("nbs/good.ipynb::export", "PASSED")] + [
        (f"nbs/good.ipynb::{s}", "PASSED (cached)") for s in ("load", "clean", "train", "evaluate")]
    fresh = nbtest("--nb2pipe", "--nb2pipe-store", "store", "--nb2pipe-no-cache", "-v", "nbs")
    assert [w for _, w in verbose_items(fresh)] == ["PASSED"] * 6
    # A worse model against the first run: by run id from the store, and by `runs show --json` file.
    proc = cli("runs", "show", run_id, "--store", nbtest.path / "store", "--json")
    (nbtest.path / "base.json").write_text(proc.stdout)
    for baseline in (run_id, "base.json"):
        result = nbtest("--nb2pipe", "--nb2pipe-store", "store", "--nb2pipe-baseline", baseline,
                        "--nb2pipe-tolerance", "0.02", "--nb2pipe-param", "quality", "0.86", "nbs")
        result.assert_outcomes(passed=5, failed=1)
        result.stdout.fnmatch_lines([
            "metric 'accuracy' regressed against baseline*: 0.86 vs baseline 0.9 (higher is better; tolerance 0.02)",
            "metric 'rmse' regressed against baseline*: 0.14 vs baseline 0.1 (lower is better; tolerance 0.02)",
        ])
    within = nbtest("--nb2pipe", "--nb2pipe-store", "store", "--nb2pipe-baseline", run_id, "--nb2pipe-tolerance",
                    "0.05", "--nb2pipe-param", "quality", "0.86", "nbs")
    within.assert_outcomes(passed=6)


def test_nan_in_metrics_always_and_in_artifacts_with_the_flag(nbtest):
    write(nbtest.path, "nan.ipynb", [
        ("setup", "import numpy as np\nimport pandas as pd"),
        ("step:make", "frame = pd.DataFrame({'a': [1.0, np.nan], 'b': [np.inf, 2.0]})\nok = np.zeros(3)"),
        ("step:train", "loss = float(frame['a'].mean())\nauc = float('nan')"),
        ("metrics", "loss\nauc"),
    ])
    result = nbtest("--nb2pipe", "nan.ipynb")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["FAILED nan.ipynb::train - metric 'auc' of step 'train' is NaN"])
    result = nbtest("--nb2pipe", "--nb2pipe-check-nan", "nan.ipynb")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*_ make (nan.ipynb) _*",
                                 "artifact 'frame' of step 'make' (DataFrame 2×2) has 2 NaN/inf values (1 NaN, 1 inf) "
                                 "in 4 numeric values; columns: a (1), b (1)"])


def test_last_failed_reruns_the_failed_step_from_one_run(nbtest):
    write(nbtest.path, "broken.ipynb", MIDDLE_FAILS)
    first = nbtest("--nb2pipe", "broken.ipynb")
    first.assert_outcomes(passed=4, failed=1, skipped=2)
    again = nbtest("--nb2pipe", "--lf", "-v", "broken.ipynb")
    again.assert_outcomes(failed=1)
    assert verbose_items(again) == [("broken.ipynb::clean", "FAILED")]


def test_xdist_keeps_each_notebook_on_one_worker_in_dag_order(nbtest):
    write(nbtest.path, "good.ipynb", PIPELINE)
    write(nbtest.path, "broken.ipynb", MIDDLE_FAILS)
    result = nbtest("--nb2pipe", "-n", "2", "-v", "--junitxml=x.xml", "good.ipynb", "broken.ipynb")
    result.assert_outcomes(passed=10, failed=1, skipped=2)
    workers: dict[str, set[str]] = {}
    order: dict[str, list[str]] = {}
    for line in result.outlines:
        m = re.match(r"^\[(gw\d+)\] \[\s*\d+%\] \w+(?: \(cached\))? (\w+\.ipynb)::(\S+)", line)
        if m:
            workers.setdefault(m.group(2), set()).add(m.group(1))
            order.setdefault(m.group(2), []).append(m.group(3))
    assert {nb: len(w) for nb, w in workers.items()} == {"good.ipynb": 1, "broken.ipynb": 1}
    assert workers["good.ipynb"] != workers["broken.ipynb"]  # the two notebooks ran in parallel
    assert order["good.ipynb"] == ["validate", "export", "load", "clean", "train", "evaluate"]
    assert order["broken.ipynb"] == ["validate", "export", "load", "clean", "train", "report", "audit"]
    cases = junit(nbtest.path / "x.xml")
    assert cases["broken.ipynb::clean"][1] == "failure" and cases["broken.ipynb::train"][1] == "skipped"
    assert len({cases[f"good.ipynb::{s}"][4]["run"] for s in ("load", "clean", "train", "evaluate")}) == 1


def test_nbval_and_nb2pipe_side_by_side(nbtest):
    stream = nbformat.v4.new_output("stream", name="stdout", text="loaded 3\n")
    error = nbformat.v4.new_output("error", ename="KeyError", evalue="'missing'", traceback=[])
    write(nbtest.path, "both.ipynb", [
        ("step:load", "rows = [1, 2, 3]\nprint('loaded', len(rows))"),
        ("nbval-raises-exception", "{}['missing']"),
        ("nbval-skip", "import time\ntime.sleep(600)"),
        ("step:report nbval-ignore-output", "import random\nprint(random.random())\ntotal = sum(rows)"),
        ("metrics assert:total==6", "total"),
    ], outputs={0: (1, [stream]), 1: (2, [error]), 3: (3, [nbformat.v4.new_output("stream", name="stdout",
                                                                                   text="0.123\n")]),
                4: (4, [nbformat.v4.new_output("execute_result", data={"text/plain": "6"}, execution_count=4)])})
    result = nbtest("--nbval", "--nb2pipe", "-v", "--junitxml=n.xml", "both.ipynb", timeout=300)
    result.assert_outcomes(passed=8, skipped=1)
    assert "error" not in result.stdout.str().lower().replace("keyerror", "")
    ours = [i for i, _ in verbose_items(result) if not re.search(r"::Cell \d+$", i)]
    assert ours == ["both.ipynb::validate", "both.ipynb::export", "both.ipynb::load", "both.ipynb::report"]
    cases = junit(nbtest.path / "n.xml")
    assert {"both.ipynb::load", "both.ipynb::report"} <= set(cases)
    assert sum(1 for name in cases if name.startswith("Cell ")) == 5  # nbval's own items, named as nbval names them
