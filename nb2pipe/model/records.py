"""What was observed: runs, steps, artifacts and metrics as recorded in the run store.

Every record round-trips through ``to_dict()``/``from_dict()`` and its dict form is strict JSON
(``json.dumps(..., allow_nan=False)`` works), so the same shapes serve the store, ``--json``
output and the Kubeflow export.
"""

from __future__ import annotations

import enum
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field

from nb2pipe.model.numbers import decode_float, encode_float, nonfinite_flag

MetricValue = int | float | bool | str


class Status(str, enum.Enum):
    """State of one step within one run."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CACHED = "cached"


class RunStatus(str, enum.Enum):
    """State of a whole run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CRASHED = "crashed"  # the runner process died without finishing the run
    DAMAGED = "damaged"  # only read back: the record does not decode (see RunRecord.damaged); never written


# Why a step failed; "crashed" is only written by RunStore.mark_crashed.
STEP_ERROR_REASONS = (
    "error",
    "timeout",
    "kernel_died",
    "cancelled",
    "early_exit",
    "serialization",
    "upstream_failed",
    "crashed",
)


def new_run_id() -> str:
    """A run id that sorts by start time (UTC, so DST never reorders) and is unique.

    The random suffix tells apart runs started within the same second by different processes;
    within one process an id is never handed out twice (24 random bits collide by the birthday
    bound once a few thousand ids share a second, which a script starting runs in a loop can do).
    """
    with _ISSUED_LOCK:
        while True:
            second = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            if second != _ISSUED[0]:
                _ISSUED[0], _ISSUED[1] = second, set()
            run_id = second + "-" + secrets.token_hex(3)
            if run_id not in _ISSUED[1]:
                _ISSUED[1].add(run_id)
                return run_id


_RUN_ID_RE = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


def is_run_id(value: object) -> bool:
    """Whether `value` is spelled as `new_run_id` makes ids (safe as a folder name)."""
    return isinstance(value, str) and _RUN_ID_RE.fullmatch(value) is not None


# The second the ids in the set were issued in, and the ids: only that second's can collide.
_ISSUED: list = ["", set()]
_ISSUED_LOCK = threading.Lock()


@dataclass
class ArtifactRef:
    """A stored value: the content address of its serialized bytes and how to load it."""

    name: str
    sha256: str
    size: int
    serializer: str
    type_name: str
    producer_step: str | None = None
    run_id: str | None = None  # the run whose step made it (for a cached step: the run it came from)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "size": self.size,
            "serializer": self.serializer,
            "type_name": self.type_name,
            "producer_step": self.producer_step,
            "run_id": self.run_id,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ArtifactRef:
        return cls(
            name=d["name"],
            sha256=d["sha256"],
            size=int(d["size"]),
            serializer=d["serializer"],
            type_name=d["type_name"],
            producer_step=d.get("producer_step"),
            run_id=d.get("run_id"),
        )


@dataclass
class StepError:
    """Why a step did not succeed, located at the failing cell when known."""

    reason: str
    message: str
    cell_index: int | None = None  # 1-based, as in Diagnostic
    cell_id: str | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: list[str] = field(default_factory=list)  # plain text, no terminal colour codes
    line: int | None = None  # 1-based line of the failing cell that raised, when known

    def to_dict(self) -> dict:
        return {
            "reason": self.reason,
            "message": self.message,
            "cell_index": self.cell_index,
            "cell_id": self.cell_id,
            "line": self.line,
            "ename": self.ename,
            "evalue": self.evalue,
            "traceback": list(self.traceback),
        }

    @classmethod
    def from_dict(cls, d: dict) -> StepError:
        return cls(
            reason=d["reason"],
            message=d.get("message", ""),
            cell_index=d.get("cell_index"),
            cell_id=d.get("cell_id"),
            ename=d.get("ename"),
            evalue=d.get("evalue"),
            traceback=list(d.get("traceback") or []),
            line=d.get("line"),
        )

    @classmethod
    def store_io(cls, message: str, **located) -> StepError:
        """The store could not be read or written while the step ran (disk full, read-only):
        no fault of the step's code, so its run exits 74 and the step is not retried."""
        full = any(s in message for s in ("No space left", "Disk quota", "disk is full", "database or disk is full"))
        fix = ("free space on the store's disk" if full else "make the store writable") + \
            " (or pass --store with another folder), then run again: finished steps are reused"
        return cls("enospc" if full else "store_io", f"{message}; {fix}", **located)


# Step failures caused by the store, not the step (exit 74).
STORE_IO_REASONS = frozenset({"enospc", "store_io"})


