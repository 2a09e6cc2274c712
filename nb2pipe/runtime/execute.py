"""Executing one step notebook in a ready kernel: the part the local runner and the in-image
step runtime share, so a step fails, times out and exits early the same way everywhere.

papermill runs the notebook into `partial` (saved at start, end and every 30 s of a long cell;
not after every cell, since each save re-validates the whole notebook); a watchdog kills the
kernel at the step's timeout; failures are located at their source cell (failures.py); a
`sys.exit(0)` ends the step as papermill does, and still runs the save cell; and the executed notebook is published
atomically as `final`. The caller owns the kernel and discards it afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from nb2pipe.model.records import StepError


def execute_step(comp, step_nb, partial: Path, final: Path, out_dir: Path, km, *, kernel_name: str,
                 parameters: dict | None, timeout: float | None, start_timeout: float = 60,
                 log_output: bool = False, cancelled: Callable[[], bool] = lambda: False,
                 on_event: Callable[[dict], None] | None = None) -> StepError | None:
    """Run `step_nb` in the started kernel `km`; None when the step succeeded.

    `on_event` receives a ``cell`` event as each of the step's own cells starts and an ``output``
    event for each stream message the kernel sends (see execution/events.py for the schema).
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from nb2pipe.runtime.engine import ENGINE_NAME, StepProgress
    from nb2pipe.runtime.failures import cell_error, early_exit, last_started_cell, mark_interrupted
    from nb2pipe.runtime.kernels import execute_in, kill_kernel
    from nb2pipe.runtime.stepio import DONE_MARKER
    from nb2pipe.store.files import publish

    timed_out = threading.Event()
    timer = None
    if timeout:
        def expire():
            timed_out.set()
            kill_kernel(km)
        timer = threading.Timer(float(timeout), expire)
        timer.daemon = True
        timer.start()
    error: StepError | None = None
    executed = None
    try:
        executed = papermill.execute_notebook(
            step_nb, str(partial), parameters=parameters or None, kernel_name=kernel_name, km=km,
            engine_name=ENGINE_NAME, progress_bar=False, log_output=log_output, execution_timeout=timeout,
            start_timeout=start_timeout, request_save_on_cell_execute=False, autosave_cell_every=30,
            step_progress=StepProgress(step_nb, on_event) if on_event is not None else None,
            partial_path=str(partial),
        )
    except PapermillExecutionError as exc:
        error = cell_error(partial, exc)
        if error is None:  # only allowed errors (raises-exception): execution went on
            executed = nbformat.read(str(partial), as_version=4)
    except Exception as exc:
        error = _died(exc, comp, timeout, timed_out.is_set(), cancelled())
    finally:
        if timer is not None:
            timer.cancel()
    if timed_out.is_set():
        error = StepError("timeout", f"step '{comp.name}' timed out after {timeout} s", *last_started_cell(partial))
    if error is not None and error.reason in ("timeout", "kernel_died", "cancelled"):
        # The kept notebook shows the cells run so far and a banner at the one that was running;
        # the error names that cell.
        cell_index, cell_id = mark_interrupted(partial, error.message)
        if error.cell_index is None and cell_index is not None:
            error.cell_index, error.cell_id = cell_index, cell_id
            error.message += f" at cell {cell_index}"
    if error is None and not (Path(out_dir) / DONE_MARKER).exists():
        error = early_exit(comp, executed, lambda source: asyncio.run(execute_in(km, source)))
    publish(partial, final)
    return error


def _died(exc: Exception, comp, timeout, timed_out: bool, cancelled: bool) -> StepError:
    """An execution that ended without a cell error: classified by the exception's type."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from nb2pipe.runtime.kernels import KernelStartError

    if cancelled:
        return StepError("cancelled", "cancelled while running")
    if timed_out or isinstance(exc, CellTimeoutError):
        return StepError("timeout", f"step '{comp.name}' timed out after {timeout} s")
    if isinstance(exc, (DeadKernelError, KernelStartError)):
        return StepError("kernel_died", f"kernel died while running step '{comp.name}'")
    return StepError("error", f"{type(exc).__name__}: {exc}")

