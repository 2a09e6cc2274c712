"""What each route answers, as JSON-ready dicts, from the engine's own functions.

These run in a thread of the server (never on its event loop): they read notebooks, compile,
plan and read the store. Paths come in already resolved inside the root (lab/paths.py); paths
read from the store are checked to stay inside the store.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from nb2pipe.errors import PipelineInvalid, UsageError
from nb2pipe.lab.errors import ApiError, problem_dict
from nb2pipe.lab.paths import shown_path
from nb2pipe.model.records import RunRecord, is_run_id

# --- the pipeline of a notebook -----------------------------------------------------------------

# A notebook read while the server is writing it (an autosave) can be half a file: read again.
READ_TRIES, READ_PAUSE = 4, 0.05


def checked_notebook(notebook: Path, shown: str, content: dict | None = None):
    """The notebook (read from disk, or `content`: the editor's unsaved JSON) and its check,
    with messages naming it as the browser does, not where it is on the server."""
    import time

    from nb2pipe.compile.compiler import check_notebook
    from nb2pipe.compile.notebook import notebook_from_bytes, read_notebook
    from nb2pipe.errors import NotebookReadError

    for attempt in range(READ_TRIES):
        try:
            if content is not None:
                nb = notebook_from_bytes(json.dumps(content).encode(), str(notebook))
            else:
                nb = read_notebook(notebook)
            break
        except NotebookReadError as exc:
            if content is not None or attempt == READ_TRIES - 1:
                raise ApiError(400, f"{shown}: {exc.problem}") from None
            time.sleep(READ_PAUSE)
    checked = check_notebook(shown, notebook=dataclasses.replace(nb, path=shown))
    return nb, checked


def pipeline(notebook: Path, shown: str, store: Path, parameters: dict | None, executor: str,
             content: dict | None = None) -> dict:
    """GET pipeline: the spec, every cell's part in it, the problems on their cells, and the plan
    (POST pipeline: the same for the editor's unsaved `content`)."""
    from nb2pipe import api
    from nb2pipe.compile.tags import annotate, describe_tag

    nb, checked = checked_notebook(notebook, shown, content)
    annotations, _ = annotate(nb.cells, shown)
    spec = checked.spec if not checked.errors else None
    step_of = {c.index: s.name for s in spec.steps for c in s.cells} if spec else {}
    setup = {c.index for c in spec.setup} if spec else set()
    metrics_cells = {c.index for s in spec.steps for c in s.cells if "metrics" in c.tags} if spec else set()
    cells = []
    for ann in annotations:
        role = ann.cell_type if ann.cell_type != "code" else ann.role
        if ann.cell_type == "code" and ann.index in setup:
            role = "setup"
        elif ann.cell_type == "code" and (ann.metrics or ann.index in metrics_cells):
            role = "metrics"
        elif ann.cell_type == "code" and ann.step:
            role = "step"
        cells.append({"index": ann.index, "id": ann.cell_id, "step": step_of.get(ann.index), "role": role,
                      "tags": list(ann.tags), "meaning": [describe_tag(t) for t in ann.tags]})
    plan = None
    problems = [problem_dict(d) for d in checked.diagnostics]
    if spec is not None:
        try:
            plan = [s.to_dict() for s in api.plan(notebook, parameters or {}, store=store, executor=executor,
                                                   _checked=(nb, dataclasses.replace(checked))).steps]
        except PipelineInvalid as exc:  # e.g. a parameter value of the wrong type
            problems += [problem_dict(d) for d in exc.diagnostics]
        except UsageError as exc:
            problems.append({"severity": "error", "message": str(exc), "fix": None, "code": "usage",
                             "cell_index": None, "cell_id": None, "line": None, "text": str(exc)})
    return {"path": shown, "spec": spec_view(spec) if spec else None, "cells": cells, "problems": problems,
            "plan": plan}


def spec_view(spec) -> dict:
    steps = [{"name": s.name, "kfp_name": s.kfp_name, "cells": [{"index": c.index, "id": c.id} for c in s.cells],
              "inputs": [{"name": i.name, "producer": i.producer} for i in s.inputs], "outputs": list(s.outputs),
              "parameters": list(s.parameters), "after": list(s.after), "upstreams": list(s.upstreams),
              "modifies": list(s.modifies),
              "metrics": list(s.metrics), "options": dataclasses.asdict(s.options)} for s in spec.steps]
    edges = []
    for s in spec.steps:
        for up in s.upstreams:
            names = [i.name for i in s.inputs if i.producer == up]
            edges.append({"from": up, "to": s.name, "names": names})
    return {"name": spec.name, "kernel": spec.kernel_name, "steps": steps, "edges": edges,
            "parameters": [{"name": p.name, "type": p.type, "default": _jsonable(p.default),
                            "cell_index": p.cell_index} for p in spec.parameters],
            "setup": [{"index": c.index, "id": c.id} for c in spec.setup]}


def _jsonable(value):
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def validate_run(request) -> list[str]:
    """A run request checked as the worker will check it (so a bad one is a 400 with the problems,
    not a worker that exits 2): the notebook, the parameters, the steps. Returns the step names."""
    from nb2pipe.compile.parameters import resolve_parameters
    from nb2pipe.execution.scheduler import select_steps

    _, checked = checked_notebook(request.notebook, request.shown)
    if checked.errors or checked.spec is None:
        raise PipelineInvalid(checked.diagnostics)
    resolve_parameters(checked.spec.parameters, dict(request.parameters))
    if request.steps and request.from_step:
        raise UsageError("give either 'steps' or 'from', not both")
    covered, _ = select_steps(checked.spec, request.steps, request.from_step)
    return covered


def cancel_elsewhere(record: RunRecord) -> None:
    """Cancel a run another process (a terminal's `nb2pipe run`) is running on this machine: SIGINT,
    as its Ctrl-C. Only a live nb2pipe runner of this host is signalled."""
    import signal
    import socket

    from nb2pipe.store.processes import pid_alive

    if record.host != socket.gethostname() or not pid_alive(record.pid):
        raise ApiError(409, f"run {record.id} is not running on this machine (host {record.host}, pid {record.pid})")
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        cmdline = []
    if not any(b"nb2pipe" in part for part in cmdline):  # the pid was reused by another program
        raise ApiError(409, f"run {record.id}'s runner (pid {record.pid}) is gone")
    os.kill(record.pid, signal.SIGINT)


# --- runs in the store --------------------------------------------------------------------------

def _store(root: Path):
    from nb2pipe.store.runs import DB_NAME, RunStore

    if not (root / DB_NAME).is_file():  # no run yet: reading must not create a store
        return None
    return RunStore(root, reader=True)


def run_record(root: Path, run_id: str) -> RunRecord | None:
    """The run's record in the store at `root`, or None when it has none (yet)."""
    if not is_run_id(run_id) or not root.is_dir():
        return None
    store = _store(root)
    if store is None:
        return None
    with store:
        try:  # a damaged record reads back as status damaged, as the runs list shows it
            return store.get_run(run_id, salvage=True)
        except UsageError:
            return None


def live(record: RunRecord, worker) -> bool:
    """Whether a recorded run is still going: its record says running and, for a run this server
    started, its worker has not reported a final status (the record can lag behind the worker)."""
    return record.status.value == "running" and (worker.live if worker is not None else True)


def step_status(step) -> str:
    """A step's state as the run events (and the browser) name it: queued, ..., cancelled."""
    from nb2pipe.execution.events import step_event_status

    status = step_event_status(step)
    return "queued" if status == "pending" else status


def run_view(record: RunRecord, root_dir: str) -> dict:
    out = record.to_dict()
    out["notebook"] = shown_path(root_dir, record.notebook) or Path(record.notebook).name
    out["duration"] = (record.ended - record.started) if record.ended and record.started else None
    out.pop("environment", None)  # paths and versions of the server's machine
    for step, rec in zip(out["steps"], record.steps):
        step["status"] = step_status(rec)
        step["output_notebook"] = bool(step.get("output_notebook"))  # GET .../notebook serves it
    return out


def summary_view(record: RunRecord, root_dir: str) -> dict:
    duration = (record.ended - record.started) if record.ended and record.started else None
    return {"id": record.id, "status": record.status.value, "notebook": shown_path(root_dir, record.notebook)
            or Path(record.notebook).name, "started": record.started, "ended": record.ended, "duration": duration,
            "parameters": {k: _jsonable(v) for k, v in record.parameters.items()},
            "metrics": [m.to_dict() for m in record.metrics], "note": record.note, "tags": list(record.tags),
            "exit_code": record.exit_code,
            "steps": [{"name": s.name, "status": step_status(s), "cached": s.cached, "duration": s.duration}
                      for s in record.steps],
            **({"damaged": record.damaged} if record.damaged else {})}


def runs_of(root: Path, notebook: Path, limit: int) -> list[RunRecord]:
    store = _store(root) if root.is_dir() else None
    if store is None:
        return []
    with store:
        return store.list_runs(limit=limit, notebook=str(notebook))


# --- what a step left -----------------------------------------------------------------------------

def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if root.resolve() not in path.parents:
        raise ApiError(404, "the record names a file outside its store")
    return path


def _step(record: RunRecord, step: str):
    found = record.step(step)
    if found is None:
        raise ApiError(404, f"run {record.id} has no step {step!r}")
    return found


def step_log(root: Path, record: RunRecord, step: str, offset: int, live: bool) -> dict:
    from nb2pipe.store.logs import log_path

    rec = _step(record, step)
    done = not live or rec.status.value not in ("running", "pending", "queued")
    try:
        path = log_path(root, record.id, step)
    except UsageError:
        return {"text": "", "offset": 0, "done": done}  # not started yet, or skipped
    try:
        with open(path, "rb") as f:
            f.seek(max(0, offset))
            data = f.read(4 * 1024 * 1024)
    except FileNotFoundError:
        return {"text": "", "offset": offset, "done": done}
    cut = len(data)
    if not done:  # don't split a UTF-8 character the step is still writing
        while cut > 0 and cut > len(data) - 4 and (data[cut - 1] & 0xC0) == 0x80:
            cut -= 1
        if cut > 0 and data[cut - 1] >= 0xC0:
            cut -= 1
    return {"text": data[:cut].decode("utf-8", "replace"), "offset": max(0, offset) + cut,
            "done": done and len(data) < 4 * 1024 * 1024}


def step_notebook(root: Path, record: RunRecord, step: str) -> dict:
    rec = _step(record, step)
    if not rec.output_notebook:
        raise ApiError(404, f"step {step!r} of run {record.id} has no executed notebook ({rec.status.value})")
    path = _inside(root, rec.output_notebook)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ApiError(404, f"the executed notebook of step {step!r} of run {record.id} is gone") from None


def artifact_file(roots: list[Path], sha: str) -> Path:
    from nb2pipe.store.objects import ObjectStore, is_sha256

    if not is_sha256(sha):
        raise ApiError(400, f"{sha!r} is not a sha256 (64 lowercase hex digits)")
    for root in roots:
        path = ObjectStore(root).path(sha)
        if path.is_file():
            return path
    raise ApiError(404, f"no store of this server holds object {sha}")


# --- Kubeflow -------------------------------------------------------------------------------------

def export_yaml(notebook: Path, store: Path, settings) -> str:
    from nb2pipe.registry import EXPORTERS

    options = {"allow_local_image": True} if settings.kfp_allow_local_image else {}
    return EXPORTERS["kfp"](str(notebook), output="-", store=str(store), image=settings.kfp_image, **options).text


def submit_run(notebook: Path, store: Path, settings, parameters: dict | None, experiment: str | None) -> dict:
    """Submit to the configured host; the token comes from the server's environment only."""
    from nb2pipe.kubeflow.submit import submit

    token = (os.environ.get(settings.kfp_token_env) or "").strip() or None
    result = submit(str(notebook), settings.kfp_host, experiment=experiment, parameters=parameters or {},
                    image=settings.kfp_image, existing_token=token, store=str(store),
                    allow_local_image=settings.kfp_allow_local_image)
    return result.to_dict()
