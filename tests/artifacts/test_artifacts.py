from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nb2pipe.artifacts.values import (
    MANIFEST_NAME,
    Serializer,
    SerializerRegistry,
    UnsupportedValue,
    default_registry,
    load_inputs,
    load_value,
    save_outputs,
)
from nb2pipe.errors import SerializationError, StoreError

REPO = Path(__file__).resolve().parents[1]
# nb2pipe.artifacts.ml, ml_keras and ml_torch, ahead of joblib
ML = ["scipy-sparse", "polars", "xgboost", "xgboost-dmatrix", "keras", "torch-module", "torchscript", "torch"]


def roundtrip(value, tmp_path, registry=None):
    out = tmp_path / "out"
    manifest = save_outputs({"v": value}, out, registry=registry)
    entry = manifest["v"]
    return entry, load_value(out / entry["file"], entry["serializer"], registry=registry)


def files_in(path: Path) -> list[str]:
    return sorted(os.listdir(path)) if path.exists() else []


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- numpy ------------------------------------------------------------------------------------


def test_float32_array_keeps_dtype(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    entry, back = roundtrip(arr, tmp_path)
    assert entry["serializer"] == "npy" and entry["file"] == "v.npy"
    assert entry["type"] == "numpy.ndarray"
    assert back.dtype == np.float32 and back.shape == (3, 4)
    np.testing.assert_array_equal(back, arr)
    # a standard .npy file: np.load reads it without our code
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "v.npy"), arr)


@pytest.mark.parametrize(
    "arr",
    [
        np.asfortranarray(np.arange(20.0).reshape(4, 5)),
        np.arange(40, dtype=np.int64).reshape(5, 8)[::2, 1::3],  # not contiguous
        np.array([], dtype=np.float64),
        np.array(3.5),
        np.array(["2024-01-01", "2024-06-30"], dtype="datetime64[ns]"),
        np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", ">f8")]),
        np.arange(9 << 17, dtype=np.float64),  # 9 MiB: hashed on a second thread while written
    ],
    ids=["fortran", "strided", "empty", "0d", "datetime64", "structured", "9MiB"],
)
def test_array_layouts_roundtrip(tmp_path, arr):
    entry, back = roundtrip(arr, tmp_path)
    assert entry["serializer"] == "npy"
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    assert entry["sha256"] == sha256_of(tmp_path / "out" / entry["file"])
    assert entry["size"] == (tmp_path / "out" / entry["file"]).stat().st_size


def test_object_array_goes_to_pickle(tmp_path):
    arr = np.array([{"a": 1}, "x", None], dtype=object)
    entry, back = roundtrip(arr, tmp_path)
    assert entry["serializer"] == "pickle"
    assert back.dtype == object and back.tolist() == arr.tolist()


def test_ndarray_subclass_is_not_npy(tmp_path):
    masked = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])
    entry, back = roundtrip(masked, tmp_path)
    assert entry["serializer"] == "pickle"
    assert back.mask.tolist() == [False, True, False]


# -- pandas -----------------------------------------------------------------------------------


def typed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cat": pd.Categorical(["x", "y", "x"], categories=["z", "y", "x"], ordered=True),
            "when": pd.date_range("2024-03-30", periods=3, freq="h", tz="Europe/Berlin"),
            "f32": np.array([0.1, 0.2, 0.3], dtype=np.float32),
            "i": [1, 2, 3],
            "s": ["a", None, "c"],
            "n": pd.array([1, None, 3], dtype="Int64"),
        },
        index=pd.Index([10, 20, 30], name="key"),
    )


def test_dataframe_parquet_keeps_dtypes(tmp_path):
    df = typed_frame()
    entry, back = roundtrip(df, tmp_path)
    assert entry["serializer"] == "parquet" and entry["file"] == "v.parquet"
    assert entry["type"] == "pandas.DataFrame"
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert back["cat"].dtype == df["cat"].dtype  # categories, their order and `ordered`
    assert str(back["when"].dtype) == str(df["when"].dtype)
    assert back["f32"].dtype == np.float32
    # a real parquet file that pandas reads on its own
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "v.parquet"), df)


