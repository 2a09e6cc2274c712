"""The Python API: `nb2pipe.run(...)` and `nb2pipe.load(...)`."""

from __future__ import annotations

import os
from pathlib import Path

from nb2pipe.model.records import RunRecord

STORE_ENV = "NB2PIPE_STORE"
DEFAULT_STORE = ".nb2pipe"


def store_root(notebook: str | os.PathLike | None, store: str | os.PathLike | None = None) -> Path:
    """--store, else $NB2PIPE_STORE, else .nb2pipe/ beside the notebook (or in the cwd)."""
    if store:
        return Path(store)
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    base = Path(notebook).resolve().parent if notebook else Path.cwd()
    return base / DEFAULT_STORE


# Executors by name: where a run's steps execute. Values are "module:class" so that choosing the
# local executor never imports the docker SDK.
EXECUTORS = {"local": "nb2pipe.execution.scheduler:LocalRunner", "docker": "nb2pipe.execution.docker:DockerRunner"}


def executor_class(name: str):
    import importlib

    from nb2pipe.errors import UsageError

    if name not in EXECUTORS:
        raise UsageError(f"unknown executor '{name}' (executors: {', '.join(EXECUTORS)})")
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def run(path, parameters: dict | None = None, store=None, workers: int | None = None, cache: bool = True,
        *, steps: list[str] | None = None, from_step: str | None = None, fail_fast: bool = False,
        strict: bool = False, on_change=None, executor: str = "local", image: str | None = None,
        base_image: str | None = None, build_log=None, _text_parameters: frozenset[str] = frozenset(),
        _checked=None) -> RunRecord:
    """Run a notebook's pipeline on this machine and return its RunRecord.

    executor="local" runs each step in a fresh kernel here; "docker" runs each in a container of
    the pipeline's image (`image`, else built from this environment when missing or stale).

    Invalid input raises (NotebookReadError, PipelineInvalid, UsageError) before anything runs;
    a failing step does not raise: look at `record.status` and each step's `error`.
    """
    from nb2pipe.compile.compiler import check_notebook
    from nb2pipe.errors import PipelineInvalid, UsageError
    from nb2pipe.runtime.kernels import available_kernels, kernel_installed
    from nb2pipe.compile.notebook import read_notebook
    from nb2pipe.compile.parameters import resolve_parameters
    from nb2pipe.execution.scheduler import RunOptions, Workspace

    if _checked is not None:  # the CLI already read and checked it for its progress display
        nb, result = _checked
    else:
        nb = read_notebook(path)
        result = check_notebook(path, strict=strict, notebook=nb)
    if result.errors or result.spec is None:
        raise PipelineInvalid(result.diagnostics)
    spec = result.spec
    values = resolve_parameters(spec.parameters, dict(parameters or {}), from_text=_text_parameters)
    if executor == "local" and not kernel_installed(spec.kernel_name):
        kernels = available_kernels()
        raise UsageError(f"{path}: kernel '{spec.kernel_name}' is not installed; available kernels: "
                         f"{', '.join(kernels) or 'none'} (fix: install it, or change the notebook's kernel)")
    ws = Workspace(store_root(path, store))
    try:
        options = RunOptions(workers=workers or 0, cache=cache, fail_fast=fail_fast, steps=list(steps or []),
                             from_step=from_step)
        extra = {} if executor == "local" else {"image": image, "base_image": base_image, "build_log": build_log}
        runner = executor_class(executor)(nb, spec, ws, options, on_change=on_change, **extra)
        _active.append(runner)
        try:
            return runner.run(values)
        finally:
            _active.remove(runner)
    finally:
        ws.close()


# Runners in progress, so a signal handler can cancel them.
_active: list = []


def cancel_active(signum: int) -> None:
    for runner in list(_active):
        runner.cancel(signum)


def load(name: str, run: str | None = None, store=None, notebook=None):
    """Load a stored artifact by variable name (from `run`, or the latest run that produced it).

    In a notebook or a debugger this reproduces a step's exact inputs:
    `df = nb2pipe.load("df", run="20261121-...")`.
    """
    from nb2pipe.artifacts.values import load_value
    from nb2pipe.store.objects import ObjectStore
    from nb2pipe.store.runs import RunStore

    root = store_root(notebook, store)
    if not (root / "runs.db").exists():
        from nb2pipe.errors import UsageError

        raise UsageError(f"no nb2pipe store at {root} (pass store=..., or run the pipeline first)")
    with RunStore(root) as runs:
        ref = runs.find_artifact(name, run_id=run, notebook=str(notebook) if notebook else None)
    objects = ObjectStore(root)
    if not objects.verify(ref.sha256):
        from nb2pipe.errors import StoreError

        raise StoreError(f"artifact '{name}' ({ref.sha256[:12]}) failed its integrity check")
    return load_value(str(objects.path(ref.sha256)), ref.serializer)
