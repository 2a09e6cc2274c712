"""The built-in serializers: numpy .npy, pandas parquet, scikit-learn joblib, pickle, cloudpickle.

(scipy sparse, polars and xgboost are in artifacts.ml; values.all_builtin_serializers orders them all.)

Imported inside every step kernel: only the standard library at module level; numpy, pandas,
pyarrow, joblib and cloudpickle are imported when a value needs them. Every writer hashes the
bytes as they are written (HashingWriter), so a 100 MB artifact is never read back to hash it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any, BinaryIO

from nb2pipe.errors import Nb2pipeError, SerializationError, StoreIOError

PICKLE_PROTOCOL = 5

# Hashing runs beside the file write where it is safe: a buffer the caller may reuse is hashed on a
# second thread only while its write() call lasts; immutable bytes (pyarrow's and pickle's chunks)
# are queued to a hasher thread. hashlib and file writes release the GIL, so hashing mostly costs
# max(write, hash) instead of their sum.
_PARALLEL_HASH_MIN = 8 << 20
_QUEUE_HASH_MIN = 64 << 10


class UnsupportedValue(SerializationError):
    """Raised by ``Serializer.dump`` when its format cannot hold this particular value.

    The registry then tries the next matching serializer. Anything written so far is discarded.
    Control flow between serializers: it only escapes as the step's serialization failure.
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
    # The Kubeflow Pipelines artifact type its values export as: "Dataset", "Model" or "Artifact".
    kfp_artifact: str = "Artifact"

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


class _MainReference(UnsupportedValue):
    """A pickle would refer to a class or function of __main__: plain pickle declines the value."""


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
    return UnsupportedValue(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _declining() -> Iterator[None]:
    """A pickler's failure on this value means: try the next serializer. Ours pass through: an
    UnsupportedValue (such as _MainReference) declines as it is, any other stops the step."""
    try:
        yield
    except (Nb2pipeError, MemoryError):
        raise
    except Exception as e:
        raise _decline(e) from e


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
    kfp_artifact = "Dataset"

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
        if dtype == object:  # noqa: E721  (numpy dtype equality: dtype("O") == object, but is not it)
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
    kfp_artifact = "Model"  # it only takes scikit-learn estimators

    def matches(self, value: Any) -> bool:
        return any(c.__name__ == "BaseEstimator" and c.__module__ == "sklearn.base" for c in type(value).__mro__)

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        pickler = _joblib_pickler_class()
        with _writable(target) as f, _declining():
            pickler(f, protocol=PICKLE_PROTOCOL).dump(value)

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
        with _writable(target) as f, _declining():
            _MainAwarePickler(f, protocol=PICKLE_PROTOCOL).dump(value)

    def load(self, path: str) -> Any:
        with open(path, "rb") as f:
            return pickle.load(f)


class CloudpickleSerializer(PickleSerializer):
    """Last resort: lambdas, local classes, and anything defined in a notebook cell.

    Its files are plain pickle that import cloudpickle while loading, so `load` is pickle's.
    """

    name = "cloudpickle"
    version = 1
    extension = "cloudpickle"

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        import cloudpickle

        with _writable(target) as f, _declining():
            cloudpickle.dump(value, f, protocol=PICKLE_PROTOCOL)


def builtin_serializers() -> list[Serializer]:
    return [NpySerializer(), ParquetSerializer(), JoblibSerializer(), PickleSerializer(), CloudpickleSerializer()]


# -- registry ---------------------------------------------------------------------------------
