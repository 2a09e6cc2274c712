"""Where a step runs: the environment fingerprint, versions and the notebook's git commit."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from nb2pipe.errors import StoreIOError
from nb2pipe.store.files import write_json


def fingerprint(cache_dir: str | os.PathLike | None = None) -> str:
    """sha256 over the Python version and every installed distribution with its version.

    Listing distributions costs tens of milliseconds, so the result is cached on disk keyed by
    the modification times of sys.path folders (an install or uninstall changes them).
    """
    stamp = _path_stamp()
    cache = Path(cache_dir) / "env-fingerprint.json" if cache_dir else None
    if cache is not None:
        try:
            saved = json.loads(cache.read_text())
            if saved.get("stamp") == stamp:
                return saved["fingerprint"]
        except (OSError, ValueError, KeyError):
            pass
    from importlib import metadata

    dists = sorted({(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions()}.items())
    payload = json.dumps({"python": sys.version, "implementation": platform.python_implementation(),
                          "distributions": dists}, sort_keys=True)
    value = hashlib.sha256(payload.encode()).hexdigest()
    if cache is not None:
        try:
            write_json(cache, {"stamp": stamp, "fingerprint": value})
        except StoreIOError:
            pass  # only a cache
    return value


def _path_stamp() -> str:
    parts = []
    for entry in sys.path:
        # Only folders that hold installed distributions: the cwd and source trees change with
        # every file written there.
        if not (entry.endswith(("site-packages", "dist-packages")) or entry.endswith(".zip")):
            continue
        try:
            parts.append(f"{entry}:{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            continue
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def git_commit(folder: str | os.PathLike) -> str | None:
    """HEAD of the git repository holding `folder`, or None (no git, not a repository)."""
    probe = Path(folder).resolve()
    if not any((p / ".git").exists() for p in (probe, *probe.parents)):
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=probe, capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def runtime_info(cache_dir=None, folder=None, kernel_name: str | None = None, executor: str = "local") -> dict:
    from nb2pipe._version import __version__

    return {
        "nb2pipe_version": __version__,
        "python_version": platform.python_version(),
        "env_fingerprint": fingerprint(cache_dir),
        "git_commit": git_commit(folder) if folder else None,
        "kernel_name": kernel_name,
        "executor": executor,
    }
