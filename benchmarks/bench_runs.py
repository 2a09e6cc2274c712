"""Local-run benchmarks: nb2pipe against papermill, measured in the same process and run.

Every workload uses trivial steps, so what is measured is overhead. Targets (issue: local runs):
  (a) 10-step linear pipeline            <= 4x  papermill running the same 10 cells as one notebook
  (b) the same                           <= 0.3x ten sequential papermill runs, one per step
  (c) 1 -> 8 -> 1 fan-out, --workers 2   <= 0.6x --workers 1
  (c') the same with branches that wait 0.3 s (informative: where --workers pays off)
  (d) re-running (a) unchanged, CLI      <= 0.5 s median
  (e) 100 MB DataFrame + 100 MB array     <= 1.5x raw parquet/npy write + read
  (f) slowest of 20 runs of (a)          <= 1.5x their median
Usage: python benchmarks/bench_runs.py [--quick]
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

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

KERNEL = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}


def write_nb(path: Path, cells: list[tuple[str, list[str]]]) -> Path:
    nb = new_notebook(metadata=KERNEL)
    for i, (source, tags) in enumerate(cells):
        cell = new_code_cell(source, id=f"c{i}")
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def linear10(work: Path) -> Path:
    cells = [("x0 = 0", ["step:s00"])] + [(f"x{i} = x{i - 1} + 1", [f"step:s{i:02d}"]) for i in range(1, 10)]
    return write_nb(work / "linear10.ipynb", cells)


def fanout(work: Path) -> Path:
    cells = [("root = 1", ["step:root"])]
    cells += [(f"b{i} = root + {i}", [f"step:b{i}"]) for i in range(1, 9)]
    cells += [("total = " + " + ".join(f"b{i}" for i in range(1, 9)), ["step:sink"])]
    return write_nb(work / "fanout.ipynb", cells)


def fanout_io(work: Path) -> Path:
    """The fan-out with branches that wait 0.3 s (I/O-bound work): where --workers matters."""
    cells = [("root = 1", ["step:root"])]
    cells += [(f"import time\ntime.sleep(0.3)\nb{i} = root + {i}", [f"step:b{i}"]) for i in range(1, 9)]
    cells += [("total = " + " + ".join(f"b{i}" for i in range(1, 9)), ["step:sink"])]
    return write_nb(work / "fanout_io.ipynb", cells)


def transfer(work: Path, passed: bool = True) -> Path:
    make = ("import numpy as np, pandas as pd\n"
            "rng = np.random.default_rng(0)\n"
            "df = pd.DataFrame(rng.random((1_638_400, 8)), columns=list('abcdefgh'))\n"
            "arr = rng.random(13_107_200)\n")
    return write_nb(work / "transfer.ipynb", [(make, ["step:make"]), ("n = len(df) + arr.size", ["step:use"])])


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up: imports, page cache
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def nb2pipe_run(path: Path, store: Path, on_record=None, **kw):
    import nb2pipe

    def go():
        shutil.rmtree(store, ignore_errors=True)
        rec = nb2pipe.run(str(path), store=str(store), **kw)
        assert rec.status.value == "succeeded", [(s.name, s.error) for s in rec.steps]
        if on_record:
            on_record(rec)
    return go


def transfer_seconds(record, store: Path) -> float:
    """Time the producer spent saving and the consumer loading, from the executed notebooks."""
    total = 0.0
    for step in record.steps:
        nb = nbformat.read(store / step.output_notebook, as_version=4)
        for cell in nb.cells:
            if {"nb2pipe-outputs", "nb2pipe-inputs"} & set(cell.metadata.get("tags", [])):
                total += cell.metadata["papermill"]["duration"]
    return total


def papermill_one(path: Path, work: Path):
    import papermill as pm

    def go():
        pm.execute_notebook(str(path), str(work / "pm-out.ipynb"), progress_bar=False, kernel_name="python3")
    return go


def papermill_split(work: Path):
    import papermill as pm

    paths = [write_nb(work / f"split{i}.ipynb", [("x_in = 0", ["parameters"]),
                                                   (f"x{i} = x_in + 1" if i else "x0 = 0", [])]) for i in range(10)]

    def go():
        for i, p in enumerate(paths):
            pm.execute_notebook(str(p), str(work / f"split{i}-out.ipynb"), parameters={"x_in": i},
                                progress_bar=False, kernel_name="python3")
    return go


RAW_WRITE = """
import time, numpy as np, pandas as pd
rng = np.random.default_rng(0)
df = pd.DataFrame(rng.random((1_638_400, 8)), columns=list("abcdefgh"))
arr = rng.random(13_107_200)
t = time.perf_counter()
df.to_parquet("raw.parquet")
np.save("raw.npy", arr)
print(time.perf_counter() - t)
"""
RAW_READ = """
import time
t = time.perf_counter()
import numpy as np, pandas as pd
df = pd.read_parquet("raw.parquet")
arr = np.load("raw.npy")
print(time.perf_counter() - t)
"""


def raw_transfer(work: Path):
    """The same objects written by one fresh process and read by another, as two kernels would:
    each side pays its imports (pyarrow on write; pandas on read), as the step kernels do."""

    def go():
        total = 0.0
        for code in (RAW_WRITE, RAW_READ):
            out = subprocess.run([sys.executable, "-c", code], cwd=work, check=True, capture_output=True, text=True)
            total += float(out.stdout.strip().splitlines()[-1])
        return total
    return go


def measured(fn, repeat: int) -> list[float]:
    """Like timed(), for functions that return their own measurement."""
    fn()
    return [fn() for _ in range(repeat)]


def fmt(samples: list[float]) -> str:
    return (f"median {statistics.median(samples):.3f}s  min {min(samples):.3f}s  max {max(samples):.3f}s  "
            f"(n={len(samples)})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args(argv)
    n = 3 if args.quick else 7
    results = []
    with tempfile.TemporaryDirectory(prefix="nb2pipe-bench-") as tmp:
        work = Path(tmp)
        lin, fan = linear10(work), fanout(work)
        store = work / "store"

        pm_one = timed(papermill_one(lin, work), n)
        print("papermill, 10 cells as one notebook:", fmt(pm_one))
        pm_split = timed(papermill_split(work), max(3, n // 2))
        print("papermill, ten one-step notebooks:  ", fmt(pm_split))
        ours = timed(nb2pipe_run(lin, store), n)
        print("nb2pipe, 10-step linear pipeline:   ", fmt(ours))
        m_ours, m_one, m_split = map(statistics.median, (ours, pm_one, pm_split))
        results.append(("(a) linear10 / papermill one notebook", m_ours / m_one, 4.0))
        results.append(("(b) linear10 / ten papermill runs", m_ours / m_split, 0.3))

        w1 = timed(nb2pipe_run(fan, store, workers=1), n)
        w2 = timed(nb2pipe_run(fan, store, workers=2), n)
        print("nb2pipe, 1->8->1 fan-out, workers 1:", fmt(w1))
        print("nb2pipe, 1->8->1 fan-out, workers 2:", fmt(w2))
        results.append(("(c) fan-out workers 2 / workers 1", statistics.median(w2) / statistics.median(w1), 0.6))
        fio = fanout_io(work)
        io1 = timed(nb2pipe_run(fio, store, workers=1), max(3, n // 2))
        io2 = timed(nb2pipe_run(fio, store, workers=2), max(3, n // 2))
        print("nb2pipe, fan-out of 0.3 s waits, workers 1:", fmt(io1))
        print("nb2pipe, fan-out of 0.3 s waits, workers 2:", fmt(io2))
        results.append(("(c') 0.3 s-wait fan-out workers 2 / workers 1",
                        statistics.median(io2) / statistics.median(io1), 0.6))

        cli_store = work / "cli-store"
        cmd = [sys.executable, "-m", "nb2pipe", "run", str(lin), "--store", str(cli_store)]
        subprocess.run(cmd, check=True, capture_output=True)

        def rerun():
            subprocess.run(cmd, check=True, capture_output=True)
        again = timed(rerun, max(n, 10))
        print("nb2pipe CLI, unchanged re-run:      ", fmt(again))
        results.append(("(d) unchanged CLI re-run, seconds", statistics.median(again), 0.5))

        io_times: list[float] = []
        passed = timed(nb2pipe_run(transfer(work, True), store, on_record=lambda r: io_times.append(
            transfer_seconds(r, store))), max(3, n // 2))
        raw = measured(raw_transfer(work), max(3, n // 2))
        print("nb2pipe, 100 MB DataFrame + 100 MB array passed:", fmt(passed))
        print("  of which save cell + load cell (papermill's cell durations):", fmt(io_times))
        print("raw write (fresh process) + read (fresh process):", fmt(raw))
        ratio = statistics.median(io_times) / statistics.median(raw)
        results.append(("(e) 200 MB transfer / raw write+read", ratio, 1.5))

        twenty = [x for x in timed(nb2pipe_run(lin, store), 20)]
        print("nb2pipe, linear10 x20:              ", fmt(twenty))
        results.append(("(f) slowest / median of 20 linear10 runs", max(twenty) / statistics.median(twenty), 1.5))

    print()
    failed = print_targets(results)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    return 1 if failed else 0


def print_targets(results: list[tuple[str, float, float]], width: int = 48) -> int:
    """The verdict table (measured <= goal passes); returns how many targets were missed."""
    print(f"{'target':{width}} {'measured':>9} {'goal':>7}  verdict")
    failed = 0
    for name, value, goal in results:
        ok = value <= goal
        failed += not ok
        print(f"{name:{width}} {value:9.3f} {goal:7.2f}  {'PASS' if ok else 'MISS'}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