def test_dataframe_mixed_object_column_falls_back_to_pickle(tmp_path):
    df = pd.DataFrame({"mixed": [1, "a", 2.5], "ok": [1.0, 2.0, 3.0]})
    entry, back = roundtrip(df, tmp_path)
    assert entry["serializer"] == "pickle"
    pd.testing.assert_frame_equal(back, df)
    assert [type(x) for x in back["mixed"]] == [int, str, float]
    assert not [f for f in files_in(tmp_path / "out") if f.endswith((".parquet", ".tmp"))]


@pytest.mark.parametrize(
    "df",
    [
        pd.DataFrame({"t": [(1, 2), (3,), ()]}),  # parquet would return arrays
        pd.DataFrame({"c": pd.Categorical([1, 2, 1])}),  # parquet would return plain ints
        pd.DataFrame([[1, 2]], columns=["a", "a"]),
        pd.DataFrame({"o": pd.Series(["a", "b"], dtype=object)}),
        pd.DataFrame(np.ones((2, 2)), columns=[0, 1]),
        pd.DataFrame(np.ones((2, 2)), columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")])),
        pd.DataFrame({"v": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])),
        pd.DataFrame({"v": [1.0, 2.0]}, index=pd.date_range("2024-01-01", periods=2, freq="D", tz="UTC")),
        pd.DataFrame({"s": pd.arrays.SparseArray([0, 1, 0])}),
        pd.DataFrame(),
    ],
    ids=["tuples", "int-categories", "dup-columns", "object-str", "int-labels", "multiindex-cols",
         "multiindex-rows", "freq-index", "sparse", "empty"],
)
def test_awkward_frames_roundtrip_exactly(tmp_path, df):
    entry, back = roundtrip(df, tmp_path)
    assert entry["serializer"] in ("parquet", "pickle")
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert list(back.dtypes) == list(df.dtypes)
    if isinstance(df.index, pd.DatetimeIndex):
        assert back.index.freq == df.index.freq


def test_series_keeps_name_and_attrs(tmp_path):
    s = pd.Series(np.array([1.5, 2.5, np.nan], dtype=np.float32), index=list("abc"), name="price")
    s.attrs["unit"] = "EUR"
    entry, back = roundtrip(s, tmp_path)
    assert entry["serializer"] == "parquet" and entry["type"] == "pandas.Series"
    assert isinstance(back, pd.Series) and back.name == "price"
    pd.testing.assert_series_equal(back, s, check_exact=True)
    assert back.attrs == {"unit": "EUR"}


def test_series_without_name(tmp_path):
    s = pd.Series([1, 2, 3])
    entry, back = roundtrip(s, tmp_path)
    assert entry["serializer"] == "parquet"
    assert back.name is None
    pd.testing.assert_series_equal(back, s)


def test_big_frame_hash_matches(tmp_path):
    df = pd.DataFrame(np.random.default_rng(0).random((40_000, 4)), columns=list("abcd"))
    entry, back = roundtrip(df, tmp_path)
    assert entry["sha256"] == sha256_of(tmp_path / "out" / "v.parquet")
    pd.testing.assert_frame_equal(back, df)


# -- scikit-learn, pickle, cloudpickle ----------------------------------------------------------


def test_fitted_estimator_via_joblib(tmp_path):
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1], [0.5, 0.6], [0.6, 0.4]])
    y = np.array([0, 1, 0, 1, 0, 1])
    model = LogisticRegression().fit(X, y)
    entry, back = roundtrip(model, tmp_path)
    assert entry["serializer"] == "joblib" and entry["file"] == "v.joblib"
    assert entry["type"] == "sklearn.linear_model._logistic.LogisticRegression"
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2], "b": (3, "x")}, [1, "two", 3.0], (1, 2), {1, 2, 3}, None, 42, "text", b"\x00" * (9 << 20)],
    ids=["dict", "list", "tuple", "set", "None", "int", "str", "big-bytes"],
)
def test_plain_values_use_pickle(tmp_path, value):
    entry, back = roundtrip(value, tmp_path)
    assert entry["serializer"] == "pickle" and entry["file"] == "v.pkl"
    assert back == value and type(back) is type(value)
    assert entry["sha256"] == sha256_of(tmp_path / "out" / "v.pkl")


