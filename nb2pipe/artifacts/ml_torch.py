"""Serializers for PyTorch: tensors, modules of importable classes, and TorchScript.

Imported inside every step kernel, so only the standard library at module level: a value is
recognised by its class, and torch is taken from ``sys.modules`` (a tensor can only exist if
torch is imported). Every format writes the same bytes for the same value (``torch.save`` is
byte-deterministic: fixed zip timestamps, storages numbered in the order met), so caches hold.

* ``torch``: a ``torch.Tensor`` or ``nn.Parameter`` (dense, sparse, quantized, any dtype) as
  ``torch.save`` writes it, loaded with ``weights_only=True`` (no arbitrary unpickling). A view
  is saved as a compact copy: torch.save writes the whole storage a tensor looks into. Kept:
  dtype, shape, strides, ``requires_grad`` (a non-leaf comes back as a leaf, as with torch.save).
  Not kept: ``.grad`` and hooks. Tensors with Python attributes and tensor subclasses are
  pickled instead.
* ``torch-module``: an ``nn.Module`` whose classes (its own and its submodules') are importable
  from a real module: ``torch.save`` of the whole module, which pickles the classes by reference
  and their state (parameters, buffers, submodules, ``training`` of each, other attributes) by
  value; a parameter shared by two submodules stays shared. Constructors are not re-run, so
  their arguments need not be known. The modules' sets of strings are pickled sorted (set order
  follows the hash seed). A reference to ``__main__`` anywhere inside (a notebook
  function held as an attribute, ...) declines it (cloudpickle takes it). Loaded with
  ``weights_only=False``: the file is a pickle, as trusted as the pickle serializer's.
* ``torchscript``: a ``ScriptModule`` (scripted or traced), or a module with a class another
  step's kernel cannot import (defined in the notebook, ``__main__``, or inside a function):
  ``torch.jit.script`` of it, saved by ``torch.jit.save`` without the debug records (they hold
  the source files' paths, which differ between kernels) and with the constants of each class
  in sorted order (torch writes them in set order, which follows the hash seed). It loads back as a
  ``RecursiveScriptModule`` that keeps ``forward``, ``@torch.jit.export`` methods and what they
  call, parameters, buffers, submodules, ``training`` and attributes of TorchScript types, but
  not the Python class (``isinstance(m, Net)`` is false), other methods or hooks. So a module is
  scripted only if the result still has every public method and attribute of its classes; one
  that would lose some, or does not script, is declined and cloudpickled.

Devices: torch.save records each storage's device, and on load a device that does not exist
here (a CUDA tensor read on a CPU-only machine) becomes the CPU. A TorchScript file records its
modules' devices in an extra record and loads onto the CPU when one of them is missing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import types
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from nb2pipe.artifacts.ml import write_zip
from nb2pipe.artifacts.serializers import (
    Serializer,
    UnsupportedValue,
    _decline,
    _declining,
    _MainAwarePickler,
    _writable,
)


class _SortedNames:
    """Pickles as the set of its names, written in sorted order."""

    def __init__(self, names: set | frozenset):
        self.kind, self.names = type(names), sorted(names)

    def __reduce__(self) -> tuple:
        return self.kind, (self.names,)


class _ModulePickler(_MainAwarePickler):
    """Declines __main__ references, and writes the sets of strings in a module's state sorted:
    a set pickles in iteration order, which follows the kernel's hash seed, and every module has
    one (``_non_persistent_buffers_set``: the names of buffers registered ``persistent=False``).
    (Pickle consults reducer_override for a module, never for a set itself.)"""

    def __init__(self, file: Any, protocol: int | None = None, **kwargs: Any):
        super().__init__(file, protocol, **kwargs)
        self._protocol = protocol

    def reducer_override(self, obj: Any) -> Any:
        torch = sys.modules.get("torch")
        if torch is None or not isinstance(obj, torch.nn.Module):
            return super().reducer_override(obj)
        reduced = obj.__reduce_ex__(self._protocol or 2)
        if not (isinstance(reduced, tuple) and len(reduced) >= 3 and isinstance(reduced[2], dict)):
            return reduced
        state = {k: _SortedNames(v) if _string_set(v) else v for k, v in reduced[2].items()}
        return (*reduced[:2], state, *reduced[3:])


def _string_set(value: Any) -> bool:
    return type(value) in (set, frozenset) and len(value) > 1 and all(type(v) is str for v in value)


# torch.save with our pickler (torch subclasses pickle_module.Pickler for its storages).
_PICKLE_MODULE = types.SimpleNamespace(__name__="nb2pipe.pickle", Pickler=_ModulePickler)
# Our record in a TorchScript archive (torch.jit.save's _extra_files): the modules' devices.
_TS_EXTRA = "nb2pipe.json"


def _has_base(t: type, module: str, name: str) -> bool:
    return any(c.__module__ == module and c.__name__ == name for c in t.__mro__)


def _is_module(t: type) -> bool:
    # A Keras 3 layer on the torch backend is an nn.Module too: the Keras serializer keeps it.
    return (_has_base(t, "torch.nn.modules.module", "Module")
            and not any(c.__module__.partition(".")[0] in ("keras", "tf_keras") for c in t.__mro__))


def _is_script(t: type) -> bool:
    return _has_base(t, "torch.jit._script", "ScriptModule")


def _importable(cls: type) -> bool:
    """Whether another process can import ``cls`` by its module and qualified name."""
    if cls.__module__ == "__main__":
        return False
    obj: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):  # "<locals>" in a qualname resolves to nothing
        obj = getattr(obj, part, None)
    return obj is cls


def _unimportable_class(module: Any) -> type | None:
    """The first class in the module's tree that another step's kernel could not import."""
    for sub in module.modules():
        if not _importable(type(sub)):
            return type(sub)
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.jit warns on every call that it is deprecated: not the notebook's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        yield


def _available(location: str) -> bool:
    """Whether the device torch.save recorded (``cuda:1``, ``mps``, ...) exists in this process."""
    import torch

    try:
        device = torch.device(location)
    except (RuntimeError, TypeError, ValueError):
        return False
    if device.type in ("cpu", "meta"):
        return True
    backend = getattr(torch, device.type, None)
    try:
        if backend is None or not backend.is_available():
            return False
        return device.index is None or device.index < backend.device_count()
    except Exception:  # noqa: BLE001  (a backend without these functions: load on the CPU)
        return False


def _to_available(storage: Any, location: str) -> Any:
    """torch.load's map_location: the storage (already on the CPU) stays there if its device is
    missing; None lets torch restore it to its device."""
    return None if _available(location) else storage


# -- tensors ----------------------------------------------------------------------------------


class TorchTensorSerializer(Serializer):
    """torch tensors and parameters as torch.save writes them, loaded with weights_only=True."""

    name = "torch"
    version = 1
    extension = "pt"

    def matches(self, value: Any) -> bool:
        torch = sys.modules.get("torch")
        # Exact types: a subclass (FakeTensor, DTensor, ...) may carry state torch.save drops.
        return torch is not None and (type(value) is torch.Tensor or type(value) is torch.nn.Parameter)

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        import torch

        if vars(value):
            raise UnsupportedValue("a tensor with Python attributes (weights_only loading refuses them)")
        tensor = _compact(value)
        with _writable(target) as f, _declining():
            torch.save(tensor, f)

    def load(self, path: str) -> Any:
        import torch

        return torch.load(path, map_location=_to_available, weights_only=True)


def _compact(t: Any) -> Any:
    """``t``, or a copy without the rest of the storage when it is a view into a larger one."""
    import torch

    if t.layout != torch.strided or t.device.type == "meta" or t.is_quantized:
        return t
    if t.storage_offset() == 0 and t.untyped_storage().nbytes() <= t.numel() * t.element_size():
        return t
    copy = t.detach().clone()
    if type(t) is torch.nn.Parameter:
        return torch.nn.Parameter(copy, requires_grad=t.requires_grad)
    return copy.requires_grad_(t.requires_grad)


# -- modules ----------------------------------------------------------------------------------


class TorchModuleSerializer(Serializer):
    """nn.Modules of importable classes: torch.save of the module (classes by reference)."""

    name = "torch-module"
    version = 1
    extension = "pt"
    kfp_artifact = "Model"

    def matches(self, value: Any) -> bool:
        t = type(value)
        return ("torch" in sys.modules and _is_module(t) and not _is_script(t)
                and _unimportable_class(value) is None)

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        import torch

        with _writable(target) as f, _declining():
            torch.save(value, f, pickle_module=_PICKLE_MODULE)

    def load(self, path: str) -> Any:
        import torch

        return torch.load(path, map_location=_to_available, weights_only=False)


class TorchScriptSerializer(Serializer):
    """ScriptModules, and modules of notebook classes scripted with torch.jit.script."""

    name = "torchscript"
    version = 1
    extension = "pt"
    kfp_artifact = "Model"

    def matches(self, value: Any) -> bool:
        t = type(value)
        return "torch" in sys.modules and _is_module(t) and (_is_script(t) or _unimportable_class(value) is not None)

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        import torch

        scripted = value if _is_script(type(value)) else _script(value)
        devices = sorted({str(t.device) for t in [*scripted.parameters(), *scripted.buffers()]})
        buf = io.BytesIO()
        try:
            with _quiet():
                torch.jit.save(scripted, buf, _extra_files={_TS_EXTRA: json.dumps({"devices": devices})})
        except Exception as e:  # an @torch.jit.ignore'd method the module calls, ...
            raise _decline(e) from e
        with zipfile.ZipFile(buf) as zf:
            members = [(i.filename, _sorted_constants(i.filename, zf.read(i)))
                       for i in zf.infolist() if not _varying_record(i.filename)]
        with _writable(target) as f:
            write_zip(f, members)

    def load(self, path: str) -> Any:
        import torch

        with zipfile.ZipFile(path) as zf:
            ours = [n for n in zf.namelist() if n.endswith(f"/extra/{_TS_EXTRA}")]
            devices = json.loads(zf.read(ours[0]))["devices"] if ours else []
        with _quiet():
            return torch.jit.load(path, map_location=None if all(map(_available, devices)) else "cpu")


def _varying_record(name: str) -> bool:
    """Records of a TorchScript archive that differ between kernels for the same module: the
    debug tables (source file paths and lines) and the id torch derives from all records."""
    return name.endswith(".debug_pkl") or name.endswith("/.data/serialization_id")


# A class constant in TorchScript's generated code: "  in_features : Final[int] = 3".
_CONSTANT_LINE = re.compile(rb"  \w+ : Final\[.*\] = .*")


def _sorted_constants(name: str, data: bytes) -> bytes:
    """TorchScript declares a class's constants in the order of a set of their names (so of the
    kernel's string hash seed): sort each run of those declaration lines."""
    if "/code/" not in name or not name.endswith(".py"):
        return data
    out: list[bytes] = []
    run: list[bytes] = []
    for line in data.split(b"\n"):
        if _CONSTANT_LINE.fullmatch(line):
            run.append(line)
            continue
        out += sorted(run)
        run = []
        out.append(line)
    return b"\n".join(out + sorted(run))


