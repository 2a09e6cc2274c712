"""nb2pipe.runtime.kernels: a kernel that dies while it starts (a port taken meanwhile) is started again."""

from __future__ import annotations

import socket

import pytest

from nb2pipe.runtime import kernels
from nb2pipe.runtime.kernels import START_ATTEMPTS, KernelPool, KernelStartError

pytestmark = pytest.mark.kernel


@pytest.fixture
def taken_port():
    """A TCP port something else holds, as another kernel on the machine may."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def on_taken_port(monkeypatch, port: int, times: int) -> list:
    """The first `times` kernels the pool creates are given `port` for IOPub (as a race would)."""
    real = kernels.forked_kernel_manager
    made = []

    def manager(zygote, kernel_name):
        km = real(zygote, kernel_name)
        if len(made) < times:
            km.cache_ports = False  # else jupyter_client picks the ports itself
            km.iopub_port = port
        made.append(km)
        return km

    monkeypatch.setattr(kernels, "forked_kernel_manager", manager)
    return made


def test_a_kernel_that_died_at_start_is_started_again_on_new_ports(tmp_path, monkeypatch, taken_port):
    made = on_taken_port(monkeypatch, taken_port, times=1)
    pool = KernelPool("python3", str(tmp_path), log_path=str(tmp_path / "kernels.log"))
    try:
        km = pool.acquire()
        assert len(made) == 2 and km is made[1] and km.iopub_port != taken_port
        pool.discard(km)
    finally:
        pool.close()
    assert "Address already in use" in (tmp_path / "kernels.log").read_text()


def test_it_gives_up_after_a_few_attempts(tmp_path, monkeypatch, taken_port):
    made = on_taken_port(monkeypatch, taken_port, times=START_ATTEMPTS)
    pool = KernelPool("python3", str(tmp_path), log_path=str(tmp_path / "kernels.log"))
    try:
        with pytest.raises(KernelStartError, match="kernel died before replying to kernel_info"):
            pool.acquire()
    finally:
        pool.close()
    assert len(made) == START_ATTEMPTS
