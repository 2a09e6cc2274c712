"""Shared pieces of the fault-injection suite: the mode (NB2PIPE_FAULTS=long runs more cases), the
exit codes README's table allows, and /proc scans for processes a killed runner left behind."""

from __future__ import annotations

import os
import tempfile
import time

LONG = os.environ.get("NB2PIPE_FAULTS", "") == "long"
SEED = int(os.environ.get("NB2PIPE_FAULTS_SEED", "20261202"))

# README, "Exit codes (frozen)".
EXIT_CODES = {0, 1, 2, 3, 74, 75, 124, 130, 143, 138}


def cmdlines() -> dict[int, str]:
    """pid -> command line of every live (non-zombie) process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state in (b"Z", b"X"):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
            continue
        out[int(entry)] = cmd
    return out


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def leftovers(runner_pid: int, known: set[int] = frozenset()) -> dict[int, str]:
    """Processes of a runner that is gone: anything whose command line names the runner's kernel socket
    folder (`/tmp/nb2pipe-k-<pid>-`: the zygote and the kernels it forks carry it), and any process in
    `known` (pids the runner's steps reported) still alive."""
    from nb2pipe.runtime.kernels import SOCKETS_PREFIX

    marker = os.path.join(tempfile.gettempdir(), f"{SOCKETS_PREFIX}{runner_pid}-")
    procs = cmdlines()
    return {pid: cmd for pid, cmd in procs.items()
            if pid != os.getpid() and (marker in cmd or pid in known)}


def wait_no_leftovers(runner_pid: int, known: set[int] = frozenset(), within: float = 10) -> dict[int, str]:
    """Give a kill some seconds to propagate; return what is still alive after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        left = leftovers(runner_pid, known)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)
