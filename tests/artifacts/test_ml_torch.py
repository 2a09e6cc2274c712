"""The torch serializers (nb2pipe.artifacts.ml_torch) on real tensors and modules.

Skipped where torch is not installed (it is no pip extra: CI installs the CPU build itself).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from test_ml_serializers import roundtrip, same_bytes_twice

from nb2pipe.artifacts.values import UnsupportedValue, default_registry

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]


def in_fresh_process(code: str, cwd) -> str:
    """Run ``code`` in a new interpreter (nb2pipe from this checkout); returns its stdout."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# -- tensors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "int64", "uint8", "bool", "complex64"])
def test_tensor_roundtrip_and_deterministic(tmp_path, dtype):
    g = torch.Generator().manual_seed(0)
    value = (torch.randn(4, 5, generator=g) * 10).to(getattr(torch, dtype))
    entry, back = roundtrip(value, tmp_path / "out")
    assert entry["serializer"] == "torch" and entry["file"] == "v.pt"
    assert type(back) is torch.Tensor and back.dtype == value.dtype and torch.equal(back, value)
    assert same_bytes_twice(value, tmp_path)


def test_tensor_file_loads_with_weights_only(tmp_path):
    value = torch.arange(6.0).reshape(2, 3).t()  # a transposed (non-contiguous) tensor keeps its strides
    entry, _ = roundtrip(value, tmp_path / "out")
    back = torch.load(tmp_path / "out" / entry["file"], weights_only=True)  # plain torch, safe loading
    assert torch.equal(back, value) and back.stride() == value.stride()


def test_requires_grad_parameters_sparse_and_odd_shapes(tmp_path):
    leaf = torch.ones(3, requires_grad=True)
    values = {
        "param": torch.nn.Parameter(torch.randn(2, 2)),
        "frozen": torch.nn.Parameter(torch.randn(2), requires_grad=False),
        "leaf": leaf,
        "nonleaf": leaf * 2,  # comes back a leaf that requires grad, as torch.save does
        "coo": torch.sparse_coo_tensor([[0, 1, 1], [2, 0, 1]], [3.0, 4.0, 5.0], (2, 3)),
        "csr": torch.tensor([[0.0, 1.0], [2.0, 0.0]]).to_sparse_csr(),
        "scalar": torch.tensor(3.5),
        "empty": torch.empty(0, 4),
    }
    for name, value in values.items():
        entry, back = roundtrip(value, tmp_path / name)
        assert entry["serializer"] == "torch", name
        assert type(back) is type(value) and back.requires_grad == value.requires_grad, name
        assert back.layout == value.layout and back.shape == value.shape and back.dtype == value.dtype, name
        assert torch.equal(back.detach().to_dense(), value.detach().to_dense()), name
        assert back.is_leaf, name


def test_a_view_is_stored_without_the_rest_of_its_storage(tmp_path):
    big = torch.arange(100_000, dtype=torch.float64)
    view = big[10:20]
    entry, back = roundtrip(view, tmp_path / "view")
    assert torch.equal(back, view) and entry["size"] < 10_000
    # equal values give equal bytes, whatever storage they look into
    assert entry["sha256"] == roundtrip(view.clone(), tmp_path / "copy")[0]["sha256"]
    strided, _ = roundtrip(big[::1000], tmp_path / "strided")
    assert strided["size"] < 10_000


def test_tensor_with_attributes_or_subclass_is_pickled(tmp_path):
    tagged = torch.ones(2)
    tagged.note = "calibrated"
    entry, back = roundtrip(tagged, tmp_path / "tagged")
    assert entry["serializer"] == "pickle" and back.note == "calibrated"

    class Marked(torch.Tensor):
        pass

    assert default_registry.for_value(torch.ones(2).as_subclass(Marked)).name == "pickle"


def test_tensor_saved_on_a_missing_device_loads_on_the_cpu(tmp_path, monkeypatch):
    import torch.serialization as ts

    # as if saved on a GPU: torch.save records the location tag of each storage
    monkeypatch.setattr(ts, "location_tag", lambda storage: "cuda:3")
    entry, back = roundtrip(torch.arange(4.0), tmp_path / "out")
    model, model_back = roundtrip(torch.nn.Linear(2, 1), tmp_path / "model")
    monkeypatch.undo()
    assert back.device.type == "cpu" and torch.equal(back, torch.arange(4.0))
    assert model["serializer"] == "torch-module" and model_back.weight.device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # what plain torch.load does with the file
            torch.load(tmp_path / "out" / entry["file"], weights_only=True)


# -- modules of importable classes ------------------------------------------------------------


def small_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    net(torch.randn(16, 4))  # moves BatchNorm's running statistics (buffers)
    return net


