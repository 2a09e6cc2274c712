"""Is the process that recorded a run still there?"""

from __future__ import annotations

import os

from nb2pipe.store.processes import pid_alive


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert pid_alive(1)  # init: someone else's process still counts
    assert not pid_alive(0) and not pid_alive(-1)
    assert not pid_alive(2**22 + 12345)  # above Linux's pid_max
