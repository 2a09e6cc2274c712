"""Artifacts: how a step's output variables become files, and files become input variables again.

This module is imported inside every step kernel, so it imports only the standard library at
module level. numpy, pandas, pyarrow, joblib and cloudpickle are imported when a value needs
them; a value's type is recognised without importing anything (a numpy array can only exist if
numpy is already in ``sys.modules``).

A serializer is picked per value from an ordered registry: type-specific ones first (npy,
parquet, scipy-sparse, polars, xgboost, xgboost-dmatrix (see artifacts.ml), keras (ml_keras),
torch-module, torchscript, torch (ml_torch), joblib, plus plugins from the
``nb2pipe.serializers`` entry-point group), then the catch-all ``pickle`` and ``cloudpickle``.
A serializer that cannot hold a particular value raises :class:`UnsupportedValue` and the next
matching one is tried, so a DataFrame parquet cannot represent losslessly ends up pickled
instead of silently changed.
"""

from __future__ import annotations

import _thread
import io
import os
import re
import sys
import types
import warnings
from collections.abc import Iterator
from typing import Any

from nb2pipe.artifacts.ml import ml_serializers
from nb2pipe.artifacts.ml_keras import keras_serializers
from nb2pipe.artifacts.ml_torch import torch_serializers
from nb2pipe.artifacts.serializers import (  # noqa: F401  (re-exported: the serializers are part of this API)
    PICKLE_PROTOCOL,
    CloudpickleSerializer,
    HashingWriter,
    JoblibSerializer,
    NpySerializer,
    ParquetSerializer,
    PickleSerializer,
    Serializer,
    UnsupportedValue,
    builtin_serializers,
)
from nb2pipe.errors import Nb2pipeError, SerializationError, StoreError, StoreIOError
from nb2pipe.registry import Registry
from nb2pipe.store.files import create_temp, remove_quietly, write_json
from nb2pipe.store.objects import sha256_file

ENTRY_POINT_GROUP = "nb2pipe.serializers"
MANIFEST_NAME = "manifest.json"
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SETUP_FIX = "make it picklable, or recompute it in the consuming step / move it to a `setup` cell"


def all_builtin_serializers() -> list[Any]:
    """The built-ins in priority order: npy, parquet, the ML ones (artifacts.ml, ml_keras,
    ml_torch), joblib, then the pickle fallbacks. The ML ones go ahead of joblib (an XGBClassifier
    is a scikit-learn estimator), Keras ahead of torch (a Keras model on the torch backend is an
    nn.Module)."""
    core = builtin_serializers()
    at = next(i for i, s in enumerate(core) if s.name == "joblib")
    return core[:at] + ml_serializers() + keras_serializers() + torch_serializers() + core[at:]


def _validate_serializer(s: Any) -> None:
    for attr in ("name", "version", "extension", "matches", "dump", "load"):
        if not hasattr(s, attr):
            raise TypeError(f"serializer {s!r} has no {attr!r}")
    if not isinstance(s.name, str) or not _SAFE_TOKEN.fullmatch(s.name):
        raise TypeError(f"serializer name {s.name!r} must match {_SAFE_TOKEN.pattern}")
    if not isinstance(s.extension, str) or not _SAFE_TOKEN.fullmatch(s.extension) or ".." in s.extension:
        raise TypeError(f"serializer extension {s.extension!r} must match {_SAFE_TOKEN.pattern}")


