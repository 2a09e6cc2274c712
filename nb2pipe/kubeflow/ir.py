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
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.errors import Diagnostic, PipelineInvalid, UsageError
from nb2pipe.runtime.kfp_executor import (
    EXECUTED_NOTEBOOK,
    HASH_ENV,
    KFP_NAME,
    METRICS,
    NOTEBOOK_HTML,
    TIMEOUT_ENV,
    input_name,
    output_name,
)
from nb2pipe.step_runtime import COMMAND  # noqa: F401  (the one step-container command)

INSTALL_HINT = "pip install 'nb2pipe[kfp]'"
EXECUTOR_INPUT = "{{$}}"  # kfp.dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER
GPU_RESOURCE = "nvidia.com/gpu"
SCHEMA_VERSION = "0.0.1"

# nb2pipe parameter type -> kfp's in-memory type name (NUMBER_INTEGER, NUMBER_DOUBLE, STRING,
# BOOLEAN, LIST, STRUCT in the IR) and the annotation a DSL function uses for it.
PARAMETER_TYPES = {"int": "Integer", "float": "Float", "str": "String", "bool": "Boolean", "list": "List",
                   "dict": "Dict"}
ANNOTATIONS = {"int": "int", "float": "float", "str": "str", "bool": "bool", "list": "list", "dict": "dict"}

# What a serializer's `kfp_artifact` may say.
ARTIFACT_TYPES = {"Artifact": "system.Artifact", "Dataset": "system.Dataset", "Model": "system.Model"}


class KfpExportInvalid(PipelineInvalid):
    """The notebook is a valid pipeline, but something in it has no Kubeflow Pipelines form."""


# --- the plan: everything the YAML and the --py file say, decided once -------------------------

@dataclass
class Param:
    name: str  # the component input
    pipeline_param: str
    type: str  # nb2pipe type: int, float, ...
    description: str


@dataclass
class InArtifact:
    name: str  # the component input
    producer: str  # step name
    producer_output: str
    type: str  # schema title
    description: str


@dataclass
class OutArtifact:
    name: str
    type: str
    description: str


@dataclass
class StepPlan:
    name: str  # component and task name (the step's KFP name)
    step: str  # the step's own name: task display name, --step
    image: str
    description: str
    parameters: list[Param]
    inputs: list[InArtifact]
    outputs: list[OutArtifact]
    after: list[str]  # KFP names of upstreams without a data edge
    env: list[tuple[str, str]]
    cpu: str | None = None
    memory: str | None = None
    gpu: int | None = None
    retries: int = 0
    cache: bool = True

    @property
    def args(self) -> list[str]:
        return ["--step", self.step, "--executor-input", EXECUTOR_INPUT]


@dataclass
class PipelinePlan:
    name: str
    notebook: str
    summary: str
    description: str
    image: str
    parameters: list[tuple[str, str, object, str]]  # name, type, default, description
    steps: list[StepPlan] = field(default_factory=list)


