"""The Keras serializer (nb2pipe.artifacts.ml_keras) on real Keras 3 models.

Keras needs a backend: without TensorFlow these tests use torch (KERAS_BACKEND is set before
keras is imported; kernels and subprocesses inherit it). Skipped where neither is installed.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_ml_serializers import roundtrip, same_bytes_twice

from nb2pipe.artifacts.values import UnsupportedValue, default_registry

if "keras" not in sys.modules and importlib.util.find_spec("tensorflow") is None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

REPO = Path(__file__).resolve().parents[2]
X = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
Y = (X[:, :1] * 2 - X[:, 1:2]).astype("float32")


def fresh_env(*paths) -> dict:
    """This environment, with nb2pipe from this checkout (and ``paths``) on the path."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *map(str, paths), os.environ.get("PYTHONPATH", "")]))


def run_fresh(code: str, cwd, env=None) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env or fresh_env(), cwd=cwd, timeout=180)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def predict(model, x=X):
    return np.asarray(model.predict(x, verbose=0))


def sequential():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])


def functional():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(6, activation="tanh")(inputs)
    both = keras.layers.Concatenate()([hidden, keras.layers.Dense(2)(inputs)])
    return keras.Model(inputs, keras.layers.Dense(1)(both))


@pytest.mark.parametrize("build", [sequential, functional])
def test_model_roundtrip_predictions_and_deterministic_bytes(tmp_path, build):
    model = build()
    entry, back = roundtrip(model, tmp_path / "out")
    assert entry["serializer"] == "keras" and entry["file"] == "v.keras"  # not torch-module on the torch backend
    assert type(back) is type(model)
    np.testing.assert_array_equal(predict(back), predict(model))
    assert same_bytes_twice(model, tmp_path)
    # Keras' own loader reads the file as it is
    direct = keras.models.load_model(tmp_path / "out" / "v.keras")
    np.testing.assert_array_equal(predict(direct), predict(model))
    with zipfile.ZipFile(tmp_path / "out" / "v.keras") as zf:
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        meta = json.loads(zf.read("metadata.json"))
    assert "date_saved" not in meta and meta["nb2pipe"]["backend"] == keras.backend.backend()


