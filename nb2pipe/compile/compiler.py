"""Notebook -> PipelineSpec: read, annotate, split, infer data flow, build the graph, check it.

`check_notebook` collects every problem it can find in one pass (for `validate`);
`compile_notebook` raises PipelineInvalid when any of them is an error.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.compile.dataflow import BUILTIN_NAMES, StepFlow
from nb2pipe.compile.declarations import metric_names, parameter_assignments
from nb2pipe.compile.notebook import Notebook, read_notebook
from nb2pipe.compile.saved_state import saved_state_warnings
from nb2pipe.compile.source import CellSyntaxError
from nb2pipe.compile.steps import StepSource, default_step_name, split_steps
from nb2pipe.compile.tags import CODE, METRICS_TAG, RAISES_EXCEPTION_TAG, SKIP_EXECUTION_TAG, annotate
from nb2pipe.errors import Diagnostic, PipelineInvalid, UsageError
from nb2pipe.model.graph import GraphCycle, StepGraph, suggest
from nb2pipe.model.names import kfp_name
from nb2pipe.model.spec import CellSpec, ComponentSpec, InputSpec, ParameterSpec, PipelineSpec, StepOptions

# Cell tags that change no step result: a cell reporting metrics computes the same values.
_UNHASHED_TAGS = frozenset({METRICS_TAG})

PARAMETER_TYPES = {int: "int", float: "float", str: "str", bool: "bool", list: "list", dict: "dict",
                   type(None): "NoneType"}

# Names a kernel provides that are in no builtins module: IPython's output history (_1, _i1, ...).
_KERNEL_NAME_RE = re.compile(r"_i*\d+|__IPYTHON__")


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


def compile_notebook(path, strict: bool = False, lenient: bool = False) -> PipelineSpec:
    """Read a notebook and return its PipelineSpec; raise on any error (NotebookReadError,
    PipelineInvalid)."""
    result = check_notebook(path, strict=strict, lenient=lenient)
    if result.errors or result.spec is None:
        raise PipelineInvalid(result.diagnostics)
    return result.spec


def check_notebook(path, strict: bool = False, notebook: Notebook | None = None,
                   saved_state: bool = False, lenient: bool = False) -> CheckResult:
    """Every problem of a notebook's pipeline; `saved_state` adds the hidden-state guard's warnings
    on its saved execution counts (`validate` and `check` ask for them).

    A name a step reads that nothing defines is an error; `lenient` makes it a warning. Where
    code the analysis cannot follow (a star import, exec(), globals(), %run...) may define it,
    it is a warning; `strict` makes every warning of that kind an error."""
    if strict and lenient:
        raise UsageError("use either --strict or --lenient, not both")
    nb = notebook or read_notebook(path)
    return Compiler(nb, strict, saved_state, lenient).run()


class Compiler:
    def __init__(self, nb: Notebook, strict: bool, saved_state: bool = False, lenient: bool = False):
        self.nb = nb
        self.path = nb.path
        self.strict = strict
        self.lenient = lenient
        self.saved_state = saved_state
        self.diagnostics: list[Diagnostic] = []
        self._flows: dict[str, StepFlow] = {}  # step name -> its data flow
        self._metric_cells: dict[tuple[str, str], int] = {}  # (step, metric) -> the cell reporting it
        self._modifies: dict[str, set[str]] = {}  # step -> received names it may change in place

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
        parameters, param_names = self._parameters(split.parameters)
        setup_cells, setup_names, setup_dynamic = self._setup(split.setup)
        if not split.steps:
            if not any(d.severity == "error" for d in self.diagnostics):
                self.problem(None, "the notebook has no code cells to run",
                             "add a code cell, or remove the skip tags")
            return CheckResult(self.path, None, self.diagnostics)
        steps = _merge_duplicates(split.steps)  # reported above; analyse the rest as one step

        graph = StepGraph([s.name for s in steps])
        self._check_names(steps)
        components = self._components(steps, parameters, param_names, setup_names, setup_dynamic, graph)
        self._kale_metrics(split.metrics, steps, components, {p.name for p in parameters})
        self._after_edges(steps, graph)
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

    def _parameters(self, cells) -> tuple[list[ParameterSpec], set[str]]:
        """The typed parameters, and every name the parameters cells assign (valid or not)."""
        params: dict[str, ParameterSpec] = {}
        assigned: set[str] = set()
        for ann, source in cells:
            found, problems, names = parameter_assignments(source)
            assigned |= names
            for message, line, kind in problems:
                self.problem(ann, f"parameters cell: {message}",
                             "fix the Python syntax of this cell" if kind == "syntax" else
                             "keep only NAME = literal lines in the parameters cell; compute "
                             "derived values in a step", code="parameters", line=line)
            for name, value, line in found:
                kind, why = _parameter_type(value)
                if kind is None:
                    self.problem(ann, f"parameter '{name}' {why}", _parameter_fix(value), code="parameters",
                                 line=line)
                    continue
                params[name] = ParameterSpec(name, kind, value, ann.index)
        return list(params.values()), assigned

    def _setup(self, cells) -> tuple[list[CellSpec], set[str], list[tuple[int, int, str]]]:
        flow = StepFlow()
        specs = []
        for ann, source in cells:
            specs.append(CellSpec(ann.index, ann.cell_id, source, _kept_tags(ann)))
            self._analyse(flow, ann, source)
        dynamic = flow.dynamic + [(cell, 0, "from ... import *") for cell in flow.star_imports]
        return specs, set(flow.defines), dynamic

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

    def _components(self, steps, parameters, assigned_params, setup_names, setup_dynamic, graph) -> list[ComponentSpec]:
        param_names = {p.name for p in parameters}
        flows: list[tuple[StepSource, StepFlow]] = []
        for s in steps:
            flow = StepFlow()
            for ann, source in s.cells:
                self._analyse(flow, ann, source)
            flows.append((s, flow))
        self._flows = {s.name: flow for s, flow in flows}

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
                    defined = metric_names(src, printed=ann.kale_metrics)
                    for n in defined:
                        if n not in comp.metrics:
                            comp.metrics.append(n)
                            self._metric_cells[(comp.name, n)] = ann.index
                    self._gates(comp, ann, defined)
            cell_of = {a.index: a for a, _ in s.cells}
            replayed: set[str] = set()  # modules an upstream step imports, imported here again
            for name, cell_index in flow.external_reads().items():
                if name in setup_names:
                    continue
                if name in param_names:
                    if name not in comp.parameters:
                        comp.parameters.append(name)
                    continue
                producer = _latest_producer(name, flows[:i], self._modifies)
                if producer is None:
                    if name not in assigned_params:
                        self._undefined(s, flow, flows[:i], flows[i + 1:], name, cell_of.get(cell_index, s.first),
                                        setup_names | assigned_params, setup_dynamic)
                    continue
                up_source, up_flow = producer
                if name in up_flow.imports:  # modules are re-imported, never pickled
                    replayed.add(name)
                    stmt = up_flow.imports[name]
                    if stmt not in comp.imports:
                        comp.imports.append(stmt)
                    continue
                comp.inputs.append(InputSpec(name, up_source.name))
                graph.add_edge(up_source.name, s.name, name)
                if name not in wanted[up_source.name]:
                    wanted[up_source.name].append(name)
            received = {inp.name for inp in comp.inputs}
            comp.modifies = [n for n in flow.may_modify(setup_names | replayed) if n in received]
            self._modifies[s.name] = set(comp.modifies)  # later readers take these from this step
            components.append(comp)
        for comp, (s, flow) in zip(components, flows):
            order = list(flow.outputs())
            comp.outputs = sorted(wanted[s.name], key=lambda n: order.index(n) if n in order else len(order))
            comp.modifies = [n for n in comp.modifies if n in comp.outputs]  # only what a later step reads
        return components

    def _undefined(self, s: StepSource, flow: StepFlow, earlier, later, name: str, ann, known: set[str],
                   setup_dynamic) -> None:
        """A name the step reads that no earlier step, setup cell, parameter or import defines."""
        if name in flow.ever_bound or _KERNEL_NAME_RE.fullmatch(name):
            return  # the step binds it itself (later, in a loop, in a function...): not ours to judge
        dynamic = [(c, line, what) for c, line, what in flow.dynamic if c in {a.index for a, _ in s.cells}]
        dynamic += [(c, 0, "from ... import *") for c in flow.star_imports] + setup_dynamic
        visible = set(known) | flow.ever_bound | {n for _, f in earlier for n in f.outputs()}
        visible |= {n for n in BUILTIN_NAMES if not n.startswith("_")}
        close = difflib.get_close_matches(name, sorted(visible), n=1, cutoff=0.75)
        message = f"step '{s.name}' reads '{name}', which no earlier step, setup cell, parameter or import defines"
        if dynamic:
            cell, line, what = min(dynamic)
            message += f" (unless {what} at cell {cell}{f' line {line}' if line else ''} defines it)"
            severity = "error" if self.strict else "warning"
        else:
            severity = "warning" if self.lenient else "error"
        fix = (f"did you mean {close[0]}?" if close else
               "define it in an earlier step, a setup cell or the parameters cell")
        definer = next((src.name for src, f in later if name in f.outputs()), None)
        if definer and not close:
            message += f"; only the later step '{definer}' defines it"
            fix = f"move its definition above step '{s.name}' (a step reads only what earlier steps define)"
        elif severity == "error" and not close:
            fix += "; --lenient makes this a warning when it is defined at run time"
        self.problem(ann, message, fix, severity=severity, code="undefined", line=flow.line_of(name))

    def _kale_metrics(self, cells, steps: list[StepSource], components: list[ComponentSpec],
                      param_names: set[str]) -> None:
        """Kale's pipeline-metrics cells (names only, in no step): each name is reported by the
        latest step above the cell that defines it, as Kale assigns metrics to their producer; a
        parameter by the latest step that reads it (else the last step above)."""
        flows = {c.name: c for c in components}
        for ann, source in cells:
            names = metric_names(source, printed=True)
            above = [(s, self._flows[s.name]) for s in steps if s.first.index < ann.index]
            for name in names:
                producer = _latest_producer(name, above)
                if producer is None and name in param_names and above:
                    readers = [s for s, _ in above if name in flows[s.name].parameters]
                    producer = (readers[-1] if readers else above[-1][0]), None
                    if name not in flows[producer[0].name].parameters:  # its value is in the cache key
                        flows[producer[0].name].parameters.append(name)
                if producer is None:
                    visible = sorted({n for _, f in above for n in f.outputs()})
                    close = suggest(name, visible)
                    self.problem(ann, f"the metrics cell reports '{name}', which no step above it defines",
                                 f"did you mean print({close})?" if close else
                                 "define it in a step above this cell, or remove the line", code="metrics")
                    continue
                comp = flows[producer[0].name]
                if name not in comp.metrics:
                    comp.metrics.append(name)
                    self._metric_cells[(comp.name, name)] = ann.index
            for gate in ann.gates:  # a gate goes with the step that reports its metric
                reporter = next((c for c in components if gate.metric in c.metrics and gate.metric in names), None)
                self._gates(reporter or components[-1], ann, names, only=gate)
        for comp in components:  # in the order of the cells that report them
            comp.metrics.sort(key=lambda n: self._metric_cells.get((comp.name, n), 0))

    def _gates(self, comp: ComponentSpec, ann, defined: list[str], only=None) -> None:
        """A metrics cell's assert: tags must name metrics that cell reports."""
        for gate in ann.gates if only is None else [only]:
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


