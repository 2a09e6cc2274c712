"""A kernel fork server: kernels that start in tens of milliseconds, each in a clean process.

Most of an IPython kernel's ~0.5 s start is the interpreter importing ipykernel, IPython, zmq and
tornado. The zygote is a process that has done those imports once and then waits on stdin; for
each request it forks a child that becomes a brand-new kernel (IPKernelApp, its own sockets,
threads and user namespace, created after the fork). Nothing user-visible exists in the zygote,
so every kernel starts from the same clean state as a freshly launched one.

Protocol (JSON lines): the runner writes {"connection_file", "cwd", "env", "log"}; the zygote
answers {"pid": N} or {"error": "..."}. The zygote reaps its children, and exits when its stdin
closes (the runner ended or died, even by SIGKILL). Before it exits it kills the process group of
every kernel it forked (each kernel leads its own session), so a kernel stuck in C code and the
processes a step started end with the runner, not only when the runner shuts down in order.

Only used when the notebook's kernelspec is this interpreter's own ipykernel; any other kernel
is launched the ordinary way.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def _reap(signum, frame) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(request: dict) -> None:
    """In the forked child: become a kernel. Never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # user code may wait on its own children
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()  # own process group: killing the kernel kills what it spawned
        log = os.open(request.get("log") or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["JPY_PARENT_PID"] = str(os.getppid())  # for subprocesses that look for it
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False, buffering=1)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        sys.path[0] = request["cwd"]  # as `python -m ipykernel_launcher` run in that folder
        from ipykernel.kernelapp import IPKernelApp

        # ipykernel read JPY_PARENT_PID when the zygote imported it, before this fork: name the
        # parent explicitly so the kernel's parent poller exits it when the zygote goes away.
        parent = f"--IPKernelApp.parent_handle={os.getppid()}"
        IPKernelApp.launch_instance(argv=["-f", request["connection_file"], parent, *request.get("argv", [])])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def main() -> None:
    # The expensive imports every kernel needs, done once; nothing is started or instantiated.
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import ipykernel.zmqshell  # noqa: F401
    import IPython.core.interactiveshell  # noqa: F401

    for optional in ("ipykernel.debugger", "IPython.core.debugger", "IPython.core.completerlib",
                     "IPython.core.oinspect", "IPython.extensions.storemagic"):
        try:  # what a kernel imports while it initialises (debugpy is the big one)
            __import__(optional)
        except Exception:
            pass

    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides what a Ctrl-C means
    out = sys.stdout
    forked: list[int] = []
    print(json.dumps({"ready": os.getpid()}), file=out, flush=True)
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            print(json.dumps({"error": "bad request"}), file=out, flush=True)
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            print(json.dumps({"error": f"fork failed: {exc}"}), file=out, flush=True)
            continue
        if pid == 0:
            _child(request)
        forked.append(pid)
        print(json.dumps({"pid": pid}), file=out, flush=True)
    for pid in forked:  # stdin closed: the runner is gone; so is everything its steps started
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    if len(sys.argv) > 1:  # the pool's private folder of sockets and connection files (HMAC keys)
        import shutil

        shutil.rmtree(sys.argv[1], ignore_errors=True)


if __name__ == "__main__":
    main()