def test_lambda_uses_cloudpickle(tmp_path):
    offset = 3
    entry, back = roundtrip(lambda x: x + offset, tmp_path)
    assert entry["serializer"] == "cloudpickle"
    assert back(4) == 7


def test_local_class_instance_uses_cloudpickle(tmp_path):
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def norm2(self):
            return self.x**2 + self.y**2

    entry, back = roundtrip(Point(3, 4), tmp_path)
    assert entry["serializer"] == "cloudpickle"
    assert back.norm2() == 25


def test_notebook_defined_class_is_stored_by_value(tmp_path, monkeypatch):
    # In a kernel, cell-defined classes live in __main__; plain pickle would store a reference
    # another kernel cannot resolve, even though pickling itself succeeds here.
    cls = type("CellDefined", (), {"__module__": "__main__", "answer": lambda self: 42})
    monkeypatch.setattr(sys.modules["__main__"], "CellDefined", cls, raising=False)
    entry, back = roundtrip({"obj": cls()}, tmp_path)
    assert entry["serializer"] == "cloudpickle"
    assert back["obj"].answer() == 42


# -- unserializable values --------------------------------------------------------------------


def _gen():
    yield 1


@pytest.mark.parametrize(
    "make, label, hint",
    [
        (lambda p: (x for x in range(3)), "generator", "list(...)"),
        (lambda p: open(p / "data.txt", "w"), "_io.TextIOWrapper", "pass the path and reopen it"),
        (lambda p: threading.Lock(), "_thread.lock", "lock"),
        (lambda p: os, "module", "import it in the consuming step"),
        (lambda p: sqlite3.connect(":memory:"), "sqlite3.Connection", "reconnect in the consuming step"),
        (lambda p: socket.socket(), "socket.socket", "reconnect in the consuming step"),
    ],
    ids=["generator", "open-file", "lock", "module", "sqlite", "socket"],
)
def test_unserializable_values_name_variable_type_and_fix(tmp_path, make, label, hint):
    value = make(tmp_path)
    out = tmp_path / "out"
    try:
        with pytest.raises(SerializationError) as info:
            save_outputs({"good": np.ones(3), "rows": value, "also_good": {"a": 1}}, out)
    finally:
        if label in ("_io.TextIOWrapper", "sqlite3.Connection", "socket.socket"):
            value.close()
    message = str(info.value)
    assert message.startswith(f"output 'rows' ({label}) cannot be serialized: ")
    assert hint in message
    assert files_in(out) == []


def test_nested_unpicklable_value_leaves_no_files(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SerializationError) as info:
        # 'arr' is written before 'state' fails inside the pickler
        save_outputs({"arr": np.ones(1000), "state": {"lock": threading.Lock()}}, out)
    message = str(info.value)
    assert "output 'state' (dict) cannot be serialized" in message
    assert "_thread.lock" in message and "setup" in message
    assert files_in(out) == []


@pytest.mark.parametrize("name", ["not-an-identifier", "1x", "", "../escape", "a b"])
def test_output_names_must_be_identifiers(tmp_path, name):
    with pytest.raises(SerializationError, match="identifier"):
        save_outputs({"fine": 1, name: 2}, tmp_path / "out")
    assert files_in(tmp_path / "out") == []


# -- manifest ---------------------------------------------------------------------------------


def test_manifest_describes_files_and_is_written_last(tmp_path):
    out = tmp_path / "out"
    values = {"arr": np.arange(5.0), "df": typed_frame(), "cfg": {"k": "v"}}
    manifest = save_outputs(values, out)
    assert json.loads((out / MANIFEST_NAME).read_text()) == manifest
    assert files_in(out) == sorted(["arr.npy", "df.parquet", "cfg.pkl", MANIFEST_NAME])  # no temp files
    manifest_mtime = (out / MANIFEST_NAME).stat().st_mtime_ns
    for entry in manifest.values():
        path = out / entry["file"]
        assert set(entry) == {"file", "serializer", "serializer_version", "sha256", "size", "type"}
        assert entry["sha256"] == sha256_of(path)
        assert entry["size"] == path.stat().st_size
        assert entry["serializer_version"] == default_registry.get(entry["serializer"]).version
        assert path.stat().st_mtime_ns <= manifest_mtime
    assert manifest["cfg"]["type"] == "builtins.dict"