def test_compiled_state_is_kept(tmp_path):
    model = functional()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse", metrics=["mae"])
    model.fit(X, Y, epochs=3, batch_size=8, verbose=0)
    entry, back = roundtrip(model, tmp_path / "out")
    assert entry["serializer"] == "keras"
    np.testing.assert_array_equal(predict(back), predict(model))
    assert type(back.optimizer) is type(model.optimizer)
    assert int(back.optimizer.iterations) == int(model.optimizer.iterations) == 12
    assert float(back.optimizer.learning_rate) == pytest.approx(0.01)
    for a, b in zip(model.optimizer.variables, back.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the loaded model trains on from where it was
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    back.fit(X, Y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    np.testing.assert_allclose(predict(back), predict(model), rtol=1e-5, atol=1e-6)
    assert same_bytes_twice(model, tmp_path)


MODELS_MODULE = '''
import keras


@keras.saving.register_keras_serializable(package="nb2pipe_tests")
class Scaled(keras.Model):
    def __init__(self, units=3, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.factor = units, factor
        self.dense = keras.layers.Dense(units)

    def call(self, x):
        return self.dense(x) * self.factor

    def get_config(self):
        return {**super().get_config(), "units": self.units, "factor": self.factor}
'''


def test_registered_subclass_loads_in_a_fresh_process(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "nb2pipe_test_models.py").write_text(MODELS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    from nb2pipe_test_models import Scaled

    keras.utils.set_random_seed(0)
    model = Scaled(units=2, factor=3.0)
    model(X[:1])  # build it
    entry, back = roundtrip(model, tmp_path / "out")
    assert entry["serializer"] == "keras" and type(back) is Scaled and back.factor == 3.0
    np.testing.assert_array_equal(predict(back), predict(model))
    np.save(tmp_path / "expected.npy", predict(model))
    np.save(tmp_path / "x.npy", X)
    # A new interpreter that never imported the class's module, and chose no backend: the
    # artifact names both.
    env = fresh_env(tmp_path / "pkg")
    env.pop("KERAS_BACKEND", None)
    out = run_fresh(f"""
        import os, numpy as np
        from nb2pipe.artifacts.values import load_value
        model = load_value({str(tmp_path / "out" / "v.keras")!r}, "keras")
        got = np.asarray(model.predict(np.load({str(tmp_path / "x.npy")!r}), verbose=0))
        np.testing.assert_array_equal(got, np.load({str(tmp_path / "expected.npy")!r}))
        print(type(model).__module__, os.environ["KERAS_BACKEND"])
        """, tmp_path, env=env)
    assert out == f"nb2pipe_test_models {keras.backend.backend()}"


def test_bytes_are_the_same_in_two_processes(tmp_path):
    # shared_object_id in the config is an id(): it differs between processes unless renumbered
    code = f"""
        import os
        import keras
        from nb2pipe.artifacts.values import save_outputs
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        init = keras.initializers.GlorotUniform(seed=1)  # one object in two layers' configs
        a, b = keras.layers.Dense(3, kernel_initializer=init), keras.layers.Dense(3, kernel_initializer=init)
        model = keras.Model(inputs, keras.layers.Add()([a(inputs), b(inputs)]))
        model.compile(optimizer="sgd", loss="mse")
        m = save_outputs({{"v": model}}, os.path.join({str(tmp_path)!r}, str(os.getpid())))
        print(m["v"]["serializer"], m["v"]["sha256"])
        """
    first, second = run_fresh(code, tmp_path), run_fresh(code, tmp_path)
    assert first.startswith("keras ") and first == second
    with zipfile.ZipFile(next(tmp_path.glob("*/v.keras"))) as zf:
        config = zf.read("config.json").decode()
    assert config.count('"shared_object_id": 1') == 2 and config.count('"shared_object_id"') == 2


def test_model_keras_cannot_load_back_is_pickled(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(1)])
    with pytest.raises(UnsupportedValue, match="[Ll]ambda"):
        default_registry.get("keras").dump(model, io.BytesIO())
    entry, back = roundtrip(model, tmp_path / "out")
    assert entry["serializer"] in ("pickle", "cloudpickle")
    np.testing.assert_array_equal(predict(back), predict(model))


def test_keras_is_not_taken_for_other_values():
    assert default_registry.for_value({"a": 1}).name == "pickle"
    # a layer is not a model: pickled, though on the torch backend it is an nn.Module too
    assert default_registry.for_value(keras.layers.Dense(2)).name == "pickle"


# -- through a pipeline -----------------------------------------------------------------------

TRAIN = f"""\
import os
os.environ["KERAS_BACKEND"] = {keras.backend.backend()!r}  # only this step chooses the backend
import keras
import numpy as np

keras.utils.set_random_seed(0)
X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = X @ np.array([[1.0], [-2.0], [0.5], [0.0]], dtype="float32")
inputs = keras.Input((4,), name="features")
outputs = keras.layers.Dense(1, name="out")(keras.layers.Dense(8, activation="relu", name="hidden")(inputs))
model = keras.Model(inputs, outputs, name="regressor")
model.compile(optimizer="adam", loss="mse")
model.fit(X, y, epochs=2, batch_size=16, verbose=0)
"""
PREDICT = """\
pred = model.predict(X, verbose=0)
steps_done = int(model.optimizer.iterations)
n_params = model.count_params()  # a method nb2pipe does not know: the step may have changed model
"""


@pytest.mark.kernel
def test_pipeline_passes_a_compiled_model_to_a_kernel_that_chose_no_backend(tmp_path, monkeypatch):
    from nbbuild import make_nb, run_nb

    import nb2pipe
    from nb2pipe.model.records import RunStatus

    monkeypatch.delenv("KERAS_BACKEND", raising=False)  # the kernels inherit this environment
    store = tmp_path / "store"
    report = "print(pred[:2], steps_done, model.name)"
    nb = make_nb(tmp_path, [("step:train", TRAIN), ("step:predict", PREDICT), ("step:report", report)])
    record = run_nb(nb, store)
    assert record.status == RunStatus.SUCCEEDED, [s.error for s in record.steps]
    made = {a.name: a for a in record.step("train").outputs}
    assert made["model"].serializer == "keras"
    assert nb2pipe.load("steps_done", run=record.id, store=store) == 8  # the optimizer's state came along
    model = nb2pipe.load("model", run=record.id, store=store)
    X = nb2pipe.load("X", run=record.id, store=store)
    np.testing.assert_array_equal(nb2pipe.load("pred", run=record.id, store=store), predict(model, X))
    # hashed again at the end of `predict`, the loaded model saved the same bytes
    assert {a.name: a.sha256 for a in record.step("predict").outputs}["model"] == made["model"].sha256

    again = run_nb(nb, store)
    assert [s.status.value for s in again.steps] == ["cached", "cached", "cached"]
    fresh = run_nb(nb, tmp_path / "store2")
    assert {a.name: a.sha256 for a in fresh.step("train").outputs} == {n: a.sha256 for n, a in made.items()}
