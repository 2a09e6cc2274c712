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
import itertools
import os
import shutil
import signal
import tempfile
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from nb2pipe.errors import ExitCode, Nb2pipeError

SOCKETS_PREFIX = "nb2pipe-k-"  # + the owning process's pid + "-" + random


def remove_stale_socket_folders() -> None:
    """Remove kernel socket folders whose owning process no longer exists (a SIGKILLed runner
    whose kernels were not forked by the fork server, which removes its own)."""
    from nb2pipe.store.processes import pid_alive

    base = tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith(SOCKETS_PREFIX):
            continue
        owner = name[len(SOCKETS_PREFIX):].split("-", 1)[0]
        path = os.path.join(base, name)
        if owner.isdigit() and not pid_alive(int(owner)) and os.stat(path).st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)


# As nbclient does: keep step code out of the user's IPython history (and its sqlite lock).
KERNEL_ARGS = ("--HistoryManager.hist_file=:memory:",)


# A kernel that dies while it starts is started again, with new ports, up to this many times in all.
START_ATTEMPTS = 3


class KernelStartError(Nb2pipeError):
    """A kernel did not start, or the pool is shutting down (the step fails as kernel_died)."""

    exit_code = ExitCode.KERNEL_DIED


class KernelDiedAtStart(KernelStartError):
    """The kernel process exited before it answered kernel_info."""


class KernelPool:
    def __init__(self, kernel_name: str, cwd: str, startup_timeout: float = 60, starters: int = 2,
                 log_path: str | None = None, env: dict[str, str] | None = None):
        self.kernel_name = kernel_name
        self.env = dict(env or {})  # added to this process's environment for every kernel
        # Kernel stderr (start-up warnings, crash messages) goes to a log, not the user's terminal.
        self._log = open(log_path, "ab") if log_path else None
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self._starting: deque[Future] = deque()
        self._lock = threading.Lock()
        self._live: set = set()  # every kernel manager we started and have not killed
        self._closed = False
        self._starter = ThreadPoolExecutor(max_workers=starters, thread_name_prefix="nb2pipe-kstart")
        self._log_path = log_path
        # Kernels talk over Unix sockets in a private folder, not TCP ports: kernels that several
        # runs (or processes) start at the same moment can never collide on a port, and no other
        # user of the machine can connect to them. Their connection files (with the HMAC key) live
        # there too; the folder goes with the pool, or with the fork server when the runner is
        # SIGKILLed, and a later pool removes any left by a runner that is gone.
        remove_stale_socket_folders()
        self._sockets = tempfile.mkdtemp(prefix=f"{SOCKETS_PREFIX}{os.getpid()}-")
        self._numbers = itertools.count()
        self._zygote: Zygote | None = None
        if os.environ.get("NB2PIPE_FORK_KERNELS", "1") != "0" and zygote_compatible(kernel_name):
            self._zygote = Zygote(cwd, log_path, self._sockets)
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
        self._reaper.submit(kill_kernel, km)

    def kill_all(self) -> None:
        """Kill every kernel this pool started, including those in use (cancel, timeout)."""
        with self._lock:
            live = list(self._live)
            self._live.clear()
        for km in live:
            kill_kernel(km)

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
        if self._zygote is not None:
            self._zygote.close()
        if self._log is not None and wait:
            self._log.close()
        shutil.rmtree(self._sockets, ignore_errors=True)

    def _start_one(self):
        # A kernel that dies as it starts (its sockets could not be bound, a transient fault) is
        # started again, with new socket paths; one that cannot start at all fails the same way
        # every time, and the last attempt's error is the step's.
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return asyncio.run(self._start())
            except KernelStartError as exc:
                if attempt == START_ATTEMPTS or self._closed or not isinstance(exc.__cause__, KernelDiedAtStart):
                    raise

    async def _start(self):
        # An async kernel manager: nbclient needs an async client so that it can notice a dead
        # kernel while waiting for a reply (a blocking client would wait forever).
        from jupyter_client.manager import AsyncKernelManager

        number = next(self._numbers)
        ipc = {"transport": "ipc", "ip": os.path.join(self._sockets, f"k{number}"),
               "connection_file": os.path.join(self._sockets, f"k{number}.json")}
        if self._zygote is not None:
            km = forked_kernel_manager(self._zygote, self.kernel_name, **ipc)
        else:
            km = AsyncKernelManager(kernel_name=self.kernel_name, **ipc)
        streams = {"stdout": self._log, "stderr": self._log} if self._log is not None else {}
        extra = {"env": {**os.environ, **self.env}} if self.env else {}
        await km.start_kernel(cwd=self.cwd, extra_arguments=list(KERNEL_ARGS), **streams, **extra)
        with self._lock:
            self._live.add(km)
            closed = self._closed
        if closed:
            self.discard(km)
            raise KernelStartError("the run is shutting down")
        kc = km.client()
        try:
            kc.start_channels()
            await handshake(kc, self.startup_timeout)
        except Exception as exc:
            self.discard(km)
            raise KernelStartError(f"kernel '{self.kernel_name}' did not start: {exc}") from exc
        finally:
            kc.stop_channels()
        return km


