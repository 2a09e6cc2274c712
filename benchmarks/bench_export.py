"""Benchmark: export a generated 50-step notebook to Kubeflow Pipelines v2 IR YAML.

Usage:  python benchmarks/bench_export.py [--repeat N] [--cli-repeat N] [--profile]

Generates a notebook of 50 steps in five chained groups (a root step, a fan-out of eight branches,
a join), with parameters of every KFP type and cpu/memory/gpu/retries/timeout/cache tags, then
times

* in process: `compile_pipeline` (compile the notebook, plan, build the kfp objects, compile the
  YAML), after kfp has been imported once, and
* end to end: `python -m nb2pipe export NB -o FILE` as a subprocess (interpreter start-up and the
  kfp import included),

and prints median / min / max. The target is a median of at most 1 s in process; the script exits
1 when it is missed. `--profile` prints the top of a cProfile run of the in-process path.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

TARGET_SECONDS = 1.0
GROUPS, BRANCHES = 5, 8  # 5 x (root + 8 branches + join) = 50 steps
ROOT = Path(__file__).resolve().parent.parent


def _step(cell_id: str, name: str, source: str, *tags: str):
    return new_code_cell(source, id=cell_id, metadata={"tags": [f"step:{name}", *tags]})


def build_notebook() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("# Synthetic pipeline for the export benchmark", id="title"),
        new_code_cell("import math\nimport statistics", id="setup", metadata={"tags": ["setup"]}),
        new_code_cell("n_rows = 1000\nscale = 1.5\nlabel = 'bench'\ncolumns = ['a', 'b', 'c']\n"
                      "config = {'depth': 3, 'rate': 0.1}\nverbose = False", id="params",
                      metadata={"tags": ["parameters"]}),
    ]
    previous = None
    for g in range(GROUPS):
        source = (f"rows_{g} = [i * scale for i in range(n_rows)]" if previous is None else
                  f"rows_{g} = [v + 1 for v in {previous}]")
        cells.append(_step(f"root-{g}", f"load_{g}", source, "cpu:2", "memory:4Gi"))
        for b in range(BRANCHES):
            tags = []
            if b == 0:
                tags = ["retries:2", "timeout:600"]
            elif b == 1:
                tags = ["cache:off"]
            elif b == 2 and g == 0:
                tags = ["gpu:1", "memory:8Gi"]
            cells.append(_step(f"branch-{g}-{b}", f"branch_{g}_{b}",
                               f"part_{g}_{b} = sum(rows_{g}[{b}::{BRANCHES}]) * config['rate']\n"
                               f"if verbose:\n    print(label, len(columns), part_{g}_{b})", *tags))
        parts = ", ".join(f"part_{g}_{b}" for b in range(BRANCHES))
        cells.append(_step(f"join-{g}", f"join_{g}", f"total_{g} = [{parts}]\nmean_{g} = statistics.mean(total_{g})"))
        previous = f"total_{g}"
    cells.append(new_code_cell(f"final_mean = mean_{GROUPS - 1}", id="metrics", metadata={"tags": ["metrics"]}))
    return new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def _stats(samples: list[float]) -> tuple[float, float, float]:
    return statistics.median(samples), min(samples), max(samples)


def _export(path: Path) -> str:
    from nb2pipe.kubeflow.ir import compile_pipeline

    # The default path: artifact types from the run store (none here: all system.Artifact).
    return compile_pipeline(path, warn=lambda message: None)


def time_in_process(path: Path, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        _export(path)
        samples.append(time.perf_counter() - start)
    return samples


def time_cli(path: Path, out: Path, repeat: int) -> list[float]:
    from bench_core import time_command  # beside this script

    return time_command([sys.executable, "-m", "nb2pipe", "export", str(path), "--to", "kfp", "-o", str(out)], repeat)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20, help="in-process repetitions")
    ap.add_argument("--cli-repeat", type=int, default=7, help="subprocess repetitions")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one in-process run")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    with tempfile.TemporaryDirectory(prefix="nb2pipe-bench-") as tmp:
        path = Path(tmp) / "bench_export.ipynb"
        nbformat.write(build_notebook(), str(path))

        start = time.perf_counter()
        importlib.import_module("kfp")  # timed apart: every export process pays it once

        kfp_import = time.perf_counter() - start
        start = time.perf_counter()
        text = _export(path)  # warm-up: first use of the compiler, IPython's transformer, ...
        first = time.perf_counter() - start
        import yaml

        tasks = yaml.safe_load(text)["root"]["dag"]["tasks"]
        assert len(tasks) == GROUPS * (BRANCHES + 2), len(tasks)
        print(f"notebook: {len(tasks)} steps, {sum(len(t.get('dependentTasks', [])) for t in tasks.values())} "
              f"dependencies; YAML {len(text) / 1024:.0f} KiB, {text.count(chr(10))} lines")
        print(f"import kfp {kfp_import:.3f} s; first export {first:.3f} s")

        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            _export(path)
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
            print(out.getvalue())

        inproc = time_in_process(path, max(args.repeat, 1))
        med, lo, hi = _stats(inproc)
        print(f"in process  compile_pipeline x{len(inproc)}: median {med:.3f} s, min {lo:.3f} s, "
              f"max {hi:.3f} s (target <= {TARGET_SECONDS} s median)")
        if args.cli_repeat > 0:
            cli = time_cli(path, Path(tmp) / "out.yaml", args.cli_repeat)
            cmed, clo, chi = _stats(cli)
            print(f"end to end  nb2pipe export x{len(cli)}: median {cmed:.3f} s, min {clo:.3f} s, "
                  f"max {chi:.3f} s (includes interpreter start-up and importing kfp)")
        ok = med <= TARGET_SECONDS
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
