"""`nb2pipe run` and `nb2pipe runs` as subprocesses: exit codes, JSON output, signals, crashes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from nbbuild import NB2PIPE, check_store, cli, cli_env, make_nb, sha256_of

import nb2pipe

pytestmark = pytest.mark.kernel


def strict_json(text: str):
    """json.loads that refuses NaN/Infinity (what `allow_nan=False` promises)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def explain(proc) -> str:
    """stderr plus the step errors of a --json record on stdout, for assertion messages."""
    text = proc.stderr
    try:
        record = json.loads(proc.stdout)
        text += "\n" + "\n".join(f"{s['name']}: {s['status']}: {s['error']}" for s in record["steps"])
    except (ValueError, KeyError, TypeError):
        text += proc.stdout[-2000:]
    return text


def steps_of(record: dict) -> dict[str, dict]:
    return {s["name"]: s for s in record["steps"]}


def status_of(record: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in record["steps"]}


# --- processes this test started ---------------------------------------------------------------

class Tracked:
    """A CLI subprocess whose whole process tree (kernels included) carries a unique env token,
    so the test can find exactly the processes it caused, wherever they were re-parented."""

    def __init__(self, *args, cwd=None):
        self.token = uuid.uuid4().hex
        env = cli_env()
        env["NB2PIPE_TEST_TOKEN"] = self.token
        self.proc = subprocess.Popen([*NB2PIPE, *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def processes(self) -> dict[int, str]:
        """Live processes (not zombies) carrying the token: pid -> command line."""
        marker = f"NB2PIPE_TEST_TOKEN={self.token}".encode()
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    environ = f.read()
                if marker not in environ.split(b"\0"):
                    continue
                with open(f"/proc/{entry}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
                if state in (b"Z", b"X"):
                    continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except (OSError, IndexError):
                continue
        return found

    def wait_gone(self, timeout: float) -> dict[int, str]:
        deadline = time.monotonic() + timeout
        while True:
            left = self.processes()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def communicate(self, timeout: float = 60):
        return self.proc.communicate(timeout=timeout)

    def cleanup(self) -> None:
        """Kill whatever this test's processes left behind (by pid), so nothing outlives the test."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before {path.name} appeared:\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} did not appear within {timeout}s")
        time.sleep(0.05)


# --- JSON output, runs list/show/compare, paths, metrics ---------------------------------------

def test_json_output_runs_commands_and_notebook_relative_paths(tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    nb = make_nb(project, [
        ("parameters", "scale = 2"),
        ("step:read", "with open('data.txt') as f:\n    text = f.read()"),
        ("step:score", "accuracy = len(text) / 10 * scale\nsamples = 7\nloss = float('nan')\n"
                       "ratio = float('inf')"),
        ("metrics", "accuracy\nsamples\nloss\nratio"),
    ])
    (project / "data.txt").write_text("hello")
    store = tmp_path / "store"
    before = sha256_of(nb)

    # Run from another working directory: the step still finds data.txt beside the notebook.
    first = cli("run", nb, "--store", store, "--json", cwd=elsewhere)
    assert first.returncode == 0, explain(first)
    record = strict_json(first.stdout)  # stdout is exactly one JSON document
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    assert status_of(record) == {"read": "succeeded", "score": "succeeded"}
    metrics = {m["name"]: m for m in record["metrics"]}
    assert metrics["accuracy"] == {"name": "accuracy", "value": 1.0, "flag": None}
    assert metrics["samples"]["value"] == 7
    assert metrics["loss"]["flag"] == "nan" and metrics["loss"]["value"] == "NaN"
    assert metrics["ratio"]["flag"] == "inf" and metrics["ratio"]["value"] == "Infinity"
    assert not (elsewhere / ".nb2pipe").exists() and not (project / ".nb2pipe").exists()

    second = cli("run", nb, "--store", store, "--json", "-p", "scale", "3", cwd=elsewhere)
    assert second.returncode == 0, explain(second)
    record2 = strict_json(second.stdout)
    assert status_of(record2) == {"read": "cached", "score": "succeeded"}
    assert record2["parameters"] == {"scale": 3}
    assert sha256_of(nb) == before

    listed = cli("runs", "list", "--store", store, "--json")
    assert listed.returncode == 0, explain(listed)
    runs = strict_json(listed.stdout)
    assert [r["id"] for r in runs] == [record2["id"], record["id"]]  # newest first

    shown = cli("runs", "show", record["id"], "--store", store, "--json")
    assert shown.returncode == 0, explain(shown)
    stored = strict_json(shown.stdout)
    assert stored["status"] == "succeeded" and stored["id"] == record["id"]
    assert {m["name"]: m["flag"] for m in stored["metrics"]} == {"accuracy": None, "samples": None,
                                                                  "loss": "nan", "ratio": "inf"}
    assert steps_of(stored)["score"]["inputs"][0]["name"] == "text"

    latest = cli("runs", "show", "latest", "--store", store, "--json")
    assert strict_json(latest.stdout)["id"] == record2["id"]
    text = cli("runs", "show", "latest", "--store", store)
    assert text.returncode == 0 and record2["id"] in text.stdout and "score" in text.stdout
    assert cli("runs", "list", "--store", store).returncode == 0

    compared = cli("runs", "compare", record["id"], record2["id"], "--store", store, "--json")
    assert compared.returncode == 0, explain(compared)
    report = strict_json(compared.stdout)
    assert report["runs"] == [record["id"], record2["id"]]
    rows = {(r["kind"], r["name"]): r for r in report["rows"]}
    assert rows[("parameter", "scale")] == {"kind": "parameter", "name": "scale", "values": [2, 3], "changed": True}
    assert rows[("metric", "accuracy")]["values"] == [1.0, 1.5] and rows[("metric", "accuracy")]["deltas"] == [0, 0.5]
    assert rows[("metric", "samples")]["changed"] is False
    # NaN in both runs is no change; non-finite values are strict JSON text.
    assert rows[("metric", "loss")] == {"kind": "metric", "name": "loss", "values": ["NaN", "NaN"], "changed": False}
    assert rows[("metric", "ratio")]["values"][0] == "Infinity" and rows[("metric", "ratio")]["changed"] is False
    assert cli("runs", "compare", record["id"], record2["id"], "--store", store).returncode == 0

    # Without --json the summary goes to stdout (`run NB > summary.txt`), progress to stderr.
    quiet = cli("run", nb, "--store", store, cwd=elsewhere)
    assert quiet.returncode == 0 and quiet.stdout.startswith("run ") and "succeeded" in quiet.stdout
    assert ": cached" in quiet.stderr and "run " + quiet.stdout.split()[1] not in quiet.stderr
    missing = cli("runs", "show", "nope", "--store", store)
    assert missing.returncode == 2 and "no run matches" in missing.stderr


def test_kernels_launched_without_the_fork_server(tmp_path):
    """Kernels jupyter_client launches itself (any kernelspec the fork server cannot serve)."""
    nb = make_nb(tmp_path, [
        ("step:a", "x = 1"), ("step:b", "y = x + 1"), ("step:c", "z = x + 2"), ("step:d", "print(y + z)"),
    ])
    proc = cli("run", nb, "--store", tmp_path / "store", "--json", "--workers", "2",
               env={"NB2PIPE_FORK_KERNELS": "0"})
    assert proc.returncode == 0, explain(proc)
    assert set(status_of(strict_json(proc.stdout)).values()) == {"succeeded"}


# --- parameters and usage errors ----------------------------------------------------------------

PARAMS_NB = [
    ("parameters", "n = 3\nrate = 0.5\nname = 'abc'\nflag = False\nitems = [1, 2]\nopts = {'a': 1}\nnothing = None"),
    ("step:show", "seen = {'n': n, 'rate': rate, 'name': name, 'flag': flag, 'items': items, 'opts': opts,\n"
                  "        'nothing': nothing}"),
    ("step:use", "count = len(seen)"),
]


def test_text_parameters_of_every_type_and_unknown_parameter(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, PARAMS_NB)
    before = sha256_of(nb)

    unknown = cli("run", nb, "--store", store, "-p", "nn", "1")
    assert unknown.returncode == 2
    assert "unknown parameter 'nn'" in unknown.stderr
    for known in ("n (int)", "rate (float)", "name (str)", "flag (bool)", "items (list)", "opts (dict)",
                  "nothing (NoneType)"):
        assert known in unknown.stderr
    bad = cli("run", nb, "--store", store, "-p", "n", "many")
    assert bad.returncode == 2 and "'n' expects int" in bad.stderr
    assert not (store / "runs").exists()  # nothing was executed

    proc = cli("run", nb, "--store", store, "--json", "-p", "n", "5", "-p", "rate", "1e-3", "-p", "name", "42",
               "-p", "flag", "true", "-p", "items", "[3, 'x']", "-p", "opts", "{b: {c: 1}}", "-p", "nothing",
               "2.5")
    assert proc.returncode == 0, explain(proc)
    record = strict_json(proc.stdout)
    expected = {"n": 5, "rate": 0.001, "name": "42", "flag": True, "items": [3, "x"], "opts": {"b": {"c": 1}},
                "nothing": 2.5}
    seen = nb2pipe.load("seen", run=record["id"], store=store)
    assert seen == expected
    assert {k: type(v) for k, v in seen.items()} == {k: type(v) for k, v in expected.items()}
    assert record["parameters"] == expected

    # -y and -f (typed YAML); -p wins over both.
    (tmp_path / "p.yaml").write_text("n: 8\nitems: []\n")
    proc = cli("run", nb, "--store", store, "--json", "-f", tmp_path / "p.yaml", "-y", "flag: true\nn: 9",
               "-p", "name", "from-p")
    assert proc.returncode == 0, explain(proc)
    seen = nb2pipe.load("seen", run=strict_json(proc.stdout)["id"], store=store)
    assert (seen["n"], seen["items"], seen["flag"], seen["name"]) == (9, [], True, "from-p")
    assert sha256_of(nb) == before


def test_usage_errors_exit_2(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, [("step:a", "x = 1"), ("step:b", "y = x")])
    (tmp_path / "broken.ipynb").write_text("{ not json")
    bad_graph = make_nb(tmp_path, [("step:a", "x = 1"), ("step:b after:nope", "y = 2")], "graph.ipynb")
    cases = [
        (["run", tmp_path / "missing.ipynb", "--store", store], "missing.ipynb"),
        (["run", tmp_path / "broken.ipynb", "--store", store], "broken.ipynb"),
        (["run", bad_graph, "--store", store], "after:nope"),
        (["run", nb, "--store", store, "--step", "bb"], "unknown step 'bb'"),
        (["run", nb, "--store", store, "--step", "a", "--from", "a"], "either --step or --from"),
        (["run", nb, "--store", store, "--step", "b"], "never run"),
        (["run", nb, "--store", store, "-y", "[1, 2]"], "mapping"),
    ]
    for args, needle in cases:
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        assert needle in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())


# --- failures and their exit codes ----------------------------------------------------------------

def test_failing_step_exit_1_with_json_and_fail_fast(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, [
        ("step:a", "x = 1"),
        ("step:b", "y = x\nraise ZeroDivisionError('nope')"),
        ("step:c", "z = y"),
        ("step:d", "w = x"),
    ])
    proc = cli("run", nb, "--store", store, "--json", "--workers", "2")
    assert proc.returncode == 1, explain(proc)
    record = strict_json(proc.stdout)
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert status_of(record) == {"a": "succeeded", "b": "failed", "c": "skipped", "d": "succeeded"}
    err = steps_of(record)["b"]["error"]
    assert (err["cell_index"], err["ename"], err["evalue"]) == (2, "ZeroDivisionError", "nope")

    # Text mode: progress on stderr; the summary on stdout names the failed step, its cell and
    # line, shows the failing line with its neighbours, and paths that open from here.
    text = cli("run", nb, "--store", store, cwd=tmp_path)
    assert text.returncode == 1
    assert "b: failed" in text.stderr and "ZeroDivisionError: nope at cell 2" in text.stderr
    lines = text.stdout.splitlines()
    assert "  b failed at cell 2 [c2], line 2: ZeroDivisionError: nope" in lines
    assert "          1 | y = x" in lines and "    -->   2 | raise ZeroDivisionError('nope')" in lines
    shown = next(line.split(": ", 1)[1] for line in lines if "executed notebook:" in line)
    assert (tmp_path / shown).is_file() and not Path(shown).is_absolute()
    log = next(line.split(": ", 1)[1] for line in lines if line.strip().startswith("output:"))
    assert (tmp_path / log).is_file()
    assert "\x1b" not in json.dumps(record["steps"][1]["error"]["traceback"])  # plain text in JSON
    assert err["line"] == 2

    ff = cli("run", nb, "--store", store, "--json", "--fail-fast", "--workers", "1", "--no-cache")
    assert ff.returncode == 1
    ff_record = strict_json(ff.stdout)
    s = status_of(ff_record)
    assert s["a"] == "succeeded" and s["b"] == "failed" and s["c"] == "skipped"
    # d is independent of b: with one worker it ran before b failed or was never started.
    d = steps_of(ff_record)["d"]
    assert d["status"] in ("succeeded", "skipped")
    if d["status"] == "skipped":
        assert d["started"] is None and "fail-fast" in d["error"]["message"]
    else:
        assert d["ended"] <= steps_of(ff_record)["b"]["started"] + 0.01


def test_timeout_exit_124(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, [
        ("step:slow timeout:2", "import time\ntime.sleep(60)\nvalue = 1"),
        ("step:after", "print(value)"),
    ])
    started = time.monotonic()
    proc = cli("run", nb, "--store", store, "--json", timeout=50)
    took = time.monotonic() - started
    assert proc.returncode == 124, explain(proc)
    assert took < 20, f"the timeout did not stop the step ({took:.1f}s)"
    record = strict_json(proc.stdout)
    slow = steps_of(record)["slow"]
    assert slow["status"] == "failed"
    assert slow["error"]["reason"] == "timeout"
    assert "timed out after 2 s" in slow["error"]["message"]
    assert steps_of(record)["after"]["status"] == "skipped"
    assert record["reason"] == "timeout" and record["exit_code"] == 124


def test_kernel_death_exit_138(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, [
        ("step:ok", "fine = 1"),
        ("step:die", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\nnever = 1"),
        ("step:after", "print(never)"),
    ])
    proc = cli("run", nb, "--store", store, "--json", timeout=60)
    assert proc.returncode == 138, explain(proc)
    record = strict_json(proc.stdout)
    die = steps_of(record)["die"]
    assert die["status"] == "failed" and die["error"]["reason"] == "kernel_died"
    assert status_of(record) == {"ok": "succeeded", "die": "failed", "after": "skipped"}
    assert record["reason"] == "kernel_died" and record["exit_code"] == 138
    shown = strict_json(cli("runs", "show", record["id"], "--store", store, "--json").stdout)
    assert shown["exit_code"] == 138 and shown["status"] == "failed"


# --- cancellation, crashes, concurrency ----------------------------------------------------------

SLOW_NB = [
    ("step:a", "x = 1"),
    ("step:b", "from pathlib import Path\nPath('b_started').touch()\nimport time\ntime.sleep(60)\ny = x"),
    ("step:c", "z = y"),
]


@pytest.mark.parametrize("signum, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_cancel_kills_kernels_and_records_cancelled(tmp_path, signum, code, name):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, SLOW_NB)
    run = Tracked("run", nb, "--store", store)
    try:
        wait_for(tmp_path / "b_started", run.proc)
        # The kernel running b is found by the scan (so the check below can fail).
        during = run.processes()
        assert len(set(during) - {run.proc.pid}) >= 1, during
        run.proc.send_signal(signum)
        started = time.monotonic()
        out, err = run.communicate(timeout=30)
        assert run.proc.returncode == code, err
        assert time.monotonic() - started < 10
        left = run.wait_gone(timeout=3)
        assert not left, f"processes left behind after {name}: {left}"
    finally:
        run.cleanup()
    shown = cli("runs", "show", "latest", "--store", store, "--json")
    record = strict_json(shown.stdout)
    assert record["status"] == "cancelled"
    assert record["exit_code"] == code and name in record["reason"]
    s = status_of(record)
    assert s["a"] == "succeeded" and s["b"] in ("failed", "skipped") and s["c"] == "skipped"
    assert steps_of(record)["b"]["error"]["reason"] == "cancelled"
    assert record["ended"] is not None
    check_store(store)


CRASH_NB = [
    ("step:a", "import numpy as np\nx = np.arange(100_000, dtype=np.float64)"),
    ("step:b", "y = {'total': float(x.sum()), 'items': list(range(1000))}"),
    ("step:c", "from pathlib import Path\nPath('c_started').touch()\n"
               "if Path('block').exists():\n    import time\n    time.sleep(60)\nz = y['total'] * 2"),
    ("step:d", "print(z)"),
]


def test_sigkilled_run_is_marked_crashed_and_the_next_run_resumes(tmp_path):
    store = tmp_path / "store"
    nb = make_nb(tmp_path, CRASH_NB)
    (tmp_path / "block").touch()
    run = Tracked("run", nb, "--store", store)
    try:
        wait_for(tmp_path / "c_started", run.proc)
        run.proc.send_signal(signal.SIGKILL)
        run.communicate(timeout=10)
        assert run.proc.returncode == -signal.SIGKILL
    finally:
        run.cleanup()
    listed = strict_json(cli("runs", "list", "--store", store, "--json").stdout)
    assert len(listed) == 1
    crashed_id = listed[0]["id"]

    (tmp_path / "block").unlink()
    resumed = cli("run", nb, "--store", store, "--json")
    assert resumed.returncode == 0, explain(resumed)
    record = strict_json(resumed.stdout)
    assert status_of(record) == {"a": "cached", "b": "cached", "c": "succeeded", "d": "succeeded"}
    assert steps_of(record)["a"]["cached_from"] == crashed_id

    shown = strict_json(cli("runs", "show", crashed_id, "--store", store, "--json").stdout)
    assert shown["status"] == "crashed"
    crashed_steps = status_of(shown)
    assert crashed_steps["a"] == crashed_steps["b"] == "succeeded"
    assert crashed_steps["c"] == "failed" and steps_of(shown)["c"]["error"]["reason"] == "crashed"
    assert crashed_steps["d"] == "pending"
    assert check_store(store) >= 3


def test_kernels_exit_when_the_runner_is_sigkilled(tmp_path):
    nb = make_nb(tmp_path, SLOW_NB)
    run = Tracked("run", nb, "--store", tmp_path / "store")
    try:
        wait_for(tmp_path / "b_started", run.proc)
        run.proc.send_signal(signal.SIGKILL)
        run.communicate(timeout=10)
        left = run.wait_gone(timeout=4)
        assert not left, f"orphaned processes: {left}"
    finally:
        run.cleanup()


def test_two_runs_at_once_on_one_store(tmp_path):
    store = tmp_path / "store"
    nbs = [
        make_nb(tmp_path / "one", [
            ("step:a", "import numpy as np\ndata = np.ones(200_000)"),
            ("step:b", "s = float(data.sum())"), ("step:c", "t = float(data.mean())"), ("step:d", "print(s, t)"),
        ]),
        make_nb(tmp_path / "two", [
            ("step:a", "import numpy as np\ndata = np.ones(200_000)"),
            ("step:b", "s = float(data.sum()) + 1"), ("step:c", "print(s)"),
        ]),
    ]
    runs = [Tracked("run", nb, "--store", store, "--json", "--workers", "1") for nb in (nbs[0], nbs[1], nbs[0])]
    try:
        results = [r.communicate(timeout=120) for r in runs]
    finally:
        for r in runs:
            r.cleanup()
    records = []
    for r, (out, err) in zip(runs, results):
        assert r.proc.returncode == 0, err
        records.append(strict_json(out))
    for record in records:
        assert record["status"] == "succeeded" and record["ended"] is not None
        for step in record["steps"]:
            assert step["status"] in ("succeeded", "cached"), step
            assert step["ended"] is not None
    listed = strict_json(cli("runs", "list", "--store", store, "--json").stdout)
    assert {r["id"] for r in listed} == {r["id"] for r in records}
    for record in records:
        stored = strict_json(cli("runs", "show", record["id"], "--store", store, "--json").stdout)
        assert stored["status"] == "succeeded"
        assert status_of(stored) == status_of(record)
        for step in stored["steps"]:
            names = {a["name"] for a in step["outputs"]}
            assert names == {a["name"] for a in steps_of(record)[step["name"]]["outputs"]}
    check_store(store)
    assert math.isclose(nb2pipe.load("s", run=records[1]["id"], store=store), 200_001.0)
