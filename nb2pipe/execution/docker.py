"""The docker executor: every step runs in a container of the pipeline's image.

An Executor (executor.py) like the local one: the scheduler, the cache, artifacts, records and
executed notebooks are the same code, so a docker run is comparable with a local one artifact by
artifact. Per attempt the container gets:

* the step's input artifacts, hard-linked from the object store into a folder mounted read-only;
* one writable folder (the attempt folder: outputs, executed notebook, result.json);
* the notebook's folder, read-only, as its working directory (steps read data files relative to
  the notebook, as in a local run), and the run's pipeline spec, read-only;
* the invoking user's uid (for root: the notebook folder's owner, or `nobody`; never root), `cpu:`/`memory:` as
  container limits, labels naming the run, step and store, and no host environment variables but
  the BLAS/OpenMP tuning ones (NUMERIC_ENV), which change floating-point results.

Containers start ahead of need, like the local executor's kernels: a container boots Python and
its kernel, then waits for its job file (`step_runtime --wait`), so a step does not pay for the
container start. Every container is removed, whatever happens: after each attempt, on
cancellation (all containers of the run are killed at once), and, for a runner that was
SIGKILLed, by the next docker run on the same store. What the step prints and which cell runs
reach the run's events through `events.jsonl`, which the step runtime appends to in the attempt
folder and this executor follows while it waits.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nb2pipe.errors import UsageError
from nb2pipe.execution.executor import Attempt, ExecutionContext, Executor
from nb2pipe.images.daemon import DockerError, docker_client, explain
from nb2pipe.model.records import StepError
from nb2pipe.model.spec import ComponentSpec
from nb2pipe.step_runtime import COMMAND as STEP_COMMAND
from nb2pipe.store.files import write_json
from nb2pipe.store.processes import pid_alive

LABEL = "org.nb2pipe"
IN, OUT, NOTEBOOK, SPEC = "/nb2pipe/in", "/nb2pipe/out", "/nb2pipe/notebook", "/nb2pipe/pipeline.json"
NOBODY = 65534
EVENTS_FILE = "events.jsonl"  # cell and output events, one JSON object a line, appended by the step
# The only host variables a step container gets: they pick the BLAS/OpenMP kernels and threads,
# which change floating-point results, so without them a step in a container would not give the
# artifacts it gives on this machine. None is a secret.
NUMERIC_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS", "MKL_CBWR")
GRACE = 30.0  # seconds past a step's own timeout before the container itself is killed


def container_user(folder: Path) -> tuple[int, int]:
    """uid, gid steps run as: the invoking user's; for root, the notebook folder's owner, or
    nobody when root owns it too (a step never needs root)."""
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        return uid, gid
    st = folder.stat()
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else (NOBODY, NOBODY)


def check_readable(folder: Path, uid: int, gid: int) -> None:
    """The notebook folder is the step's working directory: its uid must be able to enter it."""
    st = folder.stat()
    if st.st_uid == uid:
        bits = (st.st_mode >> 6) & 5
    elif st.st_gid == gid:
        bits = (st.st_mode >> 3) & 5
    else:
        bits = st.st_mode & 5
    if bits != 5:
        raise UsageError(f"{folder}: steps run as uid {uid} in the container (never as root), which cannot read "
                         f"this folder (mode {stat.filemode(st.st_mode)}) (fix: chmod o+rx '{folder}', or run "
                         "nb2pipe as the folder's owner)")


