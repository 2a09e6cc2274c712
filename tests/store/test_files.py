"""Atomic writes: the target holds the old content or the whole new one, and no temp file stays."""

from __future__ import annotations

import json
import os

import pytest

from nb2pipe.errors import StoreIOError
from nb2pipe.store import files


def names(folder):
    return sorted(os.listdir(folder))


def test_writes_replace_the_target(tmp_path):
    target = tmp_path / "result.json"
    files.write_json(target, {"a": 1})
    files.write_json(target, {"b": float("nan")}, indent=2, sort_keys=True, newline=True)
    assert target.read_text().endswith("}\n") and "NaN" in target.read_text()
    files.write_text(tmp_path / "t.txt", "héllo")
    files.write_bytes(tmp_path / "b.bin", b"\x00\x01", fsync=True)
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert names(tmp_path) == ["b.bin", "result.json", "t.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    files.write_json(target, {"old": True})
    with pytest.raises(ValueError):  # strict JSON: NaN refused half-way through the dump
        files.write_json(target, {"fine": 1, "bad": float("nan")}, allow_nan=False)
    assert json.loads(target.read_text()) == {"old": True}
    assert names(tmp_path) == ["metrics.json"]

    with pytest.raises(KeyboardInterrupt), files.atomic_open(target, "w") as f:
        f.write("partial")
        raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"old": True}
    assert names(tmp_path) == ["metrics.json"]


def test_os_errors_become_store_io_errors(tmp_path):
    with pytest.raises(StoreIOError, match="cannot create"):
        files.write_text(tmp_path / "missing-folder" / "x.txt", "x")
    folder = tmp_path / "target-is-a-folder"
    folder.mkdir()
    with pytest.raises(StoreIOError, match="cannot write"):
        files.write_text(folder, "x")
    assert names(tmp_path) == ["target-is-a-folder"]
    with pytest.raises(ValueError):
        with files.atomic_open(tmp_path / "x", "a"):
            pass


def test_publish_moves_a_complete_file_into_place(tmp_path):
    partial, final = tmp_path / "step.partial.ipynb", tmp_path / "step.ipynb"
    files.publish(partial, final)  # nothing written yet: nothing happens
    assert names(tmp_path) == []
    partial.write_text("{}")
    files.publish(partial, final)
    assert names(tmp_path) == ["step.ipynb"] and final.read_text() == "{}"

