"""Artifacts: how a step's output variables become files, and files become input variables again.

This module is imported inside every step kernel, so it imports only the standard library at
module level. numpy, pandas, pyarrow, joblib and cloudpickle are imported when a value needs
them; a value's type is recognised without importing anything (a numpy array can only exist if
numpy is already in ``sys.modules``).

A serializer is picked per value from an ordered registry: type-specific ones first (npy,
parquet, joblib, plus plugins from the ``nb2pipe.serializers`` entry-point group), then the
catch-all ``pickle`` and ``cloudpickle``. A serializer that cannot hold a particular value raises
:class:`UnsupportedValue` and the next matching one is tried, so a DataFrame parquet cannot
represent losslessly ends up pickled instead of silently changed.
"""

from __future__ import annotations

import _thread
import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import sys
import threading
import types
import warnings
from typing import Any, BinaryIO, Iterator

from nb2pipe.errors import Nb2pipeError, SerializationError, StoreError, StoreIOError
from nb2pipe.objects import sha256_file

ENTRY_POINT_GROUP = "nb2pipe.serializers"
MANIFEST_NAME = "manifest.json"
PICKLE_PROTOCOL = 5

# Hashing runs beside the file write where it is safe: a buffer the caller may reuse is hashed on a
# second thread only while its write() call lasts; immutable bytes (pyarrow's and pickle's chunks)
# are queued to a hasher thread. hashlib and file writes release the GIL, so hashing mostly costs
# max(write, hash) instead of their sum.
_PARALLEL_HASH_MIN = 8 << 20
_QUEUE_HASH_MIN = 64 << 10
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SETUP_FIX = "make it picklable, or recompute it in the consuming step / move it to a `setup` cell"


class UnsupportedValue(Exception):
    """Raised by ``Serializer.dump`` when its format cannot hold this particular value.

    The registry then tries the next matching serializer. Anything written so far is discarded.
    """


class Serializer:
    """One storage format. Subclass it (or provide an object with the same attributes).

    ``dump`` receives a writable binary file object (or a path) and must write the whole
    value through it; ``load`` gets the path of a file ``dump`` wrote. ``version`` is recorded
    in manifests; bump it when the on-disk format changes. ``fallback`` serializers (catch-alls)
    always stay behind the type-specific ones in a registry.
    """

    name: str = ""
    version: int = 1
    extension: str = "bin"
    fallback: bool = False

    def matches(self, value: Any) -> bool:
        return False

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        raise NotImplementedError

    def load(self, path: str) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} v{self.version}>"


@contextlib.contextmanager
def _writable(target: BinaryIO | str | os.PathLike) -> Iterator[BinaryIO]:
    if isinstance(target, (str, os.PathLike)):
        with open(target, "wb") as f:
            yield f
    else:
        yield target


