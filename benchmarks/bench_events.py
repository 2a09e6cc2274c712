"""What watching a run costs: run events with a subscriber, and step output shown live.

    python benchmarks/bench_events.py [--quick]

(g) a 10-step linear run whose steps print, with a subscriber receiving every event (run, step,
    cell and output), against the same run with nobody subscribed: target <= 1.05x;
(h) `nb2pipe run` of a step printing 10,000 lines with `--log-output` (every line shown on
    stderr, prefixed with the step) against the same command without: target <= 1.2x.

Both sides of each ratio are measured in the same process, alternating (A B A B ...), so a
machine that is busier during one half does not favour the other. Exit 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_runs import fmt, print_targets, write_nb

PRINTING_STEPS = 10
LINES = 10_000


def printing_linear(work: Path) -> Path:
    cells = [("x0 = 0\nfor i in range(200):\n    print('step 0 line', i)", ["step:s00"])]
    for k in range(1, PRINTING_STEPS):
        cells.append((f"x{k} = x{k - 1} + 1\nfor i in range(200):\n    print('step {k} line', i)", [f"step:s{k:02d}"]))
    return write_nb(work / "printing.ipynb", cells)


def chatty(work: Path) -> Path:
    return write_nb(work / "chatty.ipynb", [(f"for i in range({LINES}):\n    print('line', i)\ndone = True",
                                             ["step:chatty"])])


def alternate(a, b, repeat: int) -> tuple[list[float], list[float]]:
    a(), b()  # warm-up: imports, page cache, kernels' first start
    ta, tb = [], []
    for _ in range(repeat):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return ta, tb


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args(argv)
    n = 3 if args.quick else 9
    import nb2pipe

    results = []
    with tempfile.TemporaryDirectory(prefix="nb2pipe-bench-events-") as tmp:
        work = Path(tmp)
        nb = printing_linear(work)
        store = work / "store"
        seen: list[int] = []

        def plain():
            shutil.rmtree(store, ignore_errors=True)
            assert nb2pipe.run(nb, store=store).status.value == "succeeded"

        def watched():
            shutil.rmtree(store, ignore_errors=True)
            events: list[dict] = []
            run = nb2pipe.start(nb, store=store)
            run.subscribe(events.append)
            assert run.wait().status.value == "succeeded"
            seen.append(sum(1 for e in events if e["type"] == "output"))

        without, with_sub = alternate(plain, watched, n)
        print("linear10, printing, nobody subscribed:  ", fmt(without))
        print("linear10, printing, a subscriber:        ", fmt(with_sub), f"({min(seen)}+ output events)")
        results.append(("(g) subscriber / none", statistics.median(with_sub) / statistics.median(without), 1.05))

        loud = chatty(work)
        base = [sys.executable, "-m", "nb2pipe", "run", str(loud), "--store", str(work / "cli-store"), "--no-cache"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}

        def quiet_cli():
            subprocess.run(base, check=True, capture_output=True, env=env)

        def logged_cli():
            proc = subprocess.run([*base, "--log-output"], check=True, capture_output=True, env=env, text=True)
            assert f"[chatty] line {LINES - 1}" in proc.stderr

        quiet, logged = alternate(quiet_cli, logged_cli, n)
        print(f"a step printing {LINES:,} lines, CLI:       ", fmt(quiet))
        print("the same with --log-output:             ", fmt(logged))
        results.append(("(h) --log-output / without", statistics.median(logged) / statistics.median(quiet), 1.2))

    print()
    return 1 if print_targets(results) else 0


if __name__ == "__main__":
    sys.exit(main())
