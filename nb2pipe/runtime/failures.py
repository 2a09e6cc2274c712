"""What went wrong in a step: read from the notebook papermill executed.

papermill reports the first cell with an error output, but it knows neither nbclient's
`raises-exception` tag nor which generated cell is ours; these functions locate the real failing
cell in the source notebook's numbering and keep papermill's error banner pointing at it.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from nb2pipe.compile.tags import PAPERMILL_ERROR_TAG, RAISES_EXCEPTION_TAG
from nb2pipe.errors import StoreIOError
from nb2pipe.model.records import StepError
from nb2pipe.runtime.stepio import StepOutputMissing, StepOutputUnserializable
from nb2pipe.runtime.stepnb import SAVE_TAG, own_cell_positions

# Why the step failed when its save cell raised one of stepio's own errors (by class name: that
# is all that crosses the kernel boundary).
_SAVE_CELL_REASONS = {StepOutputUnserializable.__name__: "serialization", StepOutputMissing.__name__: "error"}


def cell_error(partial: Path, exc) -> StepError | None:
    """The step's error, located at its source cell; None when every error was allowed.

    papermill reports the first cell with an error output, but it does not know nbclient's
    `raises-exception` tag: an error in such a cell is expected (nbclient went on), so it is
    skipped here, and when no other error remains the step did not fail.
    """
    try:
        nb = nbformat.read(str(partial), as_version=4)
    except Exception:
        nb = None
    cell, ename, evalue, traceback = None, exc.ename, exc.evalue, list(exc.traceback or [])
    if nb is not None:
        # papermill inserted its error banner and anchor (markdown cells carrying its marker
        # tag) before writing the file; exc.cell_index counts the cells without them.
        cells = [c for c in nb.cells if PAPERMILL_ERROR_TAG not in c.metadata.get("tags", [])]
        found = _first_real_error(cells)
        if found is None:
            nb.cells = cells  # no real error: drop papermill's misleading banner
            nbformat.write(nb, str(partial))
            return None
        cell, ename, evalue, traceback = found
        if cell is not _exc_cell(cells, exc):
            _move_error_banner(nb, cell)
            nbformat.write(nb, str(partial))
    cell_index, cell_id = None, None
    if cell is not None:
        cell_index = cell.metadata.get("nb2pipe", {}).get("source_cell")
        cell_id = cell.get("id") if cell_index is not None else None
        tags = cell.metadata.get("tags", [])
        if SAVE_TAG in tags and ename in _SAVE_CELL_REASONS:
            return StepError(_SAVE_CELL_REASONS[ename], evalue, None, None, ename, evalue,
                             plain_traceback(traceback))
    where = f" at cell {cell_index}" if cell_index else ""
    if ename == StoreIOError.__name__:  # the load or save cell could not use the store (disk full...)
        return StepError.store_io(f"{evalue}{where}", cell_index=cell_index, cell_id=cell_id, ename=ename,
                                  evalue=evalue, traceback=plain_traceback(traceback))
    if ename == "SystemExit":
        message = f"exited with sys.exit({evalue}){where}"
    else:
        message = f"{ename}: {evalue}{where}"
    plain = plain_traceback(traceback)
    return StepError("error", message, cell_index, cell_id, ename, evalue, plain, failing_line(plain))


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# IPython's frame header for code run from a cell: "Cell In[4], line 7" (older: "Input In [4]").
_CELL_FRAME = re.compile(r"^(?:Cell In ?\[\d*\]|Input In ?\[\d*\]), line (\d+)", re.M)


def plain_traceback(lines: list[str]) -> list[str]:
    """The kernel's traceback without terminal colour codes (records and JSON hold plain text)."""
    return [_ANSI.sub("", line) for line in lines]


def failing_line(plain: list[str]) -> int | None:
    """The line of the cell being run where the error was raised: the first cell frame."""
    for entry in plain:
        found = _CELL_FRAME.search(entry)
        if found:
            return int(found.group(1))
    return None


def early_exit(comp, executed, run_save) -> StepError | None:
    """papermill's sys.exit(0): the step succeeds and its remaining cells do not run.

    The save cell then runs through `run_save(source) -> execute_reply` (in the step's still-live
    kernel), so what the cells before the exit defined is passed on. Only an output a later step
    reads that the skipped cells would have defined fails the step, naming those outputs and the
    cell that exited.
    """
    own = [executed.cells[i] for i in own_cell_positions(executed)] if executed is not None else []
    ran = [c for c in own if c.get("execution_count") is not None]
    last_ran = ran[-1] if ran else None
    if last_ran is None:
        return StepError("early_exit", f"step '{comp.name}' stopped before running its cells")
    idx = last_ran.metadata["nb2pipe"]["source_cell"]
    content = run_save(executed.cells[-1].source).get("content", {})
    if content.get("status") == "ok":
        return None
    if content.get("ename") == StepOutputMissing.__name__:
        return StepError("early_exit", f"step '{comp.name}' exited (sys.exit) at cell {idx} before defining "
                                       f"what later steps read: {content.get('evalue')}", idx, last_ran.get("id"),
                         "SystemExit", "0")
    return StepError("serialization", f"{content.get('ename')}: {content.get('evalue')}", None, None,
                     content.get("ename"), content.get("evalue"), plain_traceback(content.get("traceback", [])))


