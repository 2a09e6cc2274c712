"""Docker executor benchmarks: image build times, and the per-step cost of containers over kernels.

Workload: a generated linear N-step notebook (default 10) whose steps do light numpy work and
pass a 100 000-element array each to the next. Targets (issue: container images):
  (a) cold: first build of a new notebook whose dependency image exists      (informative)
      (a new spec under the same file name: the lock names the file, see --full-cold's (f))
  (b) rebuild of the unchanged notebook, `nb2pipe build` in a fresh process  <= 1 s
  (c) rebuild after editing one cell's source, `nb2pipe build` end to end    <= 3 s
  (d) per-step overhead: (docker run - local run) / N, `nb2pipe run --no-cache` in fresh
      processes, medians                                                     <= 0.5 s a step
Papermill running the same notebook as one file (its CLI, also a fresh process) is measured in
the same run for the ratio lines. `--full-cold` also times the dependency image from nothing
(its tag removed, docker's layer cache off, an empty wheelhouse) and the first build of the same
notebook under a new file name.

Base image: --base-image, else nb2pipe.images.baseimage.ensure_base_image() (a local python:X.Y-slim or
nb2pipe-base:pyX.Y, built when missing). Every pipeline image the benchmark builds is removed at
the end (--keep-images keeps them); the dependency image stays, as it would for a user.

Usage: python benchmarks/bench_docker.py [--quick] [--steps N] [--base-image IMAGE] [--full-cold]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
KERNEL = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
NB_NAME = "bench_docker.ipynb"  # the pipeline (and image repository) name: nb2pipe-bench-docker
RENAMED = "bench_docker_renamed.ipynb"
TARGET_UNCHANGED, TARGET_EDIT, TARGET_PER_STEP = 1.0, 3.0, 0.5


# --- the workload -------------------------------------------------------------------------------
def write_linear(path: Path, steps: int, seed: int, edit: int = 0) -> Path:
    """N steps, each reading the previous step's array. `seed` changes the first cell (a new
    pipeline spec, so a new image tag); `edit` changes only the last cell (a notebook edit)."""
    cells = [(f"import numpy as np\nrng = np.random.default_rng({seed})\na00 = rng.random(100_000)", "s00")]
    for i in range(1, steps):
        src = f"a{i:02d} = np.sqrt(a{i - 1:02d} * 1.0001 + {i})"
        if i == steps - 1:
            src = f"offset = {edit}\n" + src.replace(f"+ {i})", f"+ {i} + offset)") + f"\ntotal = float(a{i:02d}.sum())"
        cells.append((src, f"s{i:02d}"))
    nb = new_notebook(metadata=KERNEL)
    for i, (source, step) in enumerate(cells):
        cell = new_code_cell(source, id=f"c{i}")
        cell.metadata["tags"] = [f"step:{step}"]
        nb.cells.append(cell)
    nbformat.write(nb, str(path))
    return path


# --- measuring ----------------------------------------------------------------------------------
def cli_env() -> dict:
    env = dict(os.environ)
    env.pop("NB2PIPE_STORE", None)  # stores and build contexts go beside the temporary notebook
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def timed_cli(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=cli_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(args)}` exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return elapsed, proc


def cli_build(nb: Path, base: str) -> tuple[float, dict]:
    """`nb2pipe build NB --json` in a fresh process: wall time, and the BuildResult it printed."""
    elapsed, proc = timed_cli(["-m", "nb2pipe", "build", str(nb), "--base-image", base, "--json"], nb.parent)
    return elapsed, json.loads(proc.stdout)


def api_build(nb: Path, base: str, **kw):
    """build_image in this process (compile included, as `nb2pipe build` does): wall time, result."""
    from nb2pipe.images.build import build_image

    t = time.perf_counter()
    result = build_image(str(nb), base_image=base, log=lambda line: None, **kw)
    return time.perf_counter() - t, result


def cli_run(nb: Path, store: Path, executor: str, base: str) -> float:
    args = ["-m", "nb2pipe", "run", str(nb), "--no-cache", "--store", str(store), "--executor", executor, "--json"]
    if executor == "docker":
        args += ["--base-image", base]
    elapsed, proc = timed_cli(args, nb.parent)
    record = json.loads(proc.stdout)
    bad = [(s["name"], s["status"]) for s in record["steps"] if s["status"] != "succeeded"]
    if record["status"] != "succeeded" or bad:
        raise SystemExit(f"{executor} run did not succeed: {bad}")
    return elapsed


def papermill_cli(nb: Path, out: Path) -> float:
    args = ["-m", "papermill", str(nb), str(out), "--kernel", "python3", "--no-progress-bar", "--log-level", "ERROR"]
    return timed_cli(args, nb.parent)[0]


@contextlib.contextmanager
def docker_layer_cache_off():
    """Every build this process starts runs with docker's --no-cache."""
    from nb2pipe.images.daemon import docker_client

    api = docker_client().api
    api.build = functools.partial(type(api).build, api, nocache=True)
    try:
        yield
    finally:
        del api.build  # the instance attribute shadowed the method


