"""The papermill engine nb2pipe executes steps with.

It is papermill's own nbclient engine with one change: the kernel arrives pre-started and already
proven ready by the KernelPool, so connecting to it does one kernel_info round trip (and waits for
one IOPub message, which proves the subscription is live) instead of jupyter_client's
wait_for_ready, whose IOPub flush always sleeps 0.2 s. Registered with papermill's engine
registry as "nb2pipe".
"""

from __future__ import annotations

from nbclient.util import ensure_async, run_hook, run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

from nb2pipe.runtime.kernels import handshake

ENGINE_NAME = "nb2pipe"


class StepClient(PapermillNotebookClient):
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
                                 stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
        kwargs = remove_args(["input_path"], **kwargs)
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
        client = StepClient(nb_man, **final_kwargs)
        try:
            return client.execute()
        finally:
            if client.kc is not None:  # nbclient leaves the channels of a borrowed kernel open
                client.kc.stop_channels()


papermill_engines.register(ENGINE_NAME, StepEngine)
