"""The Kubeflow side of the in-image step runtime: translate KFP's executor input, run the step,
publish its outputs as KFP artifacts and write the executor output.

A task of an exported pipeline runs

    python3 -m nb2pipe.step_runtime --step NAME --executor-input '{{$}}'

and step_runtime hands the executor input JSON to :func:`run_kfp`. KFP (and kfp.local) take a
container task's outputs only from the executor output file, so this module writes it itself,
in the format kfp's own Python executor writes:
``{"artifacts": {name: {"artifacts": [{"name", "uri", "metadata"}]}}}``.

It runs in every step container: standard library only at module level (nbconvert is imported
lazily, for the HTML rendering). The naming rules below are shared with the exporter
(kubeflow.py), which imports them, so both sides always agree on which KFP input or output
carries which variable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile

from nb2pipe.runtime.html import notebook_html
from nb2pipe.store.files import write_json

# Outputs every step has (metrics only when it has a `metrics` cell). Variables never take these
# names: see output_name.
EXECUTED_NOTEBOOK = "executed_notebook"
NOTEBOOK_HTML = "notebook_html"
METRICS = "metrics"
RESERVED_OUTPUTS = (EXECUTED_NOTEBOOK, NOTEBOOK_HTML, METRICS)

# Set on each task by the export: the step version the pipeline was exported for, and its timeout
# (KFP v2 IR has no task timeout without kfp-kubernetes, so the runtime enforces it).
HASH_ENV = "NB2PIPE_CONTENT_HASH"
TIMEOUT_ENV = "NB2PIPE_TIMEOUT"

# What KFP accepts as an input/output name (kfp.dsl.pipeline_channel); Python identifiers may
# also start with '_' or hold non-ASCII letters.
KFP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

# How a KFP launcher exposes remote artifact URIs as local files (as kfp.dsl.Artifact.path does).
_MOUNTS = (("gs://", "/gcs/"), ("s3://", "/s3/"), ("minio://", "/minio/"))


# --- names --------------------------------------------------------------------------------------
# Every rule is a pure function of a name and the step's own outputs, so the runtime, which knows
# only the step, maps names exactly as the exporter did. The exporter rejects the rare leftover
# clash (e.g. variables `df` and `df_in` both read by one step) with a message.

def safe_name(var: str) -> str:
    """A variable's KFP form: itself when KFP accepts it, else '_' for every other character and
    a leading 'v' (`_cache` -> `v_cache`, `größe` -> `gr__e`)."""
    if KFP_NAME.fullmatch(var):
        return var
    out = re.sub(r"[^A-Za-z0-9_]", "_", var)
    return out if out[:1].isalpha() else "v" + out


def output_name(var: str) -> str:
    """The output artifact carrying variable `var`: its safe name; `<var>_out` for a variable
    named like a reserved output (`metrics` -> `metrics_out`)."""
    return var + "_out" if var in RESERVED_OUTPUTS else safe_name(var)


def _taken_outputs(comp) -> set[str]:
    return set(RESERVED_OUTPUTS) | {output_name(v) for v in comp.outputs}


def input_name(var: str, comp) -> str:
    """The input (artifact or parameter) carrying `var` into step `comp`: its safe name, with
    `_in` appended when an output of the same step has that name (a step updating `df` reads
    `df_in` and writes `df`)."""
    name = safe_name(var)
    return name + "_in" if name in _taken_outputs(comp) else name


# --- the runtime ---------------------------------------------------------------------------------

class _Published:
    def __init__(self):
        self.artifacts: dict[str, dict] = {}

    def add(self, outputs: dict, name: str, metadata: dict) -> None:
        entry = _first(outputs.get(name))
        if entry is not None:
            self.artifacts[name] = {"artifacts": [{"name": entry.get("name") or name, "uri": entry.get("uri", ""),
                                                   "metadata": metadata}]}


def run_kfp(spec, step: str, executor_input_json: str) -> int:
    """Run `step` of `spec` for KFP; returns the process exit code (step_runtime's contract)."""
    from nb2pipe.runtime.job import JobError

    try:
        return _run(spec, step, executor_input_json)
    except JobError as exc:
        print(f"nb2pipe step runtime: {exc}", file=sys.stderr)
        return int(exc.exit_code)


def _run(spec, step: str, executor_input_json: str) -> int:
    from nb2pipe.runtime.job import JobError, exit_code, run_job

    try:
        executor_input = json.loads(executor_input_json)
    except ValueError as exc:
        raise JobError(f"--executor-input is not JSON: {exc}") from None
    if not step:
        raise JobError("pass --step NAME with --executor-input")
    try:
        comp = spec.step(step)
    except KeyError:
        raise JobError(f"step {step!r} is not in this image's pipeline (steps: {', '.join(spec.step_names)}); "
                       "rebuild with nb2pipe build and export again") from None
    expected = os.environ.get(HASH_ENV)
    if expected and expected != comp.content_hash:
        raise JobError(f"this image holds a different version of step '{step}' (content hash "
                       f"{comp.content_hash[:12]}, the pipeline was exported for {expected[:12]}): "
                       "rebuild with nb2pipe build and export again")
    inputs = executor_input.get("inputs") or {}
    outputs = executor_input.get("outputs") or {}
    if not outputs.get("outputFile"):
        raise JobError("the executor input names no outputs.outputFile to write the executor output to")
    job = {
        "step": comp.name,
        "parameters": _parameters(spec, comp, inputs.get("parameterValues") or {}),
        "inputs": _input_artifacts(comp, inputs.get("artifacts") or {}),
        "log_output": True,  # cell output goes to the task's log in the KFP UI
    }
    timeout = os.environ.get(TIMEOUT_ENV)
    if timeout:
        try:
            seconds = float(timeout)
            job["timeout"] = int(seconds) if seconds.is_integer() else seconds
        except ValueError:
            raise JobError(f"{TIMEOUT_ENV}={timeout!r} is not a number of seconds") from None
    _log_cell_output()
    work = tempfile.mkdtemp(prefix="nb2pipe-step-")
    try:
        job["work_dir"] = work
        result = run_job(spec, job)
        published = _Published()
        if result["status"] != "succeeded" and not os.path.exists(os.path.join(work, "step.ipynb")):
            _unexecuted_notebook(spec, comp, job, result["error"], os.path.join(work, "step.ipynb"))
        _publish_notebook(work, comp, result, outputs.get("artifacts") or {}, published)
        if result["status"] == "succeeded":
            _publish_outputs(work, comp, outputs.get("artifacts") or {}, published)
        _write_json(_local_path(outputs["outputFile"]), {"artifacts": published.artifacts})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if result["error"]:
        message = result["error"]["message"]
        if not message.startswith(f"step '{comp.name}'"):
            message = f"step '{comp.name}' failed: {message}"
        print(f"nb2pipe: {message}", file=sys.stderr)  # one line, naming the cell when known
    return exit_code(result)


def _parameters(spec, comp, values: dict) -> dict:
    by_input = {input_name(p.name, comp): p for p in spec.parameters}
    return {by_input[key].name: typed(by_input[key], value) for key, value in values.items() if key in by_input}


def typed(param, value):
    """A parameter value as the notebook's default types it. KFP carries numbers as JSON doubles,
    so an int parameter may arrive as 7.0, and ints inside a list or dict always do."""
    kind = param.type
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in ("list", "dict"):
        return _like(value, param.default)
    return value


def _like(value, default):
    if value == default:  # the common case: the default itself, with its own ints
        return default
    if isinstance(value, list) and isinstance(default, list):
        numbers = [d for d in default if isinstance(d, (int, float)) and not isinstance(d, bool)]
        if numbers and all(isinstance(d, int) for d in numbers):
            return [int(v) if isinstance(v, float) and v.is_integer() else v for v in value]
        return value
    if isinstance(value, dict) and isinstance(default, dict):
        out = {}
        for key, v in value.items():
            d = default.get(key)
            if isinstance(d, int) and not isinstance(d, bool) and isinstance(v, float) and v.is_integer():
                v = int(v)
            elif isinstance(d, (list, dict)):
                v = _like(v, d)
            out[key] = v
        return out
    return value


def _input_artifacts(comp, artifacts: dict) -> dict:
    from nb2pipe.runtime.job import JobError

    found = {}
    for spec_input in comp.inputs:
        key = input_name(spec_input.name, comp)
        entry = _first(artifacts.get(key))
        if entry is None:
            raise JobError(f"the executor input has no artifact '{key}' (variable '{spec_input.name}' "
                           f"from step '{spec_input.producer}')")
        meta = entry.get("metadata") or {}
        if not meta.get("serializer"):
            raise JobError(f"input artifact '{key}' has no nb2pipe serializer in its metadata; it must "
                           f"come from the output of step '{spec_input.producer}' of an nb2pipe export")
        found[spec_input.name] = {"path": _local_path(entry.get("uri", "")), "serializer": meta["serializer"],
                                  "sha256": meta.get("sha256")}
    return found


def _publish_outputs(work: str, comp, artifacts: dict, published: _Published) -> None:
    out_dir = os.path.join(work, "outputs")
    manifest = _read_json(os.path.join(out_dir, "manifest.json")) or {}
    for var in comp.outputs:
        key = output_name(var)
        entry = _first(artifacts.get(key))
        record = manifest.get(var)
        if entry is None or record is None:
            continue
        if record.get("file") is None:  # an input the step left unchanged: KFP still wants its own copy
            dst = _local_path(entry.get("uri", ""))
            os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
            shutil.copyfile(record["source"], dst)
        else:
            _move(os.path.join(out_dir, record["file"]), _local_path(entry.get("uri", "")))
        # The consumer's runtime loads the file with this serializer: KFP passes an artifact's
        # metadata on to the tasks that read it.
        published.add(artifacts, key, {k: record[k] for k in
                                       ("serializer", "serializer_version", "sha256", "size", "type", "file")
                                       if k in record})
    if METRICS in artifacts:
        metrics = _read_json(os.path.join(out_dir, "metrics.json")) or {}
        # As kfp's Metrics.log_metric: the scalars live in the artifact's metadata (the UI reads
        # them there); the file holds the same values for whoever downloads the artifact.
        values = {name: entry.get("value") for name, entry in metrics.items()}
        _write_json(_local_path(_first(artifacts[METRICS]).get("uri", "")), values)
        published.add(artifacts, METRICS, values)


def _publish_notebook(work: str, comp, result: dict, artifacts: dict, published: _Published) -> None:
    """The executed step notebook as .ipynb and as HTML, also (above all) when the step failed."""
    executed = os.path.join(work, "step.ipynb")
    if not os.path.exists(executed):
        return
    meta = {"step": comp.name, "status": result["status"]}
    if result.get("error") and result["error"].get("cell_index"):
        meta["failed_cell"] = result["error"]["cell_index"]
    entry = _first(artifacts.get(NOTEBOOK_HTML))
    if entry is not None:
        path = _local_path(entry.get("uri", ""))
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(notebook_html(executed, comp.name))
        published.add(artifacts, NOTEBOOK_HTML, dict(meta, format="html"))
    entry = _first(artifacts.get(EXECUTED_NOTEBOOK))
    if entry is not None:
        _move(executed, _local_path(entry.get("uri", "")))
        published.add(artifacts, EXECUTED_NOTEBOOK, dict(meta, format="ipynb", file=f"{comp.name}.ipynb"))


def _unexecuted_notebook(spec, comp, job: dict, error: dict | None, path: str) -> None:
    """The step notebook as it was to run, headed by why it has no output: a step killed early
    (a short timeout, a dead kernel) leaves no executed notebook, and the KFP UI should still show
    what the step was."""
    try:
        import nbformat
        from nbformat.v4 import new_markdown_cell

        from nb2pipe.runtime.stepnb import build_step_notebook

        nb = build_step_notebook(spec, comp, job.get("inputs") or {}, os.path.join(job["work_dir"], "outputs"))
        message = (error or {}).get("message") or "the step failed"
        banner = new_markdown_cell(f"**nb2pipe: {message}; no cell output was saved.**", id="nb2pipe-failure")
        nb.cells.insert(0, banner)
        nbformat.write(nb, path)
    except Exception:  # best effort: the task fails with its message either way
        pass


def _log_cell_output() -> None:
    """Cell output (and which cell runs) into the task log; papermill's other chatter left out.

    papermill logs cell output on the notebook client's logger: "papermill", or traitlets' own
    when the engine builds the client without one (nb2pipe's engine does).
    """
    import logging

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: not str(record.msg).startswith(_NOISE))
    for name in ("papermill", "traitlets"):
        log = logging.getLogger(name)
        if not log.handlers:
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False


_NOISE = ("Ending Cell", "Input Notebook", "Output Notebook", "Executing notebook with kernel")


def _local_path(uri: str) -> str:
    for prefix, mount in _MOUNTS:
        if uri.startswith(prefix):
            return mount + uri[len(prefix):]
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return uri


def _first(artifact_list) -> dict | None:
    items = (artifact_list or {}).get("artifacts") or []
    return items[0] if items else None


def _move(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    shutil.move(src, dst)  # the scratch folder and the artifact mount are often different file systems


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path: str, data) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_json(path, data)
