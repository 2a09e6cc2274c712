"""Injected: a full disk under the store (a small tmpfs) and a read-only store (a read-only bind
mount), each in a private mount namespace (`unshare -m`, as root) so nothing outside the test sees
them. A full store fails the step with reason enospc and exit 74, names the fix, leaves no partial
object, and the next run with space reuses what finished; a read-only store can still be read
(runs list, runs show, status, nb2pipe.load, store verify), while a run is refused with exit 74 before any step."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nbbuild import NB2PIPE, ROOT, cli, cli_env, make_nb


def _namespaces_work() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _namespaces_work(), reason="needs root and mount namespaces (unshare -m)")

NB2PIPE_CMD = " ".join(shlex.quote(p) for p in NB2PIPE)


def _in_namespace(script: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """`script` (bash) in a private mount namespace: its mounts end with it."""
    return subprocess.run(["unshare", "-m", "bash", "-c", script], cwd=cwd, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_a_full_store_fails_the_step_with_exit_74_and_loses_nothing(tmp_path):
    make_nb(tmp_path, [("step:make", "data = b'x' * 6_000_000"), ("step:use", "n = len(data)")], "full.ipynb")
    store = tmp_path / ".nb2pipe"
    store.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    q = shlex.quote
    script = f"""
set -u
mount -t tmpfs -o size=3m tmpfs {q(str(store))}
{NB2PIPE_CMD} run full.ipynb >{q(str(out / 'run1.out'))} 2>{q(str(out / 'run1.err'))}; echo $? >{q(str(out / 'rc1'))}
find {q(str(store))} -type f | sort >{q(str(out / 'files'))}
{NB2PIPE_CMD} runs show latest --notebook full.ipynb --json >{q(str(out / 'show.json'))}
mount -o remount,size=64m {q(str(store))}
{NB2PIPE_CMD} run full.ipynb >{q(str(out / 'run2.out'))} 2>&1; echo $? >{q(str(out / 'rc2'))}
{NB2PIPE_CMD} run full.ipynb >{q(str(out / 'run3.out'))} 2>&1; echo $? >{q(str(out / 'rc3'))}
{NB2PIPE_CMD} store verify --store {q(str(store))} >{q(str(out / 'verify'))} 2>&1; echo $? >{q(str(out / 'rc4'))}
"""
    proc = _in_namespace(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    read = lambda name: (out / name).read_text()  # noqa: E731
    assert read("rc1").strip() == "74", read("run1.out") + read("run1.err")
    assert "Traceback" not in read("run1.out") + read("run1.err")
    summary = read("run1.out")
    assert "make failed: cannot write" in summary and "No space left on device" in summary
    assert "free space on the store's disk" in summary
    record = json.loads(read("show.json"))
    assert record["reason"] == "enospc" and record["exit_code"] == 74
    make = next(s for s in record["steps"] if s["name"] == "make")
    assert make["error"]["reason"] == "enospc" and make["attempts"] == 1  # not retried against a full disk
    files = read("files").splitlines()
    assert not [f for f in files if "/objects/" in f or "/outputs/" in f or ".tmp" in f], files  # nothing partial
    assert any(f.endswith("make/attempt-1/step.ipynb") for f in files)  # the partial notebook is kept
    assert read("rc2").strip() == "0", read("run2.out")
    assert read("rc3").strip() == "0" and "2 cached" in read("run3.out"), read("run3.out")
    assert read("rc4").strip() == "0", read("verify")


def _mount_read_only(store: Path) -> str:
    q = shlex.quote(str(store))
    return f"mount --bind {q} {q} && mount -o remount,bind,ro {q}"


def _db_digest(store: Path) -> str:
    return hashlib.sha256((store / "runs.db").read_bytes()).hexdigest()


def test_a_read_only_store_can_be_read_but_not_run_into(tmp_path):
    make_nb(tmp_path, [("parameters", "n = 3"), ("step:make", "data = list(range(n))"),
                       ("step:use", "total = sum(data)"), ("metrics", "total")], "ro.ipynb")
    assert cli("run", "ro.ipynb", cwd=tmp_path).returncode == 0
    store = tmp_path / ".nb2pipe"
    before = _db_digest(store)
    load = (f"{shlex.quote(sys.executable)} -c 'import nb2pipe; "
            "print(nb2pipe.load(\"data\", notebook=\"ro.ipynb\"))'")
    cases = {
        "list": f"{NB2PIPE_CMD} runs list --notebook ro.ipynb --json",
        "show": f"{NB2PIPE_CMD} runs show latest --notebook ro.ipynb",
        "status": f"{NB2PIPE_CMD} status ro.ipynb",
        "load": load,
        "verify": f"{NB2PIPE_CMD} store verify --store .nb2pipe",
        "run": f"{NB2PIPE_CMD} run ro.ipynb -p n 4",
    }
    got = {name: _in_namespace(f"{_mount_read_only(store)} && {cmd}", tmp_path) for name, cmd in cases.items()}
    for name in ("list", "show", "status", "load", "verify"):
        assert got[name].returncode == 0, (name, got[name].stderr)
        assert "Traceback" not in got[name].stderr
    assert json.loads(got["list"].stdout)[0]["metrics"][0]["value"] == 3
    assert "succeeded" in got["show"].stdout
    assert "0 would run" in got["status"].stdout
    assert got["load"].stdout.strip() == "[0, 1, 2]"
    assert "store is sound" in got["verify"].stdout
    assert got["run"].returncode == 74, got["run"].stderr
    assert "not writable" in got["run"].stderr and str(store) in got["run"].stderr
    assert "Traceback" not in got["run"].stderr
    assert _db_digest(store) == before
    assert len(json.loads(cli("runs", "list", "--notebook", "ro.ipynb", "--json", cwd=tmp_path).stdout)) == 1


def test_a_read_only_store_shows_a_dead_runner_as_crashed_without_writing(tmp_path):
    make_nb(tmp_path, [("step:slow", "import time\ntime.sleep(120)\nx = 1"), ("step:after", "y = x")], "slow.ipynb")
    runner = subprocess.Popen([*NB2PIPE, "run", "slow.ipynb"], cwd=tmp_path, env=cli_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    store = tmp_path / ".nb2pipe"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the step is recorded as running
        try:
            with sqlite3.connect(store / "runs.db") as db:
                if db.execute("SELECT 1 FROM steps WHERE status = 'running'").fetchone():
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.2)
    else:
        runner.kill()
        pytest.fail("the step never started")
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    time.sleep(0.5)  # the kernel follows its runner
    before = _db_digest(store)
    seen = _in_namespace(f"{_mount_read_only(store)} && {NB2PIPE_CMD} runs list --notebook slow.ipynb --json",
                         tmp_path)
    assert seen.returncode == 0, seen.stderr
    [run] = json.loads(seen.stdout)
    assert run["status"] == "crashed" and run["reason"] == "runner died"
    assert [s["status"] for s in run["steps"]] == ["failed", "pending"]
    assert _db_digest(store) == before  # read, not written
    written = json.loads(cli("runs", "list", "--notebook", "slow.ipynb", "--json", cwd=tmp_path).stdout)
    assert written[0]["status"] == "crashed"  # a writable reader records it
    assert _db_digest(store) != before


def test_namespace_helper_leaves_no_mount_behind(tmp_path):
    """The mounts above live only in their namespace: the real folder stays writable."""
    store = tmp_path / "s"
    store.mkdir()
    assert _in_namespace(f"{_mount_read_only(store)} && ! touch {shlex.quote(str(store / 'x'))}",
                         tmp_path).returncode == 0
    (store / "y").write_text("ok")
    assert ROOT.exists()
