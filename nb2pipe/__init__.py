"""nb2pipe: tagged notebook cells -> a cached, parallel DAG of papermill steps -> Kubeflow Pipelines.

The public API is imported lazily so that `import nb2pipe` (and the CLI's no-op paths) stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "compile_notebook", "PipelineSpec", "ComponentSpec", "run", "load"]


def __getattr__(name: str):
    if name == "compile_notebook":
        from nb2pipe.compile.compiler import compile_notebook

        return compile_notebook
    if name in ("PipelineSpec", "ComponentSpec", "ParameterSpec"):
        from nb2pipe.model import spec

        return getattr(spec, name)
    if name == "run":
        from nb2pipe.api import run

        return run
    if name == "load":
        from nb2pipe.api import load

        return load
    raise AttributeError(f"module 'nb2pipe' has no attribute {name!r}")