@dataclass
class StepRecord:
    """One step of one run, as last observed."""

    name: str
    status: Status = Status.PENDING
    started: float | None = None
    ended: float | None = None
    duration: float | None = None
    cached: bool = False
    attempts: int = 0
    cache_key: str | None = None
    spec_hash: str | None = None
    parameters: dict = field(default_factory=dict)
    inputs: list[ArtifactRef] = field(default_factory=list)
    outputs: list[ArtifactRef] = field(default_factory=list)
    error: StepError | None = None
    output_notebook: str | None = None  # relative to the store root, so the store can move
    cached_from: str | None = None  # run id whose outputs this step reused
    image_digest: str | None = None
    # The parameter values its inputs were made with, through every upstream step (lineage: a
    # `--step` run reuses artifacts another run made, maybe with other values than its own).
    input_parameters: dict = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)  # what the step's metrics cell reported

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status.value,
            "started": self.started,
            "ended": self.ended,
            "duration": self.duration,
            "cached": self.cached,
            "attempts": self.attempts,
            "cache_key": self.cache_key,
            "spec_hash": self.spec_hash,
            "parameters": dict(self.parameters),
            "inputs": [a.to_dict() for a in self.inputs],
            "outputs": [a.to_dict() for a in self.outputs],
            "error": self.error.to_dict() if self.error else None,
            "output_notebook": self.output_notebook,
            "cached_from": self.cached_from,
            "image_digest": self.image_digest,
            "input_parameters": dict(self.input_parameters),
            "metrics": [m.to_dict() for m in self.metrics],
        }

    @classmethod
    def from_dict(cls, d: dict) -> StepRecord:
        return cls(
            name=d["name"],
            status=Status(d["status"]),
            started=d.get("started"),
            ended=d.get("ended"),
            duration=d.get("duration"),
            cached=bool(d.get("cached", False)),
            attempts=int(d.get("attempts", 0)),
            cache_key=d.get("cache_key"),
            spec_hash=d.get("spec_hash"),
            parameters=dict(d.get("parameters") or {}),
            inputs=[ArtifactRef.from_dict(a) for a in d.get("inputs") or []],
            outputs=[ArtifactRef.from_dict(a) for a in d.get("outputs") or []],
            error=StepError.from_dict(d["error"]) if d.get("error") else None,
            output_notebook=d.get("output_notebook"),
            cached_from=d.get("cached_from"),
            image_digest=d.get("image_digest"),
            input_parameters=dict(d.get("input_parameters") or {}),
            metrics=[Metric.from_dict(m) for m in d.get("metrics") or []],
        )


@dataclass
class Metric:
    """A scalar a run reported; ``flag`` marks a non-finite float ("nan", "inf", "-inf")."""

    name: str
    value: MetricValue
    flag: str | None = None

    def __post_init__(self) -> None:
        # numpy scalars are not JSON-serializable; .item() gives the plain Python value.
        if not isinstance(self.value, (bool, int, float, str)) and hasattr(self.value, "item"):
            self.value = self.value.item()
        derived = nonfinite_flag(self.value)
        if derived is not None:
            self.flag = derived

    def to_dict(self) -> dict:
        value, flag = encode_float(self.value)
        return {"name": self.name, "value": value, "flag": flag or self.flag}

    @classmethod
    def from_dict(cls, d: dict) -> Metric:
        flag = d.get("flag")
        return cls(name=d["name"], value=decode_float(d["value"], flag), flag=flag)


@dataclass
class RunRecord:
    """One execution of a notebook pipeline."""

    id: str
    notebook: str  # as the user passed it (relative to their cwd, or absolute)
    notebook_sha256: str | None = None
    spec_hash: str | None = None
    status: RunStatus = RunStatus.RUNNING
    reason: str | None = None
    started: float | None = None
    ended: float | None = None
    parameters: dict = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    # nb2pipe_version, python_version, env_fingerprint, git_commit, kernel_name, executor
    environment: dict = field(default_factory=dict)
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    exit_code: int | None = None
    note: str | None = None  # `nb2pipe run --note TEXT`
    tags: list[str] = field(default_factory=list)  # `nb2pipe runs tag RUN LABEL`
    damaged: str | None = None  # why the stored record does not decode (status DAMAGED); None when sound

    def __post_init__(self) -> None:
        self.status = RunStatus(self.status)

    def step(self, name: str) -> StepRecord | None:
        for s in self.steps:
            if s.name == name:
                return s
        return None

    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    def _repr_html_(self) -> str:
        """Jupyter's rich display: a table of the run (`nb2pipe.run(...)` as a cell's last line)."""
        from nb2pipe.model.display import run_record_html

        return run_record_html(self)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "notebook": self.notebook,
            "notebook_sha256": self.notebook_sha256,
            "spec_hash": self.spec_hash,
            "status": self.status.value,
            "reason": self.reason,
            "started": self.started,
            "ended": self.ended,
            "parameters": dict(self.parameters),
            "metrics": [m.to_dict() for m in self.metrics],
            "steps": [s.to_dict() for s in self.steps],
            "environment": dict(self.environment),
            "pid": self.pid,
            "host": self.host,
            "exit_code": self.exit_code,
            "note": self.note,
            "tags": list(self.tags),
            **({"damaged": self.damaged} if self.damaged is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> RunRecord:
        return cls(
            id=d["id"],
            notebook=d["notebook"],
            notebook_sha256=d.get("notebook_sha256"),
            spec_hash=d.get("spec_hash"),
            status=RunStatus(d["status"]),
            reason=d.get("reason"),
            started=d.get("started"),
            ended=d.get("ended"),
            parameters=dict(d.get("parameters") or {}),
            metrics=[Metric.from_dict(m) for m in d.get("metrics") or []],
            steps=[StepRecord.from_dict(s) for s in d.get("steps") or []],
            environment=dict(d.get("environment") or {}),
            pid=int(d.get("pid", 0)),
            host=d.get("host", ""),
            exit_code=d.get("exit_code"),
            note=d.get("note"),
            tags=list(d.get("tags") or []),
            damaged=d.get("damaged"),
        )