def plan_pipeline(spec, image: str, artifact_types: dict | None = None, path: str | None = None) -> PipelinePlan:
    """Decide every name, type and option of the export; KfpExportInvalid lists what KFP cannot take.

    `artifact_types` maps (step, variable) to (schema title, description detail or None).
    """
    from nb2pipe.images.build import step_image_tag

    where = path or spec.notebook
    problems: list[Diagnostic] = []
    if spec.language != "python":
        # The step runtime executes every step with the image's own ipykernel.
        problems.append(Diagnostic(where, f"the notebook's kernel is '{spec.kernel_name}' ({spec.language}); "
                                          "exported steps run on a Python kernel", code="kfp",
                                   fix="export Python notebooks only"))
    types = artifact_types or {}
    params = []
    for p in spec.parameters:
        problem = _parameter_problem(p)
        if problem:
            problems.append(Diagnostic(where, problem[0], cell_index=p.cell_index, fix=problem[1], code="kfp"))
            continue
        params.append((p.name, p.type, p.default, f"from the parameters cell (cell {p.cell_index})"))
    read_by_setup = _setup_parameters(spec)
    summary = f"{spec.notebook} as a pipeline, exported by nb2pipe (spec {spec.spec_hash[:12]})"
    plan = PipelinePlan(spec.name, spec.notebook, summary + ".",
                        summary + ": each task runs one step's cells with papermill in the notebook's image.",
                        image, params)
    kfp_of = {c.name: c.kfp_name for c in spec.steps}
    for comp in spec.steps:
        first = comp.cells[0] if comp.cells else None

        def problem(message, fix, first=first):
            problems.append(Diagnostic(where, message, cell_index=first.index if first else None,
                                       cell_id=first.id if first else None, fix=fix, code="kfp"))

        outputs = [OutArtifact(EXECUTED_NOTEBOOK, "system.Artifact", "the executed step notebook (.ipynb)"),
                   OutArtifact(NOTEBOOK_HTML, "system.HTML", "the executed step notebook, rendered for the KFP UI")]
        if comp.metrics:
            outputs.append(OutArtifact(METRICS, "system.Metrics", "scalar metrics: " + ", ".join(comp.metrics)))
        for var in comp.outputs:
            title, detail = types.get((comp.name, var)) or ("system.Artifact", None)
            outputs.append(OutArtifact(output_name(var), title,
                                       f"variable {var}" + (f" ({detail})" if detail else "")))
        inputs: list = []
        names = set(read_by_setup) | set(comp.parameters)
        for p in spec.parameters:
            if p.name in names:
                inputs.append(Param(input_name(p.name, comp), p.name, p.type, f"pipeline parameter {p.name}"))
        for i in comp.inputs:
            title, _ = types.get((i.producer, i.name)) or ("system.Artifact", None)
            inputs.append(InArtifact(input_name(i.name, comp), kfp_of[i.producer], output_name(i.name), title,
                                     f"variable {i.name} from step {i.producer}"))
        for kind, items in (("output", outputs), ("input", inputs)):
            seen: dict[str, str] = {}
            for item in items:
                if item.name in seen:
                    problem(f"step '{comp.name}': two {kind}s would both be the KFP {kind} '{item.name}' "
                            f"({seen[item.name]}; {item.description})", "rename one of the variables")
                seen[item.name] = item.description
        clash = sorted({i.name for i in inputs} & {o.name for o in outputs})
        if clash:
            problem(f"step '{comp.name}': '{clash[0]}' would name both an input and an output of its KFP "
                    "component", "rename the variable")
        data_producers = {i.producer for i in comp.inputs}
        opts = comp.options
        env = [(HASH_ENV, comp.content_hash)]
        if opts.timeout:
            env.append((TIMEOUT_ENV, _number(opts.timeout)))
        plan.steps.append(StepPlan(
            name=comp.kfp_name, step=comp.name, image=step_image_tag(image, comp),
            description=_step_description(spec, comp),
            parameters=[i for i in inputs if isinstance(i, Param)],
            inputs=[i for i in inputs if isinstance(i, InArtifact)],
            outputs=outputs,
            after=[kfp_of[u] for u in comp.upstreams if u not in data_producers],
            env=env, cpu=_cpu(opts.cpu) if opts.cpu else None,
            memory=_memory(opts.memory) if opts.memory else None,
            gpu=opts.gpu or None, retries=opts.retries or 0, cache=bool(opts.cache)))
    if problems:
        raise KfpExportInvalid(problems)
    return plan


def _parameter_problem(p) -> tuple[str, str] | None:
    if p.type == "NoneType":
        return (f"parameter '{p.name}' defaults to None, which Kubeflow Pipelines has no parameter type for",
                f"give '{p.name}' a default of the type it takes (e.g. \"\" or 0), or set it in a step instead "
                "of the parameters cell")
    if p.type not in PARAMETER_TYPES:
        return (f"parameter '{p.name}' has type {p.type}, which Kubeflow Pipelines has no parameter type for",
                "use int, float, str, bool, list or dict")
    if not KFP_NAME.fullmatch(p.name):
        return (f"parameter '{p.name}' cannot be a Kubeflow Pipelines parameter name, which must start with an "
                "ASCII letter and hold only ASCII letters, digits and '_'", "rename the parameter")
    problem = _json_problem(p.default)
    if problem:
        return (f"parameter '{p.name}' {problem}, which Kubeflow Pipelines parameters (JSON) cannot hold",
                "change the default")
    return None


def _json_problem(value) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"holds the non-finite number {value}"
    if isinstance(value, dict) and any(not isinstance(k, str) for k in value):
        return "has a dict key that is not a string"
    for item in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        problem = _json_problem(item)
        if problem:
            return problem
    return None


def _setup_parameters(spec) -> set[str]:
    """Parameters the setup cells read (e.g. a helper function using `threshold`): setup runs in
    every step, so every step takes them."""
    from nb2pipe.compile.dataflow import CellSyntaxError, StepFlow

    names = {p.name for p in spec.parameters}
    if not names or not spec.setup:
        return set()
    flow = StepFlow()
    for cell in spec.setup:
        if "skip-execution" in cell.tags:
            continue
        try:
            flow.add_cell(cell.source, cell.index)
        except CellSyntaxError:
            continue
    return set(flow.external_reads()) & names