def last_started_cell(partial: Path) -> tuple[int | None, str | None]:
    try:
        nb = nbformat.read(str(partial), as_version=4)
    except Exception:
        return None, None
    cell = _last_started(nb)
    if cell is None or "source_cell" not in cell.metadata.get("nb2pipe", {}):
        return None, None
    return cell.metadata["nb2pipe"]["source_cell"], cell.get("id")


def _last_started(nb):
    """The last cell papermill started (running, or closed by its finally after the kernel died)."""
    last = None
    for cell in nb.cells:
        if cell.metadata.get("papermill", {}).get("status") in ("running", "completed", "failed"):
            last = cell
    return last


INTERRUPTED_TAG = "nb2pipe-interrupted"


def mark_interrupted(partial: Path, message: str) -> tuple[int | None, str | None]:
    """Put a banner at the top of the kept notebook and an anchor before the cell that was
    running when the step stopped (timeout, dead kernel, cancel), as papermill does for a cell
    error; returns that cell's (source index, id). A notebook that was never written stays so."""
    try:
        nb = nbformat.read(str(partial), as_version=4)
    except Exception:
        return None, None
    nb.cells = [c for c in nb.cells if INTERRUPTED_TAG not in c.metadata.get("tags", [])]
    running = _last_started(nb)
    where = ""
    if running is not None:
        source = running.metadata.get("nb2pipe", {}).get("source_cell")
        where = f" while running cell {source}" if source else " while running the step's generated code"
        anchor = nbformat.v4.new_markdown_cell(f'<span style="color:red;font-family:Helvetica Neue, Helvetica, '
                                               f'Arial, sans-serif;font-size:2em;">{_escape(message)}: this cell '
                                               "was running</span>")
        anchor.metadata["tags"] = [INTERRUPTED_TAG]
        nb.cells.insert(nb.cells.index(running), anchor)
    banner = nbformat.v4.new_markdown_cell(f'<span style="color:red;font-family:Helvetica Neue, Helvetica, Arial, '
                                           f'sans-serif;font-size:2em;">nb2pipe: {_escape(message)}{where}; the '
                                           "cells after it did not run.</span>")
    banner.metadata["tags"] = [INTERRUPTED_TAG]
    nb.cells.insert(0, banner)
    from nb2pipe.store.files import write_text

    write_text(partial, nbformat.writes(nb))
    if running is None:
        return None, None
    source = running.metadata.get("nb2pipe", {}).get("source_cell")
    return source, running.get("id") if source is not None else None


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def _exc_cell(cells: list, exc):
    """The cell a PapermillExecutionError points at (its index counts no banner cells)."""
    index = getattr(exc, "cell_index", -1)
    return cells[index] if isinstance(index, int) and 0 <= index < len(cells) else None


def _first_real_error(cells: list):
    """(cell, ename, evalue, traceback) of the first error that fails the step, decided as papermill
    does (sys.exit(0) is no error) but honouring nbclient's `raises-exception` tag; else None."""
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        allowed = RAISES_EXCEPTION_TAG in cell.metadata.get("tags", [])
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error" or allowed:
                continue
            if out.get("ename") == "SystemExit" and out.get("evalue") in ("", "0"):
                continue
            return cell, out.get("ename"), out.get("evalue"), list(out.get("traceback") or [])
        if not allowed and cell.metadata.get("papermill", {}).get("exception") is True:
            return cell, "CellExecutionError", "", []
    return None


def _move_error_banner(nb, cell) -> None:
    """Point papermill's error banner and anchor at `cell` (papermill marked an allowed error)."""
    from papermill.execute import ERROR_ANCHOR_MSG, ERROR_MESSAGE_TEMPLATE

    nb.cells = [c for c in nb.cells if PAPERMILL_ERROR_TAG not in c.metadata.get("tags", [])]
    banner = nbformat.v4.new_markdown_cell(ERROR_MESSAGE_TEMPLATE % str(cell.get("execution_count")))
    anchor = nbformat.v4.new_markdown_cell(ERROR_ANCHOR_MSG)
    banner.metadata["tags"] = [PAPERMILL_ERROR_TAG]
    anchor.metadata["tags"] = [PAPERMILL_ERROR_TAG]
    nb.cells.insert(nb.cells.index(cell), anchor)
    nb.cells.insert(0, banner)