def test_load_inputs_fills_namespace_and_verifies(tmp_path):
    out = tmp_path / "out"
    values = {"arr": np.arange(5.0), "df": typed_frame(), "cfg": {"k": "v"}}
    manifest = save_outputs(values, out)
    inputs = {
        name: {"path": str(out / e["file"]), "serializer": e["serializer"], "sha256": e["sha256"]}
        for name, e in manifest.items()
    }
    ns: dict = {"untouched": True}
    load_inputs(inputs, ns, verify=True)
    np.testing.assert_array_equal(ns["arr"], values["arr"])
    pd.testing.assert_frame_equal(ns["df"], values["df"])
    assert ns["cfg"] == {"k": "v"} and ns["untouched"] is True

    # flip one byte: verification catches it, and the namespace is left alone
    path = out / "cfg.pkl"
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))
    ns2: dict = {}
    with pytest.raises(StoreError, match="does not match"):
        load_inputs(inputs, ns2, verify=True)
    assert ns2 == {}


def test_load_errors(tmp_path):
    with pytest.raises(StoreError, match="missing"):
        load_value(tmp_path / "nope.pkl", "pickle")
    with pytest.raises(SerializationError, match="unknown serializer 'nope'"):
        load_value(tmp_path / "x", "nope")
    with pytest.raises(SerializationError, match="identifier"):
        load_inputs({"bad-name": {"path": "x", "serializer": "pickle"}}, {})
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(SerializationError, match="input 'x'"):
        load_inputs({"x": {"path": str(tmp_path / "junk.pkl"), "serializer": "pickle"}}, {})


# -- registry ---------------------------------------------------------------------------------


class IntText(Serializer):
    name = "inttext"
    extension = "txt"

    def matches(self, value):
        return type(value) is int

    def dump(self, value, f):
        f.write(str(value).encode())

    def load(self, path):
        return int(Path(path).read_text())


class Picky(Serializer):
    """Matches ints but declines odd ones, so the next candidate is used."""

    name = "picky"
    extension = "even"

    def matches(self, value):
        return type(value) is int

    def dump(self, value, f):
        if value % 2:
            f.write(b"partial")  # discarded when declining
            raise UnsupportedValue("odd")
        f.write(str(value).encode())

    def load(self, path):
        return int(Path(path).read_text())


def test_registry_order_and_first(tmp_path):
    reg = SerializerRegistry.with_builtins(entry_point_group=None)
    assert reg.names() == ["npy", "parquet", *ML, "joblib", "pickle", "cloudpickle"]
    reg.register(IntText())  # not first: still ahead of the catch-all fallbacks
    assert reg.names() == ["npy", "parquet", *ML, "joblib", "inttext", "pickle", "cloudpickle"]
    assert reg.for_value(7).name == "inttext"
    reg.register(Picky(), first=True)
    assert reg.names()[0] == "picky"
    entry, back = roundtrip(4, tmp_path, registry=reg)
    assert entry["serializer"] == "picky" and back == 4
    entry, back = roundtrip(5, tmp_path / "odd", registry=reg)  # declined -> next candidate
    assert entry["serializer"] == "inttext" and back == 5
    assert files_in(tmp_path / "odd" / "out") == sorted(["v.txt", MANIFEST_NAME])
    reg.unregister("picky")
    assert "picky" not in reg.names()


def test_registering_same_name_replaces(tmp_path):
    reg = SerializerRegistry.with_builtins(entry_point_group=None)
    mine = IntText()
    mine.name = "pickle"
    reg.register(mine, first=True)
    assert reg.get("pickle") is mine and reg.names().count("pickle") == 1


def test_bad_serializer_is_refused():
    reg = SerializerRegistry(entry_point_group=None)
    bad = IntText()
    bad.extension = "../x"
    with pytest.raises(TypeError):
        reg.register(bad)


