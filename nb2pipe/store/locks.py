"""The store's collection lock (`<root>/gc.lock`): what keeps gc from deleting an object a live run is
about to name.

An object becomes referenced only when the record naming it commits: the runner publishes a step's
outputs, then records the step; a cache hit finds another run's outputs, checks them, then records
them as its own. In between, the object is unreferenced and gc would take it. So the runner holds the
lock shared for each such window (many runs at once, milliseconds each), and gc holds it exclusive
while it decides what is unreferenced and deletes it: a window either commits before gc looks, or
starts after gc has finished (a cache entry gc removed is then a miss). flock(2) locks go with the
process, so a runner killed inside a window never leaves the store locked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nb2pipe.errors import StoreBusyError, StoreIOError

LOCK_NAME = "gc.lock"


@contextmanager
def _locked(root: str | os.PathLike, mode: int, timeout: float, what: str) -> Iterator[None]:
    path = Path(root) / LOCK_NAME
    cloexec = getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | cloexec, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or mode != fcntl.LOCK_SH:
            raise StoreIOError(f"cannot open the store's lock {path}: {exc.strerror or exc}") from exc
        # A store this process may only read (verify without --repair): flock works on a read-only
        # descriptor; with no lock file, nothing ever published or collected in it.
        try:
            fd = os.open(path, os.O_RDONLY | cloexec)
        except FileNotFoundError:
            yield
            return
        except OSError as again:
            raise StoreIOError(f"cannot open the store's lock {path}: {again.strerror or again}") from again
    try:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise StoreIOError(f"cannot lock {path}: {exc.strerror or exc}") from exc
                if time.monotonic() >= deadline:
                    raise StoreBusyError(f"{what}: the store {root} stayed locked for more than {timeout:g} s "
                                         "(another nb2pipe command holds it); retry when it finishes") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


def publishing(root: str | os.PathLike, timeout: float = 60.0) -> Iterator[None]:
    """Shared: a runner between putting (or finding) objects and committing the record naming them."""
    return _locked(root, fcntl.LOCK_SH, timeout, "recording a step")


def collecting(root: str | os.PathLike, timeout: float = 60.0) -> Iterator[None]:
    """Exclusive: gc while it decides what is unreferenced and deletes it."""
    return _locked(root, fcntl.LOCK_EX, timeout, "store gc")
