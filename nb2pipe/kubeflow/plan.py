"""The plan of a Kubeflow Pipelines export: every name, type and option, decided once.

Both the IR YAML (ir.py) and the `--py` DSL program (dsl_source.py) are written from one
PipelinePlan, so the two always say the same thing. This module imports neither kfp nor them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from nb2pipe.compile.tags import SKIP_EXECUTION_TAG
from nb2pipe.errors import Diagnostic, PipelineInvalid
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

EXECUTOR_INPUT = "{{$}}"  # kfp.dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER
GPU_RESOURCE = "nvidia.com/gpu"

# nb2pipe parameter type -> kfp's in-memory type name (NUMBER_INTEGER, NUMBER_DOUBLE, STRING,
# BOOLEAN, LIST, STRUCT in the IR) and the annotation a DSL function uses for it.
PARAMETER_TYPES = {"int": "Integer", "float": "Float", "str": "String", "bool": "Boolean", "list": "List",
                   "dict": "Dict"}
ANNOTATIONS = {"int": "int", "float": "float", "str": "str", "bool": "bool", "list": "list", "dict": "dict"}


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
    from nb2pipe.compile.dataflow import StepFlow
    from nb2pipe.compile.source import CellSyntaxError

    names = {p.name for p in spec.parameters}
    if not names or not spec.setup:
        return set()
    flow = StepFlow()
    for cell in spec.setup:
        if SKIP_EXECUTION_TAG in cell.tags:
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