def test_entry_point_plugins(tmp_path, monkeypatch):
    plugin_dir = tmp_path / "site"
    plugin_dir.mkdir()
    (plugin_dir / "nb2pipe_plugin_under_test.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from nb2pipe.artifacts.values import Serializer

            class IntText(Serializer):
                name = "inttext"
                extension = "txt"
                def matches(self, value):
                    return type(value) is int
                def dump(self, value, f):
                    f.write(str(value).encode())
                def load(self, path):
                    return int(Path(path).read_text())

            class NpyOverride(IntText):
                name = "npy"
                extension = "npytxt"
                def matches(self, value):
                    return False

            catch_all = IntText()
            catch_all.name = "lastresort"
            catch_all.fallback = True
            """
        )
    )
    dist = plugin_dir / "nb2pipe_plugin_under_test-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nb2pipe-plugin-under-test\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[nb2pipe.serializers]\n"
        "inttext = nb2pipe_plugin_under_test:IntText\n"
        "npy = nb2pipe_plugin_under_test:NpyOverride\n"
        "lastresort = nb2pipe_plugin_under_test:catch_all\n"
        "broken = nb2pipe_plugin_under_test:does_not_exist\n"
    )
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.delitem(sys.modules, "nb2pipe_plugin_under_test", raising=False)

    reg = SerializerRegistry.with_builtins()  # entry points are read lazily, on first use
    with pytest.warns(RuntimeWarning, match="broken"):
        names = reg.names()
    # plugins go ahead of built-ins; a plugin with a built-in's name replaces it; fallbacks last
    assert names == ["inttext", "npy", "parquet", *ML, "joblib", "pickle", "cloudpickle", "lastresort"]
    assert type(reg.get("npy")).__name__ == "NpyOverride"
    assert reg.for_value(5).name == "inttext"
    assert reg.for_value(np.ones(2)).name == "pickle"  # the override declines arrays

    entry, back = roundtrip(5, tmp_path, registry=reg)
    assert entry["serializer"] == "inttext" and entry["file"] == "v.txt" and back == 5

    reg.register(Picky(), first=True)  # code registration beats plugins
    assert reg.for_value(6).name == "picky"


# -- import cost ------------------------------------------------------------------------------


def test_import_does_not_pull_heavy_libraries(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        import nb2pipe.artifacts.values as a
        heavy = ("numpy", "pandas", "pyarrow", "joblib", "cloudpickle", "sklearn", "scipy", "polars", "xgboost",
                 "torch")
        assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]
        # saving plain values must not import them either
        a.save_outputs({{"d": {{"k": [1, 2]}}, "s": "text"}}, {str(tmp_path / "out")!r})
        loaded = [m for m in heavy if m in sys.modules]
        assert not loaded, loaded
        print("ok")
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_builtin_serializers_dump_to_a_path_too(tmp_path):
    df = typed_frame()
    for value in (np.arange(6.0).reshape(2, 3), df, {"k": 1}):
        serializer = default_registry.for_value(value)
        path = tmp_path / f"direct.{serializer.extension}"
        serializer.dump(value, str(path))
        back = serializer.load(str(path))
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(back, value)
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(back, value)
        else:
            assert back == value


def test_register_accepts_a_class():
    reg = SerializerRegistry.with_builtins(entry_point_group=None)
    assert reg.register(IntText) is IntText
    assert isinstance(reg.get("inttext"), IntText)


def test_hash_is_right_when_queued_and_in_place_writes_mix(tmp_path):
    # pickle emits bytes frames (hashed on the queue) around a PickleBuffer of the array
    # (hashed in place on a second thread): the digest must still follow file order
    value = {"blob": os.urandom(1 << 20), "arr": np.arange(2 << 20, dtype=np.float64), "n": list(range(50_000))}
    entry, back = roundtrip(value, tmp_path)
    assert entry["serializer"] == "pickle"
    assert entry["sha256"] == sha256_of(tmp_path / "out" / "v.pkl")
    assert back["blob"] == value["blob"] and back["n"] == value["n"]
    np.testing.assert_array_equal(back["arr"], value["arr"])