class HashingWriter:
    """Write-only binary file wrapper that feeds every byte to sha256 as it is written.

    It deliberately has no ``fileno``: a writer that found one could bypass the hash.
    ``close`` is a no-op because the owner of the underlying file closes it; call
    ``hexdigest`` (or ``stop`` on failure) to end the hasher thread.
    """

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._hash = hashlib.sha256()
        self._queue: Any = None
        self._thread: threading.Thread | None = None
        self.size = 0
        self.io_error: StoreIOError | None = None

    def write(self, data: Any) -> int:
        if type(data) is bytes:
            return self._write_bytes(data)
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
        n = view.nbytes
        self._drain()  # keep hash order: queued bytes first
        if n >= _PARALLEL_HASH_MIN:
            hasher = threading.Thread(target=self._hash.update, args=(view,), daemon=True)
            hasher.start()
            try:
                self._raw_write(view)
            finally:
                hasher.join()
        else:
            self._raw_write(view)
            self._hash.update(view)
        self.size += n
        return n

    def _write_bytes(self, data: bytes) -> int:
        self._raw_write(data)
        if self._thread is None and len(data) >= _QUEUE_HASH_MIN:
            import queue

            self._queue = queue.Queue(maxsize=64)  # bounds the memory held by unhashed chunks
            self._thread = threading.Thread(target=self._hash_queued, name="nb2pipe-hash", daemon=True)
            self._thread.start()
        if self._thread is not None:
            self._queue.put(data)
        else:
            self._hash.update(data)
        self.size += len(data)
        return len(data)

    def _raw_write(self, data: Any) -> None:
        try:
            self._raw.write(data)
        except OSError as e:
            self.io_error = StoreIOError(f"cannot write artifact: {e.strerror or e}")
            raise self.io_error from e

    def _hash_queued(self) -> None:
        while True:
            chunk = self._queue.get()
            try:
                if chunk is None:
                    return
                self._hash.update(chunk)
            finally:
                self._queue.task_done()

    def _drain(self) -> None:
        if self._thread is not None:
            self._queue.join()

    def stop(self) -> None:
        """Finish hashing queued chunks and end the hasher thread (idempotent)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def hexdigest(self) -> str:
        self.stop()
        return self._hash.hexdigest()

    def flush(self) -> None:
        self._raw.flush()

    def tell(self) -> int:
        return self.size

    @property
    def closed(self) -> bool:
        return self._raw.closed

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        pass


# -- __main__ references ----------------------------------------------------------------------
# Classes and functions defined in notebook cells live in the kernel's __main__. Plain pickle
# stores them by reference, which another step's kernel cannot resolve; cloudpickle stores them
# by value. So a pickle that would refer to __main__ is refused and falls through to cloudpickle.


class _MainReference(Exception):
    pass


def _refuse_main_refs(self: Any, obj: Any) -> Any:
    if isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__":
        raise _MainReference(f"{obj.__qualname__} is defined in __main__ (a notebook cell)")
    return NotImplemented


class _MainAwarePickler(pickle.Pickler):
    reducer_override = _refuse_main_refs


_joblib_pickler: type | None = None


def _joblib_pickler_class() -> type:
    global _joblib_pickler
    if _joblib_pickler is None:
        from joblib.numpy_pickle import NumpyPickler

        _joblib_pickler = type("_MainAwareNumpyPickler", (NumpyPickler,), {"reducer_override": _refuse_main_refs})
    return _joblib_pickler


def _decline(exc: BaseException) -> UnsupportedValue:
    return UnsupportedValue(str(exc) if isinstance(exc, _MainReference) else f"{type(exc).__name__}: {exc}")


# -- built-in serializers ---------------------------------------------------------------------


class NpySerializer(Serializer):
    """numpy arrays as .npy (no pickle inside: object arrays go to the pickle serializer)."""

    name = "npy"
    version = 1
    extension = "npy"

    def matches(self, value: Any) -> bool:
        np = sys.modules.get("numpy")
        # Exact type: subclasses (masked arrays, matrix) carry state .npy would drop.
        return np is not None and type(value) is np.ndarray and not value.dtype.hasobject

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        import numpy as np

        with _writable(target) as f:
            parts = _npy_parts(value)
            if parts is None:
                np.save(f, value, allow_pickle=False)
            else:
                # One write of the array's own memory: no per-chunk tobytes() copies.
                header, body = parts
                f.write(header)
                f.write(body)

    def load(self, path: str) -> Any:
        import numpy as np

        return np.load(path, allow_pickle=False)


def _npy_parts(arr: Any) -> tuple[bytes, memoryview] | None:
    """The .npy header np.save would write, and the array bytes; None if not contiguous."""
    import numpy as np
    from numpy.lib import format as npformat

    if arr.dtype.itemsize == 0 or arr.size == 0:
        return None
    if arr.flags.c_contiguous:
        flat = arr.reshape(-1)
    elif arr.flags.f_contiguous:
        flat = arr.T.reshape(-1)  # header_data_from_array_1_0 marks it fortran_order
    else:
        return None
    try:
        body = memoryview(flat.view(np.uint8))
        header_data = npformat.header_data_from_array_1_0(arr)
        header = io.BytesIO()
        try:
            npformat.write_array_header_1_0(header, header_data)
        except ValueError:  # header too long for format 1.0
            header = io.BytesIO()
            npformat.write_array_header_2_0(header, header_data)
    except Exception:  # unusual dtypes: let np.save pick the format itself
        return None
    return header.getvalue(), body


_PARQUET_META_KEY = b"nb2pipe"
_SERIES_COLUMN = "__series__"


class ParquetSerializer(Serializer):
    """pandas DataFrame/Series as parquet (pyarrow, snappy); declines what parquet would alter.

    A Series is stored as a one-column frame; its name (and ``attrs``) ride in the schema
    metadata. Before writing, an empty copy of the Arrow schema is converted back to pandas
    and compared with the original's dtypes, column labels and index, so anything parquet
    would silently change (object columns of mixed types or Python containers, non-string
    labels that do not come back, ...) is declined and pickled instead.
    """

    name = "parquet"
    version = 1
    extension = "parquet"

    def matches(self, value: Any) -> bool:
        pd = sys.modules.get("pandas")
        return pd is not None and (type(value) is pd.DataFrame or type(value) is pd.Series)

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        meta: dict[str, Any] = {"kind": "frame"}
        frame = value
        if isinstance(value, pd.Series):
            if not (value.name is None or type(value.name) in (str, int, float, bool)):
                raise UnsupportedValue(f"series name {value.name!r} cannot be stored in parquet metadata")
            meta = {"kind": "series", "name": value.name}
            frame = value.to_frame(name=_SERIES_COLUMN)
        if value.attrs:
            try:
                attrs = json.loads(json.dumps(value.attrs))
            except (TypeError, ValueError) as e:
                raise UnsupportedValue(f"attrs are not JSON: {e}") from e
            if attrs != value.attrs:
                raise UnsupportedValue("attrs do not survive JSON")
            meta["attrs"] = attrs
        if isinstance(value.index, (pd.DatetimeIndex, pd.TimedeltaIndex)) and value.index.freq is not None:
            meta["index_freq"] = value.index.freqstr  # parquet keeps the values, not the freq
        try:
            table = pa.Table.from_pandas(frame, preserve_index=None)
        except (pa.ArrowException, ValueError, TypeError, NotImplementedError, OverflowError) as e:
            raise _decline(e) from e
        _check_lossless(frame, table)
        schema_meta = dict(table.schema.metadata or {})
        schema_meta[_PARQUET_META_KEY] = json.dumps(meta).encode()
        table = table.replace_schema_metadata(schema_meta)
        with _writable(target) as f:
            try:
                pq.write_table(table, f)
            except (pa.ArrowException, ValueError, TypeError, NotImplementedError) as e:
                raise _decline(e) from e

    def load(self, path: str) -> Any:
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path, memory_map=True).read()
        meta = json.loads((table.schema.metadata or {}).get(_PARQUET_META_KEY, b"{}"))
        value = table.to_pandas()
        if meta.get("kind") == "series":
            value = value.iloc[:, 0]
            value.name = meta.get("name")
        if meta.get("index_freq"):
            value.index = type(value.index)(value.index, freq=meta["index_freq"])
        if meta.get("attrs"):
            value.attrs = meta["attrs"]
        return value


def _check_lossless(frame: Any, table: Any) -> None:
    """Raise UnsupportedValue if reading ``table`` back from parquet would not give ``frame``'s structure.

    A one-row slice goes through a real in-memory parquet write and read: that is where types
    change (integer categoricals come back as plain ints, object strings as ``str``, ...). A
    slice keeps the whole dictionary, so categories and their order are compared exactly.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    try:
        pq.write_table(table.slice(0, 1), sink)
        back = pq.ParquetFile(pa.BufferReader(sink.getvalue())).read().to_pandas()
    except (pa.ArrowException, ValueError, TypeError, NotImplementedError) as e:
        raise _decline(e) from e
    cols, back_cols = frame.columns, back.columns
    if (
        type(back_cols) is not type(cols)
        or list(back_cols) != list(cols)
        or list(back_cols.names) != list(cols.names)
        or back_cols.inferred_type != cols.inferred_type
    ):
        raise UnsupportedValue("parquet would not restore the column labels")
    for i, (dtype, back_dtype) in enumerate(zip(frame.dtypes, back.dtypes)):
        if dtype != back_dtype:
            raise UnsupportedValue(f"column {cols[i]!r} would come back as {back_dtype}, not {dtype}")
        if dtype == object:
            # Only types whose values come back as the same Python objects; lists, tuples,
            # dicts and sets turn into arrays/dicts of a different kind.
            arrow_type = table.schema.field(i).type
            if not (
                pa.types.is_string(arrow_type)
                or pa.types.is_large_string(arrow_type)
                or pa.types.is_binary(arrow_type)
                or pa.types.is_large_binary(arrow_type)
                or pa.types.is_decimal(arrow_type)
                or pa.types.is_date(arrow_type)
                or pa.types.is_time(arrow_type)
                or pa.types.is_null(arrow_type)
            ):
                raise UnsupportedValue(f"object column {cols[i]!r} holds {arrow_type} values")
    index, back_index = frame.index, back.index
    if type(back_index) is not type(index) or list(back_index.names) != list(index.names):
        raise UnsupportedValue("parquet would not restore the index")
    if isinstance(index, pd.MultiIndex):
        same = list(index.dtypes) == list(back_index.dtypes)
    else:
        same = index.dtype == back_index.dtype
    if not same:
        raise UnsupportedValue("parquet would not restore the index dtype")


