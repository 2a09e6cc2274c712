"""What `pytest --nb2pipe` costs over `nb2pipe run`, and how fast it collects.

    python benchmarks/bench_pytest.py [--quick]

(i)  `pytest --nb2pipe linear10.ipynb` (12 items: validate, export, ten steps; a fresh temporary
     store, so every step executes) against `nb2pipe run linear10.ipynb` on a fresh store, both
     in fresh processes (pytest's own start-up and plugin loading included): target <= 1.3x;
(j)  collecting 20 notebooks (copies of the three examples: 128 items) with `pytest --nb2pipe
     --collect-only`: pytest's own collection time, target <= 1 s; the whole command, interpreter
     start-up included, is printed too.

Both sides of (i) alternate (A B A B ...), so a machine that is busier during one half does not
favour the other. Exit 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_runs import fmt, linear10, print_targets

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def plugin_args() -> list[str]:
    """`-p nb2pipe.pytest_plugin` only when the pytest11 entry point is not installed."""
    installed = any(ep.name == "nb2pipe" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "nb2pipe.pytest_plugin"]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args(argv)
    n = 3 if args.quick else 7
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("NB2PIPE_STORE", None)
    pytest_cmd = [sys.executable, "-m", "pytest", *plugin_args(), "--nb2pipe", "-q", "-p", "no:cacheprovider"]
    results = []
    with tempfile.TemporaryDirectory(prefix="nb2pipe-bench-pytest-") as tmp:
        work = Path(tmp)
        nb = linear10(work)
        store = work / "store"

        def run_cli():
            shutil.rmtree(store, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "nb2pipe", "run", str(nb), "--store", str(store)], cwd=work,
                           env=env, check=True, capture_output=True)

        def run_pytest():
            proc = subprocess.run([*pytest_cmd, f"--basetemp={work / 'basetemp'}", nb.name], cwd=work, env=env,
                                  capture_output=True, text=True)
            assert proc.returncode == 0 and "12 passed" in proc.stdout, proc.stdout + proc.stderr

        run_cli(), run_pytest()  # warm-up: page cache, compiled bytecode
        cli_times, pytest_times = [], []
        for _ in range(n):
            cli_times.append(timed(run_cli))
            pytest_times.append(timed(run_pytest))
        print("nb2pipe run linear10.ipynb (fresh store):       ", fmt(cli_times))
        print("pytest --nb2pipe linear10.ipynb (12 items):     ", fmt(pytest_times))
        results.append(("(i) pytest --nb2pipe / nb2pipe run, 10 steps",
                        statistics.median(pytest_times) / statistics.median(cli_times), 1.3))

        many = work / "many"
        many.mkdir()
        names = ["classifier", "diabetes", "text_classifier"]
        for i in range(20):
            shutil.copy(EXAMPLES / f"{names[i % 3]}.ipynb", many / f"nb{i:02d}_{names[i % 3]}.ipynb")
        collected, walls = [], []
        for _ in range(n):
            t = time.perf_counter()
            proc = subprocess.run([*pytest_cmd, "--collect-only", "many"], cwd=work, env=env, capture_output=True,
                                  text=True)
            walls.append(time.perf_counter() - t)
            m = re.search(r"(\d+) tests? collected in ([\d.]+)s", proc.stdout)
            assert m, proc.stdout + proc.stderr
            items = int(m.group(1))
            collected.append(float(m.group(2)))
        print(f"collect 20 notebooks ({items} items), pytest's time:", fmt(collected))
        print("the same, the whole command:                    ", fmt(walls))
        results.append(("(j) collect 20 notebooks (pytest's collection time)", statistics.median(collected), 1.0))

    print()
    return 1 if print_targets(results, 52) else 0


if __name__ == "__main__":
    sys.exit(main())
