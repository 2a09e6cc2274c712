"""The hidden-state guard: does the saved notebook look like it was run top to bottom?

A notebook saved after running cells out of order, re-running some, or running cells that were
deleted since, shows outputs that a fresh kernel may never produce: such a notebook often fails
when nb2pipe (or CI) runs it from scratch. The execution counts JupyterLab saves tell:

* out of order: a cell's count is lower than the count of a cell above it;
* hidden executions: counts 1..max that no cell holds (a cell re-run, or run and then deleted):
  the cells executed after them saw state the notebook does not show.

Both are warnings, never errors: the pipeline itself does not depend on saved outputs.
"""

from __future__ import annotations

from nb2pipe.errors import Diagnostic

FIX = "restart the kernel and run all cells, then save; or clear all outputs"
_LISTED = 6


def saved_state_warnings(cells: list, path: str) -> list[Diagnostic]:
    executed: list[tuple[int, str | None, int]] = []  # (1-based cell index, cell id, execution count)
    for index, cell in enumerate(cells, start=1):
        count = cell.get("execution_count") if cell.get("cell_type") == "code" else None
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            executed.append((index, cell.get("id"), count))
    if not executed:
        return []
    problems = []
    out_of_order = _out_of_order(executed)
    if out_of_order:
        first = out_of_order[0]
        problems.append(Diagnostic(
            path, "the saved notebook was executed out of order (execution counts do not increase top to "
                  f"bottom): {_cells(out_of_order)} ran before a cell above", "warning", first[0], first[1],
            None, FIX, "hidden-state"))
    missing = _missing(executed)
    if missing:
        after = [c for c in executed if c[2] > missing[0]]
        if after:
            shown = ", ".join(str(n) for n in missing[:_LISTED]) + (", ..." if len(missing) > _LISTED else "")
            problems.append(Diagnostic(
                path, f"the saved outputs come from a kernel that also ran code not in this notebook (executions "
                      f"{shown} are in no cell: re-run or deleted cells); {_cells(after)} ran after it",
                "warning", after[0][0], after[0][1], None, FIX, "hidden-state"))
    return problems


def _out_of_order(executed):
    out, highest = [], 0
    for entry in executed:
        if entry[2] <= highest:
            out.append(entry)
        highest = max(highest, entry[2])
    return out


def _missing(executed, limit: int = _LISTED + 1) -> list[int]:
    """The first `limit` counts in 1..max that no cell holds: enough to list them, and never the range
    1..max itself (a saved count can be any integer, 10**20 included)."""
    out, expected = [], 1
    for count in sorted({c for _, _, c in executed}):
        while expected < count and len(out) < limit:
            out.append(expected)
            expected += 1
        if len(out) >= limit:
            break
        expected = count + 1
    return out


def _cells(entries) -> str:
    shown = ", ".join(f"cell {i} [{c}]" for i, _, c in entries[:_LISTED])
    if len(entries) > _LISTED:
        shown += f" and {len(entries) - _LISTED} more"
    return shown