class JoblibSerializer(Serializer):
    """scikit-learn estimators (anything deriving from sklearn.base.BaseEstimator) via joblib."""

    name = "joblib"
    version = 1
    extension = "joblib"

    def matches(self, value: Any) -> bool:
        return any(c.__name__ == "BaseEstimator" and c.__module__ == "sklearn.base" for c in type(value).__mro__)

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        pickler = _joblib_pickler_class()
        with _writable(target) as f:
            try:
                pickler(f, protocol=PICKLE_PROTOCOL).dump(value)
            except (Nb2pipeError, MemoryError):
                raise
            except Exception as e:
                raise _decline(e) from e

    def load(self, path: str) -> Any:
        import joblib

        return joblib.load(path)


class PickleSerializer(Serializer):
    name = "pickle"
    version = 1
    extension = "pkl"
    fallback = True

    def matches(self, value: Any) -> bool:
        return True

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        with _writable(target) as f:
            try:
                _MainAwarePickler(f, protocol=PICKLE_PROTOCOL).dump(value)
            except (Nb2pipeError, MemoryError):
                raise
            except Exception as e:
                raise _decline(e) from e

    def load(self, path: str) -> Any:
        with open(path, "rb") as f:
            return pickle.load(f)


class CloudpickleSerializer(Serializer):
    """Last resort: lambdas, local classes, and anything defined in a notebook cell."""

    name = "cloudpickle"
    version = 1
    extension = "cloudpickle"
    fallback = True

    def matches(self, value: Any) -> bool:
        return True

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        import cloudpickle

        with _writable(target) as f:
            try:
                cloudpickle.dump(value, f, protocol=PICKLE_PROTOCOL)
            except (Nb2pipeError, MemoryError):
                raise
            except Exception as e:
                raise _decline(e) from e

    def load(self, path: str) -> Any:
        with open(path, "rb") as f:
            return pickle.load(f)  # cloudpickle output is plain pickle that imports cloudpickle


