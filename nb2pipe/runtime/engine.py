"""The papermill engine nb2pipe executes steps with.

It is papermill's own nbclient engine with one change: the kernel arrives pre-started and already
proven ready by the KernelPool, so connecting to it does one kernel_info round trip (and waits for
one IOPub message, which proves the subscription is live) instead of jupyter_client's
wait_for_ready, whose IOPub flush always sleeps 0.2 s. Registered with papermill's engine
registry as "nb2pipe".
"""

from __future__ import annotations

import os

import nbformat
from nbclient.util import ensure_async, run_hook, run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

from nb2pipe.runtime.kernels import handshake

ENGINE_NAME = "nb2pipe"


class StepProgress:
    """What the client sees of a step, as step events: a cell of the step's own starting, and
    each stream message its kernel sends (stdout/stderr as the step prints)."""

    def __init__(self, step_nb, emit):
        own = [c.metadata["nb2pipe"]["source_cell"] for c in step_nb.cells
               if "source_cell" in c.metadata.get("nb2pipe", {})]
        self._position = {source: i for i, source in enumerate(own, 1)}
        self._count = len(own)
        self._emit = emit

    def cell_started(self, cell, cell_index: int, **_) -> None:
        source = cell.metadata.get("nb2pipe", {}).get("source_cell")
        if source in self._position:
            self._emit({"type": "cell", "cell_index": self._position[source], "cells": self._count,
                        "source_cell": source, "cell_id": cell.get("id")})

    def message(self, msg: dict) -> None:
        if msg.get("msg_type") == "stream":
            content = msg.get("content") or {}
            self._emit({"type": "output", "stream": content.get("name", "stdout"), "text": content.get("text", "")})


class StepClient(PapermillNotebookClient):
    step_progress: StepProgress | None = None

    def process_message(self, msg, cell, cell_index):
        output = super().process_message(msg, cell, cell_index)
        if self.step_progress is not None:
            self.step_progress.message(msg)
        return output

    async def async_start_new_kernel_client(self):
        assert self.km is not None
        self.kc = self.km.client()
        await ensure_async(self.kc.start_channels())
        try:
            await handshake(self.kc, self.startup_timeout)
        except Exception:
            self.kc.stop_channels()
            raise
        self.kc.allow_stdin = False
        await run_hook(self.on_notebook_start, notebook=self.nb)
        return self.kc

    # nbclient binds its sync wrapper to the base coroutine at class creation: rebind it.
    start_new_kernel_client = run_sync(async_start_new_kernel_client)


class StepEngine(NBClientEngine):
    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                 stderr_file=None, start_timeout=60, execution_timeout=None, step_progress=None,
                                 partial_path=None, **kwargs):
        kwargs = remove_args(["input_path"], **kwargs)
        # papermill records where it read and wrote: the attempt folder, a path of this machine.
        # The executed notebook keeps only the file name (it is saved to nb_man's own path).
        meta = nb_man.nb.metadata.get("papermill", {})
        for key in ("input_path", "output_path"):
            if isinstance(meta.get(key), str) and meta[key]:
                meta[key] = os.path.basename(meta[key])
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = merge_kwargs(
            safe_kwargs,
            timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=logger,  # papermill's logger, as its own engine passes: log_output goes there
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
        )
        if step_progress is not None:
            final_kwargs["on_cell_start"] = step_progress.cell_started
        client = StepClient(nb_man, **final_kwargs)
        client.step_progress = step_progress
        try:
            return client.execute()
        except BaseException:
            # A timeout, a dead kernel or a cancel: papermill writes nothing then (saves are off
            # during execution), so keep the cells run so far, with their outputs, ourselves.
            if partial_path is not None:
                from nb2pipe.store.files import write_text

                write_text(partial_path, nbformat.writes(nb_man.nb))
            raise
        finally:
            if client.kc is not None:  # nbclient leaves the channels of a borrowed kernel open
                client.kc.stop_channels()


papermill_engines.register(ENGINE_NAME, StepEngine)
