"""The scheduler: one run of a PipelineSpec as a parallel DAG, on any executor.

Design
------
* One loop (the run's thread) walks the step graph. A step becomes ready when all its upstreams
  succeeded (or were cached); if any upstream failed it is SKIPPED.
* A ready step first computes its cache key (store/cache.py). A hit whose objects are all still
  in the object store marks it CACHED and reuses the outputs: nothing executes for it.
* Otherwise one of `workers` threads runs it as attempts on the executor (executor.py): a local
  kernel or a container. The scheduler tells the executor which steps come next (`ahead`), so
  kernels and containers boot before they are needed.
* Commit order per attempt (nothing half-written is ever visible): the executed notebook is
  written atomically to `step.ipynb`; outputs (written in the kernel to temp files + rename,
  hashed while written) move into the content-addressed object store; last, one SQLite
  transaction records the step. A run killed at any point leaves garbage at worst, never a
  record pointing at nothing, and the next run resumes through the cache.
* Failures: a cell error fails the step; `retries:N` re-attempts with a fresh kernel or
  container; `timeout:S` ends the attempt; a dead kernel fails it as kernel_died. `cancel()`
  stops this run only: no new step starts and the executor kills what runs.
* Every state change is recorded in the store and emitted as an event (events.py); what a step
  prints is appended to its attempt's `output.log` as it arrives.
"""

from __future__ import annotations

import enum
import errno
import json
import logging
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.compile.notebook import Notebook
from nb2pipe.errors import ExitCode, Nb2pipeError, StoreError, StoreIOError, UsageError
from nb2pipe.execution.events import EventBus, run_ended_event, run_started_event, step_event
from nb2pipe.execution.executor import Attempt, Executor
from nb2pipe.model.graph import StepGraph
from nb2pipe.model.records import (
    STORE_IO_REASONS,
    ArtifactRef,
    Metric,
    RunRecord,
    RunStatus,
    Status,
    StepError,
    StepRecord,
)
from nb2pipe.model.spec import ComponentSpec, PipelineSpec
from nb2pipe.store.cache import recorded_value, step_cache_key
from nb2pipe.store.pauses import pause
from nb2pipe.store.workspace import LOG_NAME, Workspace

logger = logging.getLogger("nb2pipe.scheduler")

# A cached object is re-hashed before its step's result is reused when it is at most this big;
# bigger ones are checked by size (re-reading gigabytes would cost more than the cache saves).
REHASH_LIMIT = 256 * 1024 * 1024


# An OSError with one of these, from writing the attempt folder, is the store's fault (exit 74).
_STORE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


def _attempt_failure(exc: Exception) -> StepError:
    """The step's error when nb2pipe's side of an attempt raised: the store (the attempt folder,
    the executed notebook, the log, the object store) being full or read-only, or else a bug in
    nb2pipe, which fails the step and lets the run go on."""
    if isinstance(exc, StoreIOError):
        return StepError.store_io(str(exc))
    if isinstance(exc, OSError) and exc.errno in _STORE_ERRNOS:
        return StepError.store_io(f"cannot write {exc.filename or 'the store'}: {exc.strerror or exc}")
    return StepError("error", f"nb2pipe could not run the step: {type(exc).__name__}: {exc}")


@dataclass
class RunOptions:
    workers: int = 0  # 0 = number of CPUs
    cache: bool = True
    fail_fast: bool = False
    steps: list[str] = field(default_factory=list)  # --step: only these
    from_step: str | None = None  # --from: this and everything downstream
    startup_timeout: float = 60.0


class Readiness(enum.Enum):
    """Where a pending step stands with respect to its upstreams."""

    WAIT = "wait"  # an upstream has not finished
    READY = "ready"  # every upstream succeeded or was cached (or is not part of this run)
    BLOCKED = "blocked"  # an upstream failed or was skipped


def graph_of(spec: PipelineSpec) -> StepGraph:
    graph = StepGraph([s.name for s in spec.steps])
    for s in spec.steps:
        for up in s.upstreams:
            graph.add_edge(up, s.name)
    return graph