class SerializerRegistry(Registry):
    """Serializers in priority order; the first whose ``matches`` accepts a value is used.

    Order, highest first: ``register(..., first=True)`` (newest first), entry-point plugins,
    built-in type-specific serializers and ``register(..., first=False)``, then the fallback
    catch-alls. Registering a name that is already present replaces it (this is how a plugin
    overrides a built-in, including for loading). Entry points are read lazily, on first use,
    and always before any explicit ``register`` so code registrations win over plugins. Unlike
    other registries, every plugin is imported when they are read: matching needs the objects.

    A serializer carries its own name, so ``register`` takes just the serializer; iterating
    yields serializers (not names), best first, and ``names()`` is in that order too.
    """

    def __init__(
        self,
        serializers: list[Any] | tuple[Any, ...] = (),
        entry_point_group: str | None = ENTRY_POINT_GROUP,
    ):
        super().__init__("serializer", entry_point_group)
        self._order: list[str] = []  # names, best first
        for s in serializers:
            self._insert(s, first=False)

    @classmethod
    def with_builtins(cls, entry_point_group: str | None = ENTRY_POINT_GROUP) -> SerializerRegistry:
        return cls(all_builtin_serializers(), entry_point_group=entry_point_group)

    def register(self, serializer: Any, first: bool = False) -> Any:  # type: ignore[override]
        """Add a serializer (an instance, or a class to instantiate); returns its argument."""
        self._read_entry_points()
        self._insert(serializer() if isinstance(serializer, type) else serializer, first=first)
        return serializer

    def unregister(self, name: str) -> None:
        super().unregister(name)
        self._order = [n for n in self._order if n != name]

    def candidates(self, value: Any) -> list[Any]:
        """Every serializer that accepts ``value``, best first (the fallbacks to try in turn)."""
        return [s for s in self.values() if s.matches(value)]

    def for_value(self, value: Any) -> Any:
        for s in self.candidates(value):
            return s
        raise SerializationError(f"no serializer accepts a {_type_label(value)}")

    def names(self) -> list[str]:
        self._read_entry_points()
        return list(self._order)

    def values(self) -> list[Any]:
        self._read_entry_points()
        return [self._entries[n] for n in self._order]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values())

    def _unknown(self, name: str) -> Nb2pipeError:
        return SerializationError(f"unknown serializer {name!r}: install the plugin that provides it")

    def _insert(self, serializer: Any, first: bool) -> None:
        _validate_serializer(serializer)
        name = serializer.name
        order = [n for n in self._order if n != name]
        self._entries[name] = serializer
        if first:
            order.insert(0, name)
        elif getattr(serializer, "fallback", False):
            order.append(name)
        else:
            at = next((i for i, n in enumerate(order) if getattr(self._entries[n], "fallback", False)), len(order))
            order.insert(at, name)
        self._order = order

    def _read_entry_points(self) -> None:
        # Loaded at once (matching needs the objects), inserted at the front in reverse, so that
        # alphabetical order wins ties.
        for entry_point in reversed(self._new_entry_points()):
            try:
                obj = entry_point.load()
                serializer = obj() if isinstance(obj, type) or not hasattr(obj, "matches") else obj
                self._insert(serializer, first=not getattr(serializer, "fallback", False))
            except Exception as e:
                warnings.warn(
                    f"nb2pipe: ignoring serializer entry point {entry_point.name!r} ({entry_point.value}): {e}",
                    RuntimeWarning,
                    stacklevel=3,
                )


default_registry = SerializerRegistry.with_builtins()


def register(serializer: Any, first: bool = False) -> Any:
    """Register a serializer in the default registry (also usable as a class decorator)."""
    return default_registry.register(serializer, first=first)


# -- unserializable values --------------------------------------------------------------------

_DB_MODULES = {
    "sqlite3", "psycopg", "psycopg2", "pymysql", "MySQLdb", "mysql", "sqlalchemy", "duckdb",
    "pymongo", "redis", "oracledb", "cx_Oracle", "pyodbc", "snowflake", "asyncpg", "clickhouse_driver",
}
_DB_SUFFIXES = ("Connection", "Cursor", "Engine", "Client", "Session", "Pool")


def _type_label(value: Any) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def unserializable_reason(value: Any) -> str | None:
    """Cheap isinstance checks for kinds of value that can never cross steps; returns the fix."""
    if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType)):
        return "materialize it with list(...)"
    if isinstance(value, types.CoroutineType):
        return "await it in the producing step and output the result"
    if isinstance(value, io.IOBase) and not isinstance(value, (io.BytesIO, io.StringIO)):
        return "an open file cannot cross steps; pass the path and reopen it"
    if isinstance(value, types.ModuleType):
        return "a module cannot cross steps; import it in the consuming step (or in a `setup` cell)"
    if isinstance(value, (_thread.LockType, _thread.RLock)):
        return "a lock cannot cross steps; create it in the consuming step"
    th = sys.modules.get("threading")
    if th is not None and isinstance(value, (th.Thread, th.Condition, th.Semaphore, th.Event, th.Barrier)):
        return "a thread or synchronization primitive cannot cross steps; create it in the consuming step"
    sock = sys.modules.get("socket")
    if sock is not None and isinstance(value, sock.socket):
        return "a socket cannot cross steps; reconnect in the consuming step"
    for cls in type(value).__mro__:
        if cls.__module__.partition(".")[0] in _DB_MODULES and cls.__name__.endswith(_DB_SUFFIXES):
            return (
                "a database connection cannot cross steps; "
                "pass its path or URL and reconnect in the consuming step"
            )
    return None


