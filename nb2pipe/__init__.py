"""nb2pipe: tagged notebook cells -> a cached, parallel DAG of papermill steps -> Kubeflow Pipelines.

    run = nb2pipe.start("train.ipynb", parameters={"n_estimators": 300})
    for event in run.events():      # run, step, cell and output events (JSON-serializable dicts)
        ...
    record = run.wait()             # the RunRecord; nb2pipe.run(...) is start + wait

The public API is imported lazily so that `import nb2pipe` (and the CLI's cached path) stays
fast; `dir(nb2pipe)` and tab completion still show all of it.
"""

from __future__ import annotations

from nb2pipe._version import __version__

# name -> module it lives in
_PUBLIC = {
    "start": "nb2pipe.api",
    "run": "nb2pipe.api",
    "plan": "nb2pipe.api",
    "load": "nb2pipe.api",
    "compile_notebook": "nb2pipe.compile.compiler",
    "check_notebook": "nb2pipe.compile.compiler",
    "PipelineSpec": "nb2pipe.model.spec",
    "ComponentSpec": "nb2pipe.model.spec",
    "ParameterSpec": "nb2pipe.model.spec",
    "RunRecord": "nb2pipe.model.records",
    "StepRecord": "nb2pipe.model.records",
    "Run": "nb2pipe.execution.run",
    "Plan": "nb2pipe.execution.plan",
    "Nb2pipeError": "nb2pipe.errors",
    "errors": None,  # the module itself
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'nb2pipe' has no attribute {name!r}")
    import importlib

    if _PUBLIC[name] is None:
        return importlib.import_module(f"nb2pipe.{name}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


def _jupyter_labextension_paths() -> list[dict]:
    """JupyterLab finds the prebuilt extension here (built into nb2pipe/labextension by the wheel)."""
    return [{"src": "labextension", "dest": "nb2pipe"}]