class StepContainer:
    """One container for one attempt of one step: created and booting before the step is ready."""

    def __init__(self, executor: DockerExecutor, comp: ComponentSpec, attempt: int):
        self.executor, self.comp, self.attempt = executor, comp, attempt
        ctx = executor.context
        self.dir = ctx.workspace.attempt_dir(ctx.run_id, comp.name, attempt)
        self.inputs_dir = self.dir.parent / f"inputs-{attempt}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.inputs_dir.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:  # the step runs as another uid and must be able to write here
            os.chown(self.dir, *executor.uid_gid)
        self.image = executor.images[comp.name]
        self.container = None
        self._events_at = 0  # how much of events.jsonl has been forwarded
        opts = comp.options
        limits = {}
        if opts.cpu:
            limits["nano_cpus"] = int(float(opts.cpu) * 1e9)
        if opts.memory:
            from nb2pipe.compile.tags import memory_bytes

            limits["mem_limit"] = memory_bytes(opts.memory)
            limits["memswap_limit"] = limits["mem_limit"]  # no swap: a limit is a limit
        if opts.gpu:
            from docker.types import DeviceRequest

            limits["device_requests"] = [DeviceRequest(count=int(opts.gpu), capabilities=[["gpu"]])]
        command = [*STEP_COMMAND, "--spec", SPEC, "--job", f"{OUT}/job.json", "--wait", NOTEBOOK]
        try:
            self.container = executor.client.containers.create(
                self.image, command, user=executor.user, working_dir=NOTEBOOK, labels=executor.labels(comp.name),
                volumes={str(self.dir): {"bind": OUT, "mode": "rw"},
                         str(self.inputs_dir): {"bind": IN, "mode": "ro"},
                         str(ctx.notebook.folder): {"bind": NOTEBOOK, "mode": "ro"},
                         str(executor.spec_file): {"bind": SPEC, "mode": "ro"}},
                environment={"NB2PIPE_FORK_KERNELS": "0", **{k: os.environ[k] for k in NUMERIC_ENV if k in os.environ}},
                detach=True, **limits)
            executor.track(self)
            self.container.start()
        except Exception as exc:
            self.remove()
            raise DockerError(f"cannot start a container of {self.image} for step '{comp.name}': "
                              f"{explain(exc)}") from None

    def submit(self, job: dict) -> None:
        """Hand the booted container its job: link the inputs in, then write the job file."""
        for name, entry in job["inputs"].items():
            src = entry.pop("host_path")
            dst = self.inputs_dir / name
            try:
                os.link(src, dst)
            except FileExistsError:
                pass
            except OSError:  # the store is on another filesystem than the run folder: copy
                import shutil

                shutil.copyfile(src, dst)
            entry["path"] = f"{IN}/{name}"
        write_json(self.dir / "job.json", job)  # atomically: the container waits for it to appear

    def wait(self, timeout: float | None, emit) -> int | None:
        """0 once result.json is written (the step is over: its kernel is being reaped), else the
        container's exit code, or None when it outlived `timeout` (then it is killed). Events the
        step runtime appends to events.jsonl go to `emit` meanwhile."""
        deadline = time.monotonic() + timeout if timeout else None
        result = self.dir / "result.json"
        next_check = time.monotonic() + 0.5
        while True:
            self.forward_events(emit)
            if result.exists():
                self.forward_events(emit)
                return 0
            now = time.monotonic()
            if deadline is not None and now > deadline:
                self.kill()
                return None
            if now >= next_check:  # an exit without a result: crash, OOM kill, docker kill
                next_check = now + 0.5
                try:
                    self.container.reload()
                except Exception:
                    return -1
                if self.container.status in ("exited", "dead"):
                    self.forward_events(emit)
                    if result.exists():
                        return 0
                    return int(self.container.attrs.get("State", {}).get("ExitCode", -1))
            time.sleep(0.01)

    def forward_events(self, emit) -> None:
        """Emit the complete lines appended to events.jsonl since the last call."""
        path = self.dir / EVENTS_FILE
        try:
            with open(path, "rb") as f:
                f.seek(self._events_at)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        self._events_at += end + 1
        for line in data[:end].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") in ("cell", "output"):
                emit(event)

    def oom_killed(self) -> bool:
        try:
            self.container.reload()
            return bool(self.container.attrs.get("State", {}).get("OOMKilled"))
        except Exception:
            return False

    def logs(self, lines: int = 20) -> str:
        try:
            return self.container.logs(tail=lines).decode("utf-8", "replace")
        except Exception:
            return ""

    def kill(self) -> None:
        try:
            self.container.kill()
        except Exception:
            pass

    def remove(self) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except Exception:
                pass
        self.executor.untrack(self)


