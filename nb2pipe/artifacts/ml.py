"""Serializers for ML libraries' objects: scipy sparse, polars, xgboost.

Like the built-ins, imported inside every step kernel, so only the standard library at module
level. A value is recognised by its class's module and name first, and the library is taken from
``sys.modules`` (a scipy matrix can only exist if scipy is imported): no library is imported
until a value of its type is dumped or an artifact of its kind is loaded.

Every format writes the same bytes for the same value, so an unchanged value keeps its sha256
and the caches hold:

* ``scipy-sparse``: any scipy.sparse matrix or array (spmatrix and sparray). csr, csc, bsr, dia
  and coo are written exactly as ``scipy.sparse.save_npz(compressed=False)`` would (the same
  members, readable by ``scipy.sparse.load_npz``), but into a zip with fixed timestamps (numpy
  stamps the current time) written as a stream. lil and dok (which save_npz refuses) are stored
  as csr plus their format name and converted back; format, dtype and shape are kept, and so
  is the index dtype (int32/int64) of the formats save_npz takes.
* ``polars``: a polars DataFrame or Series as parquet written by polars (zstd, statistics, one
  JSON key in the file's metadata saying frame or series). Polars' parquet writer is
  deterministic and keeps polars dtypes (categorical, enum, decimal, time zones, lists, structs,
  arrays) through the Arrow schema it stores. Frames it cannot write (Object columns) and polars
  releases without ``write_parquet(metadata=)`` are declined and pickled.
* ``xgboost``: a ``Booster`` (``save_raw("ubj")``) or an xgboost scikit-learn wrapper
  (``XGBClassifier``, ``XGBRegressor``, ..., via ``save_model`` to UBJSON), after one JSON
  header line naming the kind, the class and its ``get_params()`` (which ``load_model`` does not
  restore; parameters JSON cannot hold exactly, such as a callable objective, are declined). Not kept, as with
  xgboost's own pickling: training parameters of a bare Booster set with ``set_param`` that are
  not part of the model (``save_config``). Subclasses outside xgboost are declined (joblib or
  cloudpickle take them).
* ``xgboost-dmatrix``: a plain ``DMatrix``, as an npz (same deterministic zip) of its data as a
  CSR matrix (``get_data()``), label, weight, base_margin, label bounds, feature weights, group
  boundaries, feature names and types, and rebuilt with them. Not kept: the ``missing`` marker
  and ``nthread`` it was built with (absent entries are missing either way), quantised
  ``QuantileDMatrix``/external-memory matrices (other types are not matched) and categorical
  features (declined: their category mapping is not recoverable from ``get_data()``).

torch and Keras have their own modules (ml_torch, ml_keras), which share ``write_zip`` from here.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from typing import Any, BinaryIO

from nb2pipe.artifacts.serializers import Serializer, UnsupportedValue, _decline, _writable

# 1980-01-01, the earliest time a zip entry can carry: fixed, so that equal values give equal files.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _class_in(value: Any, module_prefix: str) -> bool:
    module = type(value).__module__
    return module == module_prefix or module.startswith(module_prefix + ".")


class _Stream:
    """A write-only, non-seekable view of a file: zipfile then writes the same bytes (sizes in data
    descriptors) whether the target is a HashingWriter or a real file."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._pos = 0

    def write(self, data: Any) -> int:
        n = self._raw.write(data)
        n = memoryview(data).nbytes if n is None else n
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        self._raw.flush()


