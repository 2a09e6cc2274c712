"""The ML serializers (nb2pipe.artifacts.ml) on real scipy, polars and xgboost objects.

Each library's tests skip when it is not installed. torch and Keras: test_ml_torch.py and
test_ml_keras.py.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nb2pipe.artifacts.ml import ml_serializers
from nb2pipe.artifacts.ml_keras import keras_serializers
from nb2pipe.artifacts.ml_torch import torch_serializers
from nb2pipe.artifacts.values import UnsupportedValue, default_registry, load_value, save_outputs
from nb2pipe.errors import SerializationError

REPO = Path(__file__).resolve().parents[2]


def roundtrip(value, folder):
    manifest = save_outputs({"v": value}, folder)
    entry = manifest["v"]
    assert entry["sha256"] == hashlib.sha256((Path(folder) / entry["file"]).read_bytes()).hexdigest()
    return entry, load_value(Path(folder) / entry["file"], entry["serializer"])


def same_bytes_twice(value, tmp_path):
    """Two dumps of the value give the same sha256 (content-addressed caches hold)."""
    first, _ = roundtrip(value, tmp_path / "first")
    second, _ = roundtrip(value, tmp_path / "second")
    return first["sha256"] == second["sha256"]


def test_registered_ahead_of_joblib_and_the_fallbacks():
    names = default_registry.names()
    assert names[:2] == ["npy", "parquet"] and names[-3:] == ["joblib", "pickle", "cloudpickle"]
    ours = ml_serializers() + keras_serializers() + torch_serializers()
    assert [s.name for s in ours] == names[2:-3]


def test_nothing_is_imported_to_recognise_other_values(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import nb2pipe.artifacts.values as a
        libs = ("scipy", "polars", "xgboost", "torch", "keras", "tensorflow")
        a.save_outputs({{"arr": np.ones(3), "d": {{"k": 1}}}}, {str(tmp_path / "out")!r})
        loaded = [m for m in libs if m in sys.modules]
        assert not loaded, loaded
        print("ok")
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- scipy.sparse -----------------------------------------------------------------------------


SPARSE_FORMATS = ["csr", "csc", "coo", "bsr", "dia", "lil", "dok"]


def sparse_value(fmt: str, array: bool, dtype=np.float32):
    sp = pytest.importorskip("scipy.sparse")
    base = sp.random(30, 12, density=0.2, format="csr", random_state=0, dtype=np.float64).astype(dtype)
    base = sp.csr_array(base) if array else base
    return base.asformat(fmt)


@pytest.mark.parametrize("array", [False, True], ids=["matrix", "array"])
@pytest.mark.parametrize("fmt", SPARSE_FORMATS)
def test_sparse_roundtrip_keeps_format_dtype_shape(tmp_path, fmt, array):
    sp = pytest.importorskip("scipy.sparse")
    value = sparse_value(fmt, array)
    entry, back = roundtrip(value, tmp_path / "out")
    assert entry["serializer"] == "scipy-sparse" and entry["file"] == "v.npz"
    assert type(back) is type(value)
    assert back.format == fmt and back.dtype == value.dtype and back.shape == value.shape
    assert isinstance(back, sp.sparray) == array
    np.testing.assert_array_equal(back.toarray(), value.toarray())
    assert same_bytes_twice(value, tmp_path)


def test_sparse_file_is_what_load_npz_reads_and_keeps_index_dtype(tmp_path):
    sp = pytest.importorskip("scipy.sparse")
    value = sp.csr_matrix(
        (np.array([1, 2, 3], dtype=np.int16), np.array([0, 2, 1], dtype=np.int64), np.array([0, 2, 3], dtype=np.int64)),
        shape=(2, 3),
    )
    value.indices, value.indptr = value.indices.astype(np.int64), value.indptr.astype(np.int64)  # scipy picks int32
    entry, back = roundtrip(value, tmp_path / "out")
    assert back.indices.dtype == np.int64 and back.data.dtype == np.int16
    direct = sp.load_npz(tmp_path / "out" / "v.npz")  # plain scipy reads it, without nb2pipe
    assert direct.format == "csr" and (direct != value).nnz == 0
    # dumping to a path gives the same bytes as the hashed stream
    serializer = default_registry.get("scipy-sparse")
    serializer.dump(value, str(tmp_path / "direct.npz"))
    assert hashlib.sha256((tmp_path / "direct.npz").read_bytes()).hexdigest() == entry["sha256"]


def test_sparse_complex_bool_empty_and_1d(tmp_path):
    sp = pytest.importorskip("scipy.sparse")
    values = [
        sp.csr_matrix(np.array([[0, 1j], [2, 0]])),
        sp.csc_array(np.array([[True, False], [False, True]])),
        sp.coo_matrix((0, 5), dtype=np.float64),
        sp.coo_array(np.array([0, 3.0, 0, 4.0])),  # 1-d coo: stored as coords
    ]
    for i, value in enumerate(values):
        entry, back = roundtrip(value, tmp_path / str(i))
        assert entry["serializer"] == "scipy-sparse"
        assert type(back) is type(value) and back.dtype == value.dtype and back.shape == value.shape
        np.testing.assert_array_equal(back.toarray(), value.toarray())


def test_sparse_subclass_is_not_taken(tmp_path):
    sp = pytest.importorskip("scipy.sparse")

    class Tagged(sp.csr_matrix):
        pass

    value = Tagged(np.eye(3))
    assert default_registry.for_value(value).name == "pickle"


# -- polars -----------------------------------------------------------------------------------


def polars_frame():
    pl = pytest.importorskip("polars")
    return pl.DataFrame({
        "i8": pl.Series([1, None, 3], dtype=pl.Int8),
        "u64": pl.Series([1, 2, 3], dtype=pl.UInt64),
        "f": [1.5, float("nan"), None],
        "s": ["a", None, "c"],
        "cat": pl.Series(["x", "y", "x"], dtype=pl.Categorical),
        "enum": pl.Series(["lo", "hi", "lo"], dtype=pl.Enum(["lo", "hi"])),
        "dec": pl.Series([decimal.Decimal("1.10"), None, decimal.Decimal("2.25")], dtype=pl.Decimal(10, 2)),
        "ts": pl.Series([dt.datetime(2024, 1, 1), None, dt.datetime(2024, 1, 3)]).dt.replace_time_zone("Europe/Paris"),
        "dur": pl.Series([dt.timedelta(seconds=1)] * 3),
        "d": [dt.date(2024, 1, 1)] * 3,
        "t": [dt.time(1, 2, 3)] * 3,
        "l": [[1, 2], [], None],
        "st": [{"a": 1, "b": "x"}, None, {"a": 2, "b": None}],
        "arr": pl.Series([[1, 2], [3, 4], [5, 6]], dtype=pl.Array(pl.Int32, 2)),
        "bin": [b"x", b"", None],
        "b": [True, False, None],
    })


def test_polars_frame_keeps_dtypes_and_bytes_are_deterministic(tmp_path):
    pl = pytest.importorskip("polars")
    from polars.testing import assert_frame_equal

    df = polars_frame()
    entry, back = roundtrip(df, tmp_path / "out")
    assert entry["serializer"] == "polars" and entry["file"] == "v.parquet"
    assert type(back) is pl.DataFrame and back.schema == df.schema
    assert_frame_equal(back, df)
    assert same_bytes_twice(df, tmp_path)
    assert pl.read_parquet(tmp_path / "out" / "v.parquet").equals(df)  # a standard parquet file


def test_polars_series_keeps_name_and_dtype(tmp_path):
    pl = pytest.importorskip("polars")
    from polars.testing import assert_series_equal

    for series in (pl.Series("price", [1.5, None, 3.0]), pl.Series("", ["a", "b"], dtype=pl.Categorical)):
        entry, back = roundtrip(series, tmp_path / (series.name or "unnamed"))
        assert entry["serializer"] == "polars"
        assert type(back) is pl.Series and back.name == series.name and back.dtype == series.dtype
        assert_series_equal(back, series)


def test_polars_object_column_is_declined(tmp_path):
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"n": [1, 2], "o": pl.Series([object(), object()], dtype=pl.Object)})
    with pytest.raises(UnsupportedValue, match="Object"):
        default_registry.get("polars").dump(df, io.BytesIO())
    # polars cannot pickle Object columns either: the step fails with a message naming the value
    with pytest.raises(SerializationError, match="'v' .*polars"):
        save_outputs({"v": df}, tmp_path / "out")
    assert not (tmp_path / "out" / "v.parquet").exists()


def test_polars_big_frame(tmp_path):
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"x": np.arange(2_000_000, dtype=np.float64), "k": np.arange(2_000_000) % 7})
    entry, back = roundtrip(df, tmp_path / "out")
    assert entry["serializer"] == "polars" and back.equals(df)


# -- xgboost ----------------------------------------------------------------------------------


def training_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    X[X < -1.5] = np.nan  # missing values
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) > 0).astype(int)
    return X, y


def test_xgboost_booster_roundtrip(tmp_path):
    xgb = pytest.importorskip("xgboost")
    X, y = training_data()
    dtrain = xgb.DMatrix(X, label=y, feature_names=[f"f{i}" for i in range(5)])
    booster = xgb.train({"max_depth": 3, "objective": "binary:logistic"}, dtrain, num_boost_round=5)
    booster.set_attr(note="kept")
    entry, back = roundtrip(booster, tmp_path / "out")
    assert entry["serializer"] == "xgboost" and entry["file"] == "v.xgb"
    assert type(back) is xgb.Booster
    assert back.feature_names == booster.feature_names and back.attr("note") == "kept"
    assert back.num_boosted_rounds() == 5
    np.testing.assert_array_equal(back.predict(dtrain), booster.predict(dtrain))
    assert same_bytes_twice(booster, tmp_path)


@pytest.mark.parametrize("kind", ["XGBClassifier", "XGBRegressor", "XGBRanker"])
def test_xgboost_sklearn_wrappers_roundtrip(tmp_path, kind):
    xgb = pytest.importorskip("xgboost")
    X, y = training_data()
    model = getattr(xgb, kind)(n_estimators=4, max_depth=2, learning_rate=0.3)
    if kind == "XGBRanker":
        model.fit(X, y, qid=np.repeat(np.arange(20), 10))
    else:
        model.fit(X, y)
    entry, back = roundtrip(model, tmp_path / "out")
    assert entry["serializer"] == "xgboost"  # not joblib, though it is a scikit-learn estimator
    assert type(back) is type(model)
    assert _same_params(back, model)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    if kind == "XGBClassifier":
        np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
        np.testing.assert_array_equal(back.classes_, model.classes_)
    assert same_bytes_twice(model, tmp_path)


def _same_params(a, b) -> bool:
    pa, pb = a.get_params(), b.get_params()
    return pa.keys() == pb.keys() and all(pa[k] == pb[k] or (pa[k] != pa[k] and pb[k] != pb[k]) for k in pa)


def test_xgboost_unfitted_or_callable_params_go_elsewhere(tmp_path):
    xgb = pytest.importorskip("xgboost")
    X, y = training_data()
    entry, back = roundtrip(xgb.XGBRegressor(n_estimators=2), tmp_path / "unfitted")
    assert entry["serializer"] == "joblib" and type(back) is xgb.XGBRegressor
    model = xgb.XGBRegressor(n_estimators=2, eval_metric=_mae).fit(X, y)
    entry, back = roundtrip(model, tmp_path / "callable")
    assert entry["serializer"] == "joblib"
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


def _mae(y_true, y_pred):
    return float(np.mean(np.abs(y_true - y_pred)))


def test_xgboost_dmatrix_roundtrip(tmp_path):
    xgb = pytest.importorskip("xgboost")
    X, y = training_data()
    names = [f"f{i}" for i in range(5)]
    dm = xgb.DMatrix(X, label=y, weight=np.array([0.5, 1.5]), base_margin=np.full(200, 0.1),
                     feature_names=names, feature_types=["float"] * 5)
    dm.set_group([50, 150])  # with groups, a weight per group
    entry, back = roundtrip(dm, tmp_path / "out")
    assert entry["serializer"] == "xgboost-dmatrix" and entry["file"] == "v.npz"
    assert type(back) is xgb.DMatrix
    assert (back.num_row(), back.num_col()) == (200, 5)
    assert back.feature_names == names and back.feature_types == ["float"] * 5
    for getter in ("get_label", "get_weight", "get_base_margin"):
        np.testing.assert_array_equal(getattr(back, getter)(), getattr(dm, getter)())
    np.testing.assert_array_equal(back.get_uint_info("group_ptr"), dm.get_uint_info("group_ptr"))
    a, b = dm.get_data(), back.get_data()
    np.testing.assert_array_equal(a.toarray(), b.toarray())
    # training on either gives the same model
    params = {"max_depth": 2, "objective": "rank:pairwise", "seed": 0}
    p1 = xgb.train(params, dm, 3).predict(dm)
    p2 = xgb.train(params, back, 3).predict(back)
    np.testing.assert_array_equal(p1, p2)
    assert same_bytes_twice(dm, tmp_path)


def test_xgboost_dmatrix_with_survival_bounds(tmp_path):
    xgb = pytest.importorskip("xgboost")
    X, _ = training_data()
    dm = xgb.DMatrix(X)
    dm.set_float_info("label_lower_bound", np.arange(200, dtype=np.float32))
    dm.set_float_info("label_upper_bound", np.arange(200, dtype=np.float32) + 1)
    _, back = roundtrip(dm, tmp_path / "out")
    np.testing.assert_array_equal(back.get_float_info("label_lower_bound"), dm.get_float_info("label_lower_bound"))
    np.testing.assert_array_equal(back.get_float_info("label_upper_bound"), dm.get_float_info("label_upper_bound"))
    assert back.get_label().size == 0


# -- through a pipeline -----------------------------------------------------------------------


@pytest.mark.kernel
def test_pipeline_passes_sparse_matrix_and_xgboost_model(tmp_path):
    sp = pytest.importorskip("scipy.sparse")
    from nbbuild import make_nb, run_nb

    import nb2pipe
    from nb2pipe.model.records import RunStatus

    try:
        import xgboost as xgb
    except ImportError:
        xgb = None
    make = (
        "import numpy as np\nimport scipy.sparse as sp\n"
        "m = sp.random(40, 6, density=0.3, format='csc', random_state=1, dtype=np.float32)\n"
    )
    consume = "m_summary = (m.format, str(m.dtype), m.shape, float(m.sum()), type(m).__name__)\n"
    if xgb is not None:
        make += (
            "import xgboost as xgb\n"
            "X = m.toarray()\ny = (X[:, 0] > 0.5).astype(int)\n"
            "model = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(X, y)\n"
        )
        consume += "pred = model.predict_proba(X)\n"
    store = tmp_path / "store"
    report = "print(m_summary, pred.shape)" if xgb is not None else "print(m_summary)"
    # only what a later step reads is stored: `report` makes the consumer's results artifacts
    nb = make_nb(tmp_path, [("step:make", make), ("step:use", consume), ("step:report", report)])
    record = run_nb(nb, store)
    assert record.status == RunStatus.SUCCEEDED, [s.error for s in record.steps]
    serializers = {a.name: a.serializer for a in record.step("make").outputs}
    assert serializers["m"] == "scipy-sparse"

    expected = sp.random(40, 6, density=0.3, format="csc", random_state=1, dtype=np.float32)
    summary = nb2pipe.load("m_summary", run=record.id, store=store)
    assert summary == ("csc", "float32", (40, 6), pytest.approx(float(expected.sum())), "csc_matrix")
    m = nb2pipe.load("m", run=record.id, store=store)
    assert type(m) is type(expected) and (m != expected).nnz == 0
    if xgb is not None:
        assert serializers["model"] == "xgboost"
        X = expected.toarray()
        model = nb2pipe.load("model", run=record.id, store=store)
        pred = nb2pipe.load("pred", run=record.id, store=store)
        np.testing.assert_array_equal(pred, model.predict_proba(X))
        assert model.get_params()["max_depth"] == 2

    # a second run is served from the cache
    again = run_nb(nb, store)
    assert [s.status.value for s in again.steps] == ["cached", "cached", "cached"]
    # and a fresh run in another store (other kernels) writes byte-identical artifacts
    fresh = run_nb(nb, tmp_path / "store2")
    assert {a.name: a.sha256 for a in fresh.step("make").outputs} == {
        a.name: a.sha256 for a in record.step("make").outputs}


@pytest.mark.kernel
def test_kale_xgboost_example_runs(tmp_path):
    """Kale's XGBoost example (tests/notebooks/kale_xgboost.ipynb): the DMatrix and Booster cross
    steps through their own formats, and the artifacts are byte-for-byte reproducible."""
    xgb = pytest.importorskip("xgboost")
    pytest.importorskip("sklearn")
    import shutil

    from nbbuild import run_nb

    import nb2pipe
    from nb2pipe.model.records import RunStatus

    nb = tmp_path / "kale_xgboost.ipynb"
    shutil.copy(REPO / "tests" / "notebooks" / "kale_xgboost.ipynb", nb)
    store = tmp_path / "store"
    record = run_nb(nb, store)
    assert record.status == RunStatus.SUCCEEDED, [s.error for s in record.steps]
    assert [s.name for s in record.steps] == ["loaddata", "preprocess", "train", "evaluate"]
    serializers = {(s.name, a.name): a.serializer for s in record.steps for a in s.outputs}
    assert serializers[("preprocess", "dtrain")] == serializers[("preprocess", "dtest")] == "xgboost-dmatrix"
    assert serializers[("train", "model")] == "xgboost"
    assert serializers[("loaddata", "loans")] == "parquet"
    metrics = {m.name: m.value for m in record.metrics}
    assert metrics.keys() == {"accuracy", "auc"} and metrics["auc"] > 0.85 and metrics["accuracy"] > 0.75

    model = nb2pipe.load("model", run=record.id, store=store)
    dtest = nb2pipe.load("dtest", run=record.id, store=store)
    assert type(model) is xgb.Booster and model.num_boosted_rounds() == 40
    assert model.feature_names == dtest.feature_names and "purpose_business" in model.feature_names
    proba = model.predict(dtest)
    assert float(((proba > 0.5) == dtest.get_label()).mean()) == pytest.approx(metrics["accuracy"])

    again = run_nb(nb, store)
    assert [s.status.value for s in again.steps] == ["cached"] * 4
    assert {m.name: m.value for m in again.metrics} == metrics
    fresh = run_nb(nb, tmp_path / "store2")  # other kernels: the same bytes
    shas = {(s.name, a.name): a.sha256 for s in record.steps for a in s.outputs}
    assert {(s.name, a.name): a.sha256 for s in fresh.steps for a in s.outputs} == shas