def test_module_keeps_state_mode_buffers_and_shared_parameters(tmp_path):
    net = small_net().eval()
    net[0].train()  # modes per submodule
    net[3].weight = torch.nn.Parameter(net[0].weight.detach().t().clone())
    net.tied = torch.nn.Linear(4, 8)
    net.tied.weight = net[0].weight  # one parameter in two places
    net.config = {"classes": ["a", "b"], "threshold": 0.5}  # a plain attribute
    for name in ("cos", "sin"):
        net[3].register_buffer(name, torch.full((2,), 0.5), persistent=False)
    entry, back = roundtrip(net, tmp_path / "out")
    assert entry["serializer"] == "torch-module" and entry["file"] == "v.pt"
    assert type(back) is torch.nn.Sequential and back.config == net.config
    assert [m.training for m in back.modules()] == [m.training for m in net.modules()]
    assert back.tied.weight is back[0].weight
    assert back[3]._non_persistent_buffers_set == {"cos", "sin"} and torch.equal(back[3].cos, net[3].cos)
    assert back.state_dict().keys() == net.state_dict().keys()
    for (name, a), (_, b) in zip(net.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.randn(5, 4)
    net.eval(), back.eval()
    assert torch.equal(back(x), net(x))
    assert same_bytes_twice(net, tmp_path)


def test_module_bytes_are_the_same_in_another_process(tmp_path):
    entry, _ = roundtrip(small_net(), tmp_path / "here")
    there = in_fresh_process(
        f"""
        import hashlib, torch
        from pathlib import Path
        from nb2pipe.artifacts.values import save_outputs
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                  torch.nn.Linear(8, 4))
        net(torch.randn(16, 4))
        t = torch.randn(3, 3)
        m = save_outputs({{"v": net, "t": t}}, {str(tmp_path / "there")!r})
        print(m["v"]["sha256"], m["t"]["sha256"])
        """, tmp_path)
    torch.manual_seed(0)
    small_net()
    tensor, _ = roundtrip(torch.randn(3, 3), tmp_path / "tensor")
    assert there.split() == [entry["sha256"], tensor["sha256"]]


# -- TorchScript ------------------------------------------------------------------------------


def local_net_class():
    """A class another process cannot import (defined inside a function, like a notebook's)."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)
            self.register_buffer("scale", torch.tensor([1.0, 2.0]))
            self.label = "net"

        def forward(self, x):
            return self.fc(x) * self.scale

        @torch.jit.export
        def twice(self, x):
            return 2 * self.forward(x)

    return Net


def test_module_of_an_unimportable_class_goes_torchscript(tmp_path):
    torch.manual_seed(0)
    net = local_net_class()().eval()
    entry, back = roundtrip(net, tmp_path / "out")
    assert entry["serializer"] == "torchscript" and entry["file"] == "v.pt"
    assert isinstance(back, torch.jit.ScriptModule)
    x = torch.randn(4, 3)
    assert torch.equal(back(x), net(x)) and torch.equal(back.twice(x), net.twice(x))
    assert back.training is False and back.label == "net" and torch.equal(back.scale, net.scale)
    assert same_bytes_twice(net, tmp_path)
    with zipfile.ZipFile(tmp_path / "out" / "v.pt") as zf:  # no source paths inside
        assert not [n for n in zf.namelist() if n.endswith(".debug_pkl")]
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())


def test_torchscript_bytes_do_not_depend_on_the_hash_seed_or_the_file(tmp_path):
    # TorchScript writes class constants (Conv2d has ten) in the order of a set of names; a
    # module pickles its set of non-persistent buffer names in set order
    script = """
import sys, torch
from nb2pipe.artifacts.values import save_outputs


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.fc = torch.nn.Linear(8, 1)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


torch.manual_seed(0)
lin = torch.nn.Linear(2, 2)
for name in ("cos", "sin", "mask"):  # names in a set (Module._non_persistent_buffers_set)
    lin.register_buffer(name, torch.ones(1), persistent=False)
m = save_outputs({"v": Net(), "lin": lin}, sys.argv[1])
print(m["v"]["serializer"], m["v"]["sha256"], m["lin"]["serializer"], m["lin"]["sha256"])
"""
    shas = []
    for seed in ("1", "2", "3"):
        path = tmp_path / f"script_{seed}.py"  # another file name each time, as kernels' cells have
        path.write_text(script)
        env = dict(os.environ, PYTHONHASHSEED=seed,
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        result = subprocess.run([sys.executable, str(path), str(tmp_path / seed)], capture_output=True, text=True,
                                env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        shas.append(result.stdout.split())
    assert shas[0][0::2] == ["torchscript", "torch-module"] and shas[0] == shas[1] == shas[2]


def test_script_and_traced_modules_are_taken_as_they_are(tmp_path):
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 2)
    x = torch.randn(2, 3)
    for name, value in {"scripted": torch.jit.script(linear), "traced": torch.jit.trace(linear, x)}.items():
        entry, back = roundtrip(value, tmp_path / name)
        assert entry["serializer"] == "torchscript", name
        assert torch.equal(back(x), linear(x)), name


def test_torchscript_loads_in_a_process_without_the_class(tmp_path):
    torch.manual_seed(0)
    net = local_net_class()()
    entry, _ = roundtrip(net, tmp_path / "out")
    x = torch.randn(2, 3)
    expected = net.twice(x)
    torch.save(x, tmp_path / "x.pt")
    out = in_fresh_process(
        f"""
        import torch
        from nb2pipe.artifacts.values import load_value
        net = load_value({str(tmp_path / "out" / entry["file"])!r}, "torchscript")
        x = torch.load({str(tmp_path / "x.pt")!r})
        torch.save(net.twice(x), {str(tmp_path / "y.pt")!r})
        print(type(net).__name__)
        """, tmp_path)
    assert out == "RecursiveScriptModule"
    assert torch.equal(torch.load(tmp_path / "y.pt"), expected)


def test_unscriptable_or_lossy_modules_fall_back_to_cloudpickle(tmp_path):
    import numpy as np

    class Unscriptable(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(np.asarray(x) * 2)  # numpy: TorchScript cannot compile it

    class ExtraMethod(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x)

        def predict_label(self, x):  # not exported: a TorchScript copy would not have it
            return self.forward(x).argmax(dim=1)

    class HoldsObject(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tokenizer = object()  # not a TorchScript type: scripting would drop it

        def forward(self, x):
            return x

    x = torch.randn(3, 2)
    for value in (Unscriptable(), ExtraMethod(), HoldsObject()):
        with pytest.raises(UnsupportedValue, match="TorchScript"):
            default_registry.get("torchscript").dump(value, io.BytesIO())
        entry, back = roundtrip(value, tmp_path / type(value).__name__)
        assert entry["serializer"] == "cloudpickle", type(value).__name__
        assert torch.equal(back(x), value(x))
    assert type(back.tokenizer) is object


def test_registry_order_puts_torch_behind_keras_and_ahead_of_joblib():
    names = default_registry.names()
    assert names.index("keras") < names.index("torch-module") < names.index("torchscript") < names.index("torch")
    assert names.index("torch") < names.index("joblib")
    assert default_registry.for_value(torch.nn.Linear(1, 1)).name == "torch-module"
    assert default_registry.for_value(torch.ones(1)).name == "torch"


# -- through a pipeline -----------------------------------------------------------------------

MAKE = """\
import numpy as np
import torch

torch.manual_seed(0)
x = torch.randn(8, 3)
seq = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU()).eval()


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


