"""A pool of pre-started kernels, so a step never waits for a kernel to boot.

Starting an IPython kernel costs about half a second, almost all of it the kernel importing
itself. The runner asks the pool to keep a few kernels booting ahead of the steps that will need
them, so that start-up overlaps with the steps running now. Kernels are never reused: each step
gets a fresh process (no state leaks between steps), and a used kernel is killed in the
background at once rather than shut down gracefully (jupyter_client's graceful shutdown can wait
seconds, and a step's results are already saved by then).

Kernels run in their own session (jupyter_client starts them with start_new_session), so killing
one kills its child processes too; ipykernel exits by itself if the runner dies (JPY_PARENT_PID).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor


class KernelStartError(Exception):
    pass


class KernelPool:
    def __init__(self, kernel_name: str, cwd: str, startup_timeout: float = 60, starters: int = 2,
                 log_path: str | None = None):
        self.kernel_name = kernel_name
        # Kernel stderr (start-up warnings, crash messages) goes to a log, not the user's terminal.
        self._log = open(log_path, "ab") if log_path else None
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self._starting: deque[Future] = deque()
        self._lock = threading.Lock()
        self._live: set = set()  # every kernel manager we started and have not killed
        self._closed = False
        self._starter = ThreadPoolExecutor(max_workers=starters, thread_name_prefix="nb2pipe-kstart")
        self._reaper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nb2pipe-kkill")

    def prefill(self, count: int) -> None:
        """Make sure at least `count` kernels are booted or booting."""
        with self._lock:
            while not self._closed and len(self._starting) < count:
                self._starting.append(self._starter.submit(self._start_one))

    def acquire(self):
        """A ready kernel manager (waits for one that is booting, or boots one)."""
        with self._lock:
            if self._closed:
                raise KernelStartError("the run is shutting down")
            future = self._starting.popleft() if self._starting else None
        if future is None:
            future = self._starter.submit(self._start_one)
        try:
            return future.result()
        except KernelStartError:
            raise
        except Exception as exc:  # jupyter_client raises many kinds here
            raise KernelStartError(f"kernel '{self.kernel_name}' did not start: {exc}") from exc

    def discard(self, km) -> None:
        """Kill a kernel in the background; never wait for it."""
        with self._lock:
            self._live.discard(km)
        self._reaper.submit(_kill, km)

    def kill_all(self) -> None:
        """Kill every kernel this pool started, including those in use (cancel, timeout)."""
        with self._lock:
            live = list(self._live)
            self._live.clear()
        for km in live:
            _kill(km)

    def close(self, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._starting)
            self._starting.clear()
        for f in pending:
            f.cancel()
        self._starter.shutdown(wait=True)
        self.kill_all()
        self._reaper.shutdown(wait=wait)
        if self._log is not None and wait:
            self._log.close()

    def _start_one(self):
        return asyncio.run(self._start())

    async def _start(self):
        # An async kernel manager: nbclient needs an async client so that it can notice a dead
        # kernel while waiting for a reply (a blocking client would wait forever).
        from jupyter_client.manager import AsyncKernelManager

        km = AsyncKernelManager(kernel_name=self.kernel_name)
        streams = {"stdout": self._log, "stderr": self._log} if self._log is not None else {}
        await km.start_kernel(cwd=self.cwd, **streams)
        with self._lock:
            self._live.add(km)
            closed = self._closed
        if closed:
            self.discard(km)
            raise KernelStartError("the run is shutting down")
        kc = km.client()
        try:
            kc.start_channels()
            await kc.wait_for_ready(timeout=self.startup_timeout)
        except Exception as exc:
            self.discard(km)
            raise KernelStartError(f"kernel '{self.kernel_name}' did not start: {exc}") from exc
        finally:
            kc.stop_channels()
        return km

    def owns(self, km) -> bool:
        with self._lock:
            return km in self._live


def _kill(km) -> None:
    # SIGKILL the kernel's whole process group first (its children too), from any thread, without
    # touching the manager's state; then let the manager clean up its files in a private loop.
    pgid = getattr(km.provisioner, "pgid", None) if km.provisioner is not None else None
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    try:
        asyncio.run(km.shutdown_kernel(now=True))
    except Exception:
        pass


def kill_kernel_now(km) -> None:
    """Kill one kernel immediately (used by the timeout watchdog)."""
    _kill(km)


def available_kernels() -> list[str]:
    from jupyter_client.kernelspec import KernelSpecManager

    return sorted(KernelSpecManager().find_kernel_specs())
