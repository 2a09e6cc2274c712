"""The `nb2pipe` command line (click): one module per command group, all on one `main` group.

A face of the engine: each command parses its arguments, calls the engine's Python API
(nb2pipe.api and the store) and renders what comes back; signals and terminals live here only.
"""

from nb2pipe.startup import skip_slow_optional_imports

skip_slow_optional_imports()  # before any command imports nbformat (see nb2pipe/startup.py)

from nb2pipe.cli import build, check, inspect, kfp, run, runs, store  # noqa: E402,F401  (each registers its commands)
from nb2pipe.cli.app import main  # noqa: E402

__all__ = ["main"]