def layers(r) -> str:
    cached, total = (r["cached_steps"], r["total_steps"]) if isinstance(r, dict) else (r.cached_steps, r.total_steps)
    return f"{cached}/{total} Dockerfile steps from cache" if total else "nothing built"


def fmt(samples: list[float]) -> str:
    return (f"median {statistics.median(samples):6.3f}s  min {min(samples):6.3f}s  max {max(samples):6.3f}s"
            f"  (n={len(samples)})")


def remove_bench_images(keep_ids: set[str] = frozenset()) -> int:
    """Remove the pipeline images of the benchmark's notebooks (every tag of them)."""
    from nb2pipe.images.daemon import docker_client

    client = docker_client()
    removed = 0
    for pipeline in ("bench-docker", "bench-docker-renamed"):
        for image in client.images.list(filters={"label": f"org.nb2pipe.pipeline={pipeline}"}):
            if image.id in keep_ids:
                continue
            for tag in image.tags:
                with contextlib.suppress(Exception):
                    client.images.remove(tag)
                    removed += 1
    return removed


def choose_base(requested: str | None) -> str:
    if requested:
        return requested
    try:
        from nb2pipe.images.baseimage import ensure_base_image
    except ImportError:
        raise SystemExit("this nb2pipe has no nb2pipe.images.baseimage: pass --base-image IMAGE (a local image with "
                         f"Python {sys.version_info.major}.{sys.version_info.minor})") from None
    return ensure_base_image(log=print)


def machine() -> str:
    from nb2pipe.images.daemon import docker_client

    info = docker_client().info()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, docker {info.get('ServerVersion')} "
            f"(legacy builder via the SDK), storage driver {info.get('Driver')}; load average at the end {load}")


# --- the benchmark ------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--steps", type=int, default=10, help="steps of the linear notebook (default 10)")
    ap.add_argument("--base-image", help="base image [default: nb2pipe.images.baseimage.ensure_base_image()]")
    ap.add_argument("--full-cold", action="store_true",
                    help="also build the dependency image from nothing, and the notebook under a new name")
    ap.add_argument("--keep-images", action="store_true", help="keep the pipeline images built here")
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be at least 2")
    n = 3 if args.quick else 5
    n_runs = 3 if args.quick else 5
    sys.path.insert(0, str(ROOT))
    from nb2pipe.images.daemon import docker_client

    docker_client()  # no daemon: DockerError now, not after the local runs
    base = choose_base(args.base_image)

    with tempfile.TemporaryDirectory(prefix="nb2pipe-bench-docker-") as tmp:
        try:
            results = measure(args, base, Path(tmp), n, n_runs)
        finally:
            if not args.keep_images:
                print(f"removed {remove_bench_images()} benchmark image tags")

    print()
    print(f"{'target':48} {'measured':>9} {'goal':>7}  verdict")
    failed = 0
    for name, value, goal in results:
        if goal is None:
            print(f"{name:48} {value:9.3f} {'—':>7}  info")
            continue
        ok = value <= goal
        failed += not ok
        print(f"{name:48} {value:9.3f} {goal:7.2f}  {'PASS' if ok else 'MISS'}")
    print(machine())
    return 1 if failed else 0


