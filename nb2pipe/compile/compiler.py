"""Notebook -> PipelineSpec: read, annotate, split, infer data flow, build the graph, check it.

`check_notebook` collects every problem it can find in one pass (for `validate`);
`compile_notebook` raises PipelineInvalid when any of them is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.compile.dataflow import CellSyntaxError, StepFlow, literal_assignments, metric_names
from nb2pipe.compile.notebook import Notebook, read_notebook
from nb2pipe.compile.saved_state import saved_state_warnings
from nb2pipe.compile.steps import StepSource, default_step_name, split_steps
from nb2pipe.compile.tags import CODE, METRICS_TAG, RAISES_EXCEPTION_TAG, SKIP_EXECUTION_TAG, annotate
from nb2pipe.errors import Diagnostic, PipelineInvalid
from nb2pipe.model.graph import GraphCycle, StepGraph, suggest
from nb2pipe.model.names import kfp_name
from nb2pipe.model.spec import CellSpec, ComponentSpec, InputSpec, ParameterSpec, PipelineSpec, StepOptions

# Cell tags that change no step result: a cell reporting metrics computes the same values.
_UNHASHED_TAGS = frozenset({METRICS_TAG})

PARAMETER_TYPES = {int: "int", float: "float", str: "str", bool: "bool", list: "list", dict: "dict",
                   type(None): "NoneType"}


@dataclass
class CheckResult:
    path: str
    spec: PipelineSpec | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    graph: StepGraph | None = None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


def compile_notebook(path, strict: bool = False) -> PipelineSpec:
    """Read a notebook and return its PipelineSpec; raise on any error (NotebookReadError,
    PipelineInvalid)."""
    result = check_notebook(path, strict=strict)
    if result.errors or result.spec is None:
        raise PipelineInvalid(result.diagnostics)
    return result.spec


def check_notebook(path, strict: bool = False, notebook: Notebook | None = None,
                   saved_state: bool = False) -> CheckResult:
    """Every problem of a notebook's pipeline; `saved_state` adds the hidden-state guard's warnings
    on its saved execution counts (`validate` and `check` ask for them)."""
    nb = notebook or read_notebook(path)
    return Compiler(nb, strict, saved_state).run()


class Compiler:
    def __init__(self, nb: Notebook, strict: bool, saved_state: bool = False):
        self.nb = nb
        self.path = nb.path
        self.strict = strict
        self.saved_state = saved_state
        self.diagnostics: list[Diagnostic] = []

    def problem(self, ann, message, fix=None, severity="error", code="invalid", line=None):
        self.diagnostics.append(Diagnostic(
            self.path, message, severity, ann.index if ann else None, ann.cell_id if ann else None,
            line, fix, code))

    def run(self) -> CheckResult:
        nb = self.nb
        annotations, problems = annotate(nb.cells, self.path)
        self.diagnostics.extend(problems)
        if self.saved_state:
            self.diagnostics.extend(saved_state_warnings(nb.cells, self.path))
        if not nb.is_python:
            return self._non_python(annotations)
        split, problems = split_steps(annotations, nb.cells, self.path)
        self.diagnostics.extend(problems)
        if any(p.code == "duplicate-step" for p in problems):
            return CheckResult(self.path, None, self.diagnostics)
        if not split.steps:
            self.problem(None, "the notebook has no code cells to run",
                         "add a code cell, or remove the skip tags")
            return CheckResult(self.path, None, self.diagnostics)

        parameters = self._parameters(split.parameters)
        setup_cells, setup_names, setup_star = self._setup(split.setup)
        graph = StepGraph([s.name for s in split.steps])
        self._check_names(split.steps)
        components = self._components(split.steps, parameters, setup_names, setup_star, graph)
        self._after_edges(split.steps, graph)
        try:
            order = graph.order()
        except GraphCycle as cyc:
            first = {s.name: s.first for s in split.steps}[cyc.cycle[0]]
            self.problem(first, f"the steps form a cycle: {' → '.join(cyc.cycle)}",
                         "remove an after: tag, or rename a variable so a step does not read "
                         "what a later step writes", code="cycle")
            return CheckResult(self.path, None, self.diagnostics, graph)
        if any(d.severity == "error" for d in self.diagnostics):
            return CheckResult(self.path, None, self.diagnostics, graph)

        by_name = {c.name: c for c in components}
        for comp in components:
            comp.upstreams = sorted(graph.upstreams.get(comp.name, []), key=order.index)
            comp.content_hash = comp.compute_hash(setup_cells, nb.kernel_name, _UNHASHED_TAGS)
        spec = PipelineSpec(
            name=kfp_name(Path(self.path).stem),
            notebook=Path(self.path).name,
            kernel_name=nb.kernel_name,
            language=nb.language,
            parameters=parameters,
            setup=setup_cells,
            steps=[by_name[n] for n in order],
        )
        return CheckResult(self.path, spec, self.diagnostics, graph)

    # --- pieces ----------------------------------------------------------------------------
    def _non_python(self, annotations) -> CheckResult:
        ours = [a for a in annotations if a.cell_type == "code" and (
            a.step or a.after or a.options or a.role != CODE or a.metrics or a.gates)]
        if ours:
            self.problem(ours[0], f"pipeline tags need a Python kernel; this notebook's kernel is "
                                  f"'{self.nb.kernel_name}' ({self.nb.language})",
                         "remove the nb2pipe tags: the notebook then runs as a single step",
                         code="non-python")
            return CheckResult(self.path, None, self.diagnostics)
        cells = [CellSpec(a.index, a.cell_id, _src(c), _kept_tags(a))
                 for a, c in zip(annotations, self.nb.cells) if a.cell_type == "code"]
        if not cells:
            self.problem(None, "the notebook has no code cells to run", "add a code cell")
            return CheckResult(self.path, None, self.diagnostics)
        name = default_step_name(self.path)
        comp = ComponentSpec(name, kfp_name(name), cells)
        comp.content_hash = comp.compute_hash([], self.nb.kernel_name, _UNHASHED_TAGS)
        spec = PipelineSpec(kfp_name(Path(self.path).stem), Path(self.path).name,
                            self.nb.kernel_name, self.nb.language, steps=[comp])
        return CheckResult(self.path, spec, self.diagnostics, StepGraph([name]))

    def _parameters(self, cells) -> list[ParameterSpec]:
        params: dict[str, ParameterSpec] = {}
        for ann, source in cells:
            found = literal_assignments(source)
            if isinstance(found, tuple):
                message, line = found
                self.problem(ann, f"parameters cell: {message}",
                             "keep only NAME = literal lines in the parameters cell; compute "
                             "derived values in a step", code="parameters", line=line)
                continue
            for name, value, _line in found:
                kind = _parameter_type(value)
                if kind is None:
                    self.problem(ann, f"parameter '{name}' has a {type(value).__name__} value; "
                                      "parameters must be int, float, str, bool, None, list or dict",
                                 "use a list instead of a tuple or set" if isinstance(value, (tuple, set))
                                 else "write the value as one of those types", code="parameters", line=_line)
                    continue
                params[name] = ParameterSpec(name, kind, value, ann.index)
        return list(params.values())

    def _setup(self, cells) -> tuple[list[CellSpec], set[str], bool]:
        flow = StepFlow()
        specs = []
        for ann, source in cells:
            specs.append(CellSpec(ann.index, ann.cell_id, source, _kept_tags(ann)))
            self._analyse(flow, ann, source)
        return specs, set(flow.defines), bool(flow.star_imports)

    def _analyse(self, flow: StepFlow, ann, source: str) -> None:
        if ann.skip_execution:
            return  # nbclient never runs it: it neither reads nor defines anything
        try:
            flow.add_cell(source, ann.index)
        except CellSyntaxError as exc:
            detail = "" if str(exc) == "invalid syntax" else f": {exc}"  # never say it twice
            self.problem(ann, f"invalid syntax{detail}", "fix the Python syntax of this cell",
                         code="syntax", line=exc.line)

    def _check_names(self, steps: list[StepSource]) -> None:
        seen: dict[str, StepSource] = {}
        for s in steps:
            safe = kfp_name(s.name)
            other = seen.get(safe)
            if other is not None and other.name != s.name:
                self.problem(s.first, f"step names '{other.name}' and '{s.name}' both map to the "
                                      f"KFP name '{safe}'", "rename one of them", code="step-name")
            seen.setdefault(safe, s)

    def _components(self, steps, parameters, setup_names, setup_star, graph) -> list[ComponentSpec]:
        param_names = {p.name for p in parameters}
        flows: list[tuple[StepSource, StepFlow]] = []
        for s in steps:
            flow = StepFlow()
            for ann, source in s.cells:
                self._analyse(flow, ann, source)
            flows.append((s, flow))

        components: list[ComponentSpec] = []
        wanted: dict[str, list[str]] = {s.name: [] for s in steps}  # producer -> names read downstream
        for i, (s, flow) in enumerate(flows):
            comp = ComponentSpec(
                name=s.name,
                kfp_name=kfp_name(s.name),
                cells=[CellSpec(a.index, a.cell_id, src, _kept_tags(a)) for a, src in s.cells],
                after=[name for name, _ in s.after],
                options=StepOptions(**{k: v for k, v in s.options.items()}),
            )
            for ann, src in s.cells:
                if ann.metrics:
                    defined = metric_names(src)
                    comp.metrics.extend(n for n in defined if n not in comp.metrics)
                    self._gates(comp, ann, defined)
            cell_of = {a.index: a for a, _ in s.cells}
            for name, cell_index in flow.external_reads().items():
                if name in setup_names:
                    continue
                if name in param_names:
                    if name not in comp.parameters:
                        comp.parameters.append(name)
                    continue
                producer = _latest_producer(name, flows[:i])
                if producer is None:
                    if setup_star or flow.star_imports:
                        continue  # `from x import *` may define it: we cannot know
                    self.problem(cell_of.get(cell_index, s.first),
                                 f"step '{s.name}' reads '{name}', which no earlier step, setup "
                                 "cell or parameter defines",
                                 "define it in an earlier step or a setup cell (or ignore this "
                                 "warning if it is defined at run time)",
                                 severity="error" if self.strict else "warning", code="undefined")
                    continue
                up_source, up_flow = producer
                if name in up_flow.imports:  # modules are re-imported, never pickled
                    stmt = up_flow.imports[name]
                    if stmt not in comp.imports:
                        comp.imports.append(stmt)
                    continue
                comp.inputs.append(InputSpec(name, up_source.name))
                graph.add_edge(up_source.name, s.name, name)
                if name not in wanted[up_source.name]:
                    wanted[up_source.name].append(name)
            components.append(comp)
        for comp, (s, flow) in zip(components, flows):
            order = list(flow.outputs())
            comp.outputs = sorted(wanted[s.name], key=lambda n: order.index(n) if n in order else len(order))
        return components

    def _gates(self, comp: ComponentSpec, ann, defined: list[str]) -> None:
        """A metrics cell's assert: tags must name metrics that cell reports."""
        for gate in ann.gates:
            if gate.metric not in defined:
                close = suggest(gate.metric, defined)
                self.problem(ann, f"gate assert:{gate.text} names '{gate.metric}', which this metrics cell does "
                                  "not report" + (f" (it reports {', '.join(defined)})" if defined else ""),
                             f"did you mean assert:{gate.text.replace(gate.metric, close, 1)}?" if close else
                             f"assign {gate.metric} in this cell, or fix the tag", code="gate")
                continue
            comp.gates.append(gate)

    def _after_edges(self, steps: list[StepSource], graph: StepGraph) -> None:
        names = [s.name for s in steps]
        for s in steps:
            for target, ann in s.after:
                if target == s.name:
                    self.problem(ann, f"step '{s.name}' cannot run after itself", "remove the tag",
                                 code="after")
                elif target not in names:
                    close = suggest(target, names)
                    self.problem(ann, f"after:{target} names an unknown step",
                                 f"did you mean after:{close}?" if close else
                                 "known steps: " + ", ".join(names), code="after")
                else:
                    graph.add_edge(target, s.name)


def _latest_producer(name: str, earlier: list[tuple[StepSource, StepFlow]]):
    for source, flow in reversed(earlier):
        if name in flow.defines and name not in flow.deleted:
            return source, flow
    return None


def _parameter_type(value) -> str | None:
    kind = PARAMETER_TYPES.get(type(value))
    if kind == "float" and not math.isfinite(value):
        return "float"  # nan/inf literals cannot be written with literal_eval anyway
    return kind


def _kept_tags(ann) -> list[str]:
    tags = []
    if ann.raises_exception:
        tags.append(RAISES_EXCEPTION_TAG)
    if ann.skip_execution:
        tags.append(SKIP_EXECUTION_TAG)
    if ann.metrics:
        tags.append(METRICS_TAG)
    return tags


def _src(cell) -> str:
    from nb2pipe.compile.notebook import cell_source

    return cell_source(cell)