def builtin_serializers() -> list[Serializer]:
    return [NpySerializer(), ParquetSerializer(), JoblibSerializer(), PickleSerializer(), CloudpickleSerializer()]


# -- registry ---------------------------------------------------------------------------------


def _validate_serializer(s: Any) -> None:
    for attr in ("name", "version", "extension", "matches", "dump", "load"):
        if not hasattr(s, attr):
            raise TypeError(f"serializer {s!r} has no {attr!r}")
    if not isinstance(s.name, str) or not _SAFE_TOKEN.fullmatch(s.name):
        raise TypeError(f"serializer name {s.name!r} must match {_SAFE_TOKEN.pattern}")
    if not isinstance(s.extension, str) or not _SAFE_TOKEN.fullmatch(s.extension) or ".." in s.extension:
        raise TypeError(f"serializer extension {s.extension!r} must match {_SAFE_TOKEN.pattern}")


class SerializerRegistry:
    """Serializers in priority order; the first whose ``matches`` accepts a value is used.

    Order, highest first: ``register(..., first=True)`` (newest first), entry-point plugins,
    built-in type-specific serializers and ``register(..., first=False)``, then the fallback
    catch-alls. Registering a name that is already present replaces it (this is how a plugin
    overrides a built-in, including for loading). Entry points are read lazily, on first use,
    and always before any explicit ``register`` so code registrations win over plugins.
    """

    def __init__(
        self,
        serializers: list[Any] | tuple[Any, ...] = (),
        entry_point_group: str | None = ENTRY_POINT_GROUP,
    ):
        self._order: list[Any] = []
        self._group = entry_point_group
        self._entry_points_loaded = entry_point_group is None
        for s in serializers:
            self._insert(s, first=False)

    @classmethod
    def with_builtins(cls, entry_point_group: str | None = ENTRY_POINT_GROUP) -> SerializerRegistry:
        return cls(builtin_serializers(), entry_point_group=entry_point_group)

    def register(self, serializer: Any, first: bool = False) -> Any:
        """Add a serializer (an instance, or a class to instantiate); returns its argument."""
        self._load_entry_points()
        self._insert(serializer() if isinstance(serializer, type) else serializer, first=first)
        return serializer

    def unregister(self, name: str) -> None:
        self._load_entry_points()
        self._order = [s for s in self._order if s.name != name]

    def get(self, name: str) -> Any:
        self._load_entry_points()
        for s in self._order:
            if s.name == name:
                return s
        raise SerializationError(f"unknown serializer {name!r}: install the plugin that provides it")

    def candidates(self, value: Any) -> list[Any]:
        """Every serializer that accepts ``value``, best first (the fallbacks to try in turn)."""
        self._load_entry_points()
        return [s for s in self._order if s.matches(value)]

    def for_value(self, value: Any) -> Any:
        for s in self.candidates(value):
            return s
        raise SerializationError(f"no serializer accepts a {_type_label(value)}")

    def __iter__(self) -> Iterator[Any]:
        self._load_entry_points()
        return iter(list(self._order))

    def names(self) -> list[str]:
        return [s.name for s in self]

    def _insert(self, serializer: Any, first: bool) -> None:
        _validate_serializer(serializer)
        self._order = [s for s in self._order if s.name != serializer.name]
        if first:
            self._order.insert(0, serializer)
        elif getattr(serializer, "fallback", False):
            self._order.append(serializer)
        else:
            at = next((i for i, s in enumerate(self._order) if getattr(s, "fallback", False)), len(self._order))
            self._order.insert(at, serializer)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True  # set first: a plugin module may register() on import
        from importlib.metadata import entry_points

        try:
            eps = sorted(entry_points(group=self._group), key=lambda ep: ep.name)
        except Exception as e:  # broken metadata on sys.path must not stop a step
            warnings.warn(f"nb2pipe: cannot read {self._group} entry points: {e}", RuntimeWarning, stacklevel=2)
            return
        for ep in reversed(eps):  # inserted at the front, so alphabetical order wins ties
            try:
                obj = ep.load()
                serializer = obj() if isinstance(obj, type) or not hasattr(obj, "matches") else obj
                self._insert(serializer, first=not getattr(serializer, "fallback", False))
            except Exception as e:
                warnings.warn(
                    f"nb2pipe: ignoring serializer entry point {ep.name!r} ({ep.value}): {e}",
                    RuntimeWarning,
                    stacklevel=2,
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


def _create_temp(out_dir: str, name: str) -> tuple[int, str]:
    path = os.path.join(out_dir, f".{name}.{os.urandom(6).hex()}.tmp")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        raise StoreIOError(f"cannot create {path}: {e.strerror or e}") from e
    return fd, path


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _dump_to_temp(name: str, value: Any, candidates: list[Any], out_dir: str) -> tuple[str, Any, str, int]:
    """Write ``value`` with the first candidate that accepts it; returns (temp, serializer, sha, size)."""
    reason = "no serializer accepts it"
    for serializer in candidates:
        fd, tmp = _create_temp(out_dir, name)
        try:
            result = _dump_one(serializer, name, value, fd)
        except OSError as e:  # flushing on close
            _remove(tmp)
            raise StoreIOError(f"cannot write {tmp}: {e.strerror or e}") from e
        except BaseException:
            _remove(tmp)
            raise
        if isinstance(result, str):
            reason = result
            _remove(tmp)
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


def _write_json_atomically(path: str, data: Any) -> None:
    fd, tmp = _create_temp(os.path.dirname(path) or ".", "manifest")
    try:
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise StoreIOError(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        _remove(tmp)
        raise


def save_outputs(
    values: dict[str, Any],
    out_dir: str | os.PathLike,
    *,
    registry: SerializerRegistry | None = None,
) -> dict:
    """Write each value to ``out_dir/<name>.<ext>`` and then ``out_dir/manifest.json``; return the manifest.

    All-or-nothing: names and known-bad values are checked before anything is written, every
    value is dumped to a temp file (hashed while written), and only when all dumps succeeded
    are they renamed into place, followed by the manifest. Any failure removes this call's files.
    """
    registry = registry if registry is not None else default_registry
    out_dir = os.fspath(out_dir)
    plans = []
    for name, value in values.items():
        _check_name(name, "output")
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
    manifest: dict[str, dict] = {}
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
        _write_json_atomically(os.path.join(out_dir, MANIFEST_NAME), manifest)
    except BaseException:
        for path in temps + finals:
            _remove(path)
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
