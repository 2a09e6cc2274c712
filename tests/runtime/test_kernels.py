"""The kernel pool: kernels on Unix sockets in a private folder (no TCP port to collide on),
killed and cleaned up with the pool."""

from __future__ import annotations

import os
import stat

import pytest

from nb2pipe.runtime.kernels import KernelPool

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("fork", ["1", "0"])
def test_kernels_use_ipc_sockets_in_a_private_folder_removed_on_close(tmp_path, monkeypatch, fork):
    monkeypatch.setenv("NB2PIPE_FORK_KERNELS", fork)
    pool = KernelPool("python3", str(tmp_path), log_path=str(tmp_path / "kernels.log"))
    try:
        first, second = pool.acquire(), pool.acquire()
        for km in (first, second):
            assert km.transport == "ipc" and km.ip.startswith(pool._sockets)
        assert first.ip != second.ip  # one socket prefix per kernel
        assert stat.S_IMODE(os.stat(pool._sockets).st_mode) == 0o700
        assert any(name.startswith(os.path.basename(first.ip)) for name in os.listdir(pool._sockets))
        pool.discard(first)
        pool.discard(second)
    finally:
        pool.close(wait=True)
    assert not os.path.exists(pool._sockets)