class DockerExecutor(Executor):
    name = "docker"

    def __init__(self, context: ExecutionContext):
        super().__init__(context)
        if context.spec.language != "python":
            raise UsageError(f"{context.notebook.path}: the docker executor runs Python notebooks only "
                             f"(this one's kernel language is {context.spec.language})")
        self.requested_image = context.options.get("image")
        self.base_image = context.options.get("base_image")
        self.build_log = context.options.get("build_log") or (lambda line: None)
        self.uid_gid = container_user(Path(context.notebook.folder))
        self.user = f"{self.uid_gid[0]}:{self.uid_gid[1]}"
        self.client = None
        self.images: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self.spec_file = context.run_dir / "pipeline.json"
        self._live: set[StepContainer] = set()
        self._ready: dict[str, StepContainer] = {}  # step -> container booted ahead for attempt 1
        self._live_lock = threading.Lock()
        self._reaper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nb2pipe-rm")
        self._executing = False
        self._cancelled = False
        self.store_label = hashlib.sha256(str(context.workspace.root).encode()).hexdigest()[:16]

    # --- before the run -------------------------------------------------------------------
    def prepare(self) -> None:
        check_readable(Path(self.context.notebook.folder), *self.uid_gid)
        self.client = docker_client()
        self.reap_orphans()
        self.resolve_images()

    def resolve_images(self) -> None:
        """The image of every step: --image, else the pipeline's, built now when missing or stale."""
        from docker.errors import ImageNotFound

        spec = self.context.spec
        if self.requested_image:
            try:
                image = self.client.images.get(self.requested_image)
            except ImageNotFound:
                raise UsageError(f"image '{self.requested_image}' is not on this machine (fix: `nb2pipe build "
                                 f"{self.context.notebook.path} --tag {self.requested_image}`, or docker pull "
                                 "it)") from None
            self.images = {s.name: self.requested_image for s in spec.steps}
            self.digests = {s.name: image.id for s in spec.steps}
            return
        from nb2pipe.images.build import build_image

        result = build_image(self.context.notebook.path, base_image=self.base_image, log=self.build_log, spec=spec)
        self.images = dict(result.step_images)
        ids = {tag: self.client.images.get(tag).id for tag in set(self.images.values())}
        self.digests = {step: ids[tag] for step, tag in self.images.items()}

    def image_digest(self, step: str) -> str | None:
        return self.digests.get(step)

    def labels(self, step: str) -> dict[str, str]:
        return {f"{LABEL}.run": self.context.run_id, f"{LABEL}.step": step, f"{LABEL}.store": self.store_label,
                f"{LABEL}.runner": f"{socket.gethostname()}:{os.getpid()}"}

    def reap_orphans(self) -> None:
        """Remove containers that a SIGKILLed runner of this store left behind."""
        host = socket.gethostname()
        try:
            found = self.client.containers.list(all=True, filters={"label": f"{LABEL}.store={self.store_label}"})
        except Exception:
            return
        for c in found:
            runner = (c.labels or {}).get(f"{LABEL}.runner", "")
            name, _, pid = runner.rpartition(":")
            if name == host and pid.isdigit() and pid_alive(int(pid)):
                continue  # another run on this store is still going
            try:
                c.remove(force=True)
            except Exception:
                pass

    # --- containers -----------------------------------------------------------------------
    def track(self, c: StepContainer) -> None:
        with self._live_lock:
            self._live.add(c)

    def untrack(self, c: StepContainer) -> None:
        with self._live_lock:
            self._live.discard(c)

    def kill_all(self) -> None:
        with self._live_lock:
            live = list(self._live)
            self._ready.clear()
        for c in live:
            c.remove()

    def _first_execution(self) -> None:
        with self._live_lock:
            if self._executing:
                return
            self._executing = True
        self.spec_file.parent.mkdir(parents=True, exist_ok=True)
        self.spec_file.write_text(self.context.spec.to_json())

    def ahead(self, steps: list[ComponentSpec]) -> None:
        """Boot containers for the next steps (once a first step has needed one)."""
        if not self._executing or self._cancelled:
            return
        budget = self.context.workers + 1 - len(self._ready)
        for comp in steps:
            if budget <= 0:
                break
            if comp.name in self._ready:
                continue
            try:
                box = StepContainer(self, comp, 1)
            except DockerError:
                return  # start() will try again and report the error on the step
            with self._live_lock:
                self._ready[comp.name] = box
            budget -= 1

    # --- one attempt ----------------------------------------------------------------------
    def start(self, attempt: Attempt) -> None:
        if self._cancelled:
            return
        self._first_execution()
        comp = attempt.step
        with self._live_lock:
            box = self._ready.pop(comp.name, None) if attempt.number == 1 else None
        if box is None:
            try:
                box = StepContainer(self, comp, attempt.number)
            except DockerError as exc:
                attempt.handle = StepError("error", str(exc))
                return
        objects = self.context.workspace.objects
        job = {
            "step": comp.name,
            "parameters": attempt.parameters or {},
            "inputs": {name: {"host_path": str(objects.path(ref.sha256)), "serializer": ref.serializer,
                              "sha256": ref.sha256} for name, ref in attempt.inputs.items()},
            "work_dir": OUT,
            "cwd": NOTEBOOK,
            "timeout": comp.options.timeout,
            "events": f"{OUT}/{EVENTS_FILE}",
        }
        attempt.handle = box
        try:
            box.submit(job)
        except Exception:
            attempt.handle = None
            self._reaper.submit(box.remove)
            raise

    def wait(self, attempt: Attempt) -> StepError | None:
        box = attempt.handle
        if isinstance(box, StepError):
            return box
        if box is None or self._cancelled:
            return StepError("cancelled", "run cancelled before the step started")
        comp = attempt.step
        try:
            deadline = comp.options.timeout + GRACE + 60 if comp.options.timeout else None
            code = box.wait(deadline, attempt.emit)
            return self._outcome(comp, box, code)
        finally:
            self._reaper.submit(box.remove)

    def _outcome(self, comp: ComponentSpec, box: StepContainer, code: int | None) -> StepError | None:
        if self._cancelled:
            return StepError("cancelled", "cancelled while running")
        if code is None:
            return StepError("timeout", f"step '{comp.name}' timed out after {comp.options.timeout} s "
                                        "(its container was killed)")
        result_path = box.dir / "result.json"
        if result_path.exists():
            result = json.loads(result_path.read_text())
            if result.get("error"):
                return StepError.from_dict(result["error"])
            return None
        if box.oom_killed():
            return StepError("kernel_died", f"step '{comp.name}' was killed for using more memory than its "
                                            f"limit (memory: {comp.options.memory})")
        tail = box.logs().strip().splitlines()[-3:]
        return StepError("kernel_died", f"step '{comp.name}' container exited with code {code} before "
                                        "finishing" + (": " + " | ".join(tail) if tail else ""))

    def cancel(self) -> None:
        self._cancelled = True
        threading.Thread(target=self.kill_all, daemon=True, name="nb2pipe-cancel").start()

    def close(self) -> None:
        self.kill_all()
        self._reaper.shutdown(wait=True)


def current_image_digests(spec) -> dict[str, str]:
    """Step -> id of the image `nb2pipe run --executor docker` would use now, for the steps whose
    image is already built (a plan builds nothing; a missing image means those steps would run)."""
    from nb2pipe.images.build import default_tag, step_image_tag

    try:
        client = docker_client()
    except DockerError:
        return {}
    pipeline = default_tag(spec)
    out = {}
    for comp in spec.steps:
        try:
            out[comp.name] = client.images.get(step_image_tag(pipeline, comp)).id
        except Exception:  # not built yet
            continue
    return out
