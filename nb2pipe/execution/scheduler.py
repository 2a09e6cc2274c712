"""LocalRunner: a PipelineSpec run as a parallel DAG of papermill executions on this machine.

Design
------
* One scheduler loop (the calling thread) walks the step graph. A step becomes ready when all its
  upstreams succeeded (or were cached); if any upstream failed it is SKIPPED.
* A ready step first computes its cache key (cache.py). A hit whose objects are all still in the
  object store marks it CACHED and reuses the outputs: no kernel is started for it.
* Otherwise it goes to a thread pool of `workers` threads. Each execution gets a fresh kernel from
  the KernelPool, which keeps kernels booting *ahead* of need (workers + 1 of them), so the
  ~0.5 s kernel start overlaps with the steps running now instead of being paid serially.
  papermill executes the step notebook (stepnb.py) in that pre-started kernel, with the
  notebook's folder as the kernel's working directory (set at kernel start: papermill's own
  `cwd` changes the whole process's directory, which is unsafe with parallel steps).
* Commit order per attempt (nothing half-written is ever visible): papermill writes to a
  `.partial` file in `attempt-N/`; the executed notebook is then written atomically to
  `step.ipynb`; outputs (written in the kernel to temp files + rename, hashed while written)
  move into the content-addressed object store; last, one SQLite transaction records the step.
  A run killed at any point leaves garbage at worst, never a record pointing at nothing, and the
  next run resumes through the cache.
* Failures: a cell error fails the step (papermill's error banner marks the cell in the kept
  notebook); `retries:N` re-attempts with a new kernel; `timeout:S` is a watchdog that kills the
  kernel; a kernel that dies fails the step as kernel_died. Cancellation (Ctrl-C, SIGTERM) kills
  every kernel at once. Kernels are killed, never shut down gracefully, so nothing waits on
  jupyter_client's multi-second graceful shutdown.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nb2pipe.store.cache import _jsonable, step_cache_key
from nb2pipe.errors import ExitCode, UsageError
from nb2pipe.model.graph import StepGraph
from nb2pipe.runtime.kernels import KernelPool, KernelStartError
from nb2pipe.compile.notebook import Notebook
from nb2pipe.model.records import ArtifactRef, Metric, RunRecord, RunStatus, Status, StepError, StepRecord, new_run_id
from nb2pipe.model.spec import ComponentSpec, PipelineSpec
from nb2pipe.runtime.execute import execute_step
from nb2pipe.runtime.stepnb import build_step_notebook


@dataclass
class RunOptions:
    workers: int = 0  # 0 = number of CPUs
    cache: bool = True
    fail_fast: bool = False
    steps: list[str] = field(default_factory=list)  # --step: only these
    from_step: str | None = None  # --from: this and everything downstream
    startup_timeout: float = 60.0


class Workspace:
    """The store folder: the run database, the object store and per-run folders."""

    def __init__(self, root: str | os.PathLike):
        from nb2pipe.store.objects import ObjectStore
        from nb2pipe.store.runs import RunStore

        self.root = Path(root).resolve()  # kernels run in the notebook's folder: paths must be absolute
        self.runs = RunStore(self.root)
        self.objects = ObjectStore(self.root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def close(self) -> None:
        self.runs.close()


def graph_of(spec: PipelineSpec) -> StepGraph:
    graph = StepGraph([s.name for s in spec.steps])
    for s in spec.steps:
        for up in s.upstreams:
            graph.add_edge(up, s.name)
    return graph


class LocalRunner:
    executor = "local"

    def __init__(self, notebook: Notebook, spec: PipelineSpec, workspace: Workspace,
                 options: RunOptions | None = None, on_change: Callable[[RunRecord, StepRecord], None] | None = None):
        self.nb = notebook
        self.spec = spec
        self.ws = workspace
        self.opts = options or RunOptions()
        self.on_change = on_change or (lambda run, step: None)
        self.graph = graph_of(spec)
        self.workers = self.opts.workers or os.cpu_count() or 2
        self._cancel: int | None = None
        self._lock = threading.Lock()
        self.pool: KernelPool | None = None
        self._metrics: dict[str, dict] = {}  # step -> {name: {"value", "flag"}} from metrics.json

    # --- public --------------------------------------------------------------------------
    def run(self, parameters: dict) -> RunRecord:
        from nb2pipe.artifacts import values as artifacts
        from nb2pipe.store.environment import runtime_info

        selected = self._selected_steps()
        forced = self._forced_steps()
        env = runtime_info(self.ws.root, self.nb.folder, self.spec.kernel_name, executor=self.executor)
        self.serializer_versions = {s.name: str(s.version) for s in artifacts.default_registry}
        run = RunRecord(
            id=new_run_id(), notebook=self.nb.path, notebook_sha256=self.nb.sha256,
            spec_hash=self.spec.spec_hash, status=RunStatus.RUNNING, started=time.time(),
            parameters={k: _jsonable(v) for k, v in parameters.items()},
            steps=[StepRecord(name=s) for s in selected], environment=env,
        )
        self.run_record = run
        self.parameters = parameters
        self.env_fingerprint = env["env_fingerprint"]
        available = self._reused_upstream_outputs(selected)
        self.ws.runs.create_run(run)
        try:
            self._schedule(run, selected, forced, available)
        finally:
            if self.pool is not None:
                self.pool.close(wait=False)
        return self._finish(run)

    def _kernels(self, run: RunRecord) -> KernelPool:
        """The kernel pool, created when the first step needs a kernel (a fully cached run starts
        none, nor the fork server)."""
        if self.pool is None:
            # Import the execution stack once, here, before step workers and kernel starters
            # import parts of it from several threads at once: concurrent first imports of
            # jupyter_client can meet a partially initialised module (ImportError).
            import jupyter_client.manager  # noqa: F401
            import papermill  # noqa: F401

            from nb2pipe.runtime import engine  # noqa: F401

            run_dir = self.ws.run_dir(run.id)
            run_dir.mkdir(parents=True, exist_ok=True)
            self.pool = KernelPool(self.spec.kernel_name, str(self.nb.folder), self.opts.startup_timeout,
                                   log_path=str(run_dir / "kernels.log"))
        return self.pool

    def cancel(self, signum: int) -> None:
        """Called from a signal handler: stop scheduling and kill every kernel."""
        self._cancel = signum
        pool = self.pool
        if pool is not None:
            threading.Thread(target=pool.kill_all, daemon=True).start()

    # --- selection ------------------------------------------------------------------------
    def _selected_steps(self) -> list[str]:
        names = self.spec.step_names
        for s in [*self.opts.steps, *([self.opts.from_step] if self.opts.from_step else [])]:
            if s not in names:
                from nb2pipe.model.graph import suggest

                close = suggest(s, names)
                raise UsageError(f"unknown step '{s}'" + (f"; did you mean '{close}'?" if close else "")
                                 + f" (steps: {', '.join(names)})")
        if self.opts.steps:
            return [n for n in names if n in self.opts.steps]
        return names

    def _forced_steps(self) -> set[str]:
        if self.opts.steps:
            return set(self.opts.steps)
        if self.opts.from_step:
            return {self.opts.from_step} | self.graph.downstream(self.opts.from_step)
        return set()

    def _reused_upstream_outputs(self, selected: list[str]) -> dict[str, dict[str, ArtifactRef]]:
        """For --step: the latest stored outputs of upstreams that are not part of this run."""
        available: dict[str, dict[str, ArtifactRef]] = {}
        chosen = set(selected)
        for name in selected:
            for inp in self.spec.step(name).inputs:
                if inp.producer in chosen or inp.producer in available:
                    continue
                refs = self.ws.runs.latest_outputs(self.nb.path, inp.producer)
                if refs is None:
                    raise UsageError(f"step '{name}' needs outputs of '{inp.producer}', which has never "
                                     f"run successfully; run the pipeline once (or add --step {inp.producer})")
                available[inp.producer] = {r.name: r for r in refs}
        return available

    # --- scheduling -----------------------------------------------------------------------
    def _schedule(self, run: RunRecord, selected: list[str], forced: set[str],
                  available: dict[str, dict[str, ArtifactRef]]) -> None:
        records = {s.name: s for s in run.steps}
        # Scheduling decisions read only `state`, which this thread alone writes: a worker thread
        # marks its record succeeded before this loop has collected its outputs.
        state: dict[str, Status] = {s.name: Status.PENDING for s in run.steps}
        pending = list(selected)
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="nb2pipe-step") as pool_exec:
            while pending or running:
                self._check_cancel()
                progressed = False
                for name in list(pending):
                    if self._cancel is not None or (self.opts.fail_fast and self._any_failed(state)):
                        break
                    ready = self._upstream_state(name, state)
                    if ready == "wait":
                        continue
                    rec = records[name]
                    if ready == "failed":
                        pending.remove(name)
                        progressed = True
                        self._skip(run, rec, "upstream_failed", "an upstream step failed")
                        state[name] = Status.SKIPPED
                        continue
                    comp = self.spec.step(name)
                    inputs = self._inputs(comp, records, available)
                    key = step_cache_key(comp, self.parameters, {n: r.sha256 for n, r in inputs.items()},
                                         self.env_fingerprint, self.serializer_versions, self._image_digest(name))
                    if self.opts.cache and comp.options.cache and name not in forced and self._try_cache(run, rec, key):
                        pending.remove(name)
                        progressed = True
                        available[name] = {r.name: r for r in rec.outputs}
                        state[name] = Status.CACHED
                        continue
                    if len(running) >= self.workers:
                        # No free worker: the step stays pending rather than queueing in the
                        # executor, so --fail-fast can still hold it back and `started` is honest.
                        continue
                    pending.remove(name)
                    progressed = True
                    state[name] = Status.RUNNING
                    rec.status, rec.started, rec.cache_key = Status.RUNNING, time.time(), key
                    rec.spec_hash = comp.content_hash
                    rec.parameters = {p: _jsonable(self.parameters[p]) for p in comp.parameters if p in self.parameters}
                    rec.inputs = list(inputs.values())
                    self._record(run, rec)
                    pool = self._kernels(run)
                    running[pool_exec.submit(self._execute, run, comp, rec, inputs, pool)] = name
                self._prefill(run, pending, running, state)
                if self.opts.fail_fast and self._any_failed(state):
                    for name in pending:
                        self._skip(run, records[name], "cancelled", "not started: --fail-fast after a failure")
                        state[name] = Status.SKIPPED
                    pending.clear()
                if not running:
                    if self._cancel is not None:  # nothing left running: the rest is skipped below
                        break
                    if pending and not progressed:  # cannot happen with a valid DAG
                        raise RuntimeError(f"scheduler stalled with steps {pending} pending")
                    continue
                done, _ = wait(list(running), timeout=0.25, return_when=FIRST_COMPLETED)
                for fut in done:
                    name = running.pop(fut)
                    rec = fut.result()  # _execute never raises; it records failures
                    if rec.status == Status.SUCCEEDED:
                        available[name] = {r.name: r for r in rec.outputs}
                    state[name] = rec.status
            if self._cancel is not None:
                for name in pending:
                    self._skip(run, records[name], "cancelled", "run cancelled")

    def _prefill(self, run: RunRecord, pending: list[str], running: dict, state: dict[str, Status]) -> None:
        if self.pool is not None:
            # Keep kernels booting ahead for the steps queued behind busy workers and the
            # ones still waiting on upstreams (most of which will need one).
            waiting = sum(1 for n in pending if self._upstream_state(n, state) != "failed")
            queued = max(0, len(running) - self.workers)
            self.pool.prefill(min(self.workers + 1, queued + waiting))

    def _image_digest(self, step: str) -> str | None:
        """The image a step runs in, as part of its cache key (None: this machine's environment)."""
        return None

    def _check_cancel(self) -> None:
        if self._cancel is not None and self.pool is not None:
            self.pool.kill_all()

    @staticmethod
    def _any_failed(state: dict[str, Status]) -> bool:
        return any(s == Status.FAILED for s in state.values())

    def _upstream_state(self, name: str, state: dict[str, Status]) -> str:
        for up in self.spec.step(name).upstreams:
            status = state.get(up)
            if status is None:  # not part of this run (--step): its outputs come from the store
                continue
            if status in (Status.FAILED, Status.SKIPPED):
                return "failed"
            if status not in (Status.SUCCEEDED, Status.CACHED):
                return "wait"
        return "ready"

    def _inputs(self, comp: ComponentSpec, records, available) -> dict[str, ArtifactRef]:
        inputs = {}
        for inp in comp.inputs:
            ref = available.get(inp.producer, {}).get(inp.name)
            if ref is None:
                raise UsageError(f"step '{comp.name}' input '{inp.name}' from '{inp.producer}' is not in the store")
            inputs[inp.name] = ArtifactRef(inp.name, ref.sha256, ref.size, ref.serializer, ref.type_name, inp.producer)
        return inputs

    def _try_cache(self, run: RunRecord, rec: StepRecord, key: str) -> bool:
        hit = self.ws.runs.lookup_cache(key)
        if hit is None:
            return False
        # A hit whose objects vanished or changed size is a miss (the producer simply re-runs).
        for ref in hit.outputs:
            path = self.ws.objects.path(ref.sha256)
            try:
                if path.stat().st_size != ref.size:
                    return False
            except OSError:
                return False
        now = time.time()
        rec.status, rec.cached, rec.cache_key = Status.CACHED, True, key
        rec.started, rec.ended, rec.duration = now, now, 0.0
        rec.outputs, rec.inputs = hit.outputs, hit.inputs
        rec.output_notebook, rec.cached_from = hit.output_notebook, hit.cached_from
        rec.spec_hash, rec.parameters, rec.attempts = hit.spec_hash, hit.parameters, 0
        self._record(run, rec)
        return True

    def _skip(self, run: RunRecord, rec: StepRecord, reason: str, why: str) -> None:
        rec.status = Status.SKIPPED
        rec.error = StepError(reason, why)
        self._record(run, rec)

    def _record(self, run: RunRecord, rec: StepRecord) -> None:
        with self._lock:
            self.ws.runs.update_step(run.id, rec)
        self.on_change(run, rec)

    # --- one step -------------------------------------------------------------------------
    def _execute(self, run: RunRecord, comp: ComponentSpec, rec: StepRecord,
                 inputs: dict[str, ArtifactRef], pool: KernelPool) -> StepRecord:
        attempts = comp.options.retries + 1
        for attempt in range(1, attempts + 1):
            rec.attempts = attempt
            try:
                outcome = self._attempt(run, comp, rec, inputs, pool, attempt)
            except Exception as exc:  # a bug or an I/O error in nb2pipe itself: fail the step, keep going
                outcome = StepError("error", f"nb2pipe could not run the step: {type(exc).__name__}: {exc}")
            if outcome is None:
                rec.status, rec.error = Status.SUCCEEDED, None
                break
            rec.error = outcome
            if self._cancel is not None or outcome.reason in ("cancelled",):
                break
            if attempt < attempts:
                self.on_change(run, rec)
        if rec.status != Status.SUCCEEDED:
            rec.status = Status.FAILED
            if self._cancel is not None and rec.error and rec.error.reason in ("kernel_died", "error"):
                rec.error = StepError("cancelled", "cancelled while running", rec.error.cell_index, rec.error.cell_id)
        rec.ended = time.time()
        rec.duration = rec.ended - (rec.started or rec.ended)
        self._record(run, rec)
        return rec

    def _attempt(self, run: RunRecord, comp: ComponentSpec, rec: StepRecord, inputs: dict[str, ArtifactRef],
                 pool: KernelPool, attempt: int) -> StepError | None:
        attempt_dir = self.ws.run_dir(run.id) / comp.name / f"attempt-{attempt}"
        out_dir = attempt_dir / "outputs"
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest = {name: {"path": str(self.ws.objects.path(ref.sha256)), "serializer": ref.serializer,
                           "sha256": ref.sha256} for name, ref in inputs.items()}
        meta = self.nb.node.metadata
        step_nb = build_step_notebook(self.spec, comp, manifest, str(out_dir),
                                      kernelspec=dict(meta.get("kernelspec") or {}) or None,
                                      language_info=dict(meta.get("language_info") or {}) or None)
        partial = attempt_dir / "step.partial.ipynb"
        final = attempt_dir / "step.ipynb"
        rec.output_notebook = str(final.relative_to(self.ws.root))
        if self._cancel is not None:
            return StepError("cancelled", "run cancelled before the step started")
        try:
            km = pool.acquire()
        except KernelStartError as exc:
            return StepError("kernel_died", str(exc))
        try:
            error = execute_step(comp, step_nb, partial, final, out_dir, km, kernel_name=self.spec.kernel_name,
                                 parameters=self.parameters, timeout=comp.options.timeout,
                                 start_timeout=self.opts.startup_timeout, cancelled=lambda: self._cancel is not None)
        finally:
            pool.discard(km)
        if error is not None:
            return error
        return self._commit_outputs(comp, rec, out_dir)

    def _commit_outputs(self, comp: ComponentSpec, rec: StepRecord, out_dir: Path) -> StepError | None:
        manifest_path = out_dir / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        outputs = []
        for name in comp.outputs:
            entry = manifest.get(name)
            if entry is None:
                return StepError("serialization", f"step '{comp.name}' did not save output '{name}'")
            sha = self.ws.objects.put_file(str(out_dir / entry["file"]), entry["sha256"])
            outputs.append(ArtifactRef(name, sha, entry["size"], entry["serializer"], entry["type"], comp.name))
        rec.outputs = outputs
        metrics_path = out_dir / "metrics.json"
        self._metrics[comp.name] = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        return None

    # --- end of run -----------------------------------------------------------------------
    def _finish(self, run: RunRecord) -> RunRecord:
        import signal

        metrics: list[Metric] = []
        for rec in run.steps:
            values = self._metrics.get(rec.name) if rec.status == Status.SUCCEEDED else None
            if rec.status == Status.CACHED and rec.cached_from:
                values = self._cached_metrics(rec)
            for name, entry in (values or {}).items():
                metrics.append(_metric(name, entry))
        statuses = {r.status for r in run.steps}
        reasons = {r.error.reason for r in run.steps if r.error and r.status == Status.FAILED}
        if self._cancel is not None:
            status = RunStatus.CANCELLED
            code = ExitCode.TERMINATED if self._cancel == signal.SIGTERM else ExitCode.INTERRUPTED
            reason = "cancelled by " + ("SIGTERM" if self._cancel == signal.SIGTERM else "SIGINT")
        elif Status.FAILED in statuses:
            status = RunStatus.FAILED
            if "kernel_died" in reasons:
                code, reason = ExitCode.KERNEL_DIED, "kernel_died"
            elif "timeout" in reasons:
                code, reason = ExitCode.TIMEOUT, "timeout"
            else:
                code, reason = ExitCode.STEP_FAILED, "step_failed"
        else:
            status, code, reason = RunStatus.SUCCEEDED, ExitCode.OK, None
        run.status, run.reason, run.ended, run.metrics, run.exit_code = status, reason, time.time(), metrics, int(code)
        self.ws.runs.finish_run(run.id, status, run.ended, reason, metrics, int(code))
        return run

    def _cached_metrics(self, rec: StepRecord) -> dict:
        comp = self.spec.step(rec.name)
        if not comp.metrics:
            return {}
        try:
            source = self.ws.runs.get_run(rec.cached_from)
        except Exception:
            return {}
        out = {}
        for m in source.metrics:
            if m.name in comp.metrics:
                out[m.name] = {"value": m.value, "flag": m.flag}
        return out


def _metric(name: str, entry: dict) -> Metric:
    value, flag = entry.get("value"), entry.get("flag")
    if flag == "nan":
        value = float("nan")
    elif flag in ("inf", "-inf"):
        value = float(flag)
    return Metric(name, value, flag)
