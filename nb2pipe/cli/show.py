"""What the CLI's human output shares: paths a user can open as printed, numbers rounded for
people, ids never cut, a failing cell shown with its source, and tables that fit the terminal
(80 columns when piped) without breaking a token in two."""

from __future__ import annotations

import math
import os
from pathlib import Path

SIGNIFICANT = 4  # digits of a metric in human output (--json keeps exact values)


def openable(root: str | os.PathLike, relative: str | None) -> str:
    """A store path as the user can open it from here: relative to the current folder when it is
    below it, else absolute."""
    if not relative:
        return ""
    full = Path(root).resolve() / relative
    try:
        return os.path.relpath(full) if Path.cwd() in full.parents else str(full)
    except ValueError:  # another drive (Windows)
        return str(full)


def number(value) -> str:
    """A metric or parameter for people: floats to SIGNIFICANT digits, others as they are."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if 10**SIGNIFICANT <= abs(value) < 1e15:
        return f"{value:.0f}"
    return f"{value:.{SIGNIFICANT}g}"


def metric_text(metric) -> str:
    return f"{metric.name}={number(metric.value)}" + (f" [{metric.flag}]" if metric.flag else "")


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.2f}s"
    minutes, secs = divmod(value, 60)
    return f"{int(minutes)}m{secs:04.1f}s"


def console(stderr: bool = False):
    """A rich console for human output: tables fit its width (80 columns when output is not a
    terminal); other lines are printed whole, so a path or an id is never broken."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)  # lines are never broken; tables fit


def failure_lines(error, spec=None, context: int = 2) -> list[tuple[str, str]]:
    """(text, rich style) lines telling a step failure: where, what, and the failing line of the
    cell with `context` lines around it (from the pipeline spec's copy of the cell)."""
    where = []
    if error.cell_index is not None:
        where.append(f"cell {error.cell_index}" + (f" [{error.cell_id}]" if error.cell_id else ""))
    if error.line is not None:
        where.append(f"line {error.line}")
    what = f"{error.ename}: {error.evalue}" if error.ename and error.reason == "error" else error.message
    lines = [(("at " + ", ".join(where) + ": ") if where else "") + what, "bold red"]
    out = [tuple(lines)]
    source = _cell_source(spec, error.cell_index) if spec is not None else None
    if source is not None and error.line is not None:
        rows = source.splitlines()
        first, last = max(1, error.line - context), min(len(rows), error.line + context)
        for n in range(first, last + 1):
            mark = "-->" if n == error.line else "   "
            out.append((f"    {mark} {n:>3} | {rows[n - 1]}", "red" if n == error.line else "dim"))
    return out


def _cell_source(spec, index: int | None) -> str | None:
    if index is None:
        return None
    for step in spec.steps:
        for cell in step.cells:
            if cell.index == index:
                return cell.source
    for cell in spec.setup:
        if cell.index == index:
            return cell.source
    return None
