"""The store's collection lock: runners share it, gc excludes them, a dead holder frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nb2pipe.errors import StoreBusyError
from nb2pipe.store.locks import collecting, publishing


def test_publishers_share_and_gc_waits_for_them(tmp_path):
    with publishing(tmp_path), publishing(tmp_path):  # many runs at once
        with pytest.raises(StoreBusyError, match="store gc"), collecting(tmp_path, timeout=0.2):
            pass
    with collecting(tmp_path, timeout=0.2):
        with pytest.raises(StoreBusyError, match="recording a step"), publishing(tmp_path, timeout=0.2):
            pass


def test_a_holder_killed_inside_its_window_frees_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom nb2pipe.store.locks import publishing\n"
                               f"with publishing({str(tmp_path)!r}):\n    print('in', flush=True)\n"
                               "    time.sleep(60)"], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert holder.stdout.readline().strip() == "in"
    with pytest.raises(StoreBusyError), collecting(tmp_path, timeout=0.2):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    began = time.monotonic()
    with collecting(tmp_path, timeout=5):
        assert time.monotonic() - began < 1
