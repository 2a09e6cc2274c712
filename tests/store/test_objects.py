from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
import tempfile
from pathlib import Path

import pytest

from nb2pipe.errors import StoreError, StoreIOError
from nb2pipe.store.objects import TEMP_PREFIX, ObjectStore, check_sha256, sha256_file


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temp_leftovers(store: ObjectStore) -> list[str]:
    return [p.name for p in store.objects_dir.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_put_bytes_layout_and_read_only(tmp_path):
    store = ObjectStore(tmp_path / "store")
    data = b"hello objects"
    digest = store.put_bytes(data)
    assert digest == sha(data)
    path = store.path(digest)
    assert path == tmp_path / "store" / "objects" / digest[:2] / digest[2:]
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.exists(digest)
    with store.open(digest) as f:
        assert f.read() == data
    assert store.put_bytes(data) == digest  # idempotent
    assert list(store.iter_objects()) == [digest]
    assert temp_leftovers(store) == []


def test_put_file_move_hashes_and_removes_source(tmp_path):
    store = ObjectStore(tmp_path / "store")
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 1000)
    digest = store.put_file(src)
    assert digest == sha(b"x" * 1000)
    assert not src.exists()
    assert store.path(digest).read_bytes() == b"x" * 1000
    assert stat.S_IMODE(store.path(digest).stat().st_mode) == 0o444

    # the same content again: already there, source still consumed, still one object
    src.write_bytes(b"x" * 1000)
    assert store.put_file(src) == digest
    assert not src.exists()
    assert list(store.iter_objects()) == [digest]
    assert temp_leftovers(store) == []


def test_put_file_copy_keeps_source(tmp_path):
    store = ObjectStore(tmp_path / "store")
    src = tmp_path / "a.bin"
    src.write_bytes(b"keep me")
    digest = store.put_file(src, move=False)
    assert digest == sha(b"keep me")
    assert src.read_bytes() == b"keep me"
    assert stat.S_IMODE(src.stat().st_mode) != 0o444  # the source is not the object
    assert store.verify(digest)


def test_put_file_trusts_given_hash_but_checks_sizes(tmp_path):
    store = ObjectStore(tmp_path / "store")
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    digest = sha(b"abc")
    assert store.put_file(src, digest, size=3) == digest
    assert store.verify(digest)

    other = tmp_path / "b.bin"
    other.write_bytes(b"abcd")
    with pytest.raises(StoreError, match="size"):
        store.put_file(other, digest)  # an object of that name exists with another size
    assert other.exists()  # refused puts leave the source alone
    with pytest.raises(StoreError, match="size"):
        store.put_file(other, sha(b"abcd"), size=3)


def test_put_file_missing_source(tmp_path):
    store = ObjectStore(tmp_path / "store")
    with pytest.raises(StoreIOError):
        store.put_file(tmp_path / "nope")


def test_put_file_across_filesystems(tmp_path):
    other_fs = Path("/dev/shm")
    if not other_fs.is_dir() or other_fs.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem to move from")
    src = Path(tempfile.mkstemp(dir=other_fs)[1])
    try:
        src.write_bytes(b"from elsewhere")
        store = ObjectStore(tmp_path / "store")
        digest = store.put_file(src)
        assert digest == sha(b"from elsewhere")
        assert not src.exists()
        assert store.verify(digest)
        assert stat.S_IMODE(store.path(digest).stat().st_mode) == 0o444
        assert temp_leftovers(store) == []
    finally:
        src.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "../" + "a" * 61, "A" * 64, "g" * 64, "a" * 63, "a" * 65, "a" * 62 + "/x", None],
)
def test_bad_sha_is_refused(tmp_path, bad):
    store = ObjectStore(tmp_path / "store")
    with pytest.raises(StoreError, match="invalid object id"):
        store.path(bad)
    with pytest.raises(StoreError):
        store.exists(bad)
    with pytest.raises(StoreError):
        store.verify(bad)
    with pytest.raises(StoreError):
        store.open(bad)
    if bad is not None:  # put_file(sha256=None) means "hash it"
        src = tmp_path / "a"
        src.write_bytes(b"a")
        with pytest.raises(StoreError):
            store.put_file(src, bad)
        assert src.exists()