async def handshake(kc, timeout: float) -> None:
    """Prove a kernel is ready: one kernel_info reply on shell and one message on IOPub.

    jupyter_client's wait_for_ready does the same but always sleeps 0.2 s flushing IOPub.
    """
    import time
    from queue import Empty

    deadline = time.monotonic() + timeout
    while True:
        if not await kc.is_alive():
            raise KernelDiedAtStart("kernel died before replying to kernel_info")
        msg_id = kc.kernel_info()
        try:
            while True:
                reply = await kc.get_shell_msg(timeout=1)
                if reply.get("parent_header", {}).get("msg_id") == msg_id:
                    break
        except Empty:
            if time.monotonic() > deadline:
                raise TimeoutError("kernel did not reply to kernel_info") from None
            continue
        try:  # any IOPub message proves the SUB socket is connected (ZMQ slow joiner)
            await kc.get_iopub_msg(timeout=0.05)
            return
        except Empty:
            if time.monotonic() > deadline:
                raise TimeoutError("kernel IOPub channel did not connect") from None


async def execute_in(km, code: str) -> dict:
    """Run `code` in a live kernel and return its execute_reply (outputs are dropped)."""
    kc = km.client()
    kc.start_channels()
    try:
        return await kc.execute_interactive(code, timeout=600, output_hook=lambda msg: None)
    finally:
        kc.stop_channels()


def kill_kernel(km) -> None:
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


class Zygote:
    """Client side of the kernel fork server (see zygote.py)."""

    def __init__(self, cwd: str, log_path: str | None, sockets: str | None = None):
        import subprocess
        import sys

        self.log_path = log_path
        self._lock = threading.Lock()
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nb2pipe.runtime.zygote", *([sockets] if sockets else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=log, cwd=cwd, start_new_session=True,
        )
        if log_path:
            log.close()
        self._ready = None

    def wait_ready(self, timeout: float) -> None:
        import json
        import select

        if self._ready is not None:
            return
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            raise KernelStartError("the kernel fork server did not start")
        self._ready = json.loads(line)["ready"]

    def spawn(self, connection_file: str, cwd: str, env: dict, timeout: float) -> int:
        import json

        with self._lock:
            self.wait_ready(timeout)
            request = {"connection_file": connection_file, "cwd": cwd, "env": env, "log": self.log_path,
                       "argv": list(KERNEL_ARGS)}
            try:
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
                reply = json.loads(self.proc.stdout.readline() or b'{"error": "fork server exited"}')
            except (OSError, ValueError) as exc:
                raise KernelStartError(f"the kernel fork server failed: {exc}") from exc
        if "pid" not in reply:
            raise KernelStartError(f"the kernel fork server failed: {reply.get('error')}")
        return reply["pid"]

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)
        except Exception:
            self.proc.kill()


class ForkedProcess:
    """The Popen-like view jupyter_client's provisioner needs of a kernel the zygote forked.

    The kernel is the zygote's child, not ours: liveness is read from /proc, and the zygote
    reaps it.
    """

    stdin = stdout = stderr = None  # the provisioner closes these if set

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            try:
                with open(f"/proc/{self.pid}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
                if state in (b"Z", b"X"):
                    self.returncode = -9
            except (OSError, IndexError):
                self.returncode = -9
        return self.returncode

    def wait(self, timeout=None):
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                import subprocess

                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except OSError:
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def zygote_compatible(kernel_name: str) -> bool:
    """True when the kernelspec launches this interpreter's own ipykernel."""
    import sys

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        return False
    argv = list(spec.argv)
    if spec.env or len(argv) < 4 or argv[1:3] != ["-m", "ipykernel_launcher"]:
        return False
    exe = argv[0]
    same = exe in ("python", "python3") or os.path.realpath(exe) == os.path.realpath(sys.executable)
    return same and argv[3:] == ["-f", "{connection_file}"]


def forked_kernel_manager(zygote: Zygote, kernel_name: str, **options):
    """An AsyncKernelManager whose kernel is forked by the zygote instead of launched."""
    from jupyter_client.manager import AsyncKernelManager

    class ForkedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            prov = self.provisioner
            env = dict(kw.get("env") or os.environ)
            cwd = str(kw.get("cwd") or os.getcwd())
            pid = await asyncio.to_thread(zygote.spawn, self.connection_file, cwd, env, 60)
            prov.process = ForkedProcess(pid)
            prov.pid, prov.pgid, prov.cwd = pid, pid, cwd
            self._reconcile_connection_info(prov.connection_info)

    return ForkedKernelManager(kernel_name=kernel_name, **options)