def write_npz(target: BinaryIO, arrays: list[tuple[str, Any]]) -> None:
    """Write ``arrays`` (name, array-like) as an uncompressed .npz that np.load reads, deterministically."""
    import numpy as np

    with zipfile.ZipFile(_Stream(target), mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays:
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with zf.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def write_zip(target: BinaryIO, members: list[tuple[str, bytes]]) -> None:
    """Write ``members`` (name, bytes) as an uncompressed zip with fixed timestamps, in the given
    order: the deterministic copy of an archive a library wrote (TorchScript, .keras). Built in
    memory so each entry's sizes sit in its local header, as zip readers outside Python expect."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    target.write(buf.getbuffer())


# -- scipy.sparse -----------------------------------------------------------------------------

_NPZ_FORMATS = ("csr", "csc", "bsr", "dia", "coo")
_CONVERTED_KEY = "nb2pipe_format"


class ScipySparseSerializer(Serializer):
    """scipy sparse matrices and arrays as .npz (the save_npz layout, uncompressed, fixed timestamps)."""

    name = "scipy-sparse"
    version = 1
    extension = "npz"
    kfp_artifact = "Dataset"

    def matches(self, value: Any) -> bool:
        if not _class_in(value, "scipy.sparse"):  # scipy's own classes only: a subclass may carry more state
            return False
        sp = sys.modules.get("scipy.sparse")
        return sp is not None and sp.issparse(value)

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        import scipy.sparse as sp

        if value.dtype.hasobject:
            raise UnsupportedValue("a sparse matrix of Python objects cannot be stored without pickle")
        original = value.format
        matrix = value if original in _NPZ_FORMATS else value.tocsr()
        arrays: list[tuple[str, Any]] = []
        # The members and order of scipy.sparse.save_npz (scipy 1.17), so load_npz reads the file.
        if matrix.format in ("csc", "csr", "bsr"):
            arrays += [("indices", matrix.indices), ("indptr", matrix.indptr)]
        elif matrix.format == "dia":
            arrays += [("offsets", matrix.offsets)]
        elif matrix.ndim == 2:  # coo
            arrays += [("row", matrix.row), ("col", matrix.col)]
        else:
            arrays += [("coords", matrix.coords)]
        arrays += [("format", matrix.format.encode("ascii")), ("shape", matrix.shape), ("data", matrix.data)]
        if isinstance(matrix, getattr(sp, "sparray", ())):
            arrays.append(("_is_array", True))
        if original != matrix.format:
            arrays.append((_CONVERTED_KEY, original))
        with _writable(target) as f:
            write_npz(f, arrays)

    def load(self, path: str) -> Any:
        import numpy as np
        import scipy.sparse as sp

        matrix = sp.load_npz(path)
        with np.load(path, allow_pickle=False) as npz:
            if _CONVERTED_KEY in npz.files:
                return matrix.asformat(str(npz[_CONVERTED_KEY]))
            # load_npz lets the constructor pick the smallest index dtype: give back the stored one
            for attr in ("indices", "indptr", "offsets", "row", "col"):
                if attr in npz.files and getattr(matrix, attr).dtype != npz[attr].dtype:
                    setattr(matrix, attr, npz[attr])
        return matrix


# -- polars -----------------------------------------------------------------------------------

_POLARS_META_KEY = "nb2pipe"


class PolarsSerializer(Serializer):
    """polars DataFrame and Series as parquet, written by polars itself (deterministic bytes)."""

    name = "polars"
    version = 1
    extension = "parquet"
    kfp_artifact = "Dataset"

    def matches(self, value: Any) -> bool:
        if not _class_in(value, "polars"):
            return False
        pl = sys.modules.get("polars")
        return pl is not None and (type(value) is pl.DataFrame or type(value) is pl.Series)

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        import polars as pl

        if not hasattr(pl, "read_parquet_metadata"):
            raise UnsupportedValue(f"polars {pl.__version__} cannot read parquet key-value metadata")
        if isinstance(value, pl.Series):
            meta, frame = {"kind": "series"}, value.to_frame()
        else:
            meta, frame = {"kind": "frame"}, value
        with _writable(target) as f:
            try:
                frame.write_parquet(f, compression="zstd", statistics=True,
                                    metadata={_POLARS_META_KEY: json.dumps(meta, sort_keys=True)})
            except Exception as e:  # Object columns, an old polars without metadata=, ...
                raise _decline(e) from e

    def load(self, path: str) -> Any:
        import polars as pl

        meta = json.loads(pl.read_parquet_metadata(path).get(_POLARS_META_KEY, "{}"))
        frame = pl.read_parquet(path)
        return frame.to_series(0) if meta.get("kind") == "series" else frame


# -- xgboost ----------------------------------------------------------------------------------

_XGB_MAGIC = b"nb2pipe-xgboost\n"


def _xgb_kind(value: Any) -> str | None:
    """"booster", "sklearn" or "dmatrix" for xgboost's own classes; None for anything else."""
    if not _class_in(value, "xgboost"):
        return None
    t = type(value)
    if t.__module__ == "xgboost.core" and t.__name__ == "Booster":
        return "booster"
    if t.__module__ == "xgboost.core" and t.__name__ == "DMatrix":
        return "dmatrix"
    if any(c.__module__ == "xgboost.sklearn" and c.__name__ == "XGBModel" for c in t.__mro__):
        return "sklearn"
    return None


class XGBoostModelSerializer(Serializer):
    """xgboost Booster and scikit-learn wrappers: a JSON header line, then the model as UBJSON."""

    name = "xgboost"
    version = 1
    extension = "xgb"
    kfp_artifact = "Model"

    def matches(self, value: Any) -> bool:
        return _xgb_kind(value) in ("booster", "sklearn")

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        kind = _xgb_kind(value)
        header: dict[str, Any] = {"format": "ubj", "kind": kind}
        try:
            if kind == "booster":
                payload = bytes(value.save_raw(raw_format="ubj"))
            else:
                header["class"] = f"{type(value).__module__}:{type(value).__qualname__}"
                header["params"] = _json_params(value)
                payload = _sklearn_model_bytes(value)
        except UnsupportedValue:
            raise
        except Exception as e:  # e.g. an estimator that was never fitted
            raise _decline(e) from e
        with _writable(target) as f:
            f.write(_XGB_MAGIC)
            f.write(json.dumps(header, sort_keys=True).encode() + b"\n")
            f.write(payload)

    def load(self, path: str) -> Any:
        import importlib

        import xgboost as xgb

        with open(path, "rb") as f:
            if f.readline() != _XGB_MAGIC:
                raise ValueError(f"{path} is not an nb2pipe xgboost artifact")
            header = json.loads(f.readline())
            payload = bytearray(f.read())
        if header["kind"] == "booster":
            return xgb.Booster(model_file=payload)
        module, _, qualname = header["class"].partition(":")
        if module.partition(".")[0] != "xgboost":
            raise ValueError(f"{path}: {header['class']} is not an xgboost class")
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        params = header.get("params", {})
        model = cls(**params)
        model.load_model(payload)
        # load_model fills in what the model file knows (base_score, booster): back to what was set
        changed = {k: v for k, v in params.items() if not _same(model.get_params(deep=False).get(k), v)}
        if changed:
            model.set_params(**changed)
        return model


def _json_params(model: Any) -> dict:
    """``get_params()``, which load_model does not restore; declined unless JSON keeps it exactly
    (a callable objective or metric, callbacks, ...: joblib or cloudpickle take the estimator)."""
    params = model.get_params(deep=False)
    try:
        back = json.loads(json.dumps(params, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise UnsupportedValue(f"estimator parameters are not JSON: {e}") from e
    if set(back) != set(params) or not all(_same(back[k], v) for k, v in params.items()):
        raise UnsupportedValue("estimator parameters do not survive JSON")
    return back


def _same(a: Any, b: Any) -> bool:
    """Equal and of one type (NaN equals NaN: ``missing`` is NaN by default)."""
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b) or (a != a and b != b)
    except Exception:  # noqa: BLE001  (arrays and other values without a plain truth value)
        return False


def _sklearn_model_bytes(model: Any) -> bytes:
    """``model.save_model`` as UBJSON bytes (xgboost's wrappers only save to a path)."""
    import tempfile

    t = type(model)
    if not t.__module__.startswith("xgboost.") or "<locals>" in t.__qualname__:
        raise UnsupportedValue(f"{t.__module__}.{t.__qualname__} is not one of xgboost's own estimators")
    with tempfile.TemporaryDirectory(prefix="nb2pipe-xgb-") as tmp:
        path = os.path.join(tmp, "model.ubj")
        model.save_model(path)
        with open(path, "rb") as f:
            return f.read()


# Float fields of a DMatrix's MetaInfo that get_float_info returns and set_float_info takes.
_DMATRIX_FLOAT_INFO = ("label", "weight", "base_margin", "label_lower_bound", "label_upper_bound", "feature_weights")


class XGBoostDMatrixSerializer(Serializer):
    """A plain xgboost DMatrix: its data (CSR) and meta information, rebuilt as a new DMatrix."""

    name = "xgboost-dmatrix"
    version = 1
    extension = "npz"
    kfp_artifact = "Dataset"

    def matches(self, value: Any) -> bool:
        return _xgb_kind(value) == "dmatrix"

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        types_ = value.feature_types
        if types_ is not None and "c" in types_:
            raise UnsupportedValue("a DMatrix with categorical features cannot be rebuilt from get_data()")
        try:
            csr = value.get_data()
            arrays: list[tuple[str, Any]] = [
                ("indices", csr.indices), ("indptr", csr.indptr), ("data", csr.data),
                ("shape", (value.num_row(), value.num_col())),
            ]
            arrays += [(field, value.get_float_info(field)) for field in _DMATRIX_FLOAT_INFO]
            arrays.append(("group_ptr", value.get_uint_info("group_ptr")))
        except Exception as e:
            raise _decline(e) from e
        meta = {"feature_names": value.feature_names, "feature_types": types_}
        arrays.append(("meta", json.dumps(meta, sort_keys=True)))
        with _writable(target) as f:
            write_npz(f, arrays)

    def load(self, path: str) -> Any:
        import numpy as np
        import scipy.sparse as sp
        import xgboost as xgb

        with np.load(path, allow_pickle=False) as npz:
            shape = tuple(int(n) for n in npz["shape"])
            csr = sp.csr_matrix((npz["data"], npz["indices"], npz["indptr"]), shape=shape)
            meta = json.loads(str(npz["meta"]))
            matrix = xgb.DMatrix(csr, feature_names=meta["feature_names"], feature_types=meta["feature_types"])
            for field in _DMATRIX_FLOAT_INFO:
                if npz[field].size:
                    matrix.set_float_info(field, npz[field])
            group_ptr = npz["group_ptr"]
            if group_ptr.size:
                matrix.set_group(np.diff(group_ptr))
        return matrix


def ml_serializers() -> list[Serializer]:
    """The ML serializers, in the order they go in a registry (ahead of joblib: an XGBClassifier
    is also a scikit-learn estimator)."""
    return [ScipySparseSerializer(), PolarsSerializer(), XGBoostModelSerializer(), XGBoostDMatrixSerializer()]