def _script(module: Any) -> Any:
    import torch

    try:
        with _quiet():
            scripted = torch.jit.script(module)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise UnsupportedValue(f"TorchScript cannot compile {type(module).__qualname__}: {first}") from e
    lost = _lost_members(module, scripted)
    if lost:
        raise UnsupportedValue(f"TorchScript would drop {', '.join(lost[:5])}")
    return scripted


def _lost_members(module: Any, scripted: Any) -> list[str]:
    """Public methods and attributes of the module's own classes (not torch's) and instances that
    the scripted module lacks: a consumer calling them would fail, where cloudpickle keeps them."""
    lost = []
    copies = dict(scripted.named_modules())
    for path, sub in module.named_modules():
        copy = copies.get(path)
        if copy is None:
            return [f"submodule {path!r}"]
        names = {k for k in vars(sub) if not k.startswith("_") and k != "training"}
        for cls in type(sub).__mro__:
            if cls.__module__.partition(".")[0] == "torch":
                break
            names.update(k for k in vars(cls) if not k.startswith("_"))
        lost += [f"{type(sub).__qualname__}.{k}" for k in sorted(names) if not hasattr(copy, k)]
    return lost


def torch_serializers() -> list[Serializer]:
    """In registry order: a module of importable classes by reference before TorchScript."""
    return [TorchModuleSerializer(), TorchScriptSerializer(), TorchTensorSerializer()]