def measure(args, base: str, work: Path, n: int, n_runs: int) -> list[tuple[str, float, float | None]]:
    """Every measurement, printed as it comes; the (what, value, goal or None) rows of the table."""
    results: list[tuple[str, float, float | None]] = []  # (what, measured, goal or None)
    seeds = iter(range(secrets.randbelow(10**9) * 1000, 10**13))  # a fresh spec per cold build
    # Steps run as the invoking user, or as nobody for root: they must be able to read the notebook's
    # folder (mkdtemp makes it 0700).
    work.chmod(0o755)
    nb = work / NB_NAME
    print(f"notebook: {args.steps} linear steps (numpy, a 100 000-element array passed along); "
          f"base image {base}")

    # Warm-up: brings the dependency image of this lock up (built once per machine and lock).
    write_linear(nb, args.steps, next(seeds))
    t, r = api_build(nb, base)
    deps_image = r.deps_image
    print(f"warm-up build {t:.2f}s ({layers(r)}); dependency image {deps_image}")

    # (a) cold: a new notebook (new spec and image tag), its dependency image present.
    cold, cold_inproc = [], []
    for _ in range(n):
        write_linear(nb, args.steps, next(seeds))
        t, r = cli_build(nb, base)
        assert r["built"] and r["deps_image"] == deps_image, r
        cold.append(t)
    print(f"(a)  cold, new spec, `nb2pipe build` (fresh process):    {fmt(cold)}  [{layers(r)}]")
    for _ in range(n):
        write_linear(nb, args.steps, next(seeds))
        with docker_layer_cache_off():
            t, rr = api_build(nb, base)
        assert rr.built and rr.deps_image == deps_image
        cold_inproc.append(t)
    print(f"(a') same, pipeline image's layers not cached, in process: {fmt(cold_inproc)}  [{layers(rr)}]")
    results.append(("(a) cold build, deps image present, CLI s", statistics.median(cold), None))
    results.append(("(a') same without docker's layer cache, s", statistics.median(cold_inproc), None))

    # (b) unchanged: the image exists, nothing is sent to docker.
    unchanged = []
    for _ in range(max(n, 5)):
        t, r = cli_build(nb, base)
        assert not r["built"], r
        unchanged.append(t)
    unchanged_inproc = []
    for _ in range(max(n, 5)):
        t, rr = api_build(nb, base)
        assert not rr.built
        unchanged_inproc.append(t)
    print(f"(b)  unchanged, `nb2pipe build` (fresh process):         {fmt(unchanged)}")
    print(f"(b') unchanged, build_image in process:                  {fmt(unchanged_inproc)}")
    results.append(("(b) unchanged rebuild, CLI s", statistics.median(unchanged), TARGET_UNCHANGED))
    results.append(("(b') unchanged rebuild, in process s", statistics.median(unchanged_inproc), None))

    # (c) one cell edited: only the spec layer (and the labels) are rebuilt.
    seed = next(seeds)
    edit, edit_inproc = [], []
    for k in range(1, n + 1):
        write_linear(nb, args.steps, seed, edit=k)
        t, r = cli_build(nb, base)
        assert r["built"], r
        edit.append(t)
    for k in range(n + 1, 2 * n + 1):
        write_linear(nb, args.steps, seed, edit=k)
        t, rr = api_build(nb, base)
        assert rr.built
        edit_inproc.append(t)
    print(f"(c)  one cell edited, `nb2pipe build` (fresh process):   {fmt(edit)}  [{layers(r)}]")
    print(f"(c') one cell edited, build_image in process:            {fmt(edit_inproc)}  [{layers(rr)}]")
    results.append(("(c) rebuild after a cell edit, CLI s", statistics.median(edit), TARGET_EDIT))
    results.append(("(c') rebuild after a cell edit, in process s", statistics.median(edit_inproc), None))

    # (d) runs: fresh processes, --no-cache, the image up to date (its check is part of a docker run).
    docker_store, local_store = work / "store-docker", work / "store-local"
    cli_run(nb, docker_store, "docker", base)  # warm-up: page cache, the image check's first time
    cli_run(nb, local_store, "local", base)
    papermill_cli(nb, work / "pm-out.ipynb")
    docker_runs, local_runs, pm_runs = [], [], []
    for i in range(n_runs):  # interleaved, so drift in the machine's load hits all three alike
        order = [("docker", docker_runs), ("local", local_runs)]
        for executor, out in order if i % 2 == 0 else order[::-1]:
            out.append(cli_run(nb, docker_store if executor == "docker" else local_store, executor, base))
        pm_runs.append(papermill_cli(nb, work / "pm-out.ipynb"))
    m_docker, m_local, m_pm = map(statistics.median, (docker_runs, local_runs, pm_runs))
    per_step = (m_docker - m_local) / args.steps
    print(f"(d)  `nb2pipe run --no-cache --executor docker`:         {fmt(docker_runs)}")
    print(f"     `nb2pipe run --no-cache --executor local`:          {fmt(local_runs)}")
    print(f"     papermill CLI, the same notebook as one file:       {fmt(pm_runs)}")
    print(f"     docker - local = {m_docker - m_local:.3f}s over {args.steps} steps = {per_step:.3f}s a step")
    results.append(("(d) docker over local, s a step", per_step, TARGET_PER_STEP))
    results.append(("    docker run / papermill one notebook", m_docker / m_pm, None))
    results.append(("    local run / papermill one notebook", m_local / m_pm, None))

    if args.full_cold:
        full_cold(nb, base, deps_image, work, args.steps, next(seeds), results)
    return results


