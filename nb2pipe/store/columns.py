"""The run store's column values as the records hold them, decoded with their types checked.

SQLite keeps whatever bytes a damaged file gives it: a status no Status names, JSON that parses but
lacks a key, a REAL column come back as text or a blob. Decoding such a value raises DamagedRecord
naming the run, the step and the column, never the decoder's own ValueError or KeyError; `REPAIRED`
is the neutral value `store verify --repair` writes in place of one.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from nb2pipe.errors import DamagedRecord
from nb2pipe.model.records import ArtifactRef, Metric, RunStatus, Status, StepError
from nb2pipe.store.objects import is_sha256

# What a decoder of damaged input raises; anything else is a bug and surfaces as it is.
DECODING_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError)


def decoded(run_id: object, step: object, column: str, decode: Callable, raw: object):
    """`decode(raw)`, or DamagedRecord naming where the value is when it does not decode."""
    try:
        return decode(raw)
    except DamagedRecord:
        raise
    except DECODING_ERRORS as exc:
        raise DamagedRecord(str(run_id), column, shown(raw), problem(exc),
                            step=None if step is None else str(step)) from exc


def shown(raw: object) -> str:
    """A stored value as a message quotes it (cut short)."""
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def problem(exc: Exception) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else f"{type(exc).__name__}: {exc}"


def text(raw: object) -> str:
    if not isinstance(raw, str):
        raise TypeError(f"expected text, found {type(raw).__name__}")
    return raw


def optional_text(raw: object) -> str | None:
    return None if raw is None else text(raw)


def number(raw: object) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise TypeError(f"expected a number, found {type(raw).__name__}")
    return raw


def integer(raw: object) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise TypeError(f"expected an integer, found {type(raw).__name__}")
    return raw


def count(raw: object) -> int:
    value = integer(raw)
    if value is None:
        raise TypeError("expected an integer, found NULL")
    return value


def run_status(raw: object) -> RunStatus:
    status = RunStatus(text(raw))
    if status is RunStatus.DAMAGED:  # only ever a reading, never written
        raise ValueError("'damaged' is not a recorded status")
    return status


def step_status(raw: object) -> Status:
    return Status(text(raw))


def json_object(raw: object) -> dict:
    value = json.loads(text(raw))
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, found {type(value).__name__}")
    return value


def optional_json_object(raw: object) -> dict:
    return {} if raw is None else json_object(raw)


def json_value(raw: object):
    return json.loads(text(raw))


def metric(d: object) -> Metric:
    if not isinstance(d, dict):
        raise TypeError(f"expected a metric object, found {type(d).__name__}")
    found = Metric.from_dict(d)
    if not isinstance(found.name, str) or isinstance(found.value, list | dict) or found.value is None:
        raise ValueError(f"not a metric: {d!r}")
    return found


def step_metrics(raw: object) -> list[Metric]:
    value = [] if raw is None else json.loads(text(raw))
    if not isinstance(value, list):
        raise TypeError(f"expected a JSON list, found {type(value).__name__}")
    return [metric(m) for m in value]


def step_error(raw: object) -> StepError | None:
    if raw is None or raw == "":
        return None
    d = json_object(raw)
    error = StepError.from_dict(d)
    text(error.reason)
    text(error.message)
    if not isinstance(error.traceback, list) or not all(isinstance(line, str) for line in error.traceback):
        raise TypeError("traceback is not a list of lines")
    for value in (error.cell_index, error.line):
        integer(value)
    return error


def sha256(raw: object) -> str:
    if not is_sha256(raw):
        raise ValueError(f"{raw!r} is not a sha256")
    return raw  # type: ignore[return-value]


def artifact(name, sha, size, serializer, type_name, producer, source) -> ArtifactRef:
    return ArtifactRef(text(name), sha256(sha), count(size), text(serializer), text(type_name), optional_text(producer),
                       optional_text(source))


# The value --repair writes for a damaged column: the run or step reads back, with what is lost
# said where it can be (a status becomes crashed/failed, since what it was is unknown).
_WHY = "its record was damaged; repaired by nb2pipe store verify --repair"
_CRASHED = json.dumps(StepError("crashed", _WHY).to_dict(), sort_keys=True)
REPAIRED_WHY = {"runs": _WHY, "steps": _CRASHED}  # the reason / error a repaired status carries
# Columns that may be NULL: a damaged one becomes NULL unless REPAIRED says otherwise.
NULLABLE = (optional_text, number, integer, step_error)
REPAIRED = {
    "runs": {"status": RunStatus.CRASHED.value, "parameters": "{}", "environment": "{}", "notebook": "?",
             "host": None},
    "steps": {"status": Status.FAILED.value, "parameters": "{}", "input_parameters": "{}", "metrics": "[]",
              "error": _CRASHED, "cached": 0, "attempts": 0},
}
