"""The engine's Python API, shared by every face (CLI, JupyterLab, widget, pytest):
`start` (a run handle), `run` (start + wait), `plan` (what a run would do) and `load`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from nb2pipe.model.records import RunRecord
from nb2pipe.store.workspace import store_root

if TYPE_CHECKING:
    from nb2pipe.execution.plan import Plan
    from nb2pipe.execution.run import Run


def _prepared(path, parameters, strict: bool, text_parameters: frozenset[str], checked, lenient: bool = False):
    """(notebook, spec, typed parameter values), or the error that says why not."""
    from nb2pipe.compile.compiler import check_notebook
    from nb2pipe.compile.notebook import read_notebook
    from nb2pipe.compile.parameters import resolve_parameters
    from nb2pipe.errors import PipelineInvalid

    if checked is not None:  # the CLI already read and checked it (for warnings and progress)
        nb, result = checked
    else:
        nb = read_notebook(path)
        result = check_notebook(path, strict=strict, notebook=nb, lenient=lenient)
    if result.errors or result.spec is None:
        raise PipelineInvalid(result.diagnostics)
    values = resolve_parameters(result.spec.parameters, dict(parameters or {}), from_text=text_parameters)
    return nb, result.spec, values


def start(path: str | os.PathLike, parameters: dict | None = None, store=None, workers: int | None = None,
          cache: bool = True, steps: list[str] | None = None, from_step: str | None = None, executor: str = "local",
          *, fail_fast: bool = False, strict: bool = False, lenient: bool = False, image: str | None = None,
          base_image: str | None = None, note: str | None = None, build_log=None, run_id: str | None = None,
          _text_parameters: frozenset[str] = frozenset(), _checked=None) -> Run:
    """Start a run of a notebook's pipeline and return its handle at once.

    The run goes on in a thread of this process: `run.events()` / `run.subscribe(cb)` to watch it,
    `run.cancel()` to stop it (this run only), `run.wait()` for its RunRecord. executor="local"
    runs each step in a fresh kernel here; "docker" each in a container of the pipeline's image
    (`image`, else built from this environment when missing or stale). `note` is kept with the
    run's record (`nb2pipe runs show`). `run_id` (one `new_run_id()` made, not yet used) lets a
    process that starts the run in a worker know its id before the worker has started it.

    Invalid input raises here (NotebookReadError, PipelineInvalid, UsageError), before anything
    runs; a failing step does not raise: look at the record's `status` and each step's `error`.
    A name a step reads that nothing defines is invalid unless `lenient` (then a warning);
    `strict` makes every validation warning an error.
    """
    from nb2pipe.errors import UsageError
    from nb2pipe.execution.events import EventBus
    from nb2pipe.execution.executor import ExecutionContext
    from nb2pipe.execution.run import Run
    from nb2pipe.execution.scheduler import RunOptions, Scheduler, default_workers
    from nb2pipe.model.records import is_run_id, new_run_id
    from nb2pipe.registry import EXECUTORS
    from nb2pipe.store.workspace import Workspace

    if run_id is not None and not is_run_id(run_id):
        raise UsageError(f"run id {run_id!r} is not one nb2pipe makes (fix: leave it out, or pass new_run_id())")
    nb, spec, values = _prepared(path, parameters, strict, _text_parameters, _checked, lenient)
    executor_class = EXECUTORS.get(executor)
    options = RunOptions(workers=workers or 0, cache=cache, fail_fast=fail_fast, steps=list(steps or []),
                         from_step=from_step)
    ws = Workspace(store_root(path, store))
    try:
        run_id = run_id or new_run_id()
        context = ExecutionContext(run_id=run_id, notebook=nb, spec=spec, workspace=ws,
                                   workers=default_workers(workers), startup_timeout=options.startup_timeout,
                                   options={"image": image, "base_image": base_image, "build_log": build_log})
        bus = EventBus(run_id)
        scheduler = Scheduler(nb, spec, ws, executor_class(context), options, values, bus, run_id)
        scheduler.record.note = note
    except BaseException:
        ws.close()
        raise
    return Run(scheduler, bus, on_exit=ws.close)


def run(path: str | os.PathLike, parameters: dict | None = None, store=None, workers: int | None = None,
        cache: bool = True, steps: list[str] | None = None, from_step: str | None = None, executor: str = "local",
        **options) -> RunRecord:
    """Run a notebook's pipeline and return its RunRecord: `start(...)` then `wait()`.

    Takes the same arguments as `start`.
    """
    handle = start(path, parameters, store, workers, cache, steps, from_step, executor, **options)
    try:
        return handle.wait()
    except BaseException:  # Ctrl-C in a notebook or a script: don't leave kernels running
        handle.cancel()
        raise


def plan(path: str | os.PathLike, parameters: dict | None = None, store=None, cache: bool = True,
         steps: list[str] | None = None, from_step: str | None = None, executor: str = "local", *,
         strict: bool = False, lenient: bool = False, _text_parameters: frozenset[str] = frozenset(),
         _checked=None) -> Plan:
    """What `run` would do with these arguments, without executing anything: for every step,
    whether it would execute or come from the cache, and why."""
    from nb2pipe.execution.plan import make_plan

    nb, spec, values = _prepared(path, parameters, strict, _text_parameters, _checked, lenient)
    return make_plan(nb, spec, values, store_root(path, store), cache=cache, steps=list(steps or []),
                     from_step=from_step, executor=executor)


def load(name: str, run: str | None = None, store=None, notebook=None):
    """Load a stored artifact by variable name (from `run`, or the latest run that produced it).

    In a notebook or a debugger this reproduces a step's exact inputs:
    `df = nb2pipe.load("df", run="20261121-...")`.
    """
    from nb2pipe.artifacts.values import load_value
    from nb2pipe.errors import StoreError
    from nb2pipe.store.objects import ObjectStore
    from nb2pipe.store.runs import RunStore
    from nb2pipe.store.workspace import existing_store

    root = existing_store(store_root(notebook, store), fix="pass store=..., or run the pipeline first")
    with RunStore(root, reader=True) as runs:
        ref = runs.find_artifact(name, run_id=run, notebook=str(notebook) if notebook else None)
    objects = ObjectStore(root)
    if not objects.verify(ref.sha256):
        raise StoreError(f"artifact '{name}' ({ref.sha256[:12]}) failed its integrity check")
    return load_value(str(objects.path(ref.sha256)), ref.serializer)
