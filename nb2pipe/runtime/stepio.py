"""Step I/O that runs inside a step's kernel: load inputs, save outputs and metrics.

The step notebook calls these from its generated first and last cells. Keep imports lean: every
step pays for them. Data moves by file reference only, never through notebook outputs.

Paths in a local run's step notebook are relative to the run store, which the kernel learns from
its environment (STORE_ENV, set by the runner for the kernels it starts): an executed notebook
names no folder of the machine it ran on. Executing a stored step notebook again by hand (to
debug a step) is a replay: its inputs load from the store it sits in (found from the kernel's
working folder, JupyterLab's default), its outputs are checked but never written, so a replay
cannot rewrite the run that executed it. Containers (docker, Kubeflow) get absolute paths of
their own mounts and are unaffected.
"""

from __future__ import annotations

import os

from nb2pipe.errors import ExitCode, Nb2pipeError, SerializationError
from nb2pipe.model.numbers import encode_float
from nb2pipe.store.files import write_json

# A step that skipped its save cell must not look like it produced outputs: the runner checks
# this marker file, written last.
DONE_MARKER = "done.json"
STORE_ENV = "NB2PIPE_STEP_STORE"
_STORE_MARKER = "runs.db"  # a folder holding it is a run store (store/runs.py DB_NAME)


# The save cell's errors reach the runner only as the kernel's ename/evalue text: these class
# names are what runtime/failures.py recognises them by.
class StepOutputMissing(Nb2pipeError, NameError):
    """The step did not define a variable a downstream step reads."""

    exit_code = ExitCode.STEP_FAILED


class StepOutputUnserializable(SerializationError, TypeError):
    """An output variable of the step cannot be stored as an artifact."""


class StepInputsUnavailable(Nb2pipeError, FileNotFoundError):
    """A replayed step notebook cannot find the store its inputs are in."""


def _replayed_store() -> str:
    """The store a replayed step notebook belongs to: the nearest folder up from the working
    folder that holds a run database (a step notebook sits inside its store)."""
    here = os.path.abspath(os.getcwd())
    while True:
        if os.path.isfile(os.path.join(here, _STORE_MARKER)):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            raise StepInputsUnavailable(
                "this step notebook loads its inputs from the run store it was executed in: run it from "
                f"its own folder inside the store, or set the environment variable {STORE_ENV} to the "
                "store folder (e.g. .nb2pipe beside the notebook)")
        here = parent


def load(manifest: dict, namespace: dict) -> None:
    """Load each input artifact {name: {"path", "serializer", "sha256"}} into `namespace`."""
    from nb2pipe.artifacts.values import load_inputs

    if any(not os.path.isabs(entry["path"]) for entry in manifest.values()):
        root = os.environ.get(STORE_ENV) or _replayed_store()
        manifest = {name: {**entry, "path": os.path.join(root, entry["path"])} for name, entry in manifest.items()}
    load_inputs(manifest, namespace)


def save(step: str, names: list[str], metrics: list[str], namespace: dict, out_dir: str) -> None:
    """Save the step's outputs and metrics from `namespace` into `out_dir`."""
    from nb2pipe.artifacts.values import save_outputs

    missing = [n for n in names if n not in namespace]
    if missing:
        raise StepOutputMissing(
            f"step '{step}' did not define {', '.join(repr(n) for n in missing)}, which a "
            "downstream step reads (was its assignment skipped by a branch or an early exit?)"
        )
    if not os.path.isabs(out_dir):
        if not os.environ.get(STORE_ENV):  # a replay: the run this notebook records stays as it was
            print(f"nb2pipe: replayed step '{step}': its outputs ({', '.join(names) or 'none'}) are defined; "
                  "nothing was saved (a replay never changes the run that executed this notebook)")
            return
        out_dir = os.path.join(os.environ[STORE_ENV], out_dir)
    try:
        save_outputs({n: namespace[n] for n in names}, out_dir)
    except SerializationError as exc:
        # Re-raised without its chain, so the notebook shows one clear line, not our internals.
        raise StepOutputUnserializable(f"step '{step}' {exc}") from None
    report = {}
    for name in metrics:
        if name in namespace:
            report[name] = _metric(namespace[name])
    write_json(os.path.join(out_dir, "metrics.json"), report, allow_nan=False)
    write_json(os.path.join(out_dir, DONE_MARKER), {"step": step, "outputs": names}, allow_nan=False)


def _metric(value):
    """JSON-safe scalar: non-finite floats become the strings NaN/Infinity/-Infinity."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, bool) or isinstance(value, (int, str)) or value is None:
        return {"value": value}
    if isinstance(value, float):
        text, flag = encode_float(value)
        return {"value": text, "flag": flag} if flag else {"value": value}
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        return {"value": None, "flag": f"not a scalar ({type(value).__name__})"}
    return _metric(as_float)

