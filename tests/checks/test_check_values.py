"""nb2pipe.checks.values: NaN and inf counted in numpy arrays and pandas DataFrames/Series."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nb2pipe.checks.values import count_nonfinite, is_numeric_artifact
from nb2pipe.model.records import ArtifactRef


def test_arrays():
    counts = count_nonfinite(np.array([[1.0, np.nan], [np.inf, -np.inf]]))
    assert (counts.nan, counts.inf, counts.size, counts.shape, counts.total) == (1, 2, 4, "2×2", 3)
    assert count_nonfinite(np.arange(5)).total == 0 and count_nonfinite(np.arange(5)).size == 5
    assert count_nonfinite(np.array([1 + 1j, complex(np.nan, 0)])).nan == 1
    assert count_nonfinite(np.array(["a", "b"])) is None
    assert count_nonfinite(np.array([None, 1.0], dtype=object)) is None


def test_frames_count_numeric_columns_and_name_them():
    frame = pd.DataFrame({"age": [1.0, np.nan, 3.0], "bmi": [np.inf, 2.0, np.nan], "name": ["a", None, "c"],
                          "flag": [True, False, True], "n": pd.array([1, None, 3], dtype="Int64")})
    counts = count_nonfinite(frame)
    assert (counts.nan, counts.inf, counts.size, counts.shape) == (3, 1, 9, "3×5")
    assert counts.columns == {"age": (1, 0), "bmi": (1, 1), "n": (1, 0)}
    assert counts.describe() == "4 NaN/inf values (3 NaN, 1 inf) in 9 numeric values; columns: age (1), bmi (2), n (1)"
    assert count_nonfinite(pd.DataFrame({"x": [1.0, 2.0]})).total == 0


def test_series_and_other_values():
    assert count_nonfinite(pd.Series([1.0, np.nan, np.inf])).total == 2
    assert count_nonfinite(pd.Series(["a", "b"])) is None
    assert count_nonfinite([1.0, float("nan")]) is None and count_nonfinite(3.0) is None


def test_which_artifacts_are_numeric():
    def ref(type_name):
        return ArtifactRef("x", "0" * 64, 1, "pickle", type_name)

    assert is_numeric_artifact(ref("numpy.ndarray")) and is_numeric_artifact(ref("pandas.DataFrame"))
    assert is_numeric_artifact(ref("pandas.core.series.Series"))
    assert not is_numeric_artifact(ref("sklearn.linear_model._ridge.Ridge"))
