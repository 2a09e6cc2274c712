"""Content-addressed object store: immutable files named by the sha256 of their bytes.

Objects live at ``<root>/objects/<sha[:2]>/<sha[2:]>``. Paths are derived from a validated hash
only, never from user-supplied names. Every object is first placed under a unique temp name in
``<root>/objects`` (same filesystem) and then hard-linked to its final name: the link either
creates the object or fails because an identical one already exists, so any number of processes
can put the same content at once and end with exactly one object and no leftovers.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from nb2pipe.errors import StoreError, StoreIOError
from nb2pipe.store.pauses import pause

_SHA_RE = re.compile(r"[0-9a-f]{64}")
_TAIL_RE = re.compile(r"[0-9a-f]{62}")
_PREFIX_RE = re.compile(r"[0-9a-f]{2}")
TEMP_PREFIX = ".tmp-"
_CHUNK = 1 << 20
# link() is unsupported on some filesystems (FAT, some FUSE/network mounts): fall back to rename.
_NO_LINK_ERRNOS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA_RE.fullmatch(value) is not None


def check_sha256(value: object) -> str:
    """Return ``value`` if it is 64 lowercase hex characters, else raise StoreError."""
    if not is_sha256(value):
        raise StoreError(f"invalid object id {value!r}: expected 64 lowercase hex characters")
    return value  # type: ignore[return-value]


def sha256_file(path: str | os.PathLike) -> str:
    """Hash a file in fixed-size chunks (constant memory, one reusable buffer)."""
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def _io_error(action: str, path: object, exc: OSError) -> StoreIOError:
    return StoreIOError(f"cannot {action} {os.fspath(path)}: {exc.strerror or exc}")


class ObjectStore:
    """Immutable, read-only (0o444) objects addressed by sha256 under ``root/objects``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.objects_dir = self.root / "objects"

    # -- addressing ---------------------------------------------------------------------------

    def path(self, sha: str) -> Path:
        check_sha256(sha)
        return self.objects_dir / sha[:2] / sha[2:]

    def exists(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def open(self, sha: str) -> BinaryIO:
        path = self.path(sha)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise StoreError(f"object {sha} is missing from {self.objects_dir}") from None
        except OSError as e:
            raise _io_error("open", path, e) from e

    def verify(self, sha: str) -> bool:
        """Rehash the object; False if it is missing or its bytes no longer match its name."""
        path = self.path(sha)
        try:
            return sha256_file(path) == sha
        except FileNotFoundError:
            return False
        except OSError as e:
            raise _io_error("read", path, e) from e

    def intact(self, sha: str, size: int, rehash_limit: int) -> bool:
        """Whether the object is there with its size and, when it is at most `rehash_limit`
        bytes, still hashes to its name (objects are read before a cached result is trusted)."""
        try:
            if self.path(sha).stat().st_size != size:
                return False
        except OSError:
            return False
        return size > rehash_limit or self.verify(sha)

    def remove_damaged(self, sha: str) -> None:
        """Delete an object whose bytes no longer match its name, so that the step that made it
        writes it again (the store would otherwise keep the damaged file under the right name)."""
        path = self.path(sha)
        try:
            path.chmod(0o600)
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _io_error("remove", path, e) from e

    def iter_objects(self) -> Iterator[str]:
        try:
            prefixes = sorted(os.listdir(self.objects_dir))
        except FileNotFoundError:
            return
        for prefix in prefixes:
            if not _PREFIX_RE.fullmatch(prefix):
                continue
            try:
                names = sorted(os.listdir(self.objects_dir / prefix))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                if _TAIL_RE.fullmatch(name):
                    yield prefix + name

    # -- writing ------------------------------------------------------------------------------

    def put_file(
        self,
        src: str | os.PathLike,
        sha256: str | None = None,
        move: bool = True,
        *,
        size: int | None = None,
    ) -> str:
        """Store the file ``src`` and return its sha256.

        A given ``sha256`` is trusted (the kernel hashed while writing) and only checked cheaply
        against sizes; ``verify`` rehashes. With ``move`` the source is renamed into the store
        (no copy) and is gone afterwards; without it the source is copied and left alone.
        """
        src = os.fspath(src)
        if sha256 is not None:
            check_sha256(sha256)
        try:
            src_stat = os.stat(src)
        except OSError as e:
            raise _io_error("read", src, e) from e
        src_size = src_stat.st_size
        if size is not None and size != src_size:
            raise StoreError(f"{src}: size {src_size} does not match the expected {size}")

        if sha256 is None and move:
            # The final name is needed before the move; hashing is the only way to get it.
            try:
                sha256 = sha256_file(src)
            except OSError as e:
                raise _io_error("read", src, e) from e
        if sha256 is not None and self._present(sha256, src_size):
            if move:
                _unlink_quietly(src)
            return sha256

        tmp = self._new_temp_path()
        renamed = False
        try:
            if move:
                try:
                    os.replace(src, tmp)
                    renamed = True
                except OSError as e:
                    if e.errno != errno.EXDEV:
                        raise _io_error("move", src, e) from e
                    self._copy_into(src, tmp, hash_it=False)
            else:
                copied_sha = self._copy_into(src, tmp, hash_it=sha256 is None)
                sha256 = sha256 or copied_sha
            assert sha256 is not None
            pause("object-written")
            self._publish(tmp, sha256, src_size)
        except BaseException:
            if renamed:  # a failed put must not eat the caller's file
                try:
                    os.replace(tmp, src)
                    os.chmod(src, stat.S_IMODE(src_stat.st_mode))
                except OSError:
                    pass
            raise
        finally:
            _unlink_quietly(tmp)
        if move and not renamed:
            _unlink_quietly(src)  # copied across filesystems: the source goes only after success
        return sha256

    def put_bytes(self, data: bytes | bytearray | memoryview) -> str:
        sha = hashlib.sha256(data).hexdigest()
        size = memoryview(data).nbytes
        if self._present(sha, size):
            return sha
        tmp = self._new_temp_path()
        try:
            fd = self._create_temp(tmp)
            try:
                with open(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise _io_error("write", tmp, e) from e
            self._publish(tmp, sha, size)
        finally:
            _unlink_quietly(tmp)
        return sha

    def gc_temp(self, older_than_s: float = 3600) -> int:
        """Remove temp files abandoned by crashed writers; returns how many were removed."""
        now = time.time()
        removed = 0
        try:
            entries = list(os.scandir(self.objects_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not entry.name.startswith(TEMP_PREFIX):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            # rename keeps the source's mtime but bumps ctime; the later of the two is when the
            # temp was last touched, so a freshly moved-in old file is not mistaken for garbage.
            if now - max(st.st_mtime, st.st_ctime) < older_than_s:
                continue
            try:
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as e:
                raise _io_error("remove", entry.path, e) from e
        return removed

    # -- internals ----------------------------------------------------------------------------

    def _present(self, sha: str, size: int) -> bool:
        """True if the object exists; a size mismatch means the given hash was wrong."""
        path = self.path(sha)
        try:
            existing = os.stat(path).st_size
        except FileNotFoundError:
            return False
        except OSError as e:
            raise _io_error("stat", path, e) from e
        if existing != size:
            raise StoreError(
                f"object {sha} exists with size {existing}, but the new content has size {size}: "
                "the given sha256 is wrong or the store is corrupt (run verify)"
            )
        return True

    def _new_temp_path(self) -> Path:
        try:
            self.objects_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _io_error("create", self.objects_dir, e) from e
        return self.objects_dir / f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(8).hex()}"

    @staticmethod
    def _create_temp(tmp: Path) -> int:
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            raise _io_error("create", tmp, e) from e

    def _copy_into(self, src: str, tmp: Path, *, hash_it: bool) -> str | None:
        """Copy ``src`` to the new temp file ``tmp`` (fsynced), hashing the bytes on the way."""
        digest = hashlib.sha256() if hash_it else None
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        fd = self._create_temp(tmp)
        try:
            with open(fd, "wb", buffering=0) as out, open(src, "rb", buffering=0) as inp:
                while n := inp.readinto(buf):
                    chunk = view[:n]
                    if digest is not None:
                        digest.update(chunk)
                    while chunk:
                        chunk = chunk[out.write(chunk) :]
                os.fsync(out.fileno())
        except OSError as e:
            raise _io_error("copy", src, e) from e
        return digest.hexdigest() if digest is not None else None

    def _publish(self, tmp: Path, sha: str, size: int) -> None:
        """Give the temp file its final name unless an identical object got there first."""
        final = self.path(sha)
        try:
            os.chmod(tmp, 0o444)
            final.parent.mkdir(exist_ok=True)
        except OSError as e:
            raise _io_error("prepare", tmp, e) from e
        try:
            os.link(tmp, final)
        except FileExistsError:
            self._present(sha, size)  # someone else stored it; make sure it is the same size
        except OSError as e:
            if e.errno not in _NO_LINK_ERRNOS:
                raise _io_error("store", final, e) from e
            try:
                os.replace(tmp, final)  # identical content, so replacing a concurrent winner is harmless
            except OSError as e2:
                raise _io_error("store", final, e2) from e2


def _unlink_quietly(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _io_error("remove", path, e) from e