def _latest_producer(name: str, earlier: list[tuple[StepSource, StepFlow]], modifies=None):
    """The latest earlier step that defines `name`, or that received it and may change it in place."""
    for source, flow in reversed(earlier):
        if name in flow.defines and name not in flow.deleted or name in (modifies or {}).get(source.name, ()):
            return source, flow
    return None


def _merge_duplicates(steps: list[StepSource]) -> list[StepSource]:
    """Steps with one name (an error split_steps reported) analysed as one, so that every other
    problem of the notebook is still found."""
    merged: dict[str, StepSource] = {}
    for s in steps:
        if s.name in merged:
            merged[s.name].cells.extend(s.cells)
            merged[s.name].after.extend(s.after)
        else:
            merged[s.name] = s
    return list(merged.values())


def _parameter_type(value) -> tuple[str | None, str]:
    """(type name, "") for a value a pipeline parameter can hold, else (None, why not)."""
    kind = PARAMETER_TYPES.get(type(value))
    if kind is None:
        return None, (f"has a {type(value).__name__} value; parameters must be int, float, str, bool, None, "
                      "list or dict")
    why = _unrepresentable(value)
    return (None, why) if why else (kind, "")


def _unrepresentable(value) -> str | None:
    """Why a literal would not survive the spec's JSON (and papermill's injection) unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"is {value!r}: the literal overflows a float, and JSON has no infinity"
    if isinstance(value, list):
        return next((why for why in map(_unrepresentable_item, value) if why), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"has a dict key that is not a string ({key!r}); JSON keys are strings"
            why = _unrepresentable_item(item)
            if why:
                return why
    return None


def _unrepresentable_item(item) -> str | None:
    if type(item) not in PARAMETER_TYPES:
        return (f"holds a {type(item).__name__} ({item!r}); parameter values hold only int, float, str, bool, "
                "None, list and dict")
    return _unrepresentable(item)


def _parameter_fix(value) -> str:
    if isinstance(value, (tuple, set, frozenset)):
        return "use a list instead of a tuple or set"
    if isinstance(value, float):
        return "write a finite number (at most about 1.8e308)"
    if isinstance(value, (list, dict)):
        return "use lists instead of tuples or sets and string keys in dicts, or compute the value in a step"
    return "write the value as one of those types"


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
