"""nb2pipe.checks.notebook with real kernels: one run per notebook, each step judged from it."""

from __future__ import annotations

import json

import pytest
from nbbuild import make_nb

from nb2pipe.checks.results import exit_code
from nb2pipe.checks.suite import CheckOptions, CheckSuite

pytestmark = pytest.mark.kernel

MIDDLE_FAILS = [
    ("parameters", "n = 3"),
    ("step:load", "data = list(range(n))\nprint('loaded', len(data))"),
    ("step:clean", "cleaned = [d * 2 for d in data]\nprint('cleaning')\nratio = 1 / 0"),
    ("step:train", "model = sum(cleaned)"),
    ("step:report", "summary = model + 1"),
    ("step:side", "other = len(data)"),
]


def suite_of(tmp_path, **options) -> CheckSuite:
    options.setdefault("store", tmp_path / "store")
    return CheckSuite(CheckOptions(**options))


def outcomes(check) -> dict:
    out = {"validate": check.validate(), "export": check.export()}
    out.update({name: check.step(name) for name in check.step_names})
    return out


def test_a_failing_middle_step_fails_its_item_and_skips_the_ones_downstream(tmp_path):
    nb = make_nb(tmp_path, MIDDLE_FAILS, name="pipe.ipynb")
    suite = suite_of(tmp_path)
    try:
        check = suite.add(nb)
        items = outcomes(check)
    finally:
        suite.close()
    assert {k: o.status for k, o in items.items()} == {
        "validate": "passed", "export": "passed", "load": "passed", "clean": "failed", "train": "skipped",
        "report": "skipped", "side": "passed"}
    clean = items["clean"]
    assert clean.reason == "step 'clean' failed: ZeroDivisionError: division by zero at cell 3"
    report = clean.report()
    assert f"{nb}:cell 3 [c3]:\n    cleaned = [d * 2 for d in data]\n    print('cleaning')\n    ratio = 1 / 0" in report
    assert "----> 3 ratio = 1 / 0" in report and "\x1b[" not in report  # the traceback, without colours
    assert "executed notebook: " in report and clean.findings[0].data["cell_index"] == 3
    assert clean.output == "cleaning" and clean.exit_code == 1
    assert items["train"].reason == "upstream step 'clean' failed"
    assert items["report"].reason == "upstream step 'clean' failed"  # through the skipped train
    assert dict(items["load"].properties)["artifact:data"].startswith("builtins.list as ")
    assert exit_code(list(items.values())) == 1


def test_artifacts_are_checked_and_numeric_ones_for_nan_when_asked(tmp_path):
    nb = make_nb(tmp_path, [
        ("setup", "import numpy as np\nimport pandas as pd"),
        ("step:make", "frame = pd.DataFrame({'a': [1.0, np.nan, 3.0], 'b': [np.inf, 1.0, 2.0],\n"
                      "                      'c': ['x', None, 'z']})\n"
                      "clean = np.ones(4)\nlabels = ['a', 'b']"),
        ("step:use", "total = float(frame['a'].sum()) + clean.sum() + len(labels)"),
    ])
    for check_nan, expected in ((False, "passed"), (True, "failed")):
        suite = suite_of(tmp_path, check_nan=check_nan)
        try:
            make = suite.add(nb).step("make")
        finally:
            suite.close()
        assert make.status == expected
        props = dict(make.properties)
        assert props["artifact:frame"].startswith("pandas.DataFrame as parquet")
        assert props["artifact:clean"].startswith("numpy.ndarray as npy")
    [finding] = make.findings
    assert finding.check == "nan"
    assert finding.message == ("artifact 'frame' of step 'make' (DataFrame 3×3) has 2 NaN/inf values (1 NaN, 1 inf) "
                               "in 6 numeric values; columns: a (1), b (1)")
    assert finding.data == {"artifact": "frame", "nan": 1, "inf": 1, "columns": {"a": [1, 0], "b": [0, 1]}}
    assert "artifact 'clean': no NaN/inf in 4 numeric values" in make.notes
    assert exit_code([make]) == 1


def test_a_step_that_did_not_define_what_downstream_reads(tmp_path):
    nb = make_nb(tmp_path, [
        ("step:a", "if False:\n    x = 1\ny = 2"),
        ("step:b", "z = x + y"),
    ])
    suite = suite_of(tmp_path)
    try:
        a = suite.add(nb).step("a")
    finally:
        suite.close()
    assert a.failed and "did not define 'x', which a downstream step reads" in a.reason
    assert "declared outputs: x (read by b), y (read by b)" in a.report()