def full_cold(nb: Path, base: str, deps_image: str, work: Path, steps: int, seed: int, results: list) -> None:
    """The dependency image from nothing, and the same notebook under another file name."""
    from nb2pipe.images.daemon import docker_client

    client = docker_client()
    # The tag goes; the image itself stays while pipeline images are built FROM it (docker
    # refuses to delete a parent), and nothing of it is reused: the layer cache is off.
    with contextlib.suppress(Exception):
        client.images.remove(deps_image)
    write_linear(nb, steps, seed)
    wheels = work / "wheelhouse"  # empty: pip fetches every pinned wheel again (this machine's index)
    with docker_layer_cache_off():
        t, r = api_build(nb, base, wheelhouse=str(wheels))
    n_wheels = len(list(wheels.glob("*.whl")))
    print(f"(e)  full cold: {n_wheels} wheels fetched, dependency + pipeline image without cache, "
          f"in process: {t:.2f}s  [{layers(r)}]")
    results.append(("(e) full cold build (deps image too), s", t, None))
    shutil.rmtree(wheels, ignore_errors=True)

    # The same imports under another notebook name: the lock, so the dependency image, should be shared.
    renamed = write_linear(work / RENAMED, steps, seed)
    t, rr = cli_build(renamed, base)
    shared = rr["deps_image"] == r.deps_image
    print(f"(f)  the same notebook under a new file name, `nb2pipe build`: {t:.2f}s  [{layers(rr)}]; dependency "
          f"image {'shared' if shared else 'NOT shared: ' + rr['deps_image'] + ' was built for it'}")
    results.append(("(f) first build under a new notebook name, s", t, None))
    if not shared:
        with contextlib.suppress(Exception):
            for image in client.images.list(filters={"label": "org.nb2pipe.pipeline=bench-docker-renamed"}):
                for tag in image.tags:
                    client.images.remove(tag)
            client.images.remove(rr["deps_image"])


if __name__ == "__main__":
    sys.exit(main())