# -- writing a step's outputs -----------------------------------------------------------------


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise SerializationError(f"{what} name {name!r} is not a Python identifier")


def _dump_to_temp(name: str, value: Any, candidates: list[Any], out_dir: str) -> tuple[str, Any, str, int]:
    """Write ``value`` with the first candidate that accepts it; returns (temp, serializer, sha, size)."""
    reason = "no serializer accepts it"
    for serializer in candidates:
        fd, tmp = create_temp(out_dir, name)
        try:
            result = _dump_one(serializer, name, value, fd)
        except OSError as e:  # flushing on close
            remove_quietly(tmp)
            raise StoreIOError(f"cannot write {tmp}: {e.strerror or e}") from e
        except BaseException:
            remove_quietly(tmp)
            raise
        if isinstance(result, str):
            reason = result
            remove_quietly(tmp)
            continue
        return tmp, serializer, result[0], result[1]
    raise SerializationError(f"output {name!r} ({_type_label(value)}) cannot be serialized: {reason}; {_SETUP_FIX}")


def _dump_one(serializer: Any, name: str, value: Any, fd: int) -> tuple[str, int] | str:
    """(sha256, size) of what ``serializer`` wrote to ``fd``, or why it declined the value."""
    with open(fd, "wb") as raw:
        writer = HashingWriter(raw)
        try:
            serializer.dump(value, writer)
        except UnsupportedValue as e:
            if writer.io_error is not None:
                raise writer.io_error from e
            return str(e) or type(e).__name__
        except (Nb2pipeError, MemoryError):
            raise
        except Exception as e:
            if writer.io_error is not None:
                raise writer.io_error from e
            raise SerializationError(
                f"output {name!r} ({_type_label(value)}): serializer {serializer.name!r} failed: "
                f"{type(e).__name__}: {e}"
            ) from e
        finally:
            writer.stop()
    return writer.hexdigest(), writer.size


class _Discard:
    """A sink for HashingWriter: the bytes are hashed, never stored."""

    def write(self, data) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def _unchanged(value: Any, source: dict, registry: SerializerRegistry) -> dict | None:
    """The manifest entry of a received input the step left as it was: ``value`` serialized again
    with the input's serializer (into a hash, nothing written) gives the input's sha256. None when
    it changed (or cannot be serialized that way any more): then it is saved as a new version."""
    try:
        serializer = registry.get(source["serializer"])
    except Nb2pipeError:
        return None
    if not serializer.matches(value):
        return None
    writer = HashingWriter(_Discard())
    try:
        serializer.dump(value, writer)
    except Exception:  # noqa: BLE001  (UnsupportedValue or any failure: save it the usual way)
        writer.stop()
        return None
    sha, size = writer.hexdigest(), writer.size
    if sha != source.get("sha256"):
        return None
    return {"file": None, "source": source.get("path"), "unchanged": True, "serializer": serializer.name,
            "serializer_version": serializer.version, "sha256": sha, "size": size,
            "type": f"{type(value).__module__}.{type(value).__qualname__}"}