def test_gates_from_tags_and_pyproject_nan_metrics_and_a_cached_rerun(tmp_path):
    nb = make_nb(tmp_path / "proj" / "nbs", [
        ("step:train", "acc = 0.8\nloss = 0.3"),
        ("metrics assert:acc>=0.9 assert:loss<=0.5", "acc\nloss"),
        ("step:extra", "auc = float('nan')"),
        ("metrics", "auc"),
    ], name="model.ipynb")
    (tmp_path / "proj" / "pyproject.toml").write_text(
        '[tool.nb2pipe.checks.gates]\n"nbs/model.ipynb" = ["loss < 0.2"]\n', encoding="utf-8")
    for round_ in ("executed", "cached"):
        suite = suite_of(tmp_path)
        try:
            check = suite.add(nb)
            validate = check.validate()
            train, extra = check.step("train"), check.step("extra")
        finally:
            suite.close()
        assert validate.passed and "gate loss<0.2 on step train (pyproject.toml gates 'nbs/model.ipynb')" in \
            validate.notes
        assert train.cached == (round_ == "cached") and extra.cached == (round_ == "cached")
        assert [f.message for f in train.findings] == [
            "gate acc>=0.9 failed: acc = 0.8, threshold >= 0.9 (assert: tag on cell 2)",
            "gate loss<0.2 failed: loss = 0.3, threshold < 0.2 (pyproject.toml gates 'nbs/model.ipynb')"]
        assert "gate loss<=0.5 held: loss = 0.3" in train.notes
        assert dict(train.properties)["metric:acc"] == "0.8"
        assert [f.message for f in extra.findings] == ["metric 'auc' of step 'extra' is NaN"]
        assert exit_code([validate, train, extra]) == 1


def test_a_pyproject_gate_on_a_metric_no_cell_reports_fails_validate_and_runs_nothing(tmp_path):
    nb = make_nb(tmp_path, [("step:train", "acc = 0.8"), ("metrics", "acc")], name="m.ipynb")
    (tmp_path / "pyproject.toml").write_text('[tool.nb2pipe.checks.gates]\n"m.ipynb" = ["f1 >= 0.5"]\n')
    suite = suite_of(tmp_path)
    try:
        check = suite.add(nb)
        validate, train = check.validate(), check.step("train")
    finally:
        suite.close()
    assert validate.failed and "gate f1>=0.5 (pyproject.toml gates 'm.ipynb') names metric 'f1', which no " \
                               "metrics cell reports (metrics: acc)" in validate.reason
    assert train.status == "skipped" and "did not pass validation" in train.reason
    assert check.run_id is None and not (tmp_path / "store" / "runs.db").exists()
    assert exit_code([validate, train]) == 2


def test_regressions_against_a_baseline_file_and_a_run_id(tmp_path):
    nb = make_nb(tmp_path, [("parameters", "quality = 0.9"),
                            ("step:train", "acc = quality\nrmse = round(1 - quality, 6)"),
                            ("metrics assert:rmse<=0.5", "acc\nrmse")], name="reg.ipynb")
    store = tmp_path / "store"
    suite = suite_of(tmp_path)
    try:
        check = suite.add(nb)
        assert check.step("train").passed
        good_run = check.run_id
    finally:
        suite.close()
    baseline = tmp_path / "base.json"
    from nb2pipe.store.runs import RunStore

    with RunStore(store) as runs:
        baseline.write_text(json.dumps(runs.get_run(good_run).to_dict()))
    for ref in (str(baseline), good_run):
        suite = suite_of(tmp_path, parameters={"quality": "0.85"}, text_parameters=frozenset({"quality"}),
                         baseline=ref, tolerance=0.02)
        try:
            check = suite.add(nb)
            assert check.validate().passed
            train = check.step("train")
        finally:
            suite.close()
        assert [f.check for f in train.findings] == ["regression", "regression"]
        assert train.findings[0].message.startswith("metric 'acc' regressed against baseline")
        assert "0.85 vs baseline 0.9 (higher is better; tolerance 0.02)" in train.findings[0].message
        assert "0.15 vs baseline 0.1 (lower is better" in train.findings[1].message
    suite = suite_of(tmp_path, parameters={"quality": 0.89}, baseline=good_run, tolerance=0.02)
    try:
        train = suite.add(nb).step("train")  # 0.01 worse: within the tolerance
    finally:
        suite.close()
    assert train.passed and any("within tolerance 0.02" in n for n in train.notes)


