"""The in-image step runtime: execute one step of a pipeline spec with papermill, then exit.

    python -m nb2pipe.step_runtime --spec /opt/nb2pipe/pipeline.json --job /nb2pipe/job.json

(`nb2pipe/step_runtime.py` is that entry point; this module holds the work.) The docker executor
and the Kubeflow export both start every step container with this entry point, so a step runs the
same code path in a container as on KFP. It imports only what running
a notebook needs (papermill, nbformat, jupyter_client); never docker, kfp or the run store.
With `--wait CWD` it boots its kernel first and then waits for the job file: the docker executor
starts step containers ahead of need, so a step does not pay for interpreter and kernel start.

The job file (JSON) says what to run:
    {"step": "train", "parameters": {...}, "inputs": {name: {"path", "serializer", "sha256"}},
     "work_dir": "/nb2pipe/out", "cwd": "/nb2pipe/notebook" (optional), "timeout": 600 (optional),
     "log_output": false (optional), "events": "/nb2pipe/out/events.jsonl" (optional: where to
     append the step's cell and output events as JSON lines)}

Into `work_dir` (the only folder it writes) it puts `outputs/` (artifacts, manifest.json,
metrics.json, done.json), `step.ipynb` (the executed step notebook, written atomically at the
end; `step.partial.ipynb` while it runs) and `result.json` ({"status", "error"}, last). Its exit
code follows the CLI's contract: 0 succeeded, 1 step failed, 2 bad job, 124 timeout, 138 kernel
died.
"""

from __future__ import annotations

import json
import os
import threading
import time

from nb2pipe.errors import ExitCode, Nb2pipeError
from nb2pipe.store.files import write_json

SPEC_ENV = "NB2PIPE_SPEC"
DEFAULT_SPEC = "/opt/nb2pipe/pipeline.json"
KERNEL_NAME = "python3"  # the image's own ipykernel, whatever the notebook's kernelspec calls it

_EXIT_OF_REASON = {"timeout": ExitCode.TIMEOUT, "kernel_died": ExitCode.KERNEL_DIED, "enospc": ExitCode.IO_ERROR,
                   "store_io": ExitCode.IO_ERROR}


class JobError(Nb2pipeError):
    """The job or spec cannot be run as given (exit 2)."""

    exit_code = ExitCode.INVALID


def load_spec(path: str):
    from nb2pipe.model.spec import PipelineSpec

    try:
        with open(path, encoding="utf-8") as f:
            return PipelineSpec.from_dict(json.load(f))
    except OSError as exc:
        raise JobError(f"cannot read the pipeline spec {path}: {exc.strerror}") from None
    except (ValueError, KeyError) as exc:
        raise JobError(f"{path} is not an nb2pipe pipeline spec: {exc}") from None
    except Nb2pipeError as exc:  # e.g. a spec of another schema version
        raise JobError(f"{path}: {exc}") from None


def run_job(spec, job: dict, kernels=None) -> dict:
    """Execute `job` against `spec`; returns the result dict also written to result.json.

    `kernels` is a KernelPool already booting a kernel in the job's cwd (wait mode); else one is
    made here.
    """
    from nb2pipe.model.records import StepError

    try:
        comp = spec.step(job["step"])
    except KeyError:
        raise JobError(f"step {job.get('step')!r} is not in the pipeline "
                       f"(steps: {', '.join(spec.step_names)})") from None
    work = job["work_dir"]
    out_dir = os.path.join(work, "outputs")
    os.makedirs(out_dir, exist_ok=True)
    pool = kernels or kernel_pool(job.get("cwd") or os.getcwd())
    try:
        try:
            error = _execute(spec, comp, job, work, out_dir, pool)
        except Exception as exc:  # a fault of the runtime itself: still leave a result behind
            error = StepError("error", f"nb2pipe could not run the step: {type(exc).__name__}: {exc}")
        result = {"status": "succeeded" if error is None else "failed",
                  "error": error.to_dict() if error is not None else None}
        # Written before the kernel is reaped: the docker executor takes result.json as the end
        # of the step and removes the container in the background.
        write_json(os.path.join(work, "result.json"), result)
    finally:
        pool.close(wait=True)
    return result


def kernel_pool(cwd: str):
    """A pool booting the one kernel this process needs (no fork server: one kernel only)."""
    os.environ["NB2PIPE_FORK_KERNELS"] = "0"
    from nb2pipe.runtime.kernels import KernelPool

    pool = KernelPool(KERNEL_NAME, cwd, startup_timeout=60, starters=1)
    pool.prefill(1)
    return pool


def _execute(spec, comp, job: dict, work: str, out_dir: str, pool):
    from pathlib import Path

    from nb2pipe.model.records import StepError
    from nb2pipe.runtime.execute import execute_step
    from nb2pipe.runtime.kernels import KernelStartError
    from nb2pipe.runtime.stepnb import build_step_notebook

    step_nb = build_step_notebook(spec, comp, job.get("inputs") or {}, out_dir,
                                  kernelspec={"name": KERNEL_NAME, "language": spec.language,
                                              "display_name": "Python 3"})
    try:
        km = pool.acquire()
    except KernelStartError as exc:
        return StepError("kernel_died", str(exc))
    events = EventFile(job["events"]) if job.get("events") else None
    try:
        return execute_step(comp, step_nb, Path(work) / "step.partial.ipynb", Path(work) / "step.ipynb", Path(out_dir),
                            km, kernel_name=KERNEL_NAME, parameters=job.get("parameters"),
                            timeout=job.get("timeout") or comp.options.timeout,
                            log_output=bool(job.get("log_output")), on_event=events.write if events else None)
    finally:
        pool.discard(km)
        if events is not None:
            events.close()


class EventFile:
    """The step's cell and output events as JSON lines, each flushed at once: the docker
    executor follows this file to show the step live."""

    def __init__(self, path: str):
        self._f = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, event: dict) -> None:
        line = json.dumps(event, allow_nan=False, default=str) + "\n"
        with self._lock:
            if not self._f.closed:
                self._f.write(line)
                self._f.flush()

    def close(self) -> None:
        with self._lock:
            self._f.close()


def wait_for(path: str, poll: float = 0.005) -> None:
    """Block until `path` exists (the docker executor writes the job file atomically)."""
    while not os.path.exists(path):
        time.sleep(poll)


def exit_code(result: dict) -> int:
    if result["status"] == "succeeded":
        return int(ExitCode.OK)
    return int(_EXIT_OF_REASON.get((result.get("error") or {}).get("reason"), ExitCode.STEP_FAILED))