def save_outputs(
    values: dict[str, Any],
    out_dir: str | os.PathLike,
    *,
    registry: SerializerRegistry | None = None,
    received: dict[str, dict] | None = None,
) -> dict:
    """Write each value to ``out_dir/<name>.<ext>`` and then ``out_dir/manifest.json``; return the manifest.

    All-or-nothing: names and known-bad values are checked before anything is written, every
    value is dumped to a temp file (hashed while written), and only when all dumps succeeded
    are they renamed into place, followed by the manifest. Any failure removes this call's files.

    ``received`` maps names of inputs the step may have changed in place to their input artifact
    ``{"path", "serializer", "sha256"}``: one whose content is unchanged costs a hash, not a write;
    its manifest entry has ``"file": None``, ``"unchanged": True`` and the input's ``"source"`` path.
    """
    registry = registry if registry is not None else default_registry
    out_dir = os.fspath(out_dir)
    plans = []
    kept: dict[str, dict] = {}
    for name, value in values.items():
        _check_name(name, "output")
        if received and name in received:
            entry = _unchanged(value, received[name], registry)
            if entry is not None:
                kept[name] = entry
                continue
        candidates = registry.candidates(value)
        if not candidates or getattr(candidates[0], "fallback", False):
            fix = unserializable_reason(value)
            if fix is not None:
                raise SerializationError(f"output {name!r} ({_type_label(value)}) cannot be serialized: {fix}")
        plans.append((name, value, candidates))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise StoreIOError(f"cannot create {out_dir}: {e.strerror or e}") from e

    temps: list[str] = []
    finals: list[str] = []
    manifest: dict[str, dict] = dict(kept)
    try:
        dumped = []
        for name, value, candidates in plans:
            tmp, serializer, sha, size = _dump_to_temp(name, value, candidates, out_dir)
            temps.append(tmp)
            file_name = f"{name}.{serializer.extension}"
            if file_name == MANIFEST_NAME:
                raise SerializationError(f"output {name!r} would be written over {MANIFEST_NAME}; rename the variable")
            dumped.append((name, value, tmp, serializer, sha, size, file_name))
        for name, value, tmp, serializer, sha, size, file_name in dumped:
            final = os.path.join(out_dir, file_name)
            try:
                os.replace(tmp, final)
            except OSError as e:
                raise StoreIOError(f"cannot write {final}: {e.strerror or e}") from e
            finals.append(final)
            manifest[name] = {
                "file": file_name,
                "serializer": serializer.name,
                "serializer_version": serializer.version,
                "sha256": sha,
                "size": size,
                "type": f"{type(value).__module__}.{type(value).__qualname__}",
            }
        write_json(os.path.join(out_dir, MANIFEST_NAME), manifest, indent=2, sort_keys=True, newline=True)
    except BaseException:
        for path in temps + finals:
            remove_quietly(path)
        raise
    return manifest


# -- reading a step's inputs ------------------------------------------------------------------


def load_value(
    path: str | os.PathLike,
    serializer: str | Any,
    *,
    sha256: str | None = None,
    verify: bool = False,
    registry: SerializerRegistry | None = None,
) -> Any:
    """Load one artifact file; with ``verify`` its sha256 is checked first (StoreError on mismatch)."""
    path = os.fspath(path)
    if isinstance(serializer, str):
        serializer = (registry if registry is not None else default_registry).get(serializer)
    try:
        if verify:
            if sha256 is None:
                raise StoreError(f"{path}: cannot verify an artifact without its sha256")
            actual = sha256_file(path)
            if actual != sha256:
                raise StoreError(f"{path}: content sha256 {actual} does not match the recorded {sha256}")
        return serializer.load(path)
    except FileNotFoundError as e:
        raise StoreError(f"artifact file {path} is missing") from e
    except OSError as e:
        raise StoreIOError(f"cannot read {path}: {e.strerror or e}") from e


def load_inputs(
    manifest: dict[str, dict],
    namespace: dict[str, Any],
    *,
    verify: bool = False,
    registry: SerializerRegistry | None = None,
) -> None:
    """Load every ``{"path", "serializer", "sha256"}`` entry into ``namespace`` under its name.

    The namespace is only updated once every input loaded, so a failure leaves it untouched.
    """
    loaded = {}
    for name, entry in manifest.items():
        _check_name(name, "input")
        try:
            loaded[name] = load_value(
                entry["path"], entry["serializer"], sha256=entry.get("sha256"), verify=verify, registry=registry
            )
        except Nb2pipeError:
            raise
        except Exception as e:
            raise SerializationError(
                f"input {name!r} ({entry.get('serializer')}) could not be loaded from {entry.get('path')}: "
                f"{type(e).__name__}: {e}"
            ) from e
    namespace.update(loaded)
