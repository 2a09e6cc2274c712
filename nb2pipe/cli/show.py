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
    what = what.removesuffix(f" at cell {error.cell_index}")  # the location is said once, in front
    # The first line follows the word "failed": " at cell 3, line 2: what", or ": what".
    lines = [((" at " + ", ".join(where)) if where else "") + ": " + what, "bold red"]
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


def width() -> int:
    """The terminal's width; 80 when output is not a terminal ($COLUMNS wins, as for rich)."""
    import shutil
    import sys

    if os.environ.get("COLUMNS", "").isdigit():
        return max(40, int(os.environ["COLUMNS"]))
    return max(40, shutil.get_terminal_size((80, 24)).columns) if sys.stdout.isatty() else 80


def clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, the cut marked with an ellipsis at its end."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def fit_table(headers: list[str], rows: list[list[str]], fixed: set[int], total: int | None = None,
              gap: str = "  ", min_free: int = 20, floors: dict[int, int] | None = None) -> list[str]:
    """Plain-text table lines that fit `total` columns without breaking a token: columns in
    `fixed` (ids, times, numbers) keep their full width; the others share what is left, each
    value cut with an ellipsis at its end. When that would leave a free column under `min_free`
    characters, the free columns move instead to indented lines of their own below each row,
    wrapped between items. `floors` keeps a free column at least that wide (its numbers)."""
    total = total or width()
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    free = [i for i in range(len(headers)) if i not in fixed]
    used = sum(widths[i] for i in fixed) + len(gap) * (len(headers) - 1)
    room = total - used
    inline = not free or room >= min_free * len(free) or sum(widths[i] for i in free) <= room
    if inline and free:
        want = {i: widths[i] for i in free}
        floor = {i: min(widths[i], (floors or {}).get(i, 1)) for i in free}
        while sum(want.values()) > room:  # shrink the widest free column first, never below its floor
            shrinkable = [i for i in want if want[i] > floor[i]]
            if not shrinkable:
                break
            widest = max(shrinkable, key=want.get)
            want[widest] -= 1
        widths = [want.get(i, w) for i, w in enumerate(widths)]
    shown = list(range(len(headers))) if inline else sorted(fixed)

    def line(values: list[str]) -> str:
        cells = [clip(values[i], widths[i]).ljust(widths[i]) for i in shown]
        return gap.join(cells).rstrip()

    out = [line(headers)]
    for row in rows:
        out.append(line(row))
        if not inline:
            import textwrap

            for i in free:
                if row[i]:  # wrapped between items (", "), never inside a token
                    out += textwrap.wrap(f"{headers[i]}: {row[i]}", total, initial_indent="    ",
                                         subsequent_indent="        ", break_long_words=False, break_on_hyphens=False)
    return out


def wrapped(label: str, text: str, total: int | None = None, indent: int = 4) -> list[str]:
    """`label text` wrapped between words to the terminal width, continuation lines indented."""
    import textwrap

    return textwrap.wrap(f"{label}{text}", total or width(), subsequent_indent=" " * indent,
                         break_long_words=False, break_on_hyphens=False) or [label.rstrip()]


def size(n: float) -> str:
    """Bytes for people: 660B, 2.3MB."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TB"