net = Net().eval()


class Odd(torch.nn.Module):
    def forward(self, x):
        return torch.from_numpy(np.asarray(x) * 2)


odd = Odd()


def triple(v):
    return v * 3


wrapped = torch.nn.Linear(3, 1)
wrapped.post = triple
"""
USE = """\
net.eval()  # a method call: the step may have changed net, so it is hashed again at its end
pred = net(x)
hidden = seq(x)
doubled = odd(x)
tripled = wrapped.post(wrapped(x))
kinds = (type(net).__name__, type(odd).__name__, type(seq).__name__)
"""


@pytest.mark.kernel
def test_pipeline_passes_tensors_and_modules_between_kernels(tmp_path):
    from nbbuild import make_nb, run_nb

    import nb2pipe
    from nb2pipe.model.records import RunStatus

    store = tmp_path / "store"
    report = "print(pred.shape, hidden.shape, doubled.shape, tripled.shape, kinds, net)"
    nb = make_nb(tmp_path, [("step:make", MAKE), ("step:use", USE), ("step:report", report)])
    record = run_nb(nb, store)
    assert record.status == RunStatus.SUCCEEDED, [s.error for s in record.steps]
    made = {a.name: a for a in record.step("make").outputs}
    assert {n: a.serializer for n, a in made.items()} == {
        "x": "torch", "seq": "torch-module", "net": "torchscript", "odd": "cloudpickle", "wrapped": "cloudpickle"}
    # the notebook's Net went TorchScript; the consumer ran it without the class
    assert nb2pipe.load("kinds", run=record.id, store=store) == ("RecursiveScriptModule", "Odd", "Sequential")
    x = nb2pipe.load("x", run=record.id, store=store)
    net = nb2pipe.load("net", run=record.id, store=store)
    assert torch.equal(nb2pipe.load("pred", run=record.id, store=store), net(x))
    assert torch.equal(nb2pipe.load("doubled", run=record.id, store=store), x * 2)
    # `use` may have changed net: hashed again, the loaded TorchScript module gave the same bytes
    assert {a.name: a.sha256 for a in record.step("use").outputs}["net"] == made["net"].sha256

    again = run_nb(nb, store)
    assert [s.status.value for s in again.steps] == ["cached", "cached", "cached"]
    fresh = run_nb(nb, tmp_path / "store2")  # other kernels, whose cells have other file names
    assert {a.name: a.sha256 for a in fresh.step("make").outputs if a.serializer != "cloudpickle"} == {
        n: a.sha256 for n, a in made.items() if a.serializer != "cloudpickle"}