def test_parameters_go_to_the_notebooks_that_declare_them(tmp_path):
    a = make_nb(tmp_path, [("parameters", "n = 1"), ("step:s", "x = n * 2"), ("metrics", "x")], name="a.ipynb")
    b = make_nb(tmp_path, [("parameters", "k = 1"), ("step:s", "x = k * 3"), ("metrics", "x")], name="b.ipynb")
    suite = suite_of(tmp_path, parameters={"n": "5", "k": "7"}, text_parameters=frozenset({"n", "k"}))
    try:
        assert suite.unknown_parameters() == []
        ca, cb = suite.add(a), suite.add(b)
        assert dict(ca.step("s").properties)["metric:x"] == "10"
        assert dict(cb.step("s").properties)["metric:x"] == "21"
    finally:
        suite.close()
    typo = suite_of(tmp_path, parameters={"nn": 3})
    typo.add(a)
    typo.add(b)
    assert typo.unknown_parameters() == ["nn"]
    wrong = suite_of(tmp_path, parameters={"n": "many"}, text_parameters=frozenset({"n"}))
    validate = wrong.add(a).validate()
    assert validate.failed and "parameter 'n' expects int" in validate.reason


def test_a_run_that_cannot_start_fails_the_first_step_and_skips_the_rest(tmp_path):
    nb = make_nb(tmp_path, [("step:a", "x = 1"), ("step:b", "y = x")])
    node = json.loads(nb.read_text())
    node["metadata"]["kernelspec"]["name"] = "no-such-kernel"
    nb.write_text(json.dumps(node))
    suite = suite_of(tmp_path)
    try:
        check = suite.add(nb)
        a, b = check.step("a"), check.step("b")
    finally:
        suite.close()
    assert a.failed and "did not start" in a.reason and "kernel 'no-such-kernel' is not installed" in a.reason
    assert b.status == "skipped" and b.reason == "the run did not start (see the first step's report)"
    assert exit_code([a, b]) == 2  # as `nb2pipe run` says for a missing kernel


def test_export_is_skipped_without_kfp_and_written_with_an_export_dir(tmp_path, monkeypatch):
    nb = make_nb(tmp_path / "nbs", [("step:a", "x = 1"), ("step:b", "y = x")], name="e.ipynb")
    suite = suite_of(tmp_path, export_dir=tmp_path / "out", export_base=tmp_path)
    export = suite.add(nb).export()
    assert export.passed and (tmp_path / "out" / "nbs" / "e.yaml").is_file()
    assert dict(export.properties)["pipeline_yaml"] == str((tmp_path / "out" / "nbs" / "e.yaml").resolve())
    assert export.notes[0].startswith("2 tasks, image nb2pipe-e:")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kfp" else real(name, *a))
    skipped = suite_of(tmp_path).add(nb).export()
    assert skipped.status == "skipped" and skipped.reason == "kfp is not installed (pip install 'nb2pipe[kfp]')"


def test_an_invalid_notebook_is_a_failed_validate_and_a_skipped_export(tmp_path):
    nb = make_nb(tmp_path, [("step:a", "x = 1"), ("after:nope", "y = x")])
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{not json")
    suite = suite_of(tmp_path)
    check, broken = suite.add(nb), suite.add(bad)
    assert check.step_names == [] and broken.step_names == []
    validate = check.validate()
    assert validate.failed and "after:nope names an unknown step" in validate.reason
    assert check.export().status == "skipped"
    assert broken.validate().reason.endswith("not valid JSON (line 1, column 2: Expecting property name enclosed in "
                                             "double quotes)")
    assert exit_code([validate]) == 2


def test_an_export_kfp_refuses_fails_its_item_and_the_check(tmp_path):
    nb = make_nb(tmp_path, [("parameters", "limit = None"), ("step:a", "x = limit")], name="none.ipynb")
    suite = suite_of(tmp_path)
    check = suite.add(nb)
    check.start_export()  # in a child process, collected by export()
    export = check.export()
    assert export.failed and export.reason.startswith("the KFP export failed: ")
    assert "limit" in export.reason and check.export() is export
    assert exit_code([check.validate(), export]) == 2
