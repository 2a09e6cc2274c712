"""NaN and infinity in the numeric artifacts a step produced (numpy arrays, pandas DataFrames and
Series), read back from the object store after the step.

Only values of those types are loaded; anything else (a model, a list) is not numeric data and is
left alone. numpy and pandas are imported only when such an artifact is there to count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.model.records import ArtifactRef

NUMERIC_TYPES = ("numpy.ndarray", "pandas.core.frame.DataFrame", "pandas.core.series.Series",
                 "pandas.DataFrame", "pandas.Series")
_LISTED = 8


@dataclass
class NonFinite:
    nan: int = 0
    inf: int = 0
    size: int = 0  # values looked at
    shape: str = ""
    columns: dict[str, tuple[int, int]] = field(default_factory=dict)  # column -> (nan, inf), DataFrames only

    @property
    def total(self) -> int:
        return self.nan + self.inf

    def describe(self) -> str:
        text = f"{self.total} NaN/inf value{'s' if self.total != 1 else ''} ({self.nan} NaN, {self.inf} inf) in " \
               f"{self.size} numeric values"
        bad = [(c, n, i) for c, (n, i) in self.columns.items() if n or i]
        if bad:
            shown = ", ".join(f"{c} ({n + i})" for c, n, i in bad[:_LISTED])
            text += f"; columns: {shown}" + (f" and {len(bad) - _LISTED} more" if len(bad) > _LISTED else "")
        return text


def is_numeric_artifact(ref: ArtifactRef) -> bool:
    return ref.type_name in NUMERIC_TYPES


def count_nonfinite(value) -> NonFinite | None:
    """NaN/inf counts of a numpy array, DataFrame or Series; None when the value is none of those."""
    module = type(value).__module__.partition(".")[0]
    if module == "numpy":
        return _array(value)
    if module == "pandas":
        kind = type(value).__name__
        if kind == "DataFrame":
            return _frame(value)
        if kind == "Series":
            return _series(value)
    return None


def _array(arr) -> NonFinite | None:
    import numpy as np

    if not isinstance(arr, np.ndarray):
        return None
    shape = "×".join(str(n) for n in arr.shape) or "scalar"
    if arr.dtype.kind not in "fc":
        return NonFinite(size=int(arr.size), shape=shape) if arr.dtype.kind in "iub" else None
    return NonFinite(int(np.isnan(arr).sum()), int(np.isinf(arr).sum()), int(arr.size), shape)


def _series(series) -> NonFinite | None:
    nan, inf = _column(series)
    if nan is None:
        return None
    return NonFinite(nan, inf, int(series.size), str(len(series)))


def _frame(frame) -> NonFinite:
    out = NonFinite(shape=f"{frame.shape[0]}×{frame.shape[1]}")
    for position, name in enumerate(frame.columns):
        nan, inf = _column(frame.iloc[:, position])
        if nan is None:
            continue
        out.nan += nan
        out.inf += inf
        out.size += int(frame.shape[0])
        out.columns[str(name)] = (nan, inf)
    return out


def _column(series) -> tuple[int | None, int]:
    """(NaN or missing count, inf count) of a numeric column; (None, 0) for any other column."""
    import numpy as np
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if not is_numeric_dtype(series.dtype) or is_bool_dtype(series.dtype):
        return None, 0
    nan = int(series.isna().sum())
    try:
        values = series.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):  # complex
        values = np.abs(series.to_numpy())
    return nan, int(np.isinf(values).sum())


def scan_artifacts(refs: list[ArtifactRef], objects_root: Path) -> list[tuple[ArtifactRef, NonFinite | None, str]]:
    """(artifact, counts, problem) for each numeric artifact; `problem` says why it could not be read."""
    from nb2pipe.artifacts.values import load_value
    from nb2pipe.store.objects import ObjectStore

    objects = ObjectStore(objects_root)
    out = []
    for ref in refs:
        if not is_numeric_artifact(ref):
            continue
        try:
            value = load_value(str(objects.path(ref.sha256)), ref.serializer)
        except Exception as exc:  # a serializer plugin missing here, pandas absent beside a docker run
            out.append((ref, None, f"{type(exc).__name__}: {exc}"))
            continue
        out.append((ref, count_nonfinite(value), ""))
    return out