def select_steps(spec: PipelineSpec, steps: list[str], from_step: str | None) -> tuple[list[str], set[str]]:
    """The steps a run covers (--step), and those it must execute whatever the cache says."""
    names = spec.step_names
    for s in [*steps, *([from_step] if from_step else [])]:
        if s not in names:
            from nb2pipe.model.graph import suggest

            close = suggest(s, names)
            raise UsageError(f"unknown step '{s}'" + (f"; did you mean '{close}'?" if close else "")
                             + f" (steps: {', '.join(names)})")
    if steps:
        return [n for n in names if n in steps], set(steps)
    if from_step:
        return names, {from_step} | graph_of(spec).downstream(from_step)
    return names, set()


class Scheduler:
    """Runs one pipeline run; `run()` blocks, `cancel()` may come from any thread."""

    def __init__(self, notebook: Notebook, spec: PipelineSpec, workspace: Workspace, executor: Executor,
                 options: RunOptions, parameters: dict, bus: EventBus, run_id: str):
        from nb2pipe.artifacts import values as artifacts
        from nb2pipe.store.environment import runtime_info

        self.nb, self.spec, self.ws, self.executor = notebook, spec, workspace, executor
        self.opts = options
        self.parameters = parameters
        self.bus = bus
        self.graph = graph_of(spec)
        self.workers = executor.context.workers
        self.selected, self.forced = select_steps(spec, options.steps, options.from_step)
        # --step: producer -> {"run": id, "parameters": {...}} of the stored outputs it reuses
        self.reused: dict[str, dict] = {}
        self.available = self._reused_upstream_outputs(self.selected)
        env = runtime_info(workspace.root, notebook.folder, spec.kernel_name, executor=executor.name)
        self.env_fingerprint = env["env_fingerprint"]
        self.serializer_versions = {s.name: str(s.version) for s in artifacts.default_registry.values()}
        self.record = RunRecord(
            id=run_id, notebook=notebook.path, notebook_sha256=notebook.sha256, spec_hash=spec.spec_hash,
            status=RunStatus.RUNNING, started=time.time(),
            parameters=self._effective_parameters(parameters),
            steps=[StepRecord(name=s) for s in self.selected], environment=env,
        )
        self._cancel: int | None = None  # the signal number that cancelled the run (0: the API)
        self._lock = threading.Lock()
        self._metrics: dict[str, dict] = {}  # step -> {name: {"value", "flag"}} from metrics.json

    # --- public --------------------------------------------------------------------------
    def run(self) -> RunRecord:
        run = self.record
        # The stored outputs a --step run reuses are named as its steps' inputs from its first record
        # on, and are checked again under the collection lock: gc takes nothing this run is to read.
        with self.ws.publishing():
            for rec in run.steps:
                rec.inputs = self._reused_inputs(self.spec.step(rec.name))
            self.ws.runs.create_run(run)
        self.bus.emit(run_started_event(run, self.reused))
        for rec in run.steps:
            self.bus.emit(step_event(rec, "queued"))
        try:
            self._schedule(run)
        finally:
            self.executor.close()
        return self._finish(run)

    def cancel(self, signum: int = 0) -> None:
        """Stop this run: no new step starts, the executor kills what runs. 0 means the API."""
        if self._cancel is None:
            self._cancel = signum
            self.executor.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel is not None

    # --- selection ------------------------------------------------------------------------
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
                bad = [r for r in refs if not self.ws.objects.intact(r.sha256, r.size, REHASH_LIMIT)]
                if bad:
                    raise StoreError(
                        f"step '{name}' would reuse {', '.join(repr(r.name) for r in bad)} from step "
                        f"'{inp.producer}', but the stored object{'s are' if len(bad) > 1 else ' is'} damaged or "
                        f"missing (fix: nb2pipe store verify --repair, then run without --step, or add --step "
                        f"{inp.producer})")
                available[inp.producer] = {r.name: r for r in refs}
                source = next((r.run_id for r in refs if r.run_id), None)
                made = self.ws.runs.get_run(source).step(inp.producer) if source else None
                self.reused[inp.producer] = {
                    "run": source,
                    "parameters": {**(made.input_parameters if made else {}), **(made.parameters if made else {})},
                }
        return available

    def _reused_inputs(self, comp: ComponentSpec) -> list[ArtifactRef]:
        refs = []
        for inp in comp.inputs:
            ref = self.available.get(inp.producer, {}).get(inp.name) if inp.producer not in self.selected else None
            if ref is not None:
                refs.append(ArtifactRef(inp.name, ref.sha256, ref.size, ref.serializer, ref.type_name, inp.producer,
                                        ref.run_id))
        gone = [r for r in refs if not self.ws.objects.exists(r.sha256)]
        if gone:
            raise StoreError(f"step '{comp.name}' would reuse {', '.join(repr(r.name) for r in gone)}, which left the "
                             "store since the run started (store gc?); run it again")
        return refs

    def _effective_parameters(self, values: dict) -> dict:
        """The run's parameters as its results were made: a parameter none of this run's steps
        reads takes the value the reused artifacts were made with (`--step evaluate` after a run
        with `-p n_samples 3000` records n_samples=3000, not the default)."""
        out = {k: recorded_value(v) for k, v in values.items()}
        read = {p for name in self.selected for p in self.spec.step(name).parameters}
        for lineage in self.reused.values():
            for name, value in lineage["parameters"].items():
                if name not in read:
                    out[name] = value
        return out

    def _input_parameters(self, comp: ComponentSpec, records: dict[str, StepRecord]) -> dict:
        """The parameter values the step's inputs were made with, through all its upstreams."""
        out: dict = {}
        for producer in dict.fromkeys(inp.producer for inp in comp.inputs):
            if producer in records:
                up = records[producer]
                out.update(up.input_parameters)
                out.update(up.parameters)
            elif producer in self.reused:
                out.update(self.reused[producer]["parameters"])
        return dict(sorted(out.items()))

    # --- scheduling -----------------------------------------------------------------------
    def _schedule(self, run: RunRecord) -> None:
        records = {s.name: s for s in run.steps}
        # Scheduling decisions read only `state`, which this thread alone writes: a worker thread
        # marks its record succeeded before this loop has collected its outputs.
        state: dict[str, Status] = {s.name: Status.PENDING for s in run.steps}
        pending = list(self.selected)
        running: dict[Future, str] = {}
        available = self.available
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="nb2pipe-step") as pool:
            while pending or running:
                progressed = False
                for name in list(pending):
                    if self.cancelled or (self.opts.fail_fast and _any_failed(state)):
                        break
                    ready = self._readiness(name, state)
                    if ready is Readiness.WAIT:
                        continue
                    rec = records[name]
                    if ready is Readiness.BLOCKED:
                        pending.remove(name)
                        progressed = True
                        self._skip(rec, "upstream_failed", "an upstream step failed")
                        state[name] = Status.SKIPPED
                        continue
                    comp = self.spec.step(name)
                    inputs = self._inputs(comp, available)
                    key = step_cache_key(comp, self.parameters, {n: r.sha256 for n, r in inputs.items()},
                                         self.env_fingerprint, self.serializer_versions,
                                         self.executor.image_digest(name))
                    if self.opts.cache and comp.options.cache and name not in self.forced and self._try_cache(rec, key):
                        pending.remove(name)
                        progressed = True
                        available[name] = {r.name: r for r in rec.outputs}
                        state[name] = Status.CACHED
                        continue
                    if len(running) >= self.workers:
                        # No free worker: the step stays pending rather than queueing in the
                        # pool, so --fail-fast can still hold it back and `started` is honest.
                        continue
                    pending.remove(name)
                    progressed = True
                    state[name] = Status.RUNNING
                    rec.status, rec.started, rec.cache_key = Status.RUNNING, time.time(), key
                    rec.spec_hash = comp.content_hash
                    rec.parameters = {p: recorded_value(self.parameters[p])
                                      for p in comp.parameters if p in self.parameters}
                    rec.inputs = list(inputs.values())
                    rec.input_parameters = self._input_parameters(comp, records)
                    rec.image_digest = self.executor.image_digest(name)
                    running[pool.submit(self._execute, comp, rec, inputs)] = name
                if not self.cancelled:
                    self.executor.ahead(self._upcoming(pending, state))
                if self.opts.fail_fast and _any_failed(state):
                    for name in pending:
                        self._skip(records[name], "cancelled", "not started: --fail-fast after a failure")
                        state[name] = Status.SKIPPED
                    pending.clear()
                if not running:
                    if self.cancelled:  # nothing left running: the rest is skipped below
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
            if self.cancelled:
                for name in pending:
                    self._skip(records[name], "cancelled", "run cancelled")

    def _upcoming(self, pending: list[str], state: dict[str, Status]) -> list[ComponentSpec]:
        """Pending steps that will probably execute, for the executor to boot ahead.

        A step without inputs whose cache is on is likely a hit: no kernel is booted for it.
        """
        out = []
        for name in pending:
            if self._readiness(name, state) is Readiness.BLOCKED:
                continue
            comp = self.spec.step(name)
            if self.opts.cache and comp.options.cache and not comp.inputs and name not in self.forced:
                continue
            out.append(comp)
        return out

    def _readiness(self, name: str, state: dict[str, Status]) -> Readiness:
        for up in self.spec.step(name).upstreams:
            status = state.get(up)
            if status is None:  # not part of this run (--step): its outputs come from the store
                continue
            if status in (Status.FAILED, Status.SKIPPED):
                return Readiness.BLOCKED
            if status not in (Status.SUCCEEDED, Status.CACHED):
                return Readiness.WAIT
        return Readiness.READY

    def _inputs(self, comp: ComponentSpec, available) -> dict[str, ArtifactRef]:
        inputs = {}
        for inp in comp.inputs:
            ref = available.get(inp.producer, {}).get(inp.name)
            if ref is None:
                raise UsageError(f"step '{comp.name}' input '{inp.name}' from '{inp.producer}' is not in the store")
            inputs[inp.name] = ArtifactRef(inp.name, ref.sha256, ref.size, ref.serializer, ref.type_name, inp.producer,
                                           ref.run_id)
        return inputs

    def _try_cache(self, rec: StepRecord, key: str) -> bool:
        # From finding another run's outputs to the record naming them as this step's, gc must wait.
        with self.ws.publishing():
            return self._serve_cached(rec, key)

    def _serve_cached(self, rec: StepRecord, key: str) -> bool:
        hit = self.ws.runs.lookup_cache(key)
        if hit is None:
            return False
        # A hit whose objects vanished, changed size or no longer hash to their names is a miss:
        # the producer simply re-runs (damaged objects are removed and the entry withdrawn first,
        # so it writes them afresh). Objects over REHASH_LIMIT get the size check only.
        damaged = [ref.sha256 for ref in hit.outputs
                   if not self.ws.objects.intact(ref.sha256, ref.size, REHASH_LIMIT)]
        if damaged:
            for sha in damaged:
                self.ws.objects.remove_damaged(sha)
            self.ws.runs.withdraw_from_cache(damaged)
            logger.warning("step '%s': its cached outputs were damaged or missing in the store; executing it again",
                           rec.name)
            return False
        pause("cache-found")
        now = time.time()
        rec.status, rec.cached, rec.cache_key = Status.CACHED, True, key
        rec.started, rec.ended, rec.duration = now, now, 0.0
        rec.outputs, rec.inputs = hit.outputs, hit.inputs
        rec.output_notebook, rec.cached_from = hit.output_notebook, hit.cached_from
        rec.spec_hash, rec.parameters, rec.attempts = hit.spec_hash, hit.parameters, 0
        rec.image_digest, rec.input_parameters = hit.image_digest, hit.input_parameters
        for ref in rec.outputs:
            ref.run_id = ref.run_id or hit.cached_from
        rec.metrics = list(hit.metrics) or self._cached_metrics(rec)  # (older stores: the run's)
        self._metrics[rec.name] = {m.name: {"value": m.value, "flag": m.flag} for m in rec.metrics}
        self._record(rec)
        return True

    def _skip(self, rec: StepRecord, reason: str, why: str) -> None:
        rec.status = Status.SKIPPED
        rec.error = StepError(reason, why)
        self._record(rec)

    def _record(self, rec: StepRecord, status: str | None = None) -> None:
        metrics = self._step_metrics(rec.name) if rec.status in (Status.SUCCEEDED, Status.CACHED) else None
        with self._lock:
            self.ws.runs.update_step(self.record.id, rec)
            self.bus.emit(step_event(rec, status, metrics))

    def _step_metrics(self, name: str) -> list[Metric]:
        """What a finished step reported (metrics.json; for a cached step, the run it came from)."""
        return [Metric.from_dict({"name": n, "value": e.get("value"), "flag": e.get("flag")})
                for n, e in self._metrics.get(name, {}).items()]

    # --- one step -------------------------------------------------------------------------
    def _execute(self, comp: ComponentSpec, rec: StepRecord, inputs: dict[str, ArtifactRef]) -> StepRecord:
        attempts = comp.options.retries + 1
        for number in range(1, attempts + 1):
            rec.attempts = number
            rec.error = None if number == 1 else rec.error
            attempt_dir = self.ws.attempt_dir(self.record.id, comp.name, number)
            rec.output_notebook = str((attempt_dir / "step.ipynb").relative_to(self.ws.root))
            self._record(rec)  # running, attempt N
            try:
                outcome = self._attempt(comp, rec, inputs, number, attempt_dir)
                if outcome is None:
                    # From the first object published to the record naming them, gc must wait.
                    with self.ws.publishing():
                        outcome = self._commit_outputs(comp, rec, attempt_dir / "outputs")
                        if outcome is None:
                            pause("published")
                            rec.status, rec.error = Status.SUCCEEDED, None
                            self._ended(rec)
                            return rec
            except Exception as exc:
                rec.status = Status.RUNNING  # not succeeded after all (the record may have failed to commit)
                outcome = _attempt_failure(exc)
            rec.error = outcome
            if self.cancelled or outcome.reason == "cancelled" or outcome.reason in STORE_IO_REASONS:
                break  # (another attempt would meet the same full or read-only store)
        rec.status = Status.FAILED
        if self.cancelled and rec.error and rec.error.reason in ("kernel_died", "error"):
            rec.error = StepError("cancelled", "cancelled while running", rec.error.cell_index, rec.error.cell_id)
        self._ended(rec)
        return rec

    def _ended(self, rec: StepRecord) -> None:
        rec.ended = time.time()
        rec.duration = rec.ended - (rec.started or rec.ended)
        self._record(rec)

    def _attempt(self, comp: ComponentSpec, rec: StepRecord, inputs: dict[str, ArtifactRef], number: int,
                 attempt_dir: Path) -> StepError | None:
        if self.cancelled:
            return StepError("cancelled", "run cancelled before the step started")
        attempt_dir.mkdir(parents=True, exist_ok=True)  # outputs/ is the executor's: a container writes it
        with StepLog(attempt_dir / LOG_NAME) as log:
            attempt = Attempt(step=comp, number=number, inputs=inputs, parameters=self.parameters, dir=attempt_dir,
                              emit=self._emitter(comp.name, number, log), cancelled=lambda: self.cancelled)
            self.executor.on_step_start(attempt)
            error: StepError | None = None
            try:
                self.executor.start(attempt)
                error = self.executor.wait(attempt)
            finally:
                self.executor.on_step_end(attempt, error)
        return error

    def _emitter(self, step: str, number: int, log: StepLog):
        bus = self.bus

        def emit(event: dict) -> None:
            if event.get("type") == "output":
                log.write(event.get("text", ""))
            bus.emit({**event, "step": step, "attempt": number})

        return emit

    def _commit_outputs(self, comp: ComponentSpec, rec: StepRecord, out_dir: Path) -> StepError | None:
        manifest_path = out_dir / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        outputs = []
        for name in comp.outputs:
            entry = manifest.get(name)
            if entry is None:
                return StepError("serialization", f"step '{comp.name}' did not save output '{name}'")
            if entry.get("file") is None and entry.get("unchanged"):  # an input left as it was: same object
                sha = entry["sha256"]
                if not self.ws.objects.exists(sha):
                    return StepError("serialization", f"step '{comp.name}' kept input '{name}' unchanged, but "
                                     f"its object {sha[:12]} is not in the store")
            else:
                sha = self.ws.objects.put_file(str(out_dir / entry["file"]), entry["sha256"])
            outputs.append(ArtifactRef(name, sha, entry["size"], entry["serializer"], entry["type"], comp.name,
                                       self.record.id))
        rec.outputs = outputs
        metrics_path = out_dir / "metrics.json"
        self._metrics[comp.name] = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        rec.metrics = self._step_metrics(comp.name)  # recorded with the step, before the run ends
        return None

    # --- end of run -----------------------------------------------------------------------
    def _finish(self, run: RunRecord) -> RunRecord:
        metrics: list[Metric] = []
        for rec in run.steps:
            if rec.status in (Status.SUCCEEDED, Status.CACHED):
                metrics.extend(self._step_metrics(rec.name))
        statuses = {r.status for r in run.steps}
        reasons = {r.error.reason for r in run.steps if r.error and r.status == Status.FAILED}
        if self._cancel is not None:
            status = RunStatus.CANCELLED
            if self._cancel == signal.SIGTERM:
                code, reason = ExitCode.TERMINATED, "cancelled by SIGTERM"
            elif self._cancel == signal.SIGINT:
                code, reason = ExitCode.INTERRUPTED, "cancelled by SIGINT"
            else:
                code, reason = ExitCode.INTERRUPTED, "cancelled"
        elif Status.FAILED in statuses:
            status = RunStatus.FAILED
            if reasons & STORE_IO_REASONS:
                code, reason = ExitCode.IO_ERROR, sorted(reasons & STORE_IO_REASONS)[0]
            elif "kernel_died" in reasons:
                code, reason = ExitCode.KERNEL_DIED, "kernel_died"
            elif "timeout" in reasons:
                code, reason = ExitCode.TIMEOUT, "timeout"
            else:
                code, reason = ExitCode.STEP_FAILED, "step_failed"
        else:
            status, code, reason = RunStatus.SUCCEEDED, ExitCode.OK, None
        run.status, run.reason, run.ended, run.metrics, run.exit_code = status, reason, time.time(), metrics, int(code)
        self.ws.runs.finish_run(run.id, status, run.ended, reason, metrics, int(code))
        self.bus.emit(run_ended_event(run))
        return run

    def _cached_metrics(self, rec: StepRecord) -> list[Metric]:
        """A cache hit recorded before steps kept their metrics: the producing run's, by name."""
        comp = self.spec.step(rec.name)
        if not comp.metrics or not rec.cached_from:
            return []
        try:
            source = self.ws.runs.get_run(rec.cached_from)
        except Nb2pipeError:
            return []
        return [m for m in source.metrics if m.name in comp.metrics]


class StepLog:
    """An attempt's output as plain text (what the step printed, stdout and stderr as they
    came), flushed per message so `nb2pipe logs -f` follows it. Created empty at attempt start."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "a", encoding="utf-8", errors="replace")

    def write(self, text: str) -> None:
        if text and not self._f.closed:
            self._f.write(text)
            self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> StepLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_workers(workers: int | None) -> int:
    return workers or os.cpu_count() or 2


def _any_failed(state: dict[str, Status]) -> bool:
    return any(s == Status.FAILED for s in state.values())

