"""Atomic file writes: a reader sees the old file or the whole new one, never a part of it.

Each write goes to a temp file of its own in the target's folder (same file system), which is
renamed over the target once complete; on any failure the temp file is removed and the target
is left as it was. So a killed run leaves no half-written record. ``fsync=True`` also flushes
the data to disk before the rename, for files that must survive a power cut as well.

Standard library only: the step runtime uses it inside kernels and containers.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import IO, Any

from nb2pipe.errors import StoreIOError


def create_temp(folder: str | os.PathLike, name: str) -> tuple[int, str]:
    """A new, empty, uniquely named temp file in `folder` for `name`: (open fd, path)."""
    path = os.path.join(os.fspath(folder), f".{name}.{os.urandom(6).hex()}.tmp")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise StoreIOError(f"cannot create {path}: {exc.strerror or exc}") from exc
    return fd, path


def remove_quietly(path: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                fsync: bool = False) -> Iterator[IO[Any]]:
    """Open a temp file for writing ("wb" or "w"); it replaces `path` when the block succeeds."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes only ('wb' or 'w'), not {mode!r}")
    path = os.fspath(path)
    folder, name = os.path.split(path)
    fd, tmp = create_temp(folder or ".", name)
    try:
        with open(fd, mode, encoding=encoding if mode == "w" else None) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        remove_quietly(tmp)
        raise StoreIOError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        remove_quietly(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8", fsync: bool = False) -> None:
    with atomic_open(path, "w", encoding=encoding, fsync=fsync) as f:
        f.write(text)


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = None, sort_keys: bool = False,
               allow_nan: bool = True, newline: bool = False, fsync: bool = False) -> None:
    """`data` as JSON (strict JSON with ``allow_nan=False``; ``newline`` ends the file with one)."""
    with atomic_open(path, "w", encoding="utf-8", fsync=fsync) as f:
        json.dump(data, f, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan)
        if newline:
            f.write("\n")


def publish(partial: str | os.PathLike, final: str | os.PathLike) -> None:
    """Make the complete file `partial` (written in place by someone else, e.g. papermill) the
    file `final`: flushed to disk, then renamed. Nothing happens when `partial` does not exist."""
    try:
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreIOError(f"cannot write {os.fspath(final)}: {exc.strerror or exc}") from exc
    try:
        os.replace(partial, final)
    except OSError as exc:
        raise StoreIOError(f"cannot write {os.fspath(final)}: {exc.strerror or exc}") from exc
