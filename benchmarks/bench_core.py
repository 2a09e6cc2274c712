"""Benchmark: parse + validate a large notebook (500 cells, 50 steps).

Usage:  python benchmarks/bench_core.py [--repeat N] [--cli-repeat N] [--profile]

Generates a realistic notebook into a temporary folder (assignments, functions, comprehensions,
magics, data flowing between steps), then times

* in process: read_notebook + check_notebook (the work `nb2pipe validate` does), and
* end to end: `python -m nb2pipe validate NB` as a subprocess (includes interpreter start-up),

and prints median / min / max. The target is a median of at most 0.3 s in process; the script
exits 1 when it is missed. `--profile` prints the top of a cProfile run of the in-process path.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

TARGET_SECONDS = 0.3
N_STEPS = 50
CELLS_PER_STEP = 10  # 1 markdown + 9 code cells per step, plus setup/parameters cells


def _step_cells(k: int) -> list:
    """Ten cells of step k: a heading and nine code cells that read step k-1's outputs."""
    prev = f"table_{k - 1}" if k else "seed_rows"
    prev_model = f"model_{k - 1}" if k else "base_weights"
    cells = [new_markdown_cell(f"## Stage {k}\n\nTransform the previous table and refit.", id=f"md-{k}")]
    bodies = [
        f"rows_{k} = [dict(r, stage={k}) for r in {prev}]\n"
        f"keys_{k} = sorted({{key for r in rows_{k} for key in r}})",
        f"def transform_{k}(row, scale=scale_factor):\n"
        f"    value = row.get('value', 0) * scale\n"
        f"    return {{**row, 'value': value + {k}}}\n",
        f"table_{k} = [transform_{k}(r) for r in rows_{k} if r.get('value', 0) >= threshold]\n"
        f"summary_{k} = {{'n': len(table_{k}), 'keys': keys_{k}}}",
        f"%time weights_{k} = [w * 0.9 for w in {prev_model}]" if k % 5 == 0 else
        f"weights_{k} = [w * 0.9 for w in {prev_model}]",
        f"class Model{k}:\n"
        f"    def __init__(self, weights):\n"
        f"        self.weights = list(weights)\n"
        f"    def score(self, rows):\n"
        f"        return sum(w * r.get('value', 0) for w, r in zip(self.weights, rows))\n",
        f"model_{k} = Model{k}(weights_{k})\nscore_{k} = model_{k}.score(table_{k})\n"
        f"total, count = score_{k}, len(table_{k})",
        f"for i, row in enumerate(table_{k}[:10]):\n"
        f"    if i % 2:\n        total += row['value']\n    else:\n        count -= 1\n"
        f"mean_{k} = total / max(count, 1)",
        "!echo checkpoint\n" + f"log_{k} = f'stage {k}: {{mean_{k}:.3f}}'" if k % 7 == 0 else
        f"log_{k} = f'stage {k}: {{mean_{k}:.3f}}'\nprint(log_{k})",
        f"with open(os.devnull, 'w') as sink:\n    sink.write(log_{k})\n"
        f"checks_{k} = {{name: (v := len(name)) for name in keys_{k}}}\ndel rows_{k}",
    ]
    for j, body in enumerate(bodies):
        cell = new_code_cell(body, id=f"c-{k}-{j}")
        if j == 0:
            cell.metadata["tags"] = [f"step:stage_{k:02d}"]
            if k % 10 == 3:
                cell.metadata["tags"] += ["cpu:2", "memory:1Gi"]
        cells.append(cell)
    return cells


def build_notebook() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("# Synthetic pipeline for the core benchmark", id="title"),
        new_code_cell("import os\nimport math\nfrom collections import Counter", id="setup",
                      metadata={"tags": ["setup"]}),
        new_code_cell("scale_factor = 1.5\nthreshold = 0.0\nbase_weights = [0.1, 0.2, 0.3]\n"
                      "seed_rows = [{'value': 1.0}, {'value': 2.0}]", id="params",
                      metadata={"tags": ["parameters"]}),
    ]
    for k in range(N_STEPS):
        cells.extend(_step_cells(k))
    # The last step also reports metrics.
    cells.append(new_code_cell(f"final_score = score_{N_STEPS - 1}\nfinal_mean = mean_{N_STEPS - 1}",
                               id="metrics", metadata={"tags": ["metrics"]}))
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    return nb


def _stats(samples: list[float]) -> tuple[float, float, float]:
    return statistics.median(samples), min(samples), max(samples)


def time_in_process(path: Path, repeat: int) -> list[float]:
    from nb2pipe.compile.compiler import check_notebook

    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = check_notebook(str(path))
        samples.append(time.perf_counter() - start)
        assert result.spec is not None and not result.errors, [str(d) for d in result.errors]
    return samples


def time_command(cmd: list[str], repeat: int) -> list[float]:
    """Wall times of `cmd` run `repeat` times in fresh processes (from the repository root)."""
    samples = []
    root = Path(__file__).resolve().parent.parent
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[2:4])} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return samples


def time_cli(path: Path, repeat: int) -> list[float]:
    return time_command([sys.executable, "-m", "nb2pipe", "validate", str(path)], repeat)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30, help="in-process repetitions (>= 20)")
    ap.add_argument("--cli-repeat", type=int, default=20, help="subprocess repetitions")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one in-process run")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    with tempfile.TemporaryDirectory(prefix="nb2pipe-bench-") as tmp:
        path = Path(tmp) / "bench_500.ipynb"
        nbformat.write(build_notebook(), str(path))
        nb = nbformat.read(str(path), as_version=4)
        code_cells = sum(c.cell_type == "code" for c in nb.cells)
        print(f"notebook: {len(nb.cells)} cells ({code_cells} code), {N_STEPS} steps, "
              f"{path.stat().st_size / 1024:.0f} KiB")

        from nb2pipe.compile.compiler import check_notebook

        first = time.perf_counter()
        result = check_notebook(str(path))  # warm-up: imports IPython, nbformat's validator
        first = time.perf_counter() - first
        assert result.spec is not None and len(result.spec.steps) == N_STEPS, result.diagnostics
        edges = sum(len(s.upstreams) for s in result.spec.steps)
        print(f"spec: {len(result.spec.steps)} steps, {edges} edges, "
              f"{sum(len(s.inputs) for s in result.spec.steps)} inputs; first (cold) run {first:.3f} s")

        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            check_notebook(str(path))
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
            print(out.getvalue())

        inproc = time_in_process(path, max(args.repeat, 1))
        med, lo, hi = _stats(inproc)
        print(f"in process  check_notebook x{len(inproc)}: median {med:.3f} s, min {lo:.3f} s, "
              f"max {hi:.3f} s (target <= {TARGET_SECONDS} s median)")
        if args.cli_repeat > 0:
            cli = time_cli(path, args.cli_repeat)
            cmed, clo, chi = _stats(cli)
            print(f"end to end  nb2pipe validate x{len(cli)}: median {cmed:.3f} s, min {clo:.3f} s, "
                  f"max {chi:.3f} s (includes interpreter start-up)")
        ok = med <= TARGET_SECONDS
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
