"""Exporters: pipeline formats a notebook can be exported to (`nb2pipe export NB --to NAME`).

Each exporter is imported only when used, so `nb2pipe --help` never imports kfp. An exporter is
called as ``exporter(notebook, output=None, image=None, py=None, store=None, warn=None)`` and
returns an object with ``path`` (None when the text went to stdout), ``image``, ``tasks``,
``py_path`` and ``text``.
"""

from __future__ import annotations

from collections.abc import Callable


def _kfp(notebook, **options):
    from nb2pipe.kubeflow.ir import export

    return export(notebook, **options)


EXPORTERS: dict[str, Callable] = {"kfp": _kfp}


def register(name: str, exporter: Callable) -> Callable:
    """Add or replace the exporter `--to NAME` selects; returns it."""
    EXPORTERS[name] = exporter
    return exporter
