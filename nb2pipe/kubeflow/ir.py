"""Export a notebook's pipeline to Kubeflow Pipelines v2: IR YAML compiled by the kfp SDK.

Every step becomes one container component (kfp.dsl.structures) whose container runs

    python3 -m nb2pipe.step_runtime --step NAME --executor-input '{{$}}'

in the image `nb2pipe build` tags, and one task of a pipeline built through kfp's own pipeline
machinery (GraphComponent), which kfp's Compiler turns into the YAML. Nothing here writes YAML or
Python source as text: `--py` output is an `ast.Module` unparsed.

What maps to what:
* data edges -> artifacts passed between tasks (hence dependencies), typed by the serializer of
  the value in the latest local run: parquet -> system.Dataset, an estimator -> system.Model,
  anything else -> system.Artifact (see `Serializer.kfp_artifact`);
* `after:` edges -> task.after();
* the `parameters` cell -> typed pipeline parameters with their defaults;
* each step also outputs its executed notebook (.ipynb, and HTML for the KFP UI) and, with a
  `metrics` cell, a system.Metrics artifact;
* cpu/memory -> requests = limits, gpu -> an nvidia.com/gpu accelerator limit, retries -> the
  task's retry policy, cache:off -> caching disabled (on otherwise, explicitly, so kfp's
  KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT in the exporting shell cannot change the YAML);
* timeout -> enforced by the runtime, from the in-image spec; also set as the task's
  NB2PIPE_TIMEOUT environment variable, visible in the YAML (KFP v2 IR in this SDK has no task
  timeout field without kfp-kubernetes).

The same notebook (and the same run store state) always gives byte-identical YAML; it holds no
local path and nothing from the exporting environment.
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.errors import UsageError, require
from nb2pipe.kubeflow.plan import (  # noqa: F401  (re-exported: the plan is part of this API)
    PARAMETER_TYPES,
    KfpExportInvalid,
    PipelinePlan,
    StepPlan,
    _task_calls,
    plan_pipeline,
)
from nb2pipe.step_runtime import COMMAND

SCHEMA_VERSION = "0.0.1"

# What a serializer's `kfp_artifact` may say.
ARTIFACT_TYPES = {"Artifact": "system.Artifact", "Dataset": "system.Dataset", "Model": "system.Model"}


# --- artifact types -----------------------------------------------------------------------------

def artifact_types_from_store(notebook_path, spec, store=None, warn=None) -> dict:
    """(step, variable) -> (schema title, detail) from the latest local run of each step.

    A value's type is known only once it has been computed, so the types come from the run store
    (read-only here: no store is created). Missing runs leave system.Artifact, with one warning.
    """
    from nb2pipe.store.workspace import store_root

    root = store_root(notebook_path, store)
    wanted = [c for c in spec.steps if c.outputs]
    found: dict = {}
    missing: list[str] = []
    if wanted and (root / "runs.db").exists():
        from nb2pipe.errors import Nb2pipeError
        from nb2pipe.store.runs import RunStore

        try:
            with RunStore(root, reader=True) as runs:
                for comp in wanted:
                    refs = {r.name: r for r in runs.latest_outputs(str(notebook_path), comp.name) or []}
                    for var in comp.outputs:
                        ref = refs.get(var)
                        if ref is None:
                            missing.append(comp.name)
                            continue
                        found[(comp.name, var)] = (_title_of(ref.serializer), f"{ref.type_name}, {ref.serializer}")
        except Nb2pipeError as exc:
            found, missing = {}, [c.name for c in wanted]
            _warn(warn, f"cannot read the run store {root}: {exc}")
    else:
        missing = [c.name for c in wanted]
    missing = list(dict.fromkeys(missing))
    if missing:
        steps = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        _warn(warn, f"no local run of step{'s' if len(missing) > 1 else ''} {steps} in {root}: "
                    "their outputs are exported as system.Artifact (run `nb2pipe run` first to type "
                    "DataFrames as Dataset and estimators as Model)")
    return found


def _title_of(serializer_name: str) -> str:
    from nb2pipe.artifacts.values import default_registry
    from nb2pipe.errors import Nb2pipeError

    try:
        kind = getattr(default_registry.get(serializer_name), "kfp_artifact", "Artifact")
    except Nb2pipeError:  # a plugin serializer that is not installed here
        kind = "Artifact"
    return ARTIFACT_TYPES.get(kind, "system.Artifact")


def artifact_types_given(mapping: dict, spec) -> dict:
    """Explicit types: keys `variable` or `step.variable`, values Dataset/Model/Artifact (or
    system.*). Every output not named is a system.Artifact."""
    titles = {}
    for key, value in mapping.items():
        title = ARTIFACT_TYPES.get(value, value)
        if title not in ARTIFACT_TYPES.values():
            raise UsageError(f"artifact type {value!r} for {key!r} is not one of {', '.join(ARTIFACT_TYPES)}")
        titles[key] = title
    found = {}
    for comp in spec.steps:
        for var in comp.outputs:
            title = titles.get(f"{comp.name}.{var}") or titles.get(var)
            if title:
                found[(comp.name, var)] = (title, None)
    return found


def _warn(warn, message: str) -> None:
    if warn is None:
        print(f"nb2pipe: warning: {message}", file=sys.stderr)
    else:
        warn(message)


# --- kfp objects ----------------------------------------------------------------------------------

def _kfp():
    def need(module: str):
        return require(module, "kfp", "exporting to Kubeflow Pipelines")

    return (need("kfp.compiler"), need("kfp.dsl"), need("kfp.dsl.structures"),
            need("kfp.dsl.container_component_class").ContainerComponent,
            need("kfp.dsl.graph_component").GraphComponent)


def build_pipeline(spec, image: str, artifact_types: dict | None = None):
    """The pipeline as a kfp GraphComponent (what @dsl.pipeline returns), ready for the Compiler."""
    return pipeline_from_plan(plan_pipeline(spec, image, artifact_types))


def pipeline_from_plan(plan: PipelinePlan):
    _, _, st, ContainerComponent, GraphComponent = _kfp()

    def artifact(title: str) -> str:
        return f"{title}@{SCHEMA_VERSION}"

    components = {}
    for s in plan.steps:
        inputs = {p.name: st.InputSpec(type=PARAMETER_TYPES[p.type], description=p.description)
                  for p in s.parameters}
        inputs.update({i.name: st.InputSpec(type=artifact(i.type), description=i.description) for i in s.inputs})
        outputs = {o.name: st.OutputSpec(type=artifact(o.type), description=o.description) for o in s.outputs}
        container = st.ContainerSpecImplementation(image=s.image, command=list(COMMAND), args=s.args)
        component_spec = st.ComponentSpec(name=s.name, description=s.description, inputs=inputs, outputs=outputs,
                                          implementation=st.Implementation(container=container))
        components[s.name] = ContainerComponent(component_spec, None)  # no Python function behind it

    names = [p[0] for p in plan.parameters]

    def pipeline_body(*channels):
        params = dict(zip(names, channels))
        tasks = {}
        for s in plan.steps:
            arguments = {p.name: params[p.pipeline_param] for p in s.parameters}
            arguments.update({i.name: tasks[i.producer].outputs[i.producer_output] for i in s.inputs})
            task = components[s.name](**arguments)
            _configure(task, s)
            for up in s.after:
                task.after(tasks[up])
            tasks[s.name] = task

    # GraphComponent calls the body with one channel per parameter of its signature.
    pipeline_body.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    pipeline_spec = st.ComponentSpec(
        name=plan.name, description=plan.description, implementation=st.Implementation(),
        inputs={n: st.InputSpec(type=PARAMETER_TYPES[t], default=d, optional=True, description=desc)
                for n, t, d, desc in plan.parameters})
    return GraphComponent(pipeline_spec, pipeline_body)


def _configure(task, s: StepPlan) -> None:
    """Display name, resources, retries, caching and env of one task (as the --py file does)."""
    for method, args in _task_calls(s):
        getattr(task, method)(*args)


def compile_plan(plan: PipelinePlan) -> str:
    compiler, *_ = _kfp()
    import tempfile

    pipeline = pipeline_from_plan(plan)
    with tempfile.TemporaryDirectory(prefix="nb2pipe-kfp-") as tmp:
        target = os.path.join(tmp, f"{plan.name}.yaml")
        compiler.Compiler().compile(pipeline, target)
        with open(target, encoding="utf-8") as f:
            return f.read()


def _plan_for(notebook_path, image=None, store=None, artifact_types=None, warn=None):
    from nb2pipe.compile.compiler import compile_notebook
    from nb2pipe.images.recorded import pipeline_image

    _kfp()  # the install hint before any work
    spec = compile_notebook(notebook_path)
    if artifact_types is not None:
        types = artifact_types_given(artifact_types, spec)
    else:
        types = artifact_types_from_store(notebook_path, spec, store, warn)
    return plan_pipeline(spec, image or pipeline_image(notebook_path, spec, store), types, path=str(notebook_path))


def compile_pipeline(notebook_path, image=None, store=None, artifact_types=None, warn=None) -> str:
    """The KFP v2 IR YAML of a notebook's pipeline.

    `image` defaults to the tag `nb2pipe build` gives. Artifact types come from the latest local
    run in the run store (`store`, default as for `nb2pipe run`), or from `artifact_types`
    ({"df": "Dataset", "train.model": "Model"}) when given, the store then not being read.
    """
    return compile_plan(_plan_for(notebook_path, image, store, artifact_types, warn))


@dataclass
class ExportResult:
    path: str | None  # None: written to stdout
    image: str
    tasks: int
    py_path: str | None = None
    text: str = field(default="", repr=False)


def export(notebook_path, output=None, image=None, py=None, store=None, artifact_types=None,
           warn=None, allow_local_image: bool = False) -> ExportResult:
    """Write the YAML to `output` ("-": only return it) and, with `py`, the DSL Python file.

    The steps' image is `image`, else the one `nb2pipe build` recorded for this version of the
    notebook, else build's default tag; one that names no registry (a cluster could not pull it)
    is a warning, unless `allow_local_image`.
    """
    from nb2pipe.images.recorded import pull_problem
    from nb2pipe.kubeflow.dsl_source import python_source

    plan = _plan_for(notebook_path, image, store, artifact_types, warn)
    problem = None if allow_local_image else pull_problem(plan.image, notebook_path)
    if problem and warn is not None:
        warn(problem)
    text = compile_plan(plan)
    source = python_source(plan) if py else None  # both made before either is written
    if output is None:
        output = str(Path(notebook_path).with_suffix(".yaml"))
    if output != "-":
        _write_text(output, text)
    if py:
        _write_text(py, source)
    return ExportResult(None if output == "-" else str(output), plan.image, len(plan.steps),
                        str(py) if py else None, text)


def write_python(notebook_path, path, image=None, store=None, artifact_types=None, warn=None) -> str:
    """Write the standalone KFP DSL Python file of the pipeline to `path`; returns its source."""
    from nb2pipe.kubeflow.dsl_source import python_source

    source = python_source(_plan_for(notebook_path, image, store, artifact_types, warn))
    _write_text(path, source)
    return source


def _write_text(path, text: str) -> None:
    from nb2pipe.store.files import write_text

    write_text(path, text)
