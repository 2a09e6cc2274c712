from __future__ import annotations

import json
import math
import re
import time

import pytest

from nb2pipe.model.records import (
    ArtifactRef,
    Metric,
    RunRecord,
    RunStatus,
    Status,
    StepError,
    StepRecord,
    new_run_id,
)


def _artifact(name: str, producer: str | None = None) -> ArtifactRef:
    return ArtifactRef(name, "ab" * 32, 123, "pickle", "builtins.dict", producer)


def _full_run() -> RunRecord:
    load = StepRecord(
        name="load",
        status=Status.SUCCEEDED,
        started=1700000000.25,
        ended=1700000001.5,
        duration=1.25,
        cached=False,
        attempts=1,
        cache_key="k1",
        spec_hash="s1",
        parameters={"n": 3, "path": "data.csv"},
        outputs=[_artifact("df")],
        output_notebook="runs/x/load.ipynb",
        image_digest="sha256:abc",
    )
    train = StepRecord(
        name="train",
        status=Status.FAILED,
        started=1700000002.0,
        ended=1700000003.0,
        duration=1.0,
        attempts=2,
        inputs=[_artifact("df", "load")],
        error=StepError(
            reason="error",
            message="ZeroDivisionError: division by zero",
            cell_index=4,
            cell_id="c4",
            ename="ZeroDivisionError",
            evalue="division by zero",
            traceback=["line 1", "line 2"],
        ),
    )
    report = StepRecord(name="report", status=Status.CACHED, cached=True, cached_from="r-old")
    return RunRecord(
        id=new_run_id(),
        notebook="examples/train.ipynb",
        notebook_sha256="cd" * 32,
        spec_hash="spec",
        status=RunStatus.FAILED,
        reason="step train failed",
        started=1700000000.0,
        ended=1700000004.0,
        parameters={"lr": 0.1, "epochs": 2, "tags": ["a", "b"]},
        metrics=[
            Metric("acc", 0.91),
            Metric("n", 7),
            Metric("ok", True),
            Metric("label", "best"),
            Metric("loss", float("nan")),
            Metric("up", float("inf")),
            Metric("down", float("-inf")),
        ],
        steps=[load, train, report],
        environment={
            "nb2pipe_version": "0.1.0",
            "python_version": "3.11.7",
            "env_fingerprint": "f",
            "git_commit": None,
            "kernel_name": "python3",
            "executor": "local",
        },
        pid=1234,
        host="box",
        exit_code=1,
    )


def _same_metric(a: Metric, b: Metric) -> bool:
    if isinstance(a.value, float) and math.isnan(a.value):
        return isinstance(b.value, float) and math.isnan(b.value) and a.flag == b.flag
    return a == b and type(a.value) is type(b.value)


def test_status_values_are_lowercase_strings():
    assert [s.value for s in Status] == [
        "pending", "running", "succeeded", "failed", "skipped", "cached"
    ]
    assert [s.value for s in RunStatus] == [
        "running", "succeeded", "failed", "cancelled", "crashed", "damaged"
    ]
    assert Status("succeeded") is Status.SUCCEEDED
    assert Status.SUCCEEDED == "succeeded"


def test_run_record_round_trips_through_strict_json():
    run = _full_run()
    text = json.dumps(run.to_dict(), allow_nan=False)
    back = RunRecord.from_dict(json.loads(text))
    assert back.steps == run.steps
    assert back.to_dict() == run.to_dict()
    assert all(_same_metric(a, b) for a, b in zip(run.metrics, back.metrics))
    assert len(back.metrics) == len(run.metrics)
    assert back.status is RunStatus.FAILED
    assert back.steps[0].status is Status.SUCCEEDED
    assert isinstance(back.steps[1].error, StepError)


def test_non_finite_metrics_encode_as_strings_with_flags():
    d = {m.name: m.to_dict() for m in _full_run().metrics}
    assert d["loss"] == {"name": "loss", "value": "NaN", "flag": "nan"}
    assert d["up"] == {"name": "up", "value": "Infinity", "flag": "inf"}
    assert d["down"] == {"name": "down", "value": "-Infinity", "flag": "-inf"}
    assert d["acc"]["flag"] is None
    up = Metric.from_dict(d["up"])
    assert up.value == math.inf and up.flag == "inf"
    assert Metric.from_dict(d["down"]).value == -math.inf
    assert math.isnan(Metric.from_dict(d["loss"]).value)


def test_string_metric_that_reads_nan_stays_a_string():
    m = Metric("label", "NaN")
    assert m.flag is None
    assert Metric.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_metric_types_survive_json():
    for value in (True, 3, 3.0, "x"):
        back = Metric.from_dict(json.loads(json.dumps(Metric("m", value).to_dict())))
        assert back.value == value and type(back.value) is type(value)


def test_metric_accepts_numpy_like_scalars():
    class FakeScalar:
        def item(self):
            return float("nan")

    m = Metric("x", FakeScalar())
    assert m.flag == "nan"
    json.dumps(m.to_dict(), allow_nan=False)


def test_step_record_defaults_round_trip():
    step = StepRecord(name="s")
    assert step.status is Status.PENDING
    assert StepRecord.from_dict(json.loads(json.dumps(step.to_dict()))) == step


def test_artifact_and_error_round_trip():
    ref = _artifact("x", "p")
    assert ArtifactRef.from_dict(ref.to_dict()) == ref
    err = StepError(reason="timeout", message="step exceeded 10 s")
    assert StepError.from_dict(err.to_dict()) == err


def test_run_record_defaults_fill_pid_and_host():
    run = RunRecord(id="x", notebook="nb.ipynb")
    assert run.pid > 0 and run.host
    assert run.status is RunStatus.RUNNING
    assert RunRecord.from_dict(json.loads(json.dumps(run.to_dict(), allow_nan=False))) == run


def test_run_ids_are_unique_and_sort_by_time():
    # 5000 ids in about one second collide about half the time by chance alone: they must not
    ids = [new_run_id() for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", i) for i in ids)
    first = new_run_id()
    time.sleep(1.05)
    assert new_run_id() > first


def test_run_record_step_lookup():
    run = _full_run()
    assert run.step("train").name == "train"
    assert run.step("nope") is None


def test_invalid_status_is_rejected():
    with pytest.raises(ValueError):
        StepRecord.from_dict({"name": "s", "status": "exploded"})
