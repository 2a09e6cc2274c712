"""Serializer for Keras models, in Keras' own ``.keras`` format with deterministic bytes.

Imported inside every step kernel, so only the standard library at module level: a model is
recognised by its classes' module names and Keras is taken from ``sys.modules``, so nothing is
imported until a Keras model is dumped or a ``keras`` artifact loaded.

* ``keras``: a Keras model (``keras.Model``: Sequential, functional, subclassed; Keras 3 on any
  backend, or tf-keras / Keras 2) saved by ``model.save`` as a ``.keras`` archive that
  ``keras.models.load_model`` reads directly. It holds the config, the weights and, for a
  compiled model, the compile config (optimizer, loss, metrics) and the optimizer's state. The
  archive is rewritten so the same model gives the same bytes: fixed zip timestamps,
  ``metadata.json`` without its ``date_saved``, and the config's ``shared_object_id``s (memory
  addresses) renumbered in order of appearance, lone ones (an address reused) dropped. The
  weights file is h5py's, which stores no times. A model is reloaded once after saving: one
  that Keras cannot load back (a ``Lambda`` layer, refused by safe mode; a subclass without a
  usable ``get_config``) is declined and pickled (Keras pickles a model as a .keras archive
  too, loaded without safe mode). Custom classes must be registered
  (``@keras.saving.register_keras_serializable``); their modules are imported on load, so a
  class from an importable module needs nothing more, while one defined in the notebook belongs
  in a setup cell so the consuming step has it. tf-keras and Keras 2 are matched and loaded
  through their own ``keras.models.load_model`` but untested (no TensorFlow where nb2pipe is
  tested).

The archive also records the Keras library and backend it was saved with. When a step loads one
and nothing has chosen a backend yet (Keras not imported, ``KERAS_BACKEND`` unset), that backend
is set, so a model saved with the torch backend loads where TensorFlow is not installed.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
import zipfile
from typing import Any, BinaryIO

from nb2pipe.artifacts.ml import write_zip
from nb2pipe.artifacts.serializers import Serializer, _decline, _writable

_LIBRARIES = ("keras", "tf_keras")
_METADATA = "metadata.json"
_CONFIG = "config.json"
# Module roots whose classes Keras resolves itself (no registration, nothing to import for it).
_KERAS_OWN = ("keras", "tf_keras", "keras_hub", "keras_cv", "keras_nlp", "builtins", "__main__")


def _library(value: Any) -> str | None:
    """"keras" or "tf_keras" when the value is a model of that library, else None."""
    for c in type(value).__mro__:
        root = c.__module__.partition(".")[0]
        if c.__name__ == "Model" and root in _LIBRARIES:
            return root
    return None


class KerasModelSerializer(Serializer):
    """Keras models as .keras archives (config + weights + compile state), bytes made deterministic."""

    name = "keras"
    version = 1
    extension = "keras"
    kfp_artifact = "Model"

    def matches(self, value: Any) -> bool:
        library = _library(value)
        return library is not None and library in sys.modules

    def dump(self, value: Any, target: BinaryIO | str | os.PathLike) -> None:
        import tempfile

        library = _library(value)
        lib = sys.modules[library]
        with tempfile.TemporaryDirectory(prefix="nb2pipe-keras-") as tmp:
            path = os.path.join(tmp, "model.keras")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "saving a model that has not been built", ...
                    value.save(path)
                    _load(lib, path)  # what Keras cannot load back is declined (pickle takes it)
            except Exception as e:
                raise _decline(e) from e
            with zipfile.ZipFile(path) as zf:
                members = [(i.filename, zf.read(i)) for i in zf.infolist()]
        saved_with = {"library": library, "backend": str(lib.backend.backend())}
        members = [(name, _normalised(name, data, saved_with)) for name, data in members]
        with _writable(target) as f:
            write_zip(f, members)

    def load(self, path: str) -> Any:
        with zipfile.ZipFile(path) as zf:
            saved_with = json.loads(zf.read(_METADATA)).get("nb2pipe", {})
            config = json.loads(zf.read(_CONFIG))
        library = saved_with.get("library", "keras")
        if library not in _LIBRARIES:
            raise ValueError(f"{path}: {library!r} is not a Keras library")
        backend = saved_with.get("backend")
        if library == "keras" and backend and "keras" not in sys.modules and "KERAS_BACKEND" not in os.environ:
            os.environ["KERAS_BACKEND"] = backend
        for module in sorted(_custom_modules(config)):
            if module not in sys.modules:
                try:
                    importlib.import_module(module)  # runs its register_keras_serializable decorators
                except ImportError:
                    pass  # then Keras says which class it cannot find
        return _load(importlib.import_module(library), path)


def _load(lib: Any, path: str) -> Any:
    """``load_model``, which reads a path only when it ends in .keras (store objects do not)."""
    if path.endswith(".keras"):
        return lib.models.load_model(path)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nb2pipe-keras-") as tmp:
        link = os.path.join(tmp, "model.keras")
        try:
            os.symlink(os.path.abspath(path), link)
        except OSError:
            import shutil

            shutil.copyfile(path, link)
        return lib.models.load_model(link)


def _normalised(name: str, data: bytes, saved_with: dict) -> bytes:
    if name == _METADATA:
        meta = json.loads(data)
        meta.pop("date_saved", None)
        meta["nb2pipe"] = saved_with
        return json.dumps(meta, sort_keys=True).encode()
    if name == _CONFIG:
        config = json.loads(data)
        _renumber_shared(config)
        return json.dumps(config).encode()
    return data


def _renumber_shared(config: Any) -> None:
    """Keras marks an object serialized twice with ``shared_object_id`` = its id(), in every
    place it occurs. An id a freed temporary had is reused, so a lone mark appears too (the other
    place was a temporary config): lone marks are dropped, the others numbered 1, 2, ... in order
    of appearance (loading only compares them)."""
    counts: dict[int, int] = {}
    _shared_marks(config, lambda node: counts.__setitem__(node["shared_object_id"],
                                                          counts.get(node["shared_object_id"], 0) + 1))
    numbers: dict[int, int] = {}

    def renumber(node: dict) -> None:
        old = node["shared_object_id"]
        if counts[old] < 2:
            del node["shared_object_id"]
        else:
            node["shared_object_id"] = numbers.setdefault(old, len(numbers) + 1)

    _shared_marks(config, renumber)


def _shared_marks(node: Any, visit: Any) -> None:
    """Call ``visit`` on every dict of the config that carries a shared_object_id, in order."""
    if isinstance(node, dict):
        if isinstance(node.get("shared_object_id"), int):
            visit(node)
        for value in node.values():
            _shared_marks(value, visit)
    elif isinstance(node, list):
        for value in node:
            _shared_marks(value, visit)


def _custom_modules(node: Any) -> set[str]:
    """Modules of the registered custom objects in a Keras config."""
    found: set[str] = set()
    if isinstance(node, dict):
        module = node.get("module")
        if node.get("registered_name") and isinstance(module, str) and module.partition(".")[0] not in _KERAS_OWN:
            found.add(module)
        for value in node.values():
            found |= _custom_modules(value)
    elif isinstance(node, list):
        for value in node:
            found |= _custom_modules(value)
    return found


def keras_serializers() -> list[Serializer]:
    return [KerasModelSerializer()]
