"""Splitting annotated cells into steps: which code cells run together as one unit.

Rules: `step:NAME` starts a step; following untagged code cells continue it; untagged code cells
before the first step tag belong to the first step; `parameters`, `setup` and `skip` cells belong
to no step; a notebook with no step tags is one step named after the notebook.

A Kale `pipeline-metrics` cell that only names variables (`print(name)` or bare `name` lines, as
Kale requires) belongs to no step either: it computes nothing, and each name it lists is reported
by the step that produced it (the compiler finds which). Cells after it continue the step above it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.compile.declarations import report_only_names
from nb2pipe.compile.notebook import cell_source
from nb2pipe.compile.tags import CODE, PARAMETERS, SETUP, SKIP, CellAnnotation
from nb2pipe.errors import Diagnostic
from nb2pipe.model.names import check_step_name


@dataclass
class StepSource:
    """The cells of one step, before data flow is known."""

    name: str
    cells: list[tuple[CellAnnotation, str]] = field(default_factory=list)
    after: list[tuple[str, CellAnnotation]] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    option_cells: dict = field(default_factory=dict)

    @property
    def first(self) -> CellAnnotation:
        return self.cells[0][0]


@dataclass
class Split:
    steps: list[StepSource]
    setup: list[tuple[CellAnnotation, str]]
    parameters: list[tuple[CellAnnotation, str]]
    tagged: bool  # the notebook uses step tags
    metrics: list[tuple[CellAnnotation, str]] = field(default_factory=list)  # Kale's, outside any step


def default_step_name(path: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).stem).strip("_-") or "main"
    if not (stem[0].isalpha() or stem[0] == "_"):
        stem = "nb_" + stem
    return stem[:63] if check_step_name(stem[:63]) is None else "main"


def split_steps(annotations: list[CellAnnotation], cells: list, path: str) -> tuple[Split, list[Diagnostic]]:
    problems: list[Diagnostic] = []

    def problem(ann: CellAnnotation, message: str, fix: str | None = None, severity: str = "error", code="step"):
        problems.append(Diagnostic(path, message, severity, ann.index, ann.cell_id, None, fix, code))

    tagged = any(a.step for a in annotations if a.cell_type == "code" and a.role != SKIP)
    steps: list[StepSource] = []
    by_name: dict[str, StepSource] = {}
    setup, parameters, leading, metrics = [], [], [], []
    current: StepSource | None = None

    for ann, cell in zip(annotations, cells):
        if ann.cell_type != "code" or ann.role == SKIP:
            continue
        source = cell_source(cell)
        if ann.role in (PARAMETERS, SETUP):
            (parameters if ann.role == PARAMETERS else setup).append((ann, source))
            if ann.options or ann.after:
                problem(ann, f"step options and after: tags on a {ann.role} cell are ignored",
                        "move them to a cell of the step they belong to", "warning")
            continue
        assert ann.role == CODE
        if ann.kale_metrics and not ann.step and report_only_names(source) is not None:
            metrics.append((ann, source))
            if ann.options or ann.after:
                problem(ann, "step options and after: tags on a pipeline-metrics cell are ignored",
                        "move them to a cell of the step they belong to", "warning")
            continue
        if not tagged:
            if current is None:
                current = StepSource(default_step_name(path))
                steps.append(current)
        elif ann.step and (current is None or ann.step != current.name):
            if ann.step in by_name:
                first = by_name[ann.step].first
                problem(ann, f"step name '{ann.step}' is already used by the group starting at "
                             f"cell {first.index}" + (f" [{first.cell_id}]" if first.cell_id else ""),
                        "give this group another name, or move its cells next to the first group",
                        code="duplicate-step")
            current = StepSource(ann.step)
            steps.append(current)
            by_name.setdefault(ann.step, current)
            if leading:  # untagged code above the first step tag runs with that step
                current.cells.extend(leading)
                leading = []
        if current is None:
            leading.append((ann, source))
            continue
        current.cells.append((ann, source))
        for name in ann.after:
            current.after.append((name, ann))
        for key, value in ann.options.items():
            if key in current.options and current.options[key] != value:
                other = current.option_cells[key]
                problem(ann, f"step '{current.name}' sets {key} twice "
                             f"({current.options[key]!r} at cell {other.index}, {value!r} here)",
                        f"keep one {key}: tag per step", code="option")
                continue
            current.options[key] = value
            current.option_cells[key] = ann
    return Split(steps, setup, parameters, tagged, metrics), problems
