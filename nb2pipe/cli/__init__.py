"""The `nb2pipe` command line (click): one module per command group, all on one `main` group.

A face of the engine: each command parses its arguments, calls the engine's Python API
(nb2pipe.api and the store) and renders what comes back; signals and terminals live here only.
"""

from nb2pipe.cli import build, check, inspect, kfp, run, runs, store  # noqa: F401  (each registers its commands)
from nb2pipe.cli.app import main

__all__ = ["main"]
