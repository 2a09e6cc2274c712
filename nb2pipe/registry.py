"""Named plugins: executors, exporters and (in artifacts.values) serializers.

One small class, in the shape of papermill's engine registry but lazy: built-ins are registered
by name as an object or as a ``"module:attr"`` string imported on first use (so choosing the
local executor never imports the docker SDK), and a plugin package adds its own through an entry
point group, e.g. in its pyproject.toml::

    [project.entry-points."nb2pipe.exporters"]
    argo = "nb2pipe_argo:export"

Entry points are read on the first lookup, never at import, and load only when chosen. A plugin
replaces a built-in of the same name; a later ``register()`` in code replaces both.

Standard library only: the serializer registry is imported inside every step kernel.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

from nb2pipe.errors import Nb2pipeError, UsageError


class _Reference:
    """Something registered by reference: a "module:attr" string or an entry point, not loaded yet."""

    def __init__(self, target: Any):
        self.target = target

    @property
    def text(self) -> str:
        return self.target if isinstance(self.target, str) else self.target.value

    def load(self) -> Any:
        if not isinstance(self.target, str):
            return self.target.load()  # an importlib.metadata.EntryPoint
        import importlib

        module, _, attr = self.target.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        return obj


class Registry:
    """Objects of one kind by name; ``kind`` names them in messages ("exporter")."""

    def __init__(self, kind: str, entry_point_group: str | None = None, builtins: dict[str, Any] | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Any] = {}
        self._entry_points_read = entry_point_group is None
        for name, obj in (builtins or {}).items():
            self._put(name, obj)

    # -- registering ---------------------------------------------------------------------------

    def register(self, name: str, obj: Any) -> Any:
        """Add or replace `name`: the object itself, or a "module:attr" string imported on first
        use. Returns `obj`."""
        self._read_entry_points()  # first, so that code registrations win over plugins
        self._put(name, obj)
        return obj

    def unregister(self, name: str) -> None:
        self._read_entry_points()
        self._entries.pop(name, None)

    # -- looking up ----------------------------------------------------------------------------

    def get(self, name: str) -> Any:
        """The object registered as `name` (imported now if registered by reference)."""
        self._read_entry_points()
        try:
            obj = self._entries[name]
        except KeyError:
            raise self._unknown(name) from None
        if isinstance(obj, _Reference):
            obj = self._entries[name] = self._load(name, obj)
        return obj

    def names(self) -> list[str]:
        """Every registered name, sorted; nothing is imported."""
        self._read_entry_points()
        return sorted(self._entries)

    def values(self) -> list[Any]:
        """Every registered object (importing those registered by reference), in `names()` order."""
        return [self.get(name) for name in self.names()]

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        self._read_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[Any]:
        return iter(self.names())

    def __len__(self) -> int:
        self._read_entry_points()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.kind}s: {', '.join(self.names()) or 'none'}>"

    # -- hooks for subclasses ------------------------------------------------------------------

    def _put(self, name: str, obj: Any) -> None:
        self._entries[name] = _Reference(obj) if isinstance(obj, str) else obj

    def _unknown(self, name: str) -> Nb2pipeError:
        choices = ", ".join(self.names()) or "none are installed"
        return UsageError(f"unknown {self.kind} {name!r} ({self.kind}s: {choices})")

    def _load(self, name: str, ref: _Reference) -> Any:
        try:
            return ref.load()
        except Nb2pipeError:  # e.g. MissingDependency: already says what to do
            raise
        except Exception as exc:
            raise UsageError(f"cannot load the {self.kind} {name!r} ({ref.text}): {type(exc).__name__}: {exc}") from exc

    def _read_entry_points(self) -> None:
        """Record the group's entry points (on the first lookup); each loads only when chosen."""
        for entry_point in self._new_entry_points():
            self._entries[entry_point.name] = _Reference(entry_point)

    def _new_entry_points(self) -> list[Any]:
        """The group's entry points sorted by name, the first time it is called; [] after that."""
        if self._entry_points_read:
            return []
        self._entry_points_read = True  # set first: a plugin module may call register() on import
        from importlib.metadata import entry_points

        try:
            return sorted(entry_points(group=self.entry_point_group), key=lambda ep: ep.name)
        except Exception as exc:  # broken metadata somewhere on sys.path must not stop nb2pipe
            warnings.warn(f"nb2pipe: cannot read {self.entry_point_group} entry points: {exc}", RuntimeWarning,
                          stacklevel=4)
            return []


# Where a run's steps execute (`nb2pipe run --executor NAME`).
EXECUTORS = Registry("executor", "nb2pipe.executors", {
    "local": "nb2pipe.execution.local:LocalExecutor",
    "docker": "nb2pipe.execution.docker:DockerExecutor",
})

# Pipeline formats a notebook exports to (`nb2pipe export NB --to NAME`). An exporter is called as
# ``exporter(notebook, output=None, image=None, py=None, store=None, warn=None)`` and returns an
# object with ``path`` (None when the text went to stdout), ``image``, ``tasks``, ``py_path`` and
# ``text``.
EXPORTERS = Registry("exporter", "nb2pipe.exporters", {"kfp": "nb2pipe.kubeflow.ir:export"})