def _step_description(spec, comp) -> str:
    cells = ", ".join(str(c.index) for c in comp.cells)
    plural = "s" if len(comp.cells) > 1 else ""
    return f"Step {comp.name} of {spec.notebook} (cell{plural} {cells}), run with papermill."


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _cpu(cpu) -> str:
    """Kubernetes CPU quantity: whole cores as `2`, fractions in millicores (`500m`)."""
    if float(cpu).is_integer():
        return str(int(cpu))
    millis = round(float(cpu) * 1000)
    return f"{max(millis, 1)}m"


_KFP_MEMORY = re.compile(r"[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?")
_UNIT = {"": "", "k": "K", "m": "M", "g": "G", "t": "T", "p": "P", "kb": "K", "mb": "M", "gb": "G", "tb": "T",
         "pb": "P", "ki": "Ki", "mi": "Mi", "gi": "Gi", "ti": "Ti", "pi": "Pi"}


def _memory(size: str) -> str:
    """A memory size in the form KFP accepts (an integer and a Kubernetes unit): `4GB` -> `4G`,
    `1.5Gi` -> `1536Mi`, `512m` (nb2pipe reads it as megabytes) -> `512M`."""
    if _KFP_MEMORY.fullmatch(size):
        return size
    from nb2pipe.compile.tags import memory_bytes

    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", size)
    unit = _UNIT.get(m.group(2).lower(), "") if m else ""
    if m and float(m.group(1)).is_integer():
        return f"{int(float(m.group(1)))}{unit}"
    n = memory_bytes(size)
    units = ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki") if unit.endswith("i") else ("E", "P", "T", "G", "M", "K")
    for u in units:
        scale = 1024 ** (6 - units.index(u)) if u.endswith("i") else 1000 ** (6 - units.index(u))
        if n % scale == 0:
            return f"{n // scale}{u}"
    return str(n)


# --- artifact types -----------------------------------------------------------------------------

def artifact_types_from_store(notebook_path, spec, store=None, warn=None) -> dict:
    """(step, variable) -> (schema title, detail) from the latest local run of each step.

    A value's type is known only once it has been computed, so the types come from the run store
    (read-only here: no store is created). Missing runs leave system.Artifact, with one warning.
    """
    from nb2pipe.store.location import store_root

    root = store_root(notebook_path, store)
    wanted = [c for c in spec.steps if c.outputs]
    found: dict = {}
    missing: list[str] = []
    if wanted and (root / "runs.db").exists():
        from nb2pipe.errors import Nb2pipeError
        from nb2pipe.store.runs import RunStore

        try:
            with RunStore(root) as runs:
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
    try:
        from kfp import compiler, dsl
        from kfp.dsl import structures
        from kfp.dsl.container_component_class import ContainerComponent
        from kfp.dsl.graph_component import GraphComponent
    except ImportError:
        raise UsageError(f"exporting to Kubeflow Pipelines needs the kfp package (fix: {INSTALL_HINT})") from None
    return compiler, dsl, structures, ContainerComponent, GraphComponent


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


def _task_calls(s: StepPlan) -> list[tuple[str, tuple]]:
    calls = [("set_display_name", (s.step,)), ("set_caching_options", (s.cache,))]
    if s.cpu:
        calls += [("set_cpu_request", (s.cpu,)), ("set_cpu_limit", (s.cpu,))]
    if s.memory:
        calls += [("set_memory_request", (s.memory,)), ("set_memory_limit", (s.memory,))]
    if s.gpu:
        calls += [("set_accelerator_type", (GPU_RESOURCE,)), ("set_accelerator_limit", (s.gpu,))]
    if s.retries:
        calls.append(("set_retry", (s.retries,)))
    calls += [("set_env_variable", pair) for pair in s.env]
    return calls


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
    from nb2pipe.images.build import default_tag

    _kfp()  # the install hint before any work
    spec = compile_notebook(notebook_path)
    if artifact_types is not None:
        types = artifact_types_given(artifact_types, spec)
    else:
        types = artifact_types_from_store(notebook_path, spec, store, warn)
    return plan_pipeline(spec, image or default_tag(spec), types, path=str(notebook_path))


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
           warn=None) -> ExportResult:
    """Write the YAML to `output` ("-": only return it) and, with `py`, the DSL Python file."""
    from nb2pipe.kubeflow.dsl_source import python_source

    plan = _plan_for(notebook_path, image, store, artifact_types, warn)
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
    from nb2pipe.errors import StoreIOError

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreIOError(f"cannot write {path}: {exc.strerror or exc}") from exc
