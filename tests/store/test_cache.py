"""Step cache keys: what changes them and what must not (pure, no kernels)."""

from __future__ import annotations

import nbformat
import pytest
from nbbuild import make_nb

from nb2pipe.compile.compiler import compile_notebook
from nb2pipe.store.cache import step_cache_key

ENV = "env-fingerprint-1"
SERIALIZERS = {"pickle": "1", "npy": "1", "parquet": "1"}

BASE = [
    ("setup", "import math"),
    ("parameters", "n = 1\nm = 2\nrate = 0.5"),
    ("step:a", "x = n * 2"),
    ("step:b", "y = x + m"),
]


def spec_for(tmp_path, cells, name="nb.ipynb"):
    return compile_notebook(str(make_nb(tmp_path, cells, name)))


def key(spec, step, params=None, inputs=None, env=ENV, serializers=None):
    comp = spec.step(step)
    values = dict(spec.parameter_defaults)
    values.update(params or {})
    if inputs is None:
        inputs = {i.name: "0" * 64 for i in comp.inputs}
    return step_cache_key(comp, values, inputs, env, dict(SERIALIZERS if serializers is None else serializers))


@pytest.fixture
def base(tmp_path):
    return spec_for(tmp_path, BASE)


def test_key_is_deterministic(tmp_path, base):
    again = spec_for(tmp_path, BASE, "copy.ipynb")
    assert key(base, "a") == key(base, "a") == key(again, "a")
    assert key(base, "b") == key(again, "b")
    assert len(key(base, "a")) == 64


def test_key_changes_with_the_step_code(tmp_path, base):
    edited = spec_for(tmp_path, [*BASE[:2], ("step:a", "x = n * 3"), BASE[3]], "edited.ipynb")
    assert key(edited, "a") != key(base, "a")
    # b's own code did not change; with the same input hashes its key is the same (the new
    # input content is what changes it at run time, see test_key_changes_with_input_hashes).
    assert key(edited, "b") == key(base, "b")


def test_key_changes_with_a_setup_cell(tmp_path, base):
    edited = spec_for(tmp_path, [("setup", "import math, os"), *BASE[1:]], "setup.ipynb")
    assert key(edited, "a") != key(base, "a")


def test_key_changes_with_parameters_the_step_reads(base):
    assert base.step("a").parameters == ["n"]
    assert key(base, "a", {"n": 5}) != key(base, "a")
    assert key(base, "b", {"m": 5}) != key(base, "b")


def test_key_ignores_parameters_the_step_does_not_read(base):
    assert key(base, "a", {"m": 99, "rate": 0.1}) == key(base, "a")
    assert key(base, "b", {"n": 99}) == key(base, "b")


def test_key_keeps_non_finite_parameters_distinct(tmp_path):
    spec = spec_for(tmp_path, [("parameters", "rate = 0.5"), ("step:a", "x = rate")])
    nan, inf, zero = (key(spec, "a", {"rate": v}) for v in (float("nan"), float("inf"), 0.0))
    assert len({nan, inf, zero, key(spec, "a", {"rate": float("-inf")})}) == 4
    assert key(spec, "a", {"rate": float("nan")}) == nan


def test_key_changes_with_input_hashes(base):
    assert [i.name for i in base.step("b").inputs] == ["x"]
    assert key(base, "b", inputs={"x": "1" * 64}) != key(base, "b", inputs={"x": "2" * 64})
    assert key(base, "b", inputs={"x": "1" * 64}) == key(base, "b", inputs={"x": "1" * 64})


def test_key_changes_with_the_environment(base):
    assert key(base, "a", env="env-fingerprint-2") != key(base, "a")


def test_key_changes_with_serializer_versions(base):
    assert key(base, "a", serializers={**SERIALIZERS, "npy": "2"}) != key(base, "a")
    assert key(base, "a", serializers={**SERIALIZERS, "joblib": "1"}) != key(base, "a")
    # order of the mapping does not matter
    assert key(base, "a", serializers=dict(reversed(list(SERIALIZERS.items())))) == key(base, "a")


def test_key_changes_with_the_image_digest(base):
    comp = base.step("a")
    values = base.parameter_defaults
    assert (step_cache_key(comp, values, {}, ENV, SERIALIZERS, image_digest="sha256:1")
            != step_cache_key(comp, values, {}, ENV, SERIALIZERS))


def test_key_ignores_outputs_ids_and_run_only_options(tmp_path, base):
    path = make_nb(tmp_path, [*BASE[:2], ("step:a retries:2 timeout:30 cache:off", "x = n * 2"), BASE[3]],
                   "noise.ipynb")
    nb = nbformat.read(str(path), as_version=4)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"other-{i}"
        cell["execution_count"] = 40 + i
        cell["outputs"] = [nbformat.v4.new_output("stream", name="stdout", text=f"noise {i}\n")]
    nbformat.write(nb, str(path))
    noisy = compile_notebook(str(path))
    assert key(noisy, "a") == key(base, "a")
    assert key(noisy, "b") == key(base, "b")
