"""Step I/O that runs inside a step's kernel: load inputs, save outputs and metrics.

The step notebook calls these from its generated first and last cells. Keep imports lean: every
step pays for them. Data moves by file reference only, never through notebook outputs.
"""

from __future__ import annotations

import os

from nb2pipe.errors import ExitCode, Nb2pipeError, SerializationError
from nb2pipe.model.numbers import encode_float
from nb2pipe.store.files import write_json

# A step that skipped its save cell must not look like it produced outputs: the runner checks
# this marker file, written last.
DONE_MARKER = "done.json"


# The save cell's errors reach the runner only as the kernel's ename/evalue text: these class
# names are what runtime/failures.py recognises them by.
class StepOutputMissing(Nb2pipeError, NameError):
    """The step did not define a variable a downstream step reads."""

    exit_code = ExitCode.STEP_FAILED


class StepOutputUnserializable(SerializationError, TypeError):
    """An output variable of the step cannot be stored as an artifact."""


def load(manifest: dict, namespace: dict) -> None:
    """Load each input artifact {name: {"path", "serializer", "sha256"}} into `namespace`."""
    from nb2pipe.artifacts.values import load_inputs

    load_inputs(manifest, namespace)


def save(step: str, names: list[str], metrics: list[str], namespace: dict, out_dir: str,
         received: dict | None = None) -> None:
    """Save the step's outputs and metrics from `namespace` into `out_dir`. `received` maps the
    inputs the step may have changed in place to their input artifact: each is written only when
    its content changed, else recorded as that same artifact."""
    from nb2pipe.artifacts.values import save_outputs

    missing = [n for n in names if n not in namespace]
    if missing:
        raise StepOutputMissing(
            f"step '{step}' did not define {', '.join(repr(n) for n in missing)}, which a "
            "downstream step reads (was its assignment skipped by a branch or an early exit?)"
        )
    try:
        save_outputs({n: namespace[n] for n in names}, out_dir, received=received)
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

