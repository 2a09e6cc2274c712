"""The kernel pool: kernels on Unix sockets in a private folder (no TCP port to collide on),
started again when one dies as it starts, killed and cleaned up with the pool and its runner."""

from __future__ import annotations

import os
import stat

import pytest

from nb2pipe.runtime import kernels
from nb2pipe.runtime.kernels import START_ATTEMPTS, KernelPool, KernelStartError

pytestmark = pytest.mark.kernel


def unbindable(monkeypatch, times: int) -> list:
    """The first `times` kernels the pool creates get a socket path that cannot be bound (a
    kernel dying as it starts), the rest the pool's own."""
    real = kernels.forked_kernel_manager
    made = []

    def manager(zygote, kernel_name, **options):
        km = real(zygote, kernel_name, **options)
        if len(made) < times:
            km.ip = "/nonexistent-nb2pipe-folder/k"
        made.append(km)
        return km

    monkeypatch.setattr(kernels, "forked_kernel_manager", manager)
    return made


def test_a_kernel_that_died_at_start_is_started_again(tmp_path, monkeypatch):
    made = unbindable(monkeypatch, times=1)
    pool = KernelPool("python3", str(tmp_path), log_path=str(tmp_path / "kernels.log"))
    try:
        km = pool.acquire()
        assert len(made) == 2 and km is made[1] and km.ip.startswith(pool._sockets)
        pool.discard(km)
    finally:
        pool.close()


def test_it_gives_up_after_a_few_attempts(tmp_path, monkeypatch):
    made = unbindable(monkeypatch, times=START_ATTEMPTS)
    pool = KernelPool("python3", str(tmp_path), log_path=str(tmp_path / "kernels.log"))
    try:
        with pytest.raises(KernelStartError, match="kernel died before replying to kernel_info"):
            pool.acquire()
    finally:
        pool.close()
    assert len(made) == START_ATTEMPTS


@pytest.mark.parametrize("fork", ["1", "0"])
def test_kernels_use_ipc_sockets_in_a_private_folder_removed_on_close(tmp_path, monkeypatch, fork):
    monkeypatch.setenv("NB2PIPE_FORK_KERNELS", fork)
    pool = KernelPool("python3", str(tmp_path), log_path=str(tmp_path / "kernels.log"))
    try:
        first, second = pool.acquire(), pool.acquire()
        for km in (first, second):
            assert km.transport == "ipc" and km.ip.startswith(pool._sockets)
            assert km.connection_file.startswith(pool._sockets)  # the HMAC key stays in the folder
        assert first.ip != second.ip  # one socket prefix per kernel
        assert stat.S_IMODE(os.stat(pool._sockets).st_mode) & 0o777 == 0o700  # (jupyter_client adds the sticky bit)
        assert any(name.startswith(os.path.basename(first.ip)) for name in os.listdir(pool._sockets))
        pool.discard(first)
        pool.discard(second)
    finally:
        pool.close(wait=True)
    assert not os.path.exists(pool._sockets)


def test_a_sigkilled_runner_takes_the_processes_its_steps_started_with_it(tmp_path):
    import signal
    import subprocess
    import time

    from nbbuild import NB2PIPE, cli_env, make_nb

    nb = make_nb(tmp_path, [("step:spawn", "import subprocess, time\n"
                                            "child = subprocess.Popen(['sleep', '300'])\n"
                                            "print('child', child.pid, flush=True)\ntime.sleep(300)")])
    runner = subprocess.Popen([*NB2PIPE, "run", str(nb), "--store", str(tmp_path / "store"), "--events"],
                              env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    child = None
    for line in runner.stdout:
        if '"output"' in line and "child" in line:
            child = int(line.split("child ")[1].split("\\n")[0].split()[0])
            break
    assert child is not None
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=10)
    deadline = time.monotonic() + 10
    while True:
        try:
            with open(f"/proc/{child}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state in (b"Z", b"X"):
            break
        assert time.monotonic() < deadline, "the step's subprocess outlived the SIGKILLed runner"
        time.sleep(0.1)
    # Nor are its kernels' sockets and connection files (which hold the HMAC key) left behind.
    import glob
    import tempfile

    left = lambda: glob.glob(os.path.join(tempfile.gettempdir(), f"nb2pipe-k-{runner.pid}-*"))  # noqa: E731
    deadline = time.monotonic() + 10
    while left():
        assert time.monotonic() < deadline, f"left behind: {left()}"
        time.sleep(0.1)


def test_a_socket_folder_of_a_process_that_is_gone_is_removed(tmp_path):
    import subprocess
    import sys
    import tempfile

    from nb2pipe.runtime.kernels import SOCKETS_PREFIX, remove_stale_socket_folders

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tempfile.mkdtemp(prefix=f"{SOCKETS_PREFIX}{gone}-")
    mine = tempfile.mkdtemp(prefix=f"{SOCKETS_PREFIX}{os.getpid()}-")
    try:
        remove_stale_socket_folders()
        assert not os.path.exists(stale) and os.path.exists(mine)
    finally:
        os.rmdir(mine)
