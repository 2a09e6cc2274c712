"""What the cells that declare values say: a parameters cell's literal assignments and a metrics
cell's reported names (ours: assignments and bare names; Kale's: `print(name)` lines).

Separate from dataflow.py, which follows names through a step's code: these read one cell's
statements as declarations, never as code that runs.
"""

from __future__ import annotations

import ast

from nb2pipe.compile.source import CellSyntaxError, cell_statements


def literal_assignments(source: str) -> list[tuple[str, object, int]] | tuple[str, int]:
    """For a parameters/metrics-style cell: [(name, literal value, line)] or (first problem, line)."""
    found, problems, _names = parameter_assignments(source)
    return problems[0][:2] if problems else found


def parameter_assignments(source: str) -> tuple[list[tuple[str, object, int]], list[tuple[str, int, str]], set[str]]:
    """Every literal assignment of a parameters cell [(name, value, line)], every problem
    [(message, line, kind)] (kind "syntax" or "literal"), and every name the cell assigns (a
    name whose value is no literal is still defined when the cell runs)."""
    try:
        body = list(cell_statements(source))  # a parameters cell is small: exact values, no skeleton
    except CellSyntaxError as exc:
        return [], [(f"syntax error: {exc}", exc.line or 1, "syntax")], set()
    out, problems, names = [], [], set()
    for node in body:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a docstring-like comment string
        else:
            problems.append(("only plain assignments of literal values (NAME = 1, NAME = 'text', "
                             "NAME = [1, 2]) are allowed here", node.lineno, "literal"))
            continue
        try:
            literal = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            problems.append((f"the value of '{target}' is not a literal", node.lineno, "literal"))
            continue
        out.append((target, literal, node.lineno))
    return out, problems, names


def _printed_name(node: ast.stmt) -> ast.Name | None:
    """`print(name)` (Kale's metrics line): the Name, else None."""
    if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "print" and len(node.value.args) == 1 and not node.value.keywords
            and isinstance(node.value.args[0], ast.Name)):
        return node.value.args[0]
    return None


def report_only_names(source: str) -> list[str] | None:
    """The names of a cell made only of `print(name)` and bare `name` lines (a Kale
    pipeline-metrics cell: it computes nothing), in order; None for any other cell."""
    names: list[str] = []
    try:
        for node in cell_statements(source, names_only=True):
            named = _printed_name(node) or (node.value if isinstance(node, ast.Expr) and
                                            isinstance(node.value, ast.Name) else None)
            if named is None:
                return None
            if named.id not in names:
                names.append(named.id)
    except CellSyntaxError:
        return None
    return names or None


def metric_names(source: str, printed: bool = False) -> list[str]:
    """Names a metrics cell reports: its top-level scalar assignments and (Kale style) bare names;
    with `printed` (a Kale pipeline-metrics cell) also its `print(name)` lines."""
    names: list[str] = []
    try:
        for node in cell_statements(source, names_only=True):
            targets: list[ast.expr] = []
            if printed and _printed_name(node) is not None:
                targets = [_printed_name(node)]
            elif isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
                targets = [node.target]
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Name):
                targets = [node.value]
            for t in targets:
                if isinstance(t, ast.Name) and t.id not in names:
                    names.append(t.id)
    except CellSyntaxError:
        return []
    return names