def test_check_sha256_accepts_real_hashes():
    digest = sha(b"")
    assert check_sha256(digest) == digest


def test_verify_detects_a_flipped_byte(tmp_path):
    store = ObjectStore(tmp_path / "store")
    digest = store.put_bytes(os.urandom(4096))
    assert store.verify(digest)
    path = store.path(digest)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    assert not store.verify(digest)
    path.unlink()
    assert not store.verify(digest)
    with pytest.raises(StoreError, match="missing"):
        store.open(digest)


def test_iter_objects_ignores_temps_and_strays(tmp_path):
    store = ObjectStore(tmp_path / "store")
    assert list(store.iter_objects()) == []
    digests = sorted(store.put_bytes(bytes([i])) for i in range(5))
    (store.objects_dir / f"{TEMP_PREFIX}123-abc").write_bytes(b"partial")
    (store.objects_dir / "README").write_text("stray")
    (store.objects_dir / digests[0][:2] / "short").write_text("stray")
    assert sorted(store.iter_objects()) == digests


def test_gc_temp(tmp_path):
    store = ObjectStore(tmp_path / "store")
    digest = store.put_bytes(b"keep")
    assert store.gc_temp() == 0
    tmp = store.objects_dir / f"{TEMP_PREFIX}999-deadbeef"
    tmp.write_bytes(b"abandoned")
    old = os.stat(tmp).st_mtime - 7200
    os.utime(tmp, (old, old))
    # a rename/chmod refreshes ctime: a file just moved in is young even with an old mtime
    assert store.gc_temp(older_than_s=3600) == 0
    assert tmp.exists()
    assert store.gc_temp(older_than_s=0) == 1
    assert not tmp.exists()
    assert store.exists(digest) and store.verify(digest)


# -- concurrency ------------------------------------------------------------------------------


def _put_worker(root: str, src: str, move: bool, barrier, results) -> None:
    store = ObjectStore(root)
    barrier.wait()
    try:
        results.put(("ok", store.put_file(src, move=move)))
    except BaseException as e:  # reported to the parent, which fails the test
        results.put(("error", f"{type(e).__name__}: {e}"))


def _run_concurrent_puts(root: Path, sources: list[Path], move: bool) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(sources))
    results = ctx.Queue()
    procs = [ctx.Process(target=_put_worker, args=(str(root), str(s), move, barrier, results)) for s in sources]
    for p in procs:
        p.start()
    out = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return out


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(5 << 20)


def test_concurrent_puts_of_the_same_file(tmp_path, payload):
    root = tmp_path / "store"
    shared = tmp_path / "shared.bin"
    shared.write_bytes(payload)
    results = _run_concurrent_puts(root, [shared] * 8, move=False)
    expected = sha(payload)
    assert results == [("ok", expected)] * 8
    store = ObjectStore(root)
    assert list(store.iter_objects()) == [expected]
    assert store.verify(expected)
    assert stat.S_IMODE(store.path(expected).stat().st_mode) == 0o444
    assert temp_leftovers(store) == []
    assert shared.read_bytes() == payload


def test_concurrent_moves_of_identical_files(tmp_path, payload):
    root = tmp_path / "store"
    sources = []
    for i in range(8):
        src = tmp_path / f"copy{i}.bin"
        src.write_bytes(payload)
        sources.append(src)
    results = _run_concurrent_puts(root, sources, move=True)
    expected = sha(payload)
    assert results == [("ok", expected)] * 8
    store = ObjectStore(root)
    assert list(store.iter_objects()) == [expected]
    assert sha256_file(store.path(expected)) == expected
    assert temp_leftovers(store) == []
    assert not any(s.exists() for s in sources)
