"""nb2pipe.checks.gates: NaN metrics, gates and regressions, with the values in every message."""

from __future__ import annotations

import pytest

from nb2pipe.checks.gates import Gate, check_gates, direction, nonfinite_metrics, regressions
from nb2pipe.compile.tags import parse_gate
from nb2pipe.model.records import Metric


def gates(*texts, origin="assert: tag on cell 9"):
    return [Gate(parse_gate(t), origin) for t in texts]


def metrics(**values):
    return {k: Metric(k, v) for k, v in values.items()}


def test_nan_and_infinite_metrics_fail_naming_the_metric():
    found = nonfinite_metrics("evaluate", [Metric("auc", float("nan")), Metric("acc", 0.9),
                                           Metric("loss", float("inf")), Metric("gain", float("-inf")),
                                           Metric("label", "cat")])
    assert [f.message for f in found] == ["metric 'auc' of step 'evaluate' is NaN",
                                         "metric 'loss' of step 'evaluate' is infinite (inf)",
                                         "metric 'gain' of step 'evaluate' is infinite (-inf)"]
    # As read back from JSON: the value is text and the flag says what it was.
    assert nonfinite_metrics("e", [Metric.from_dict({"name": "auc", "value": "NaN", "flag": "nan"})])[0].data == \
        {"metric": "auc", "value": "nan"}


@pytest.mark.parametrize("gate,value,ok", [
    ("acc>=0.9", 0.9, True), ("acc>=0.9", 0.8999, False), ("acc>0.9", 0.9, False), ("acc>0.9", 0.91, True),
    ("rmse<=60", 60, True), ("rmse<=60", 60.5, False), ("rmse<60", 59.9, True), ("n==442", 442, True),
    ("n==442", 441, False), ("ok==1", True, True),
])
def test_each_operator(gate, value, ok):
    failures, held = check_gates(gates(gate), metrics(**{parse_gate(gate).metric: value}))
    assert (not failures) == ok and (len(held) == 1) == ok


def test_a_failed_gate_says_value_threshold_and_origin():
    [failure], held = check_gates(gates("forest_accuracy>=0.99", "forest_accuracy<=1"),
                                  metrics(forest_accuracy=0.93706293706))
    assert failure.message == ("gate forest_accuracy>=0.99 failed: forest_accuracy = 0.937063, threshold >= 0.99 "
                               "(assert: tag on cell 9)")
    assert failure.data["value"] == 0.93706293706 and failure.data["threshold"] == 0.99
    assert held == ["gate forest_accuracy<=1 held: forest_accuracy = 0.937063"]


def test_a_gate_on_a_missing_nan_or_text_metric_fails():
    messages = [f.message for f in check_gates(gates("a>=1", "b>=1", "c>=1"), {
        "b": Metric("b", float("nan")), "c": Metric("c", "high")})[0]]
    assert messages == ["gate a>=1 failed: the step did not report metric 'a' (assert: tag on cell 9)",
                        "gate b>=1 failed: b = nan is not a finite number (assert: tag on cell 9)",
                        "gate c>=1 failed: c = 'high' is not a finite number (assert: tag on cell 9)"]


def test_direction_comes_from_the_gates():
    assert direction("acc", []) == "higher"
    assert direction("acc", gates("acc>=0.9", "other<1")) == "higher"
    assert direction("rmse", gates("rmse<=60")) == "lower"
    assert direction("n", gates("n==442")) == "both"
    assert direction("x", gates("x>=0", "x<=1")) == "both"


def test_regressions_beyond_the_tolerance_in_the_better_direction():
    base = metrics(acc=0.95, rmse=50.0, n=442, unknown=1.0)
    now = metrics(acc=0.92, rmse=52.0, n=442, extra=3.0)
    g = gates("rmse<=60")
    failures, notes = regressions(now, base, g, 0.02, "baseline run X")
    assert [f.message for f in failures] == [
        "metric 'acc' regressed against baseline run X: 0.92 vs baseline 0.95 (higher is better; tolerance 0.02)",
        "metric 'rmse' regressed against baseline run X: 52 vs baseline 50 (lower is better; tolerance 0.02)",
    ]
    assert notes == ["n = 442 vs baseline 442: within tolerance 0.02"]
    # Better than the baseline is never a regression; within the tolerance neither.
    assert regressions(metrics(acc=0.99, rmse=40.0), base, g, 0.0, "b")[0] == []
    assert regressions(metrics(acc=0.94), base, g, 0.02, "b")[0] == []
    # Exactly the tolerance is allowed, floating-point noise included.
    assert regressions(metrics(acc=0.93), base, g, 0.02, "b")[0] == []


def test_an_equality_gate_makes_any_change_a_regression():
    failures, _ = regressions(metrics(n=440), metrics(n=442), gates("n==442"), 1, "b")
    assert failures[0].data["better"] == "both" and "should not change" in failures[0].message
    assert regressions(metrics(n=443), metrics(n=442), gates("n==442"), 1, "b")[0] == []


def test_non_numbers_and_nan_are_not_compared():
    base = {"a": Metric("a", "x"), "b": Metric.from_dict({"name": "b", "value": "NaN", "flag": "nan"})}
    assert regressions(metrics(a=1.0, b=0.1), base, [], 0.0, "b") == ([], [])
